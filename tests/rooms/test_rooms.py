"""REST tests of the rooms domain: create, status, listing, host actions, room tokens, storage."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import Role
from tests.fixtures.accounts import User, login, make_account, register_client
from tests.fixtures.dump import column_bytes
from tests.fixtures.identity import device_body
from tests.fixtures.rooms import add_and_accept

CONSENT_KINDS = ("informed_consent", "telehealth", "group_agreement")
ROOM_TABLES = ("rooms", "room_members", "account_rooms")


# -- helpers -------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


async def create_room(client: httpx.AsyncClient, host: User, **body: Any) -> dict[str, Any]:
    payload = {"title": "Session", "kind": "individual", **body}
    response = await client.post("/v1/rooms", json=payload, headers=host.auth)
    assert response.status_code == 201, response.text
    room: dict[str, Any] = response.json()
    return room


async def get_room(client: httpx.AsyncClient, user: User, room_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/rooms/{room_id}", headers=user.auth)
    assert response.status_code == 200, response.text
    room: dict[str, Any] = response.json()
    return room


async def room_ids(client: httpx.AsyncClient, user: User) -> list[str]:
    response = await client.get("/v1/rooms", headers=user.auth)
    assert response.status_code == 200, response.text
    return [room["id"] for room in response.json()]


async def add(client: httpx.AsyncClient, host: User, room_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/rooms/{room_id}/participants", json=body, headers=host.auth)


async def invite(client: httpx.AsyncClient, host: User, room_id: str, guest: User) -> None:
    """The host adds the guest; the guest accepts the invitation if it takes one."""
    await add_and_accept(client, room_id, host.auth, guest.auth, account_id=guest.id)


async def add_device(client: httpx.AsyncClient, user: User) -> str:
    key = base64.urlsafe_b64encode(os.urandom(65)).rstrip(b"=").decode()
    response = await client.post(
        "/v1/devices", json=device_body(user.id, "phone", key), headers=user.auth
    )
    assert response.status_code == 201, response.text
    device_id: str = response.json()["device_id"]
    return device_id


async def room_token(
    client: httpx.AsyncClient, user: User, room_id: str, device_id: str
) -> httpx.Response:
    return await client.post(
        f"/v1/rooms/{room_id}/token", json={"device_id": device_id}, headers=user.auth
    )


async def publish_documents(client: httpx.AsyncClient, admin: User) -> dict[str, str]:
    documents = {}
    for kind in CONSENT_KINDS:
        response = await client.post(
            "/v1/consent-documents",
            json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} text."},
            headers=admin.auth,
        )
        assert response.status_code == 201, response.text
        documents[kind] = response.json()["id"]
    return documents


async def accept(client: httpx.AsyncClient, user: User, document_id: str) -> None:
    response = await client.post(
        "/v1/me/consents", json={"document_id": document_id}, headers=user.auth
    )
    assert response.status_code == 201, response.text


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    payload: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return payload


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    header: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return header


async def count_rows(ctx: Context) -> dict[str, int]:
    async with ctx.engine.connect() as conn:
        return {
            table: int((await conn.execute(text(f'SELECT COUNT(*) FROM "{table}"'))).scalar_one())
            for table in ROOM_TABLES
        }


async def status_now(client: httpx.AsyncClient, user: User, room_id: str) -> str:
    """The room's status, logging in afresh: the frozen clock may have outrun the access token."""
    await login(client, user)
    status: str = (await get_room(client, user, room_id))["status"]
    return status


# -- creating a room -----------------------------------------------------------


async def test_counselor_creates_a_scheduled_individual_room(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    starts = clock.now() + timedelta(hours=1)
    ends = starts + timedelta(minutes=50)
    response = await client.post(
        "/v1/rooms",
        json={
            "title": "Weekly session",
            "kind": "individual",
            "starts_at": iso(starts),
            "ends_at": iso(ends),
        },
        headers=counselor.auth,
    )
    assert response.status_code == 201, response.text
    room = response.json()
    uuid.UUID(room["id"])
    assert room["title"] == "Weekly session"
    assert room["kind"] == "individual"
    assert room["status"] == "scheduled"
    assert at(room["starts_at"]) == starts
    assert at(room["ends_at"]) == ends
    assert room["max_participants"] == 2
    assert room["waiting_room"] is True
    assert room["locked"] is False
    assert room["participants"] == [
        {
            "account_id": counselor.id,
            "display_name": "Counselor Person",
            "role": "host",
            "admitted": True,
            "qualification": None,
            "consent_note": None,
            "supervision_consent": None,
        }
    ]
    assert await get_room(client, counselor, room["id"]) == room


async def test_group_room_without_times_is_open_and_holds_eight(
    client: httpx.AsyncClient, counselor: User
) -> None:
    room = await create_room(client, counselor, kind="group", title="Group")
    assert room["kind"] == "group"
    assert room["status"] == "open"
    assert room["starts_at"] is None
    assert room["ends_at"] is None
    assert room["max_participants"] == 8
    assert room["waiting_room"] is True
    assert [(p["account_id"], p["role"], p["admitted"]) for p in room["participants"]] == [
        (counselor.id, "host", True)
    ]


async def test_room_starting_within_ten_minutes_is_open(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    starts = clock.now() + timedelta(minutes=10)
    room = await create_room(
        client, counselor, starts_at=iso(starts), ends_at=iso(starts + timedelta(hours=1))
    )
    assert room["status"] == "open"


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x" * 200, "kind": "individual"},
        {"title": "Ünïcødé 🙂 session", "kind": "group", "max_participants": 2},
        {"title": "Big group", "kind": "group", "max_participants": 50, "waiting_room": False},
    ],
    ids=["title-200", "max-2", "max-50-no-waiting-room"],
)
async def test_boundary_values_are_accepted_as_given(
    client: httpx.AsyncClient, counselor: User, body: dict[str, Any]
) -> None:
    room = await create_room(client, counselor, **body)
    assert room["title"] == body["title"]
    assert room["kind"] == body["kind"]
    assert room["max_participants"] == body.get("max_participants", 2)
    assert room["waiting_room"] is body.get("waiting_room", True)
    assert (await get_room(client, counselor, room["id"]))["title"] == body["title"]


