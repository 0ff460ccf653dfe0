from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from app.core.clock import FrozenClock
from app.core.context import Context
from app.core.events import DeviceAdded, DeviceRevoked, Event
from app.devices import service
from app.models import Account, Device
from tests.fixtures.accounts import User, register_client
from tests.fixtures.identity import device_body, identity_of, new_device, point

P256_POINT = 65  # an uncompressed P-256 public key: 65 bytes, so its base64 needs padding


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def add_device(
    client: httpx.AsyncClient, user: User, label: str = "phone", raw: bytes | None = None
) -> dict[str, Any]:
    raw = os.urandom(P256_POINT) if raw is None else raw
    response = await client.post(
        "/v1/devices", json=device_body(user.id, label, b64(raw)), headers=user.auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    response = await client.get("/v1/devices", headers=user.auth)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def test_client_registers_a_device_and_sees_it_listed(
    client: httpx.AsyncClient, client_user: User, clock: FrozenClock
) -> None:
    raw = os.urandom(P256_POINT)
    label = "Zoë's téléphone — 手机 📱"
    response = await client.post(
        "/v1/devices",
        json=device_body(client_user.id, label, b64(raw)),
        headers=client_user.auth,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "device_id",
        "label",
        "public_key",
        "signing_key",
        "signature",
        "created_at",
    }
    assert str(uuid.UUID(body["device_id"])) == body["device_id"]
    assert body["label"] == label
    assert "=" not in body["public_key"]
    assert body["public_key"] == b64(raw)
    assert unb64(body["public_key"]) == raw
    assert datetime.fromisoformat(body["created_at"]) == clock.now()

    assert await listed(client, client_user) == [body]


async def test_public_key_with_padding_is_accepted_and_returned_without(
    client: httpx.AsyncClient, client_user: User
) -> None:
    raw = os.urandom(P256_POINT)
    padded = base64.urlsafe_b64encode(raw).decode("ascii")
    assert padded.endswith("=")
    response = await client.post(
        "/v1/devices",
        json=device_body(client_user.id, "laptop", padded),
        headers=client_user.auth,
    )
    assert response.status_code == 201, response.text
    assert response.json()["public_key"] == padded.rstrip("=")
    assert unb64(response.json()["public_key"]) == raw


async def test_largest_public_key_is_accepted(client: httpx.AsyncClient, client_user: User) -> None:
    raw = os.urandom(4096)
    body = await add_device(client, client_user, raw=raw)
    assert unb64(body["public_key"]) == raw


@pytest.mark.parametrize(
    "body",
    [
        {"label": "x", "public_key": b64(b"\x01" * 4097)},
        {"label": "x", "public_key": base64.urlsafe_b64encode(b"\x01" * 4097).decode()},
        {"label": "x", "public_key": "A" * 100_000},
        {"label": "x", "public_key": "abc$def"},
        {"label": "x", "public_key": "ab+/cd"},
        {"label": "x", "public_key": "ab cd"},
        {"label": "x", "public_key": "QR"},
        {"label": "x", "public_key": "QQ="},
        {"label": "x", "public_key": "QQ==="},
        {"label": "x", "public_key": "Q"},
        {"label": "x", "public_key": "="},
        {"label": "x", "public_key": ""},
        {"label": "x", "public_key": 5},
        {"label": "x", "public_key": None},
        {"label": "x"},
        {"public_key": "AQID"},
        {"label": "x", "public_key": "AQID", "account_id": "someone-else"},
        {"label": "nul\x00byte", "public_key": "AQID"},
        {"label": "\ud800", "public_key": "AQID"},
        {"label": "", "public_key": "AQID"},
        {"label": "x" * 101, "public_key": "AQID"},
        {"label": 7, "public_key": "AQID"},
        [],
    ],
    ids=[
        "key-4097-bytes",
        "key-4097-bytes-padded",
        "key-huge",
        "key-not-base64",
        "key-standard-alphabet",
        "key-whitespace",
        "key-stray-bits",
        "key-partial-padding",
        "key-too-much-padding",
        "key-impossible-length",
        "key-only-padding",
        "key-empty",
        "key-number",
        "key-null",
        "key-missing",
        "label-missing",
        "unknown-field",
        "label-nul",
        "label-lone-surrogate",
        "label-empty",
        "label-101-chars",
        "label-number",
        "not-an-object",
    ],
)
async def test_bad_device_bodies_get_422_and_register_nothing(
    client: httpx.AsyncClient, client_user: User, body: object
) -> None:
    # Signed and first, so the one thing wrong is what each case changes.
    if isinstance(body, dict):
        signed = new_device(client_user.id, "AQID")
        del signed["public_key"]
        identity = b64(point(identity_of(client_user.id)))
        body = {**signed, "identity_key": identity, **body}
    response = await client.post(
        "/v1/devices",
        content=json.dumps(body),
        headers={**client_user.auth, "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert response.headers["content-type"] == "application/problem+json"
    assert await listed(client, client_user) == []


async def test_longest_label_is_accepted(client: httpx.AsyncClient, client_user: User) -> None:
    body = await add_device(client, client_user, label="é" * 100)
    assert body["label"] == "é" * 100


async def test_revoked_device_disappears_and_cannot_be_revoked_twice(
    client: httpx.AsyncClient, client_user: User
) -> None:
    kept = await add_device(client, client_user, "kept")
    gone = await add_device(client, client_user, "gone")

    response = await client.delete(f"/v1/devices/{gone['device_id']}", headers=client_user.auth)
    assert response.status_code == 204
    assert response.content == b""
    assert await listed(client, client_user) == [kept]

    again = await client.delete(f"/v1/devices/{gone['device_id']}", headers=client_user.auth)
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"


async def test_revocation_is_stamped_with_the_clock(
    client: httpx.AsyncClient, client_user: User, ctx: Context, clock: FrozenClock
) -> None:
    device = await add_device(client, client_user)
    clock.advance(60)
    response = await client.delete(f"/v1/devices/{device['device_id']}", headers=client_user.auth)
    assert response.status_code == 204
    async with ctx.sessionmaker() as session:
        account = await session.get(Account, client_user.id)
        assert account is not None
        [info] = await service.all_of(session, ctx.vault, account, active_only=False)
    assert info.id == device["device_id"]
    assert info.revoked_at == clock.now()
    assert info.row.revoked


async def test_another_account_cannot_see_or_revoke_a_device(
    client: httpx.AsyncClient, client_user: User
) -> None:
    device = await add_device(client, client_user, "mine")
    other = await register_client(client)

    assert await listed(client, other) == []
    stolen = await client.delete(f"/v1/devices/{device['device_id']}", headers=other.auth)
    unknown = await client.delete(f"/v1/devices/{uuid.uuid4()}", headers=other.auth)
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.json() == unknown.json()
    assert await listed(client, client_user) == [device]


@pytest.mark.parametrize("device_id", ["not-a-uuid", "x" * 300, "%00", "%F0%9F%93%B1"])
async def test_malformed_device_id_is_not_found(
    client: httpx.AsyncClient, client_user: User, device_id: str
) -> None:
    response = await client.delete(f"/v1/devices/{device_id}", headers=client_user.auth)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_101st_device_is_refused_until_one_is_revoked(
    client: httpx.AsyncClient, client_user: User
) -> None:
    devices = [
        await add_device(client, client_user, f"device {n}", raw=n.to_bytes(2, "big"))
        for n in range(service.MAX_ACTIVE_DEVICES)
    ]
    refused = await client.post(
        "/v1/devices",
        json=device_body(client_user.id, "one more", "AQID"),
        headers=client_user.auth,
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_devices"
    assert len(await listed(client, client_user)) == service.MAX_ACTIVE_DEVICES

    revoked = await client.delete(
        f"/v1/devices/{devices[0]['device_id']}", headers=client_user.auth
    )
    assert revoked.status_code == 204
    accepted = await add_device(client, client_user, "one more")
    assert accepted["label"] == "one more"

    # The limit is per account.
    other = await register_client(client)
    await add_device(client, other)


async def test_anonymous_caller_gets_401(client: httpx.AsyncClient, client_user: User) -> None:
    device = await add_device(client, client_user)
    responses = [
        await client.post("/v1/devices", json=device_body(client_user.id, "x", "AQID")),
        await client.get("/v1/devices"),
        await client.delete(f"/v1/devices/{device['device_id']}"),
        await client.get("/v1/devices", headers={"Authorization": "Bearer not-a-token"}),
    ]
    for response in responses:
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"
    assert await listed(client, client_user) == [device]


async def test_events_are_published_once_committed(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    ctx.publisher = publish
    raw = os.urandom(P256_POINT)
    padded = base64.urlsafe_b64encode(raw).decode("ascii")
    response = await client.post(
        "/v1/devices",
        json=device_body(client_user.id, "tablet", padded),
        headers=client_user.auth,
    )
    device_id = response.json()["device_id"]
    signing_key = response.json()["signing_key"]
    assert published == [DeviceAdded(client_user.id, device_id, b64(raw), signing_key)]

    published.clear()
    await client.delete(f"/v1/devices/{device_id}", headers=client_user.auth)
    assert published == [DeviceRevoked(client_user.id, device_id)]

    published.clear()
    refused = await client.delete(f"/v1/devices/{device_id}", headers=client_user.auth)
    assert refused.status_code == 404
    assert published == []


async def test_register_and_revoke_are_audited(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    device = await add_device(client, client_user)
    await client.delete(f"/v1/devices/{device['device_id']}", headers=client_user.auth)
    async with ctx.sessionmaker() as session:
        entries = await ctx.audit.entries_about(session, client_user.id)
    device_entries = [e for e in entries if e.action.startswith("device.")]
    assert [(e.action, e.actor_id, e.actor_role, e.target, e.details) for e in device_entries] == [
        (
            "device.register",
            client_user.id,
            "client",
            client_user.id,
            {"device": device["device_id"]},
        ),
        (
            "device.revoke",
            client_user.id,
            "client",
            client_user.id,
            {"device": device["device_id"]},
        ),
    ]


async def test_database_dump_does_not_contain_the_label_key_or_owner(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    label = "Confidential Clinic Tablet ünïcødé"
    device = await add_device(client, client_user, label)

    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(Device.__table__))).mappings().all()
    assert [row["id"] for row in rows] == [device["device_id"]]
    for value in rows[0].values():
        stored = value if isinstance(value, bytes) else str(value).encode()
        assert label.encode() not in stored
        assert b"Confidential" not in stored
        assert client_user.id.encode() not in stored
        assert base64.urlsafe_b64decode(device["public_key"] + "==") not in stored
        assert device["public_key"].encode() not in stored
    assert rows[0]["label"]  # ciphertext is there, just unreadable


async def test_active_devices_of_answers_for_many_accounts_in_a_few_queries(
    client: httpx.AsyncClient, client_user: User, ctx: Context, clock: FrozenClock
) -> None:
    other = await register_client(client)
    first = await add_device(client, client_user, "first")
    clock.advance(1)
    second = await add_device(client, client_user, "second")
    revoked = await add_device(client, client_user, "revoked")
    await client.delete(f"/v1/devices/{revoked['device_id']}", headers=client_user.auth)
    theirs = await add_device(client, other, "theirs")
    nobody = str(uuid.uuid4())

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with ctx.sessionmaker() as session:
            found = await service.active_devices_of(
                session, ctx.vault, [client_user.id, other.id, nobody]
            )
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", count)
    # The slot search (two rounds) and one read, whatever the number of accounts.
    assert len([s for s in statements if "devices" in s]) == 3
    assert {k: [d.id for d in v] for k, v in found.items()} == {
        client_user.id: [first["device_id"], second["device_id"]],
        other.id: [theirs["device_id"]],
        nobody: [],
    }
    assert [d["device_id"] for d in await listed(client, client_user)] == [
        first["device_id"],
        second["device_id"],
    ]


async def test_active_device_is_only_the_owners_unrevoked_device(
    client: httpx.AsyncClient, client_user: User, ctx: Context
) -> None:
    other = await register_client(client)
    device = await add_device(client, client_user)
    device_id = device["device_id"]
    async with ctx.sessionmaker() as session:
        found = await service.active_device(session, ctx.vault, client_user.id, device_id)
        assert found is not None
        assert found.id == device_id
        assert await service.active_device(session, ctx.vault, other.id, device_id) is None
        assert (
            await service.active_device(session, ctx.vault, client_user.id, "not\x00an id") is None
        )
    await client.delete(f"/v1/devices/{device_id}", headers=client_user.auth)
    async with ctx.sessionmaker() as session:
        assert await service.active_device(session, ctx.vault, client_user.id, device_id) is None
