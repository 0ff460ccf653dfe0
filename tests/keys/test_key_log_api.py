"""GET /v1/accounts/{id}/key-log: what a client fetches, checks and keeps."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.core.context import Context
from app.core.tokens import TokenError
from app.keys.log import Entry, LogBroken, LogState, check_head, extend
from app.models import KeyLogEntry
from tests.fixtures.accounts import User, register_client
from tests.fixtures.identity import b64, device_body, identity_of, new_device, point
from tests.fixtures.rooms import add_and_accept


def raw(text: str | None) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) if text else b""


def entry(data: dict[str, Any]) -> Entry:
    return Entry(
        seq=data["seq"],
        kind=data["kind"],
        prev_hash=bytes.fromhex(data["prev_hash"]),
        hash=bytes.fromhex(data["hash"]),
        device_id=data["device_id"] or "",
        identity_key=raw(data["identity_key"]),
        signing_key=raw(data["signing_key"]),
        public_key=raw(data["public_key"]),
        signature=raw(data["signature"]),
    )


async def fetch(
    client: httpx.AsyncClient, reader: User, account_id: str, after: int = 0
) -> httpx.Response:
    return await client.get(
        f"/v1/accounts/{account_id}/key-log", params={"after": after}, headers=reader.auth
    )


def checked(ctx: Context, state: LogState, body: dict[str, Any]) -> LogState:
    """The client's check: the range extends what it knew and ends at the signed head."""
    state = extend(state, [entry(e) for e in body["entries"]])
    head = body["head"]
    claims = ctx.tokens.verify_key_log_head(head["jws"])
    assert (claims["sub"], claims["seq"], claims["head"]) == (
        body["account_id"],
        head["seq"],
        head["hash"],
    )
    check_head(state, head["seq"], bytes.fromhex(head["hash"]))
    return state


async def add(client: httpx.AsyncClient, user: User, label: str) -> str:
    response = await client.post(
        "/v1/devices", json=device_body(user.id, label, "AQID"), headers=user.auth
    )
    assert response.status_code == 201, response.text
    device_id: str = response.json()["device_id"]
    return device_id


async def test_the_log_records_every_key_change_and_verifies(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    empty = await fetch(client, client_user, client_user.id)
    assert empty.status_code == 200
    assert empty.json() == {"account_id": client_user.id, "entries": [], "head": None}

    phone = await add(client, client_user, "phone")
    laptop = await add(client, client_user, "laptop")
    assert (
        await client.delete(f"/v1/devices/{laptop}", headers=client_user.auth)
    ).status_code == 204
    body = (await fetch(client, client_user, client_user.id)).json()
    assert [(e["seq"], e["kind"], e["device_id"]) for e in body["entries"]] == [
        (1, "identity_set", None),
        (2, "device_added", phone),
        (3, "device_added", laptop),
        (4, "device_revoked", laptop),
    ]
    assert body["entries"][0]["identity_key"] == b64(point(identity_of(client_user.id)))
    state = checked(ctx, LogState(client_user.id), body)
    assert list(state.devices) == [phone]

    # A client that knew seq 2 fetches the rest only, and it extends what it knew.
    known = extend(LogState(client_user.id), [entry(e) for e in body["entries"][:2]])
    tail = (await fetch(client, client_user, client_user.id, after=2)).json()
    assert [e["seq"] for e in tail["entries"]] == [3, 4]
    assert checked(ctx, known, tail) == state

    # A reset: the old devices revoked, the new key, its first device.
    new_identity = identity_of(client_user.id, generation=1)
    device = {"label": "new", **new_device(client_user.id, "AQID", new_identity)}
    reset = await client.post(
        "/v1/me/identity/reset",
        json={"identity_key": b64(point(new_identity)), "device": device},
        headers=client_user.auth,
    )
    assert reset.status_code == 201, reset.text
    after = (await fetch(client, client_user, client_user.id, after=4)).json()
    assert [(e["kind"], e["device_id"]) for e in after["entries"]] == [
        ("device_revoked", phone),
        ("identity_reset", None),
        ("device_added", device["device_id"]),
    ]
    state = checked(ctx, state, after)
    assert state.identity_key == point(new_identity)
    assert list(state.devices) == [device["device_id"]]


async def test_a_server_that_rewrites_the_log_is_caught(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    await add(client, client_user, "phone")
    body = (await fetch(client, client_user, client_user.id)).json()
    known = checked(ctx, LogState(client_user.id), body)
    # The server swaps the device's key for one of its own.
    swapped = dict(body["entries"][1], signing_key=b64(point(identity_of("server"))))
    with pytest.raises(LogBroken) as caught:
        extend(LogState(client_user.id), [entry(body["entries"][0]), entry(swapped)])
    assert caught.value.seq == 2
    # Later answers must extend the known head.
    await add(client, client_user, "laptop")
    later = (await fetch(client, client_user, client_user.id, after=known.seq)).json()
    checked(ctx, known, later)


async def test_contacts_read_the_log_and_strangers_get_404(
    client: httpx.AsyncClient, client_user: User, counselor: User, ctx: Context
) -> None:
    await add(client, client_user, "phone")
    stranger = await register_client(client)
    refused = await fetch(client, stranger, client_user.id)
    unknown = await fetch(client, stranger, str(uuid.uuid4()))
    malformed = await fetch(client, stranger, "not-an-id")
    assert refused.status_code == unknown.status_code == malformed.status_code == 404
    assert refused.json() == unknown.json()
    assert (await fetch(client, counselor, client_user.id)).status_code == 404

    room = await client.post(
        "/v1/rooms", json={"title": "Session", "kind": "individual"}, headers=counselor.auth
    )
    assert room.status_code == 201, room.text
    await add_and_accept(
        client, room.json()["id"], counselor.auth, client_user.auth, account_id=client_user.id
    )
    theirs = await fetch(client, counselor, client_user.id)
    assert theirs.status_code == 200
    checked(ctx, LogState(client_user.id), theirs.json())
    # The other way round too; the counselor's log is empty.
    mine = await fetch(client, client_user, counselor.id)
    assert mine.status_code == 200
    assert mine.json()["entries"] == []
    assert (await client.get(f"/v1/accounts/{client_user.id}/key-log")).status_code == 401
    assert (await fetch(client, client_user, client_user.id, after=-1)).status_code == 422


async def test_erasure_deletes_the_log(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    await add(client, client_user, "phone")
    other = await register_client(client)
    await add(client, other, "theirs")
    async with ctx.sessionmaker() as session:
        before = await session.scalar(select(func.count()).select_from(KeyLogEntry))
    assert before == 4
    erased = await client.delete("/v1/me", headers=client_user.auth)
    assert erased.status_code in (200, 204), erased.text
    async with ctx.sessionmaker() as session:
        after = await session.scalar(select(func.count()).select_from(KeyLogEntry))
    assert after == 2
    assert (await fetch(client, other, client_user.id)).status_code == 404


async def test_a_signed_head_is_neither_a_checkpoint_nor_a_token(ctx: Context) -> None:
    head = ctx.tokens.sign_key_log_head(account_id=str(uuid.uuid4()), seq=3, head="ab" * 32)
    checkpoint = ctx.tokens.sign_checkpoint(seq=3, head="ab" * 32).token
    assert ctx.tokens.verify_key_log_head(head)["seq"] == 3
    with pytest.raises(TokenError):
        ctx.tokens.verify_checkpoint(head)
    with pytest.raises(TokenError):
        ctx.tokens.verify_key_log_head(checkpoint)
    with pytest.raises(TokenError):
        ctx.tokens.verify(head, audience="confide:api", typ="at+jwt")
