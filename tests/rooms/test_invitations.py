"""Invitations (issue 9.5): a host adds only their own clients; anyone else is invited.

The host's answer must tell nothing about the address or id it named: not
whether it is registered, nor whose it is. The invitee lists, accepts or
declines; accepting makes them a member and the host their counselor.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event, text

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import Role
from tests.fixtures.accounts import User, make_account, register_client
from tests.fixtures.dump import column_bytes
from tests.rooms.test_rooms import add, at, create_room, get_room, iso, room_ids

Json = dict[str, Any]


async def my_invitations(client: httpx.AsyncClient, user: User) -> list[Json]:
    response = await client.get("/v1/me/invitations", headers=user.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def pending_for_host(client: httpx.AsyncClient, host: User, room_id: str) -> list[Json]:
    response = await client.get(f"/v1/rooms/{room_id}/invitations", headers=host.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def answer(
    client: httpx.AsyncClient, user: User, invitation_id: str, verb: str
) -> httpx.Response:
    return await client.post(f"/v1/me/invitations/{invitation_id}/{verb}", headers=user.auth)


@contextmanager
def statements(ctx: Context) -> Iterator[list[str]]:
    """The SQL statements run meanwhile, as verb and table (no values)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        words = str(args[2]).replace("(", " ").split()
        verb = words[0].upper()
        table = next(
            (w for k, w in enumerate(words[1:], 1) if words[k - 1].upper() in ("FROM", "INTO")),
            words[1] if verb == "UPDATE" else "",
        )
        seen.append(f"{verb} {table}")

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


# -- the host's answer -----------------------------------------------------------------


async def test_the_host_gets_the_same_answer_whoever_the_invitation_names(
    client: httpx.AsyncClient, ctx: Context, counselor: User, admin: User
) -> None:
    """Issue 9.5: the answer confirmed a registered email and showed name and account id."""
    alice = await register_client(client, display_name="Alice Secretname")
    colleague = await make_account(ctx, client, Role.counselor, display_name="Dr Colleague")
    erased = await register_client(client, display_name="Erased")
    assert (await client.delete("/v1/me", headers=erased.auth)).status_code == 204
    room = await create_room(client, counselor, kind="group")
    room_id = room["id"]

    bodies = [
        {"account_id": alice.id},
        {"email": alice.email},
        {"account_id": colleague.id},
        {"email": colleague.email},
        {"account_id": admin.id},
        {"email": admin.email},
        {"account_id": erased.id},
        {"email": erased.email},
        {"account_id": str(uuid.uuid4())},
        {"email": "nobody-at-all@example.org"},
    ]
    ids = []
    for body in bodies:
        response = await add(client, counselor, room_id, **body)
        assert response.status_code == 202, (body, response.text)
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"invitation_id", "status"}
        assert response.json()["status"] == "pending"
        uuid.UUID(response.json()["invitation_id"])
        for secret in (alice.id, colleague.id, admin.id, erased.id, "Alice", "Colleague"):
            assert secret not in response.text
        ids.append(response.json()["invitation_id"])
    assert len(set(ids)) == len(ids)

    # The host's list shows every one alike: pending, no one named.
    listed = await pending_for_host(client, counselor, room_id)
    assert sorted(each["id"] for each in listed) == sorted(ids)
    for each in listed:
        assert set(each) == {"id", "status", "created_at"}
        assert each["status"] == "pending"
    # Nothing else changed: no one joined.
    assert [
        p["account_id"] for p in (await get_room(client, counselor, room_id))["participants"]
    ] == [counselor.id]
    # Only the real invitees see theirs.
    assert sorted(i["id"] for i in await my_invitations(client, alice)) == sorted(ids[:2])
    assert sorted(i["id"] for i in await my_invitations(client, colleague)) == sorted(ids[2:4])
    assert await my_invitations(client, admin) == []


async def test_an_unknown_address_costs_the_same_work_as_a_clients(
    client: httpx.AsyncClient, ctx: Context, counselor: User
) -> None:
    """The same statements, in the same order, whether or not the address is registered."""
    alice = await register_client(client, display_name="Alice")
    bob = await register_client(client, display_name="Bob")
    room = await create_room(client, counselor, kind="group")
    runs = []
    for body in (
        {"email": alice.email},
        {"email": "nobody@example.org"},
        {"account_id": bob.id},
        {"account_id": str(uuid.uuid4())},
    ):
        with statements(ctx) as seen:
            response = await add(client, counselor, room["id"], **body)
        assert response.status_code == 202, response.text
        runs.append(seen)
    assert runs[0] == runs[1]
    assert runs[2] == runs[3]


