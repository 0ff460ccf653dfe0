"""`Idempotency-Key` on the four writes a client retries: rooms, invitations, disclosures,
incidents. On SQLite and PostgreSQL, through the app: a retry creates nothing and gets the
first answer; concurrent duplicates create one resource; the same key with another body is
422; a failed first attempt leaves the key free; keys expire and are purged; the stored row
names no one."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from app.core.clock import FrozenClock
from app.core.context import Context
from app.idempotency import service as idempotency
from app.main import create_app
from app.models import Base, IdempotencyKey, Role
from app.relay.broker import InProcessBroker
from app.retention.service import purge
from tests.fixtures.accounts import User, login, make_account, register_client
from tests.fixtures.dump import column_bytes
from tests.fixtures.rooms import add_and_accept
from tests.fixtures.server import serve

Json = dict[str, Any]
ROOM = {"title": "Weekly session", "kind": "individual"}


def keyed(user: User, key: str | bytes) -> dict[str, Any]:
    return {**user.auth, "Idempotency-Key": key}


async def post(
    http: httpx.AsyncClient, path: str, user: User, key: str | bytes | None, body: object
) -> httpx.Response:
    headers: dict[str, Any] = dict(user.auth) if key is None else keyed(user, key)
    return await http.post(path, json=body, headers=headers)


async def my_rooms(http: httpx.AsyncClient, user: User) -> list[Json]:
    response = await http.get("/v1/rooms", headers=user.auth)
    assert response.status_code == 200, response.text
    rooms: list[Json] = response.json()
    return rooms


async def stored(ctx: Context) -> int:
    async with ctx.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(IdempotencyKey))
    return int(count or 0)


def assert_replay(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers


async def test_a_retried_room_creation_makes_one_room_and_gets_the_first_answer(
    client: httpx.AsyncClient, counselor: User
) -> None:
    key = str(uuid.uuid4())
    first = await post(client, "/v1/rooms", counselor, key, ROOM)
    assert first.status_code == 201, first.text
    again = await post(client, "/v1/rooms", counselor, key, ROOM)
    assert_replay(first, again)
    # The same key quoted as a structured-field string is the same key.
    quoted = await post(client, "/v1/rooms", counselor, f'"{key}"', ROOM)
    assert_replay(first, quoted)
    assert [room["id"] for room in await my_rooms(client, counselor)] == [first.json()["id"]]
    # Without a key, every request is a new room.
    assert (await post(client, "/v1/rooms", counselor, None, ROOM)).status_code == 201
    assert (await post(client, "/v1/rooms", counselor, None, ROOM)).status_code == 201
    assert len(await my_rooms(client, counselor)) == 3


async def test_concurrent_duplicates_create_one_room(
    client: httpx.AsyncClient, counselor: User, ctx: Context
) -> None:
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(post(client, "/v1/rooms", counselor, key, ROOM) for _ in range(6))
    )
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 5
    assert len(await my_rooms(client, counselor)) == 1
    assert await stored(ctx) == 1


async def test_concurrent_duplicates_of_an_invitation_invite_once(
    client: httpx.AsyncClient, counselor: User
) -> None:
    room = await post(client, "/v1/rooms", counselor, None, ROOM)
    room_id = room.json()["id"]
    invitee = {"email": "someone@example.org"}
    key = str(uuid.uuid4())
    path = f"/v1/rooms/{room_id}/participants"
    answers = await asyncio.gather(*(post(client, path, counselor, key, invitee) for _ in range(4)))
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert len({a.json()["invitation_id"] for a in answers}) == 1
    pending = await client.get(f"/v1/rooms/{room_id}/invitations", headers=counselor.auth)
    assert pending.status_code == 200, pending.text
    assert len(pending.json()) == 1


async def test_the_same_key_with_another_body_or_target_is_422_and_changes_nothing(
    client: httpx.AsyncClient, counselor: User
) -> None:
    key = str(uuid.uuid4())
    first = await post(client, "/v1/rooms", counselor, key, ROOM)
    assert first.status_code == 201
    other = await post(client, "/v1/rooms", counselor, key, {**ROOM, "title": "Another"})
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert other.headers["content-type"] == "application/problem+json"
    assert len(await my_rooms(client, counselor)) == 1
    # A re-encoded body (other key order, spaces) is the same body.
    reordered = json.dumps({"kind": "individual", "title": "Weekly session"}, indent=2)
    headers = {**keyed(counselor, key), "content-type": "application/json"}
    again = await client.post("/v1/rooms", content=reordered, headers=headers)
    assert_replay(first, again)
    # One key on one route, for two rooms' participants: another target.
    second = await post(client, "/v1/rooms", counselor, None, ROOM)
    invitee = {"email": "someone@example.org"}
    room_ids = [first.json()["id"], second.json()["id"]]
    invite = [f"/v1/rooms/{room_id}/participants" for room_id in room_ids]
    assert (await post(client, invite[0], counselor, "k-1", invitee)).status_code == 202
    reused = await post(client, invite[1], counselor, "k-1", invitee)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


async def test_keys_belong_to_one_account_and_one_route(
    client: httpx.AsyncClient, ctx: Context, counselor: User
) -> None:
    colleague = await make_account(ctx, client, Role.counselor)
    mine = await post(client, "/v1/rooms", counselor, "shared", ROOM)
    theirs = await post(client, "/v1/rooms", colleague, "shared", {**ROOM, "title": "Theirs"})
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    # The same key on another route is another key.
    path = f"/v1/rooms/{mine.json()['id']}/participants"
    invited = await post(client, path, counselor, "shared", {"email": "x@example.org"})
    assert invited.status_code == 202, invited.text


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b'""',
        b"a" * 256,
        b"two words",
        b'a"b',
        b"back\\slash",
        b"caf\xc3\xa9",
        b"tab\there",
    ],
)
async def test_a_bad_key_is_400_and_changes_nothing(
    client: httpx.AsyncClient, counselor: User, ctx: Context, key: bytes
) -> None:
    refused = await post(client, "/v1/rooms", counselor, key, ROOM)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "idempotency_key_invalid"
    assert await my_rooms(client, counselor) == []
    assert await stored(ctx) == 0


async def test_a_failed_first_attempt_leaves_the_key_free(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, counselor: User
) -> None:
    """A disclosure refused for want of a fresh authentication stores nothing: the same key,
    once the counselor has logged in again, records it."""
    client_user = await register_client(client)
    room = await post(client, "/v1/rooms", counselor, None, ROOM)
    await add_and_accept(
        client, room.json()["id"], counselor.auth, client_user.auth, account_id=client_user.id
    )
    body = {
        "basis": "mandated_report",
        "recipient": "County child protective services",
        "purpose": "Mandated report",
        "description": "Notes of the session",
        "disclosed_at": (clock.now() - timedelta(hours=2)).isoformat(),
    }
    path = f"/v1/accounts/{client_user.id}/disclosures"
    clock.advance(ctx.settings.step_up_max_age + 60)
    refused = await post(client, path, counselor, "disclose-1", body)
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"] == "step_up_required"
    assert await stored(ctx) == 0
    await login(client, counselor)
    first = await post(client, path, counselor, "disclose-1", body)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await post(client, path, counselor, "disclose-1", body)
    assert_replay(first, again)
    accounting = await client.get("/v1/me/disclosures", headers=client_user.auth)
    assert len(accounting.json()) == 1


async def test_a_retried_incident_opens_one_incident(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    body = {
        "summary": "A laptop was stolen.",
        "discovered_at": (clock.now() - timedelta(hours=1)).isoformat(),
        "severity": "high",
        "affected_account_ids": [],
    }
    answers = await asyncio.gather(
        *(post(client, "/v1/incidents", admin, "incident-1", body) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [201] * 3, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = await client.get("/v1/incidents", headers=admin.auth)
    assert len(listed.json()) == 1


async def test_keys_expire_and_the_purge_deletes_them(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, counselor: User
) -> None:
    first = await post(client, "/v1/rooms", counselor, "daily", ROOM)
    clock.advance(ctx.settings.idempotency_ttl_s - 1)
    await login(client, counselor)
    assert_replay(first, await post(client, "/v1/rooms", counselor, "daily", ROOM))
    async with ctx.transaction() as session:
        assert await idempotency.purge_expired(session, ctx) == 0
    clock.advance(1)
    await login(client, counselor)
    # Expired but not yet purged: the key is free again.
    later = await post(client, "/v1/rooms", counselor, "daily", {**ROOM, "title": "Next"})
    assert later.status_code == 201, later.text
    assert "idempotent-replayed" not in later.headers
    assert await stored(ctx) == 1
    clock.advance(ctx.settings.idempotency_ttl_s)
    # The purge loop's job (`confide purge`, and every CONFIDE_PURGE_INTERVAL_S in serve).
    broker = InProcessBroker(clock.time)

    async def ignore(*_: object) -> None:
        return None

    await broker.start(ignore, ignore)
    try:
        assert (await purge(ctx, broker)).idempotency_keys == 1
    finally:
        await broker.close()
    assert await stored(ctx) == 0


async def test_the_stored_row_names_no_one_and_holds_no_plain_answer(
    client: httpx.AsyncClient, ctx: Context, counselor: User
) -> None:
    room = await post(client, "/v1/rooms", counselor, "private-key-123", ROOM)
    room_id = room.json()["id"]
    table = IdempotencyKey.__tablename__
    assert table in {t.name for t in Base.metadata.sorted_tables}
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    assert len(rows) == 1
    cells = [column_bytes(value) for value in rows[0]]
    for needle in (counselor.id, room_id, "Weekly session", "private-key-123", "201"):
        assert all(needle.encode() not in cell for cell in cells), needle


@pytest.mark.parametrize(
    "path",
    [
        "/v1/rooms",
        "/v1/rooms/{room_id}/participants",
        "/v1/accounts/{account_id}/disclosures",
        "/v1/incidents",
    ],
)
async def test_the_openapi_document_names_the_header_and_its_errors(
    client: httpx.AsyncClient, path: str
) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"][path]["post"]
    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    assert header["required"] is False
    assert "idempotency_key_invalid" in operation["responses"]["400"]["description"]
    assert "idempotency_key_reused" in operation["responses"]["422"]["description"]
    # A client can tell a replayed answer from a first one.
    replayed = operation["responses"]["201"]["headers"]["Idempotent-Replayed"]
    assert replayed["schema"] == {"type": "string", "enum": ["true"]}
    assert "$ref" in str(operation["responses"]["201"]["content"])


async def test_an_error_after_the_claim_rolls_it_back(
    client: httpx.AsyncClient, ctx: Context, counselor: User
) -> None:
    """A write refused after the key was claimed (409: already a participant) stores
    nothing; once the refusal no longer holds, the same key and body do the write."""
    member = await register_client(client)
    room = await post(client, "/v1/rooms", counselor, None, ROOM)
    room_id = room.json()["id"]
    await add_and_accept(client, room_id, counselor.auth, member.auth, account_id=member.id)
    path = f"/v1/rooms/{room_id}/participants"
    refused = await post(client, path, counselor, "add-member", {"account_id": member.id})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "already_participant"
    assert await stored(ctx) == 0
    removed = await client.delete(f"{path}/{member.id}", headers=counselor.auth)
    assert removed.status_code == 204, removed.text
    added = await post(client, path, counselor, "add-member", {"account_id": member.id})
    assert added.status_code in (201, 202), added.text
    assert "idempotent-replayed" not in added.headers
    assert await stored(ctx) == 1


async def test_duplicates_on_separate_connections_to_a_live_server_create_one_room(
    ctx: Context, client: httpx.AsyncClient, counselor: User
) -> None:
    """The same key sent at once on eight connections of a real server."""
    async with serve(create_app(context=ctx)) as base:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
            answers = await asyncio.gather(
                *(post(http, "/v1/rooms", counselor, "live-key", ROOM) for _ in range(8))
            )
            rooms = await my_rooms(http, counselor)
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert len(rooms) == 1
