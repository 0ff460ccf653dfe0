"""GET /v1/me/access-log: who read or changed the caller's records, and when."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from app.core.clock import FrozenClock
from tests.fixtures.accounts import User, login, register_client
from tests.privacy.helpers import (
    Json,
    access_log,
    audit_entries,
    disclosure,
    get_json,
    record_disclosure,
    share_a_room,
)


def who(entries: list[Json]) -> list[tuple[str | None, str | None, str]]:
    return [(e["actor"]["account_id"], e["actor"]["role"], e["action"]) for e in entries]


async def test_the_log_shows_who_touched_the_callers_records_in_time_order(
    client: httpx.AsyncClient,
    counselor: User,
    admin: User,
    clock: FrozenClock,
) -> None:
    registered_at = clock.now()
    person = await register_client(client)  # account.create, then auth.login
    clock.advance(10)
    # room.invite, then the person accepts: room.participant_add, room.invitation_accept
    room_id = await share_a_room(client, counselor, person)
    room = await get_json(client, counselor, f"/v1/rooms/{room_id}")  # a read of the room
    assert person.id in [p["account_id"] for p in room["participants"]]
    clock.advance(10)
    await record_disclosure(client, admin, person.id, disclosure(clock))  # disclosure.record
    clock.advance(10)

    # Someone else, and what happens to their records, never shows up here.
    other = await register_client(client)
    await share_a_room(client, counselor, other)
    await record_disclosure(client, admin, other.id, disclosure(clock))
    await get_json(client, other, "/v1/me")
    await access_log(client, other)

    found = await access_log(client, person)
    assert list(found[0]) == ["at", "actor", "action"]
    assert who(found) == [
        (person.id, "client", "account.create"),
        (person.id, "client", "auth.login"),
        (counselor.id, "counselor", "room.invite"),
        (person.id, "client", "room.participant_add"),
        (person.id, "client", "room.invitation_accept"),
        (counselor.id, "counselor", "room.read"),  # the room shows the person
        (admin.id, "admin", "disclosure.record"),
    ]
    t0 = registered_at
    times = [datetime.fromisoformat(e["at"]) for e in found]
    assert times == [t0, t0, *[t0 + timedelta(seconds=10)] * 4, t0 + timedelta(seconds=20)]

    # Reading the log is itself recorded, and shows from the next read on; the
    # caller's own reads are accesses to their record too.
    await get_json(client, person, "/v1/me")
    again = await access_log(client, person)
    assert again[: len(found)] == found
    assert who(again[len(found) :]) == [
        (person.id, "client", "access_log.read"),
        (person.id, "client", "account.read"),
    ]
    assert other.id not in {e["actor"]["account_id"] for e in again}

    # And the admin's audit log holds each read of the log.
    reads = [
        e
        for e in await audit_entries(client, admin)
        if e["action"] == "access_log.read" and e["target"] == person.id
    ]
    assert [e["actor"] for e in reads] == [person.id, person.id]


async def test_a_failed_log_in_on_the_account_shows_with_no_actor(
    client: httpx.AsyncClient, client_user: User
) -> None:
    failed = await client.post(
        "/v1/auth/token", data={"username": client_user.email, "password": "not the password!"}
    )
    assert failed.status_code == 401
    found = await access_log(client, client_user)
    assert found[-1]["action"] == "auth.login_failed"
    assert found[-1]["actor"] == {"account_id": None, "role": None}


async def test_staff_have_an_access_log_too(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    await share_a_room(client, counselor, client_user)
    found = await access_log(client, counselor)
    # The counselor's own log-in concerns the counselor; inviting a client concerns the client.
    assert (counselor.id, "counselor", "auth.login") in who(found)
    assert not {"room.invite", "room.participant_add"} & {e["action"] for e in found}


async def test_anonymous_and_invalid_callers_get_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await client.get("/v1/me/access-log", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_withheld_disclosure_leaves_no_trace_for_the_client_until_its_date(
    client: httpx.AsyncClient, counselor: User, clock: FrozenClock
) -> None:
    """A law-enforcement hold (164.528(a)(2)): nothing reaches the client before it ends."""
    person = await register_client(client)
    await share_a_room(client, counselor, person)
    until = clock.now() + timedelta(days=30)
    made = await record_disclosure(
        client, counselor, person.id, disclosure(clock, withhold_until=until.isoformat())
    )

    def traces(entries: list[Json]) -> list[Json]:
        return [e for e in entries if e["action"] == "disclosure.record"]

    assert traces(await access_log(client, person)) == []
    exported = await get_json(client, person, "/v1/me/export")
    assert traces(exported["access_log"]) == []
    assert exported["disclosures"] == []
    assert exported["notices"] == []
    assert await get_json(client, person, "/v1/me/notices") == []
    assert await get_json(client, person, "/v1/me/disclosures") == []
    assert made["id"] not in str(exported)

    clock.advance(int(timedelta(days=30, seconds=1).total_seconds()))
    await login(client, person)
    shown = traces(await access_log(client, person))
    assert [(e["actor"]["account_id"], e["actor"]["role"]) for e in shown] == [
        (counselor.id, "counselor")
    ]
    assert [d["id"] for d in await get_json(client, person, "/v1/me/disclosures")] == [made["id"]]


async def test_an_admin_reading_an_incident_shows_in_each_affected_persons_log(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    affected, bystander = await register_client(client), await register_client(client)
    created = await client.post(
        "/v1/incidents",
        headers=admin.auth,
        json={
            "summary": "A laptop was stolen",
            "discovered_at": clock.now().isoformat(),
            "severity": "high",
            "affected_account_ids": [affected.id],
        },
    )
    assert created.status_code == 201, created.text
    incident_id = created.json()["id"]
    assert (await client.get(f"/v1/incidents/{incident_id}", headers=admin.auth)).is_success
    assert (await client.get("/v1/incidents", headers=admin.auth)).is_success

    moved = await client.patch(
        f"/v1/incidents/{incident_id}", headers=admin.auth, json={"status": "notifying"}
    )
    assert moved.is_success, moved.text
    seen = [
        (e["actor"]["account_id"], e["action"])
        for e in await access_log(client, affected)
        if e["action"].startswith("incident.")
    ]
    assert seen == [
        (admin.id, "incident.create"),
        (admin.id, "incident.read"),
        (admin.id, "incident.read"),
        (admin.id, "incident.update"),
    ]
    assert not any(e["action"].startswith("incident.") for e in await access_log(client, bystander))


async def test_every_read_or_change_of_a_shared_session_shows_in_each_participants_log(
    client: httpx.AsyncClient, counselor: User
) -> None:
    person, other = await register_client(client), await register_client(client)
    room_id = await share_a_room(client, counselor, person, kind="group", max_participants=4)
    await share_a_room(client, counselor, other)  # another room: never shows here
    before = len(await access_log(client, person))

    auth = counselor.auth
    assert (await client.get(f"/v1/rooms/{room_id}", headers=auth)).is_success
    assert (await client.get("/v1/rooms", headers=auth)).is_success
    patched = await client.patch(f"/v1/rooms/{room_id}", json={"title": "Renamed"}, headers=auth)
    assert patched.is_success, patched.text
    assert (await client.post(f"/v1/rooms/{room_id}/lock", headers=auth)).is_success
    assert (await client.post(f"/v1/rooms/{room_id}/end", headers=auth)).is_success

    after = (await access_log(client, person))[before:]
    assert who(after) == [
        (person.id, "client", "access_log.read"),
        (counselor.id, "counselor", "room.read"),
        (counselor.id, "counselor", "room.read"),
        (counselor.id, "counselor", "room.update"),
        (counselor.id, "counselor", "room.lock"),
        (counselor.id, "counselor", "room.end"),
    ]
    # The counselor's own reads are not entries about the counselor.
    assert "room.read" not in {e["action"] for e in await access_log(client, counselor)}