async def test_the_host_adds_their_own_client_directly(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User
) -> None:
    first = await create_room(client, counselor)
    invited = await add(client, counselor, first["id"], email=client_user.email)
    assert invited.status_code == 202, invited.text
    # Before the client answers, the next room still gets an invitation.
    second = await create_room(client, counselor)
    assert (
        await add(client, counselor, second["id"], account_id=client_user.id)
    ).status_code == 202
    accepted = await answer(client, client_user, invited.json()["invitation_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    third = await create_room(client, counselor)
    direct = await add(client, counselor, third["id"], account_id=client_user.id)
    assert direct.status_code == 201, direct.text
    assert direct.json()["account_id"] == client_user.id
    assert sorted(await room_ids(client, client_user)) == sorted([first["id"], third["id"]])
    # Another counselor still only invites.
    other = await make_account(ctx, client, Role.counselor)
    theirs = await create_room(client, other)
    assert (await add(client, other, theirs["id"], account_id=client_user.id)).status_code == 202


# -- the invitee -----------------------------------------------------------------------


async def test_the_invitee_lists_accepts_and_declines(
    client: httpx.AsyncClient, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    starts = clock.now() + timedelta(days=2)
    room = await create_room(
        client,
        counselor,
        title="Tuesday session",
        starts_at=iso(starts),
        ends_at=iso(starts + timedelta(hours=1)),
    )
    other = await create_room(client, counselor, title="Other")
    invited = await add(client, counselor, room["id"], account_id=client_user.id)
    invitation_id = invited.json()["invitation_id"]
    clock.advance(1)
    declined = (await add(client, counselor, other["id"], account_id=client_user.id)).json()

    listed = await my_invitations(client, client_user)
    assert [i["id"] for i in listed] == [invitation_id, declined["invitation_id"]]
    first = listed[0]
    assert set(first) == {
        "id",
        "room_id",
        "role",
        "host",
        "title",
        "starts_at",
        "ends_at",
        "created_at",
    }
    assert first["room_id"] == room["id"]
    assert first["role"] is None
    assert first["host"] == {"account_id": counselor.id, "display_name": "Counselor Person"}
    assert first["title"] == "Tuesday session"
    assert at(first["starts_at"]) == starts
    assert at(first["ends_at"]) == starts + timedelta(hours=1)
    assert at(first["created_at"]) == clock.now() - timedelta(seconds=1)
    # Invited is not joined.
    assert await room_ids(client, client_user) == []
    assert (
        await client.get(f"/v1/rooms/{room['id']}", headers=client_user.auth)
    ).status_code == 404

    gone = await answer(client, client_user, declined["invitation_id"], "decline")
    assert gone.status_code == 204, gone.text
    assert gone.content == b""
    assert await pending_for_host(client, counselor, other["id"]) == []
    again = await answer(client, client_user, declined["invitation_id"], "accept")
    assert again.status_code == 404

    accepted = await answer(client, client_user, invitation_id, "accept")
    assert accepted.status_code == 200, accepted.text
    view = accepted.json()
    assert view["id"] == room["id"]
    assert view["title"] == "Tuesday session"
    assert {p["account_id"]: p["role"] for p in view["participants"]} == {
        counselor.id: "host",
        client_user.id: "participant",
    }
    assert await room_ids(client, client_user) == [room["id"]]
    assert await my_invitations(client, client_user) == []
    assert await pending_for_host(client, counselor, room["id"]) == []
    assert (await answer(client, client_user, invitation_id, "accept")).status_code == 404
    # The other room was declined: the client is not in it.
    participants = (await get_room(client, counselor, other["id"]))["participants"]
    assert [p["account_id"] for p in participants] == [counselor.id]


async def test_invited_twice_accepting_one_answers_both(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    room = await create_room(client, counselor)
    ids = [
        (await add(client, counselor, room["id"], **body)).json()["invitation_id"]
        for body in ({"account_id": client_user.id}, {"email": client_user.email})
    ]
    assert sorted(i["id"] for i in await my_invitations(client, client_user)) == sorted(ids)
    assert (await answer(client, client_user, ids[1], "accept")).status_code == 200
    assert await my_invitations(client, client_user) == []
    assert await pending_for_host(client, counselor, room["id"]) == []


async def test_no_one_else_answers_an_invitation(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User, admin: User
) -> None:
    other = await register_client(client, display_name="Other")
    room = await create_room(client, counselor, kind="group")
    invitation_id = (await add(client, counselor, room["id"], account_id=client_user.id)).json()[
        "invitation_id"
    ]
    decoy_id = (await add(client, counselor, room["id"], email="nobody@example.org")).json()[
        "invitation_id"
    ]
    for user in (other, counselor, admin):
        for verb in ("accept", "decline"):
            for target in (invitation_id, decoy_id):
                response = await answer(client, user, target, verb)
                assert response.status_code == 404, (user.role, verb, response.text)
                assert response.json()["code"] == "not_found"
    for bad in (str(uuid.uuid4()), "not-an-id", "%00"):
        response = await answer(client, client_user, bad, "accept")
        assert response.status_code == 404, response.text
    assert (await answer(client, client_user, decoy_id, "accept")).status_code == 404
    anonymous = await client.post(f"/v1/me/invitations/{invitation_id}/accept")
    assert anonymous.status_code == 401
    assert (await client.get("/v1/me/invitations")).status_code == 401
    assert [i["id"] for i in await my_invitations(client, client_user)] == [invitation_id]
    assert await my_invitations(client, other) == []
    assert len(await pending_for_host(client, counselor, room["id"])) == 2


async def test_the_hosts_list_is_for_hosts(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User
) -> None:
    stranger = await make_account(ctx, client, Role.counselor)
    room = await create_room(client, counselor)
    accepted = await answer(
        client,
        client_user,
        (await add(client, counselor, room["id"], account_id=client_user.id)).json()[
            "invitation_id"
        ],
        "accept",
    )
    assert accepted.status_code == 200
    path = f"/v1/rooms/{room['id']}/invitations"
    participant = await client.get(path, headers=client_user.auth)
    assert participant.status_code == 403
    assert participant.json()["code"] == "forbidden"
    outsider = await client.get(path, headers=stranger.auth)
    assert outsider.status_code == 404
    assert outsider.json()["code"] == "not_found"
    assert (await client.get(path)).status_code == 401


async def test_an_ended_or_full_room_cannot_be_joined(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    other = await register_client(client)
    room = await create_room(client, counselor)  # individual: the host and one more
    mine = (await add(client, counselor, room["id"], account_id=client_user.id)).json()
    theirs = (await add(client, counselor, room["id"], account_id=other.id)).json()
    assert (await answer(client, other, theirs["invitation_id"], "accept")).status_code == 200
    full = await answer(client, client_user, mine["invitation_id"], "accept")
    assert full.status_code == 409, full.text
    assert full.json()["code"] == "room_full"
    assert (await client.post(f"/v1/rooms/{room['id']}/end", headers=counselor.auth)).is_success
    ended = await answer(client, client_user, mine["invitation_id"], "accept")
    assert ended.status_code == 409, ended.text
    assert ended.json()["code"] == "room_ended"
    assert await my_invitations(client, client_user) == []
    late = await add(client, counselor, room["id"], account_id=client_user.id)
    assert late.status_code == 409
    assert late.json()["code"] == "room_ended"


# -- what the database holds -------------------------------------------------------------


async def test_a_dump_of_invitations_and_care_names_no_one(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    room = await create_room(client, counselor, kind="group", title="Dumped session")
    accepted = (await add(client, counselor, room["id"], account_id=client_user.id)).json()
    assert (await answer(client, client_user, accepted["invitation_id"], "accept")).is_success
    pending = await register_client(client, display_name="Pending Person")
    await add(client, counselor, room["id"], email=pending.email)
    await add(client, counselor, room["id"], email="decoy@example.org")

    rows: dict[str, list[dict[str, Any]]] = {}
    async with ctx.engine.connect() as conn:
        for table in ("room_invitations", "care_relationships"):
            result = await conn.execute(text(f'SELECT * FROM "{table}"'))
            rows[table] = [dict(row) for row in result.mappings()]
    assert len(rows["room_invitations"]) == 2
    assert len(rows["care_relationships"]) == 1
    needles: list[bytes] = [b"Dumped session", b"decoy@example.org", b"Pending Person"]
    for user in (counselor, client_user, pending):
        needles += [
            user.id.encode(),
            user.id.replace("-", "").encode(),
            uuid.UUID(user.id).bytes,
            user.email.encode(),
        ]
    needles += [clock.now().isoformat().encode(), clock.now().strftime("%Y-%m-%d").encode()]
    for table_rows in rows.values():
        for row in table_rows:
            for value in row.values():
                for needle in needles:
                    assert needle not in column_bytes(value)
    # The real invitation and the decoy look alike: same columns, same sizes.
    real, decoy = rows["room_invitations"]
    assert {k: len(column_bytes(v)) for k, v in real.items()} == {
        k: len(column_bytes(v)) for k, v in decoy.items()
    }