async def test_only_counselors_create_rooms(
    client: httpx.AsyncClient, ctx: Context, admin: User, client_user: User
) -> None:
    body = {"title": "Not allowed", "kind": "individual"}
    for user in (client_user, admin):
        refused = await client.post("/v1/rooms", json=body, headers=user.auth)
        assert refused.status_code == 403, (user.role, refused.text)
        assert refused.json()["code"] == "forbidden"
        assert refused.headers["content-type"] == "application/problem+json"
    anonymous = await client.post("/v1/rooms", json=body)
    assert anonymous.status_code == 401
    assert (await client.get("/v1/rooms")).status_code == 401
    assert await count_rows(ctx) == dict.fromkeys(ROOM_TABLES, 0)
    assert await room_ids(client, client_user) == []


def _base(now: datetime, **changes: Any) -> dict[str, Any]:
    return {"title": "Session", "kind": "individual", **changes}


BAD_BODIES: dict[str, Callable[[datetime], object]] = {
    "unknown-field": lambda now: _base(now, host_id=str(uuid.uuid4())),
    "kind-not-in-enum": lambda now: _base(now, kind="family"),
    "kind-missing": lambda now: {"title": "Session"},
    "title-missing": lambda now: {"kind": "individual"},
    "naive-starts-at": lambda now: _base(now, starts_at="2030-01-01T10:00:00"),
    "naive-ends-at": lambda now: _base(now, ends_at="2030-01-01T10:00:00"),
    "ends-before-starts": lambda now: _base(
        now,
        starts_at=iso(now + timedelta(hours=2)),
        ends_at=iso(now + timedelta(hours=1)),
    ),
    "ends-equal-starts": lambda now: _base(
        now,
        starts_at=iso(now + timedelta(hours=1)),
        ends_at=iso(now + timedelta(hours=1)),
    ),
    "ends-in-the-past": lambda now: _base(now, ends_at=iso(now - timedelta(minutes=1))),
    "max-participants-1": lambda now: _base(now, max_participants=1),
    "max-participants-51": lambda now: _base(now, max_participants=51),
    "max-participants-true": lambda now: _base(now, max_participants=True),
    "max-participants-string": lambda now: _base(now, max_participants="4"),
    "max-participants-float": lambda now: _base(now, max_participants=4.5),
    "title-empty": lambda now: _base(now, title=""),
    "title-201": lambda now: _base(now, title="x" * 201),
    "title-nul": lambda now: _base(now, title="nul\x00byte"),
    "title-lone-surrogate": lambda now: _base(now, title="half \ud800 pair"),
    "title-number": lambda now: _base(now, title=5),
    "waiting-room-string": lambda now: _base(now, waiting_room="true"),
    "waiting-room-int": lambda now: _base(now, waiting_room=0),
    "not-an-object": lambda now: ["Session", "individual"],
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_room_bodies_get_422_and_create_nothing(
    client: httpx.AsyncClient, ctx: Context, counselor: User, clock: FrozenClock, case: str
) -> None:
    # json.dumps escapes a lone surrogate as \ud800, which is what a hostile client sends.
    raw = json.dumps(BAD_BODIES[case](clock.now()))
    response = await client.post(
        "/v1/rooms",
        content=raw,
        headers={**counselor.auth, "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert response.headers["content-type"] == "application/problem+json"
    assert await count_rows(ctx) == dict.fromkeys(ROOM_TABLES, 0)
    assert await room_ids(client, counselor) == []


# -- status over time ------------------------------------------------------------


async def test_status_follows_the_clock(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    starts = clock.now() + timedelta(minutes=30)
    ends = starts + timedelta(hours=1)
    room = await create_room(client, counselor, starts_at=iso(starts), ends_at=iso(ends))
    assert room["status"] == "scheduled"

    clock.set(starts - timedelta(minutes=10, seconds=1))
    assert await status_now(client, counselor, room["id"]) == "scheduled"
    clock.set(starts - timedelta(minutes=10))
    assert await status_now(client, counselor, room["id"]) == "open"
    clock.set(ends - timedelta(seconds=1))
    assert await status_now(client, counselor, room["id"]) == "open"
    clock.set(ends)
    assert await status_now(client, counselor, room["id"]) == "ended"
    clock.advance(3600)
    assert await status_now(client, counselor, room["id"]) == "ended"


async def test_ending_a_room_ends_it_for_good(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    room = await create_room(client, counselor)
    await invite(client, counselor, room["id"], client_user)
    ended = await client.post(f"/v1/rooms/{room['id']}/end", headers=counselor.auth)
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"
    assert (await get_room(client, counselor, room["id"]))["status"] == "ended"
    assert (await get_room(client, client_user, room["id"]))["status"] == "ended"
    again = await client.post(f"/v1/rooms/{room['id']}/end", headers=counselor.auth)
    assert again.status_code == 200
    assert again.json()["status"] == "ended"
    # An ended room takes no more changes.
    for method, path, body in [
        ("PATCH", "", {"title": "Later"}),
        ("POST", "/participants", {"email": "someone@example.org"}),
        ("POST", f"/participants/{client_user.id}/admit", None),
        ("POST", "/lock", None),
        ("POST", "/unlock", None),
    ]:
        response = await client.request(
            method, f"/v1/rooms/{room['id']}{path}", json=body, headers=counselor.auth
        )
        assert response.status_code == 409, (method, path, response.text)
        assert response.json()["code"] == "room_ended"
    after = await get_room(client, counselor, room["id"])
    assert after["title"] == "Session"
    assert after["locked"] is False


# -- who sees which room -------------------------------------------------------


async def test_list_and_get_show_only_the_callers_rooms(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User
) -> None:
    stranger = await register_client(client, display_name="Stranger")
    other_counselor = await make_account(ctx, client, Role.counselor)
    shared = await create_room(client, counselor, title="Shared")
    private = await create_room(client, counselor, title="Host only")
    await invite(client, counselor, shared["id"], client_user)

    assert sorted(await room_ids(client, counselor)) == sorted([shared["id"], private["id"]])
    assert await room_ids(client, client_user) == [shared["id"]]
    assert await room_ids(client, stranger) == []
    assert await room_ids(client, other_counselor) == []

    seen = await get_room(client, client_user, shared["id"])
    assert seen["title"] == "Shared"
    assert {p["account_id"] for p in seen["participants"]} == {counselor.id, client_user.id}

    unknown = await client.get(f"/v1/rooms/{uuid.uuid4()}", headers=client_user.auth)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"
    for user, room_id in [
        (stranger, shared["id"]),
        (other_counselor, shared["id"]),
        (client_user, private["id"]),
    ]:
        hidden = await client.get(f"/v1/rooms/{room_id}", headers=user.auth)
        assert hidden.status_code == 404
        assert hidden.json() == unknown.json()
        assert hidden.headers["content-type"] == unknown.headers["content-type"]


@pytest.mark.parametrize(
    "room_id",
    ["not-a-uuid", "%00", "a%00b", "x" * 300, "%FF", "UPPER"],
    ids=["words", "nul", "inner-nul", "long", "invalid-utf8", "upper-case"],
)
async def test_malformed_room_ids_are_404(
    client: httpx.AsyncClient, counselor: User, room_id: str
) -> None:
    room = await create_room(client, counselor)
    if room_id == "UPPER":
        room_id = room["id"].upper()
    unknown = await client.get(f"/v1/rooms/{uuid.uuid4()}", headers=counselor.auth)
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("POST", "/end"),
        ("POST", "/lock"),
        ("POST", f"/participants/{counselor.id}/admit"),
        ("DELETE", f"/participants/{counselor.id}"),
        ("GET", "/ice-servers"),
    ]:
        body = {"title": "x"} if method == "PATCH" else None
        response = await client.request(
            method, f"/v1/rooms/{room_id}{suffix}", json=body, headers=counselor.auth
        )
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json() == unknown.json()
    assert (await get_room(client, counselor, room["id"]))["status"] == "open"


# -- changing a room -----------------------------------------------------------


async def test_host_patches_title_and_extends_the_session(
    client: httpx.AsyncClient, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    starts = clock.now() + timedelta(minutes=5)
    ends = starts + timedelta(hours=1)
    room = await create_room(client, counselor, starts_at=iso(starts), ends_at=iso(ends))
    await invite(client, counselor, room["id"], client_user)
    later = ends + timedelta(minutes=30)
    response = await client.patch(
        f"/v1/rooms/{room['id']}",
        json={"title": "Renamed", "ends_at": iso(later)},
        headers=counselor.auth,
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Renamed"
    assert at(response.json()["ends_at"]) == later
    for user in (counselor, client_user):
        seen = await get_room(client, user, room["id"])
        assert seen["title"] == "Renamed"
        assert at(seen["ends_at"]) == later
        assert at(seen["starts_at"]) == starts

    # The old end has passed, the extended one has not: the session is still open.
    clock.set(ends + timedelta(minutes=1))
    assert await status_now(client, counselor, room["id"]) == "open"

    patched = await client.patch(
        f"/v1/rooms/{room['id']}",
        json={"waiting_room": False, "max_participants": 2},
        headers=counselor.auth,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["waiting_room"] is False


async def test_patch_is_for_the_host_only(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User
) -> None:
    room = await create_room(client, counselor, title="Original")
    await invite(client, counselor, room["id"], client_user)
    refused = await client.patch(
        f"/v1/rooms/{room['id']}", json={"title": "Hijacked"}, headers=client_user.auth
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden"
    for stranger in (
        await register_client(client, display_name="Stranger"),
        await make_account(ctx, client, Role.counselor),
    ):
        hidden = await client.patch(
            f"/v1/rooms/{room['id']}", json={"title": "Hijacked"}, headers=stranger.auth
        )
        assert hidden.status_code == 404, hidden.text
        assert hidden.json()["code"] == "not_found"
    assert (await get_room(client, counselor, room["id"]))["title"] == "Original"


async def test_patch_refuses_bad_changes(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    room = await create_room(client, counselor, kind="group", title="Group")
    for name in ("A", "B"):
        await invite(
            client, counselor, room["id"], await register_client(client, display_name=name)
        )
    path = f"/v1/rooms/{room['id']}"

    below = await client.patch(path, json={"max_participants": 2}, headers=counselor.auth)
    assert below.status_code == 422, below.text
    assert below.json()["code"] == "validation_error"
    assert (await get_room(client, counselor, room["id"]))["max_participants"] == 8
    exact = await client.patch(path, json={"max_participants": 3}, headers=counselor.auth)
    assert exact.status_code == 200, exact.text
    assert (await get_room(client, counselor, room["id"]))["max_participants"] == 3

    now = clock.now()
    for body in [
        {"ends_at": iso(now - timedelta(minutes=1))},
        {"starts_at": iso(now + timedelta(hours=2)), "ends_at": iso(now + timedelta(hours=1))},
        {"title": ""},
        {"title": "x" * 201},
        {"max_participants": 51},
        {"max_participants": True},
        {"locked": True},
        {"kind": "individual"},
    ]:
        response = await client.patch(path, json=body, headers=counselor.auth)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "validation_error"
    after = await get_room(client, counselor, room["id"])
    assert (after["title"], after["kind"], after["locked"]) == ("Group", "group", False)
    assert (after["starts_at"], after["ends_at"], after["max_participants"]) == (None, None, 3)


async def test_patch_of_an_ended_room_is_409(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    ended_by_host = await create_room(client, counselor)
    assert (
        await client.post(f"/v1/rooms/{ended_by_host['id']}/end", headers=counselor.auth)
    ).status_code == 200
    ends = clock.now() + timedelta(minutes=20)
    ended_by_clock = await create_room(client, counselor, ends_at=iso(ends))
    clock.set(ends)
    await login(client, counselor)
    for room in (ended_by_host, ended_by_clock):
        response = await client.patch(
            f"/v1/rooms/{room['id']}",
            json={"title": "Too late", "ends_at": iso(ends + timedelta(hours=1))},
            headers=counselor.auth,
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "room_ended"
        seen = await get_room(client, counselor, room["id"])
        assert (seen["title"], seen["status"]) == ("Session", "ended")


# -- participants ----------------------------------------------------------------


async def accept_invitation(
    client: httpx.AsyncClient, user: User, response: httpx.Response
) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    invitation = response.json()["invitation_id"]
    accepted = await client.post(f"/v1/me/invitations/{invitation}/accept", headers=user.auth)
    assert accepted.status_code == 200, accepted.text
    room: dict[str, Any] = accepted.json()
    return room


async def test_participants_are_invited_by_id_or_email_and_accept(
    client: httpx.AsyncClient, ctx: Context, counselor: User, admin: User
) -> None:
    alice = await register_client(client, display_name="Alice")
    bob = await register_client(client, display_name="Bob")
    colleague = await make_account(ctx, client, Role.counselor, display_name="Colleague")
    room = await create_room(client, counselor, kind="group", max_participants=4)
    room_id = room["id"]

    by_id = await add(client, counselor, room_id, account_id=alice.id)
    assert by_id.status_code == 202, by_id.text
    assert set(by_id.json()) == {"invitation_id", "status"}
    assert by_id.json()["status"] == "pending"
    joined = await accept_invitation(client, alice, by_id)
    assert joined["id"] == room_id
    assert {
        "account_id": alice.id,
        "display_name": "Alice",
        "role": "participant",
        "admitted": False,
        "qualification": None,
        "consent_note": None,
        "supervision_consent": False,
    } in joined["participants"]
    await accept_invitation(
        client, bob, await add(client, counselor, room_id, email=bob.email.upper())
    )
    invited = await add(client, counselor, room_id, email=colleague.email.title())
    joined = await accept_invitation(client, colleague, invited)
    assert {
        "account_id": colleague.id,
        "display_name": "Colleague",
        "role": "host",
        "admitted": True,
        "qualification": None,
        "consent_note": None,
        "supervision_consent": None,
    } in joined["participants"]

    for body in ({"account_id": alice.id}, {"email": bob.email.swapcase()}):
        twice = await add(client, counselor, room_id, **body)
        assert twice.status_code == 409, twice.text
        assert twice.json()["code"] == "already_participant"

    seen = await get_room(client, counselor, room_id)
    assert sorted((p["account_id"], p["role"]) for p in seen["participants"]) == sorted(
        [
            (counselor.id, "host"),
            (alice.id, "participant"),
            (bob.id, "participant"),
            (colleague.id, "host"),
        ]
    )
    # The colleague is a host now: the room is theirs to manage as well.
    assert await room_ids(client, colleague) == [room_id]
    lock = await client.post(f"/v1/rooms/{room_id}/lock", headers=colleague.auth)
    assert lock.status_code == 200, lock.text

    full = await add(client, counselor, room_id, account_id=(await register_client(client)).id)
    assert full.status_code == 409, full.text
    assert full.json()["code"] == "room_full"
    assert len((await get_room(client, counselor, room_id))["participants"]) == 4

    # Alice accepted this counselor: into the next room she is added at once.
    second = await create_room(client, counselor)
    direct = await add(client, counselor, second["id"], email=alice.email)
    assert direct.status_code == 201, direct.text
    assert direct.json() == {
        "account_id": alice.id,
        "display_name": "Alice",
        "role": "participant",
        "admitted": False,
        "qualification": None,
        "consent_note": None,
        "supervision_consent": False,
    }
    assert sorted(await room_ids(client, alice)) == sorted([room_id, second["id"]])
    # Not so for the colleague's rooms, nor for a counselor (no care relationship).
    theirs = await create_room(client, colleague, kind="group")
    assert (await add(client, colleague, theirs["id"], account_id=alice.id)).status_code == 202
    assert (await add(client, colleague, theirs["id"], account_id=counselor.id)).status_code == 202


async def test_unknown_and_admin_accounts_get_an_invitation_no_one_can_accept(
    client: httpx.AsyncClient, counselor: User, admin: User
) -> None:
    room = await create_room(client, counselor, kind="group")
    room_id = room["id"]
    for body in (
        {"email": "nobody-here@example.org"},
        {"account_id": str(uuid.uuid4())},
        {"account_id": "not-an-id"},
        {"account_id": admin.id},
        {"email": admin.email.upper()},
        {"account_id": counselor.id},
    ):
        pending = await add(client, counselor, room_id, **body)
        assert pending.status_code == 202, (body, pending.text)
        assert pending.json()["status"] == "pending"
        accepted = await client.post(
            f"/v1/me/invitations/{pending.json()['invitation_id']}/accept", headers=admin.auth
        )
        assert accepted.status_code == 404, accepted.text
    for body in (
        {},
        {"account_id": admin.id, "email": admin.email},
        {"email": "not-an-email"},
        {"account_id": "a\x00b"},
        {"account_id": counselor.id, "role": "host"},
    ):
        invalid = await add(client, counselor, room_id, **body)
        assert invalid.status_code == 422, (body, invalid.text)
        assert invalid.json()["code"] == "validation_error"
    assert [
        p["account_id"] for p in (await get_room(client, counselor, room_id))["participants"]
    ] == [counselor.id]
    assert await room_ids(client, admin) == []
    assert (await client.get("/v1/me/invitations", headers=admin.auth)).json() == []


async def test_without_a_waiting_room_participants_are_admitted(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    room = await create_room(client, counselor, waiting_room=False)
    joined = await accept_invitation(
        client, client_user, await add(client, counselor, room["id"], account_id=client_user.id)
    )
    assert [p["admitted"] for p in joined["participants"]] == [True, True]
    again = await create_room(client, counselor, waiting_room=False)
    added = await add(client, counselor, again["id"], account_id=client_user.id)
    assert added.status_code == 201, added.text
    assert added.json()["admitted"] is True


async def test_removing_a_participant(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User
) -> None:
    colleague = await make_account(ctx, client, Role.counselor, display_name="Colleague")
    room = await create_room(client, counselor, kind="group")
    room_id = room["id"]
    await invite(client, counselor, room_id, client_user)
    await invite(client, counselor, room_id, colleague)
    assert await room_ids(client, client_user) == [room_id]

    removed = await client.delete(
        f"/v1/rooms/{room_id}/participants/{client_user.id}", headers=counselor.auth
    )
    assert removed.status_code == 204, removed.text
    assert removed.content == b""
    gone = await client.get(f"/v1/rooms/{room_id}", headers=client_user.auth)
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"
    assert await room_ids(client, client_user) == []
    participants = (await get_room(client, counselor, room_id))["participants"]
    assert client_user.id not in {p["account_id"] for p in participants}
    again = await client.delete(
        f"/v1/rooms/{room_id}/participants/{client_user.id}", headers=counselor.auth
    )
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"

    # One of two hosts may go; the last one stays.
    assert (
        await client.delete(
            f"/v1/rooms/{room_id}/participants/{colleague.id}", headers=counselor.auth
        )
    ).status_code == 204
    assert await room_ids(client, colleague) == []
    last = await client.delete(
        f"/v1/rooms/{room_id}/participants/{counselor.id}", headers=counselor.auth
    )
    assert last.status_code == 409, last.text
    assert last.json()["code"] == "last_host"
    assert [
        p["account_id"] for p in (await get_room(client, counselor, room_id))["participants"]
    ] == [counselor.id]

    # A removed client can be invited back.
    await invite(client, counselor, room_id, client_user)
    assert await room_ids(client, client_user) == [room_id]


async def test_admit_lock_and_unlock(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    room = await create_room(client, counselor)
    room_id = room["id"]
    await invite(client, counselor, room_id, client_user)

    def admitted(room: dict[str, Any]) -> object:
        return next(
            p["admitted"] for p in room["participants"] if p["account_id"] == client_user.id
        )

    assert admitted(await get_room(client, counselor, room_id)) is False
    response = await client.post(
        f"/v1/rooms/{room_id}/participants/{client_user.id}/admit", headers=counselor.auth
    )
    assert response.status_code == 200, response.text
    assert response.json()["account_id"] == client_user.id
    assert response.json()["admitted"] is True
    assert admitted(await get_room(client, counselor, room_id)) is True
    assert admitted(await get_room(client, client_user, room_id)) is True
    nobody = await client.post(
        f"/v1/rooms/{room_id}/participants/{uuid.uuid4()}/admit", headers=counselor.auth
    )
    assert nobody.status_code == 404

    locked = await client.post(f"/v1/rooms/{room_id}/lock", headers=counselor.auth)
    assert locked.status_code == 200, locked.text
    assert locked.json()["locked"] is True
    assert (await get_room(client, client_user, room_id))["locked"] is True
    unlocked = await client.post(f"/v1/rooms/{room_id}/unlock", headers=counselor.auth)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["locked"] is False
    assert (await get_room(client, counselor, room_id))["locked"] is False


def _host_actions(room_id: str, target: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/v1/rooms/{room_id}"
    return [
        ("PATCH", base, {"title": "Hijacked"}),
        ("POST", f"{base}/participants", {"account_id": target}),
        ("DELETE", f"{base}/participants/{target}", None),
        ("POST", f"{base}/participants/{target}/admit", None),
        ("POST", f"{base}/lock", None),
        ("POST", f"{base}/unlock", None),
        ("POST", f"{base}/end", None),
    ]


async def test_host_actions_by_a_participant_are_403_and_by_a_stranger_404(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User
) -> None:
    other = await register_client(client, display_name="Other")
    stranger = await register_client(client, display_name="Stranger")
    other_counselor = await make_account(ctx, client, Role.counselor)
    room = await create_room(client, counselor, kind="group", title="Group")
    room_id = room["id"]
    await invite(client, counselor, room_id, client_user)
    await invite(client, counselor, room_id, other)
    before = await get_room(client, counselor, room_id)

    for method, path, body in _host_actions(room_id, other.id):
        response = await client.request(method, path, json=body, headers=client_user.auth)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "forbidden"
    # Even on themselves: a participant cannot admit or remove themselves.
    for method, path, body in _host_actions(room_id, client_user.id)[2:4]:
        response = await client.request(method, path, json=body, headers=client_user.auth)
        assert response.status_code == 403, (method, path, response.text)

    device = await add_device(client, stranger)
    for user in (stranger, other_counselor):
        for method, path, body in [
            *_host_actions(room_id, other.id),
            ("GET", f"/v1/rooms/{room_id}", None),
            ("GET", f"/v1/rooms/{room_id}/ice-servers", None),
            ("POST", f"/v1/rooms/{room_id}/token", {"device_id": device}),
        ]:
            response = await client.request(method, path, json=body, headers=user.auth)
            assert response.status_code == 404, (user.role, method, path, response.text)
            assert response.json()["code"] == "not_found"

    assert await get_room(client, counselor, room_id) == before


# -- room tokens -----------------------------------------------------------------


async def test_host_gets_a_room_token_without_consent(
    client: httpx.AsyncClient, counselor: User, admin: User, clock: FrozenClock
) -> None:
    await publish_documents(client, admin)
    room = await create_room(client, counselor)
    device = await add_device(client, counselor)
    response = await room_token(client, counselor, room["id"], device)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "expires_at", "ws_url"}
    assert body["ws_url"].startswith("ws://")
    assert body["ws_url"].endswith(f"/v1/rooms/{room['id']}/ws")

    claims = claims_of(body["token"])
    assert claims["aud"] == "confide:room"
    assert claims["room"] == room["id"]
    assert claims["device"] == device
    assert claims["role"] == "host"
    assert claims["sub"] == counselor.id
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    assert claims["iat"] == int(clock.time())
    assert 0 < claims["exp"] - claims["iat"] <= 300
    expires = at(body["expires_at"])
    assert expires is not None
    assert expires.timestamp() == claims["exp"]

    header = header_of(body["token"])
    assert header["alg"] == "ES256"
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}

    second = await room_token(client, counselor, room["id"], device)
    assert claims_of(second.json()["token"])["jti"] != claims["jti"]


async def test_token_needs_one_of_the_callers_own_devices(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    room = await create_room(client, counselor)
    await invite(client, counselor, room["id"], client_user)
    theirs = await add_device(client, client_user)
    for device in (theirs, str(uuid.uuid4())):
        response = await room_token(client, counselor, room["id"], device)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    bad = await room_token(client, counselor, room["id"], "")
    assert bad.status_code == 422


async def test_client_needs_every_consent_the_room_requires(
    client: httpx.AsyncClient, counselor: User, client_user: User, admin: User
) -> None:
    documents = await publish_documents(client, admin)
    individual = await create_room(client, counselor)
    group = await create_room(client, counselor, kind="group")
    for room in (individual, group):
        await invite(client, counselor, room["id"], client_user)
    device = await add_device(client, client_user)

    refused = await room_token(client, client_user, individual["id"], device)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["code"] == "consent_required"
    assert refused.headers["content-type"] == "application/problem+json"
    assert sorted(problem["missing"]) == sorted(
        [documents["informed_consent"], documents["telehealth"]]
    )
    group_refused = await room_token(client, client_user, group["id"], device)
    assert group_refused.status_code == 403
    assert sorted(group_refused.json()["missing"]) == sorted(documents.values())

    await accept(client, client_user, documents["informed_consent"])
    still = await room_token(client, client_user, individual["id"], device)
    assert still.status_code == 403
    assert still.json()["missing"] == [documents["telehealth"]]

    await accept(client, client_user, documents["telehealth"])
    issued = await room_token(client, client_user, individual["id"], device)
    assert issued.status_code == 200, issued.text
    claims = claims_of(issued.json()["token"])
    assert (claims["role"], claims["sub"], claims["device"]) == (
        "participant",
        client_user.id,
        device,
    )
    assert claims["room"] == individual["id"]
    group_missing = await room_token(client, client_user, group["id"], device)
    assert group_missing.status_code == 403
    assert group_missing.json()["missing"] == [documents["group_agreement"]]
    await accept(client, client_user, documents["group_agreement"])
    assert (await room_token(client, client_user, group["id"], device)).status_code == 200


async def test_no_tokens_for_clients_until_the_practice_publishes_the_documents(
    client: httpx.AsyncClient, counselor: User, client_user: User, admin: User
) -> None:
    """Issue 9.11: with nothing published, room tokens were issued without any consent."""
    individual = await create_room(client, counselor)
    group = await create_room(client, counselor, kind="group")
    for room in (individual, group):
        await invite(client, counselor, room["id"], client_user)
    device = await add_device(client, client_user)

    refused = await room_token(client, client_user, individual["id"], device)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "consent_not_published"
    assert refused.json()["kinds"] == ["informed_consent", "telehealth"]
    group_refused = await room_token(client, client_user, group["id"], device)
    assert group_refused.json()["kinds"] == ["informed_consent", "telehealth", "group_agreement"]
    # Hosts need no consent, published or not.
    host_device = await add_device(client, counselor)
    assert (await room_token(client, counselor, group["id"], host_device)).status_code == 200

    documents = {}
    for kind in ("informed_consent", "telehealth"):
        published = await client.post(
            "/v1/consent-documents",
            json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} text."},
            headers=admin.auth,
        )
        assert published.status_code == 201, published.text
        documents[kind] = published.json()["id"]
        await accept(client, client_user, documents[kind])
    assert (await room_token(client, client_user, individual["id"], device)).status_code == 200
    still = await room_token(client, client_user, group["id"], device)
    assert still.status_code == 403, still.text
    assert (still.json()["code"], still.json()["kinds"]) == (
        "consent_not_published",
        ["group_agreement"],
    )


async def test_locked_room_issues_tokens_only_to_admitted_participants(
    client: httpx.AsyncClient, counselor: User, client_user: User, admin: User
) -> None:
    documents = await publish_documents(client, admin)
    for kind in ("informed_consent", "telehealth"):
        await accept(client, client_user, documents[kind])
    room = await create_room(client, counselor)
    await invite(client, counselor, room["id"], client_user)
    device = await add_device(client, client_user)
    assert (
        await client.post(f"/v1/rooms/{room['id']}/lock", headers=counselor.auth)
    ).status_code == 200
    locked = await room_token(client, client_user, room["id"], device)
    assert locked.status_code == 403, locked.text
    assert locked.json()["code"] == "room_locked"
    await client.post(
        f"/v1/rooms/{room['id']}/participants/{client_user.id}/admit", headers=counselor.auth
    )
    assert (await room_token(client, client_user, room["id"], device)).status_code == 200


async def test_token_lifetime_never_outlasts_the_room(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    ends = clock.now() + timedelta(seconds=60)
    room = await create_room(client, counselor, ends_at=iso(ends))
    device = await add_device(client, counselor)
    response = await room_token(client, counselor, room["id"], device)
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["token"])
    assert 0 < claims["exp"] - claims["iat"] <= 60
    assert claims["exp"] <= ends.timestamp()


async def test_no_tokens_outside_the_time_window(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    starts = clock.now() + timedelta(minutes=11)
    room = await create_room(
        client, counselor, starts_at=iso(starts), ends_at=iso(starts + timedelta(minutes=5))
    )
    device = await add_device(client, counselor)
    early = await room_token(client, counselor, room["id"], device)
    assert early.status_code == 403, early.text
    assert early.json()["code"] == "outside_time_window"
    clock.advance(60)
    assert (await room_token(client, counselor, room["id"], device)).status_code == 200
    clock.set(starts + timedelta(minutes=5))
    await login(client, counselor)
    late = await room_token(client, counselor, room["id"], device)
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "room_ended"


async def test_no_tokens_after_the_host_ends_the_room(
    client: httpx.AsyncClient, counselor: User
) -> None:
    room = await create_room(client, counselor)
    device = await add_device(client, counselor)
    assert (await room_token(client, counselor, room["id"], device)).status_code == 200
    await client.post(f"/v1/rooms/{room['id']}/end", headers=counselor.auth)
    ended = await room_token(client, counselor, room["id"], device)
    assert ended.status_code == 409, ended.text
    assert ended.json()["code"] == "room_ended"


# -- what the database holds ---------------------------------------------------


async def test_a_dump_of_the_room_tables_shows_no_title_times_or_members(
    client: httpx.AsyncClient, ctx: Context, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    title = f"Storage promise {uuid.uuid4().hex}"
    starts = clock.now() + timedelta(days=3, minutes=7, seconds=13)
    ends = starts + timedelta(minutes=47, seconds=29)
    first = await create_room(
        client, counselor, title=title, starts_at=iso(starts), ends_at=iso(ends)
    )
    await invite(client, counselor, first["id"], client_user)
    second = await create_room(client, counselor, title="Second")
    await invite(client, counselor, second["id"], client_user)

    needles: list[bytes] = [title.encode(), b"Storage promise"]
    for moment in (starts, ends):
        needles += [
            moment.isoformat().encode(),
            iso(moment).encode(),
            moment.strftime("%Y-%m-%dT%H:%M:%S").encode(),
            str(int(moment.timestamp())).encode(),
        ]
    for account_id in (counselor.id, client_user.id):
        needles += [
            account_id.encode(),
            account_id.replace("-", "").encode(),
            uuid.UUID(account_id).bytes,
        ]

    rows: dict[str, list[dict[str, Any]]] = {}
    async with ctx.engine.connect() as conn:
        for table in ROOM_TABLES:
            result = await conn.execute(text(f'SELECT * FROM "{table}"'))
            rows[table] = [dict(row) for row in result.mappings()]
    assert len(rows["rooms"]) == 2
    assert len(rows["room_members"]) == 4
    assert len(rows["account_rooms"]) == 4
    for table, table_rows in rows.items():
        for row in table_rows:
            for column, value in row.items():
                stored = column_bytes(value)
                for needle in needles:
                    assert needle not in stored, (table, column, needle)

    # The same person gets a different member_ix in each room: rooms cannot be joined on it.
    by_room: dict[str, set[bytes]] = {}
    for row in rows["room_members"]:
        by_room.setdefault(str(row["room_id"]), set()).add(column_bytes(row["member_ix"]))
    assert set(by_room) == {first["id"], second["id"]}
    assert all(len(ixs) == 2 for ixs in by_room.values())
    assert not by_room[first["id"]] & by_room[second["id"]]

    # And the API still reads it all back.
    seen = await get_room(client, client_user, first["id"])
    assert (seen["title"], at(seen["starts_at"]), at(seen["ends_at"])) == (title, starts, ends)


# -- the audit log ---------------------------------------------------------------


async def test_room_actions_are_audited(
    client: httpx.AsyncClient, counselor: User, client_user: User, admin: User
) -> None:
    room = await create_room(client, counselor)
    await invite(client, counselor, room["id"], client_user)
    device = await add_device(client, counselor)
    issued = await room_token(client, counselor, room["id"], device)
    assert issued.status_code == 200, issued.text
    jti = claims_of(issued.json()["token"])["jti"]

    entries = (await client.get("/v1/admin/audit?limit=1000", headers=admin.auth)).json()
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_action.setdefault(entry["action"], []).append(entry)

    [created] = by_action["room.create"]
    assert (created["actor"], created["target"]) == (counselor.id, room["id"])
    [invited] = by_action["room.invite"]
    assert (invited["actor"], invited["target"]) == (counselor.id, client_user.id)
    assert invited["details"]["room"] == room["id"]
    [accepted] = by_action["room.invitation_accept"]
    assert (accepted["actor"], accepted["target"]) == (client_user.id, client_user.id)
    assert accepted["details"] == {
        "room": room["id"],
        "invitation": invited["details"]["invitation"],
        "host": counselor.id,
    }
    [added] = by_action["room.participant_add"]
    assert (added["actor"], added["target"]) == (client_user.id, client_user.id)
    assert added["details"] == {"room": room["id"], "role": "participant"}
    [token] = by_action["room.token"]
    assert token["actor"] == counselor.id
    assert token["details"]["room"] == room["id"]
    assert token["details"]["device"] == device
    assert token["details"]["jti"] == jti
    assert issued.json()["token"] not in json.dumps(entries)
    verified = (await client.get("/v1/admin/audit/verify", headers=admin.auth)).json()
    assert verified["ok"] is True
