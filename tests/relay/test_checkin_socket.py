"""The `checkin` frame: a client's safety check-in reaches the room's hosts' sockets, live and
when a host joins, and never another participant's. A real server and real WebSocket clients,
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice

CHECKIN = {
    "location": {"address": "12 Elm St, Boulder", "jurisdiction": "US-CO"},
    "emergency_contact": {"name": "Sam Rivera", "phone": "+1 303 555 0142"},
    "callback_phone": "+1 303 555 0199",
}


async def joined(practice: Practice, person: Person, room_id: str) -> ClientConnection:
    ws = await open_socket(practice.base, room_id, await practice.token(person, room_id))
    assert (await recv(ws))["type"] == "welcome"
    return ws


async def check_in(practice: Practice, person: Person, room_id: str) -> None:
    response = await practice.http.put(
        f"/v1/rooms/{room_id}/checkin", json=CHECKIN, headers=person.auth
    )
    assert response.status_code == 200, response.text


async def group(practice: Practice, **body: Any) -> tuple[Person, Person, Person, str]:
    counselor = await practice.counselor()
    first = await practice.client("First")
    second = await practice.client("Second")
    room = await practice.room(counselor, kind="group", waiting_room=False, **body)
    for guest in (first, second):
        await practice.invite(counselor, room["id"], guest)
    return counselor, first, second, room["id"]


def expected(person: Person, *, licensed: bool) -> dict[str, Any]:
    return {
        "type": "checkin",
        "account_id": person.id,
        **CHECKIN,
        "jurisdiction": "US-CO",
        "licensed": licensed,
        "jurisdiction_mismatch": not licensed,
    }


async def test_the_host_hears_a_check_in_another_client_does_not(practice: Practice) -> None:
    counselor, first, second, room_id = await group(practice, safety_checkin="optional")
    host_ws = await joined(practice, counselor, room_id)
    other_ws = await joined(practice, second, room_id)

    await check_in(practice, first, room_id)
    # Then an event every participant hears: the other client's socket hears it
    # without having heard the check-in first.
    locked = await practice.http.post(f"/v1/rooms/{room_id}/lock", headers=counselor.auth)
    assert locked.status_code == 200, locked.text

    frame = await recv_until(host_ws, "checkin")
    assert {k: v for k, v in frame.items() if k != "recorded_at"} == expected(first, licensed=False)
    assert frame["recorded_at"].endswith("Z")
    await recv_until(host_ws, "room", event="locked")
    while (seen := await recv(other_ws))["type"] != "room":
        assert seen["type"] != "checkin", seen
    for ws in (host_ws, other_ws):
        await ws.close()


async def test_a_joining_host_gets_each_valid_check_in_after_the_welcome(
    practice: Practice,
) -> None:
    counselor, first, second, room_id = await group(practice, safety_checkin="required")
    licensed = await practice.http.put(
        f"/v1/admin/accounts/{counselor.id}/licensure",
        json={"jurisdictions": ["US-CO"]},
        headers=practice.admin.auth,
    )
    assert licensed.status_code == 200, licensed.text
    await check_in(practice, first, room_id)
    await check_in(practice, second, room_id)
    other_ws = await joined(practice, second, room_id)

    host_ws = await joined(practice, counselor, room_id)
    got = [await recv(host_ws), await recv(host_ws)]
    assert {f["type"] for f in got} == {"checkin"}
    assert {f["account_id"] for f in got} == {first.id, second.id}
    assert all(f["licensed"] and not f["jurisdiction_mismatch"] for f in got)

    # The joining client hears presence, not the check-ins the host was sent.
    first_ws = await joined(practice, first, room_id)
    await recv_until(other_ws, "presence", event="online", account_id=first.id)
    await recv_until(host_ws, "presence", event="online", account_id=first.id)
    await first_ws.close()
    while (seen := await recv(other_ws))["type"] != "presence" or seen["event"] != "offline":
        assert seen["type"] != "checkin", seen

    log = await practice.http.get("/v1/me/access-log", headers=first.auth)
    reads = [e for e in log.json() if e["action"] == "checkin.read"]
    assert [e["actor"]["account_id"] for e in reads] == [counselor.id]
    for ws in (host_ws, other_ws):
        await ws.close()


async def test_the_socket_refuses_a_token_issued_before_the_check_in_was_required(
    practice: Practice,
) -> None:
    counselor, first, _, room_id = await group(practice, safety_checkin="off")
    token = await practice.token(first, room_id)
    patched = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"safety_checkin": "required"}, headers=counselor.auth
    )
    assert patched.status_code == 200, patched.text

    ws = await open_socket(practice.base, room_id, token)
    assert await closed_with(ws) == 4003
    assert ws.close_reason == "safety_checkin_required"
