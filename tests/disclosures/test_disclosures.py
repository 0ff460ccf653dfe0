from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, text

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import Account, AccountStatus, DataKey, Role
from tests.fixtures.accounts import User, login, make_account, register_client
from tests.fixtures.dump import column_bytes
from tests.fixtures.rooms import add_and_accept

Json = dict[str, Any]


def disclosure(clock: FrozenClock, **overrides: Any) -> Json:
    body: Json = {
        "basis": "mandated_report",
        "recipient": "County child protective services",
        "purpose": "Mandated report of suspected neglect",
        "description": "Notes of the session of last week about the home situation",
        "disclosed_at": (clock.now() - timedelta(hours=2)).isoformat(),
    }
    body.update(overrides)
    return body


async def share_a_room(
    client: httpx.AsyncClient, counselor: User, member: User, kind: str = "individual"
) -> str:
    room = await client.post(
        "/v1/rooms", json={"title": "Weekly session", "kind": kind}, headers=counselor.auth
    )
    assert room.status_code == 201, room.text
    room_id: str = room.json()["id"]
    # The counselor invites, the member accepts (and becomes the counselor's client).
    await add_and_accept(client, room_id, counselor.auth, member.auth, account_id=member.id)
    return room_id


async def record(
    client: httpx.AsyncClient, user: User | None, account_id: str, body: object
) -> httpx.Response:
    return await client.post(
        f"/v1/accounts/{account_id}/disclosures",
        content=json.dumps(body),
        headers={**(user.auth if user else {}), "content-type": "application/json"},
    )


async def accounting(client: httpx.AsyncClient, user: User) -> list[Json]:
    response = await client.get("/v1/me/disclosures", headers=user.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def notices(client: httpx.AsyncClient, user: User) -> list[Json]:
    response = await client.get("/v1/me/notices", headers=user.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def audit_entries(client: httpx.AsyncClient, admin: User) -> list[Json]:
    response = await client.get("/v1/admin/audit", params={"limit": 1000}, headers=admin.auth)
    assert response.status_code == 200, response.text
    entries: list[Json] = response.json()
    return entries


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- recording ----------------------------------------------------------------------
async def test_the_clients_counselor_records_a_disclosure_and_the_client_is_told(
    client: httpx.AsyncClient,
    counselor: User,
    client_user: User,
    admin: User,
    clock: FrozenClock,
) -> None:
    await share_a_room(client, counselor, client_user)
    body = disclosure(clock, basis="imminent_harm", recipient="Dr Émile Zola, ER ✓")
    response = await record(client, counselor, client_user.id, body)
    assert response.status_code == 201, response.text
    made = response.json()
    uuid.UUID(made["id"])
    assert made["account_id"] == client_user.id
    assert made["basis"] == "imminent_harm"
    assert made["recipient"] == "Dr Émile Zola, ER ✓"
    assert made["purpose"] == body["purpose"]
    assert made["description"] == body["description"]
    assert at(made["disclosed_at"]) == clock.now() - timedelta(hours=2)
    assert made["withhold_until"] is None
    assert made["recorded_by"] == counselor.id
    assert made["recorded_by_role"] == "counselor"
    assert at(made["recorded_at"]) == clock.now()

    assert await accounting(client, client_user) == [made]
    (notice,) = await notices(client, client_user)
    assert notice["kind"] == "disclosure"
    assert notice["disclosure_id"] == made["id"]
    assert notice["incident_id"] is None
    assert "Dr Émile Zola, ER ✓" in notice["message"]
    assert at(notice["created_at"]) == clock.now()
    # Nobody else is told.
    assert await notices(client, counselor) == []

    entries = await audit_entries(client, admin)
    recorded = [e for e in entries if e["action"] == "disclosure.record"]
    assert len(recorded) == 1
    assert recorded[0]["actor"] == counselor.id
    assert recorded[0]["target"] == client_user.id
    assert recorded[0]["details"]["disclosure"] == made["id"]
    for action in ("disclosure.read", "notice.read"):
        (read,) = [e for e in entries if e["action"] == action and e["actor"] == client_user.id]
        assert read["target"] == client_user.id


async def test_an_admin_records_a_disclosure_without_sharing_a_room(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    in_zurich = (clock.now() - timedelta(days=1)).astimezone(timezone(timedelta(hours=1)))
    response = await record(
        client,
        admin,
        client_user.id,
        disclosure(clock, basis="court_order", disclosed_at=in_zurich.isoformat()),
    )
    assert response.status_code == 201, response.text
    assert response.json()["recorded_by_role"] == "admin"
    assert response.json()["disclosed_at"].endswith("Z")
    assert at(response.json()["disclosed_at"]) == in_zurich
    (found,) = await accounting(client, client_user)
    assert found["basis"] == "court_order"


async def test_a_counselor_who_never_met_the_client_gets_not_found(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    other = await register_client(client)
    # This counselor hosts a room, but not with this client.
    await share_a_room(client, counselor, other)
    stranger = await record(client, counselor, client_user.id, disclosure(clock))
    unknown = await record(client, counselor, str(uuid.uuid4()), disclosure(clock))
    assert stranger.status_code == unknown.status_code == 404
    assert stranger.json() == unknown.json()
    assert stranger.json()["code"] == "not_found"
    assert await accounting(client, client_user) == []
    assert await notices(client, client_user) == []


async def test_the_care_relationship_outlives_the_room(
    client: httpx.AsyncClient, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    # A disclosure made after the session still belongs in the client's accounting.
    room_id = await share_a_room(client, counselor, client_user)
    removed = await client.delete(
        f"/v1/rooms/{room_id}/participants/{client_user.id}", headers=counselor.auth
    )
    assert removed.status_code == 204, removed.text
    response = await record(client, counselor, client_user.id, disclosure(clock))
    assert response.status_code == 201, response.text
    assert [d["id"] for d in await accounting(client, client_user)] == [response.json()["id"]]


async def test_a_counselor_the_client_never_accepted_gets_not_found(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User, clock: FrozenClock
) -> None:
    """Issue 9.5: enrolling a client, or sharing a room with them, is not being their counselor."""
    room = await client.post(
        "/v1/rooms", json={"title": "Enrolled", "kind": "group"}, headers=counselor.auth
    )
    room_id = room.json()["id"]
    # The counselor adds the client by id, then by email: the client never answers.
    added = [
        await client.post(f"/v1/rooms/{room_id}/participants", json=body, headers=counselor.auth)
        for body in ({"account_id": client_user.id}, {"email": client_user.email})
    ]
    enrolled = await record(client, counselor, client_user.id, disclosure(clock))
    assert enrolled.status_code == 404, enrolled.text
    assert [response.status_code for response in added] == [202, 202]
    # A co-host of a room the client did join, invited by the client's counselor.
    own = await make_account(ctx, client, Role.counselor, display_name="Own counselor")
    shared = await share_a_room(client, own, client_user, kind="group")
    await add_and_accept(client, shared, own.auth, counselor.auth, account_id=counselor.id)
    members = await client.get(f"/v1/rooms/{shared}", headers=counselor.auth)
    assert {p["account_id"] for p in members.json()["participants"]} == {
        own.id,
        counselor.id,
        client_user.id,
    }
    co_host = await record(client, counselor, client_user.id, disclosure(clock))
    unknown = await record(client, counselor, str(uuid.uuid4()), disclosure(clock))
    for response in (enrolled, co_host):
        assert response.status_code == 404, response.text
        assert response.json() == unknown.json()
    assert await accounting(client, client_user) == []
    assert await notices(client, client_user) == []
    # The client's own counselor may.
    assert (await record(client, own, client_user.id, disclosure(clock))).status_code == 201


async def test_a_client_may_not_record_a_disclosure(
    client: httpx.AsyncClient, client_user: User, clock: FrozenClock
) -> None:
    other = await register_client(client)
    for target in (client_user.id, other.id, str(uuid.uuid4())):
        response = await record(client, client_user, target, disclosure(clock))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
    assert await accounting(client, client_user) == []
    assert await accounting(client, other) == []


async def test_anonymous_callers_get_401(
    client: httpx.AsyncClient, client_user: User, clock: FrozenClock
) -> None:
    posted = await record(client, None, client_user.id, disclosure(clock))
    listed = await client.get("/v1/me/disclosures")
    told = await client.get("/v1/me/notices")
    for response in (posted, listed, told):
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"
    assert await accounting(client, client_user) == []


@pytest.mark.parametrize(
    "target", ["unknown", "counselor", "admin", "not-a-uuid", "%00", "erased"], ids=str
)
async def test_only_an_existing_client_account_has_disclosures(
    ctx: Context,
    client: httpx.AsyncClient,
    admin: User,
    counselor: User,
    clock: FrozenClock,
    target: str,
) -> None:
    account_id = {
        "unknown": str(uuid.uuid4()),
        "counselor": counselor.id,
        "admin": admin.id,
        "not-a-uuid": "not-a-uuid",
        "%00": "%00",
    }.get(target)
    if target == "erased":
        erased = await register_client(client)
        async with ctx.transaction() as session:
            account = await session.get(Account, erased.id)
            assert account is not None
            account.status = AccountStatus.erased
        account_id = erased.id
    assert account_id is not None
    response = await record(client, admin, account_id, disclosure(clock))
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM disclosures"))).scalar_one() == 0


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"basis": "gossip"},
        {"basis": 1},
        {"basis": None},
        {"recipient": ""},
        {"recipient": "x" * 201},
        {"recipient": "nul\x00"},
        {"recipient": "\ud800"},
        {"recipient": 5},
        {"purpose": ""},
        {"purpose": "x" * 501},
        {"description": ""},
        {"description": "x" * 5001},
        {"disclosed_at": "2026-11-24T10:00:00"},
        {"disclosed_at": "yesterday"},
        {"disclosed_at": None},
        {"disclosed_at": "future"},
        {"withhold_until": "2030-01-01T00:00:00"},
        {"withhold_until": "soon"},
        {"disclosed_at": "0001-01-01T00:00:00+01:00"},
        {"withhold_until": "9999-12-31T23:59:59-01:00"},
        {"recipient": None},
        "missing purpose",
        "not an object",
    ],
    ids=repr,
)
async def test_bad_disclosures_get_422_and_change_nothing(
    ctx: Context,
    client: httpx.AsyncClient,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
    change: object,
) -> None:
    await share_a_room(client, counselor, client_user)
    body: object
    if change == "missing purpose":
        body = disclosure(clock)
        assert isinstance(body, dict)
        del body["purpose"]
    elif change == "not an object":
        body = [disclosure(clock)]
    else:
        assert isinstance(change, dict)
        body = disclosure(clock, **change)
        if change.get("disclosed_at") == "future":
            body["disclosed_at"] = (clock.now() + timedelta(seconds=1)).isoformat()
    response = await record(client, counselor, client_user.id, body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert "nul" not in response.text
    assert await accounting(client, client_user) == []
    assert await notices(client, client_user) == []
    async with ctx.engine.connect() as conn:
        for table in ("disclosures", "notices"):
            count = await conn.execute(text(f"SELECT count(*) FROM {table}"))
            assert count.scalar_one() == 0


async def test_a_disclosure_made_this_instant_is_not_in_the_future(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    now = clock.now().isoformat()
    response = await record(client, admin, client_user.id, disclosure(clock, disclosed_at=now))
    assert response.status_code == 201, response.text


# -- reading ------------------------------------------------------------------------
async def test_a_withheld_disclosure_and_its_notice_appear_when_the_hold_ends(
    client: httpx.AsyncClient,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    await share_a_room(client, counselor, client_user)
    until = clock.now() + timedelta(days=30)
    withheld = await record(
        client,
        counselor,
        client_user.id,
        disclosure(clock, basis="law_enforcement", withhold_until=until.isoformat()),
    )
    assert withheld.status_code == 201, withheld.text
    assert at(withheld.json()["withhold_until"]) == until
    # A hold that already ended withholds nothing.
    past = clock.now() - timedelta(minutes=1)
    open_one = await record(
        client, counselor, client_user.id, disclosure(clock, withhold_until=past.isoformat())
    )
    assert open_one.status_code == 201, open_one.text

    assert [d["id"] for d in await accounting(client, client_user)] == [open_one.json()["id"]]
    assert [n["disclosure_id"] for n in await notices(client, client_user)] == [
        open_one.json()["id"]
    ]

    clock.set(until - timedelta(seconds=1))
    await login(client, client_user)  # the access token has expired meanwhile
    assert len(await accounting(client, client_user)) == 1
    assert len(await notices(client, client_user)) == 1

    # From withhold_until on it no longer lies in the future.
    clock.advance(1)
    found = await accounting(client, client_user)
    assert {d["id"] for d in found} == {withheld.json()["id"], open_one.json()["id"]}
    told = await notices(client, client_user)
    # Newest first: the withheld one reached the client when its hold ended.
    assert [n["disclosure_id"] for n in told] == [withheld.json()["id"], open_one.json()["id"]]
    assert at(told[0]["created_at"]) == until


async def test_the_accounting_lists_oldest_disclosure_first(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    times = [clock.now() - timedelta(days=n) for n in (1, 9, 3)]
    for when in times:
        made = await record(
            client, admin, client_user.id, disclosure(clock, disclosed_at=when.isoformat())
        )
        assert made.status_code == 201, made.text
    found = await accounting(client, client_user)
    assert [at(d["disclosed_at"]) for d in found] == sorted(times)


async def test_each_client_sees_only_their_own_disclosures(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    other = await register_client(client)
    mine = await record(client, admin, client_user.id, disclosure(clock, recipient="Mine"))
    theirs = await record(client, admin, other.id, disclosure(clock, recipient="Theirs"))
    assert mine.status_code == theirs.status_code == 201
    assert [d["recipient"] for d in await accounting(client, client_user)] == ["Mine"]
    assert [d["recipient"] for d in await accounting(client, other)] == ["Theirs"]
    assert [n["disclosure_id"] for n in await notices(client, other)] == [theirs.json()["id"]]


async def test_only_clients_have_an_accounting(
    client: httpx.AsyncClient, counselor: User, admin: User
) -> None:
    for user in (counselor, admin):
        response = await client.get("/v1/me/disclosures", headers=user.auth)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


async def test_erasing_the_counselor_leaves_the_clients_accounting_readable(
    ctx: Context, client: httpx.AsyncClient, client_user: User, clock: FrozenClock
) -> None:
    counselor = await make_account(ctx, client, Role.counselor)
    await share_a_room(client, counselor, client_user)
    made = await record(client, counselor, client_user.id, disclosure(clock))
    assert made.status_code == 201, made.text
    # Crypto-shred the counselor: their data key is gone.
    async with ctx.transaction() as session:
        account = await session.get(Account, counselor.id)
        assert account is not None
        key_id = account.data_key_id
        assert key_id is not None
        account.status = AccountStatus.erased
        account.data_key_id = None
        await session.flush()
        await session.execute(delete(DataKey).where(DataKey.id == key_id))
    ctx.vault.forget(key_id)
    (found,) = await accounting(client, client_user)
    assert found == made.json()
    assert found["recorded_by"] == counselor.id


# -- the dump promise ---------------------------------------------------------------
ISO_DATE = re.compile(rb"\d{4}-\d{2}-\d{2}")


async def test_a_dump_shows_no_disclosure_no_client_and_no_time(
    ctx: Context,
    client: httpx.AsyncClient,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    await share_a_room(client, counselor, client_user)
    marker = uuid.uuid4().hex
    disclosed_at = clock.now() - timedelta(days=2)
    until = clock.now() + timedelta(days=10)
    bodies = [
        disclosure(
            clock,
            recipient=f"Recipient {marker}",
            purpose=f"Purpose {marker}",
            description=f"Description {marker}",
            disclosed_at=disclosed_at.isoformat(),
        ),
        disclosure(clock, recipient=f"Held {marker}", withhold_until=until.isoformat()),
    ]
    for body in bodies:
        assert (await record(client, counselor, client_user.id, body)).status_code == 201
    assert len(await notices(client, client_user)) == 1

    needles = [marker.encode(), b"neglect", b"mandated_report", b"disclosure"]
    for account_id in (client_user.id, counselor.id):
        needles += [
            account_id.encode(),
            account_id.replace("-", "").encode(),
            uuid.UUID(account_id).bytes,
        ]
    for when in (disclosed_at, until, clock.now()):
        needles += [when.isoformat().encode(), str(int(when.timestamp())).encode()]
    async with ctx.engine.connect() as conn:
        for table, expected in (("disclosures", 2), ("notices", 2)):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            assert len(rows) == expected
            for row in rows:
                for value in row:
                    column = column_bytes(value)
                    assert not ISO_DATE.search(column), table
                    for needle in needles:
                        assert needle not in column, (table, needle)
