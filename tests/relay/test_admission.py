"""One admission rule: the room-token endpoint, TURN credentials and the socket refuse
by the same error.

For each reason someone may not join a room, the refusal is set up after a room
token was issued. Then `rooms.admit_device` raises one error; the token
endpoint answers that error's problem (status and code), the ICE endpoint the
same (it asks for no device), and the socket, opened with the token issued
before, closes with that error's close code and reason. The numbers are
PROTOCOL.md's: they are written out here, not read from the error classes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.consent.errors import ConsentRequired
from app.core.errors import ConfideError, NotFound, Unauthorized
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP, ROOM_AUDIENCE, ROOM_TYP
from app.rooms import service as rooms
from app.rooms.errors import (
    DeviceRevoked,
    OutsideTimeWindow,
    RoomEnded,
    RoomLocked,
    RoomNotFound,
)
from app.safety.errors import JurisdictionMismatch, SafetyCheckinRequired
from tests.fixtures.server import closed_with, open_socket
from tests.relay.conftest import Person, Practice


@dataclass
class Refusal:
    """Someone who may not join `room_id`, holding a room token signed before."""

    person: Person
    room_id: str
    token: str


async def _pair(practice: Practice, *, waiting_room: bool = False) -> tuple[Person, Person, str]:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=waiting_room)
    await practice.invite(counselor, room["id"], client)
    return counselor, client, room["id"]


async def _client_then(practice: Practice, method: str, path: str, *, by_host: bool) -> Refusal:
    """A client with a token; then `method path` by the host or the client, which refuses it."""
    counselor, client, room_id = await _pair(practice)
    token = await practice.token(client, room_id)
    actor = counselor if by_host else client
    done = await practice.http.request(
        method,
        path.format(room=room_id, client=client.id, device=client.device),
        headers=actor.auth,
    )
    assert done.status_code in (200, 204), done.text
    return Refusal(client, room_id, token)


async def ended_room(practice: Practice) -> Refusal:
    return await _client_then(practice, "POST", "/v1/rooms/{room}/end", by_host=True)


async def not_a_participant(practice: Practice) -> Refusal:
    _, _, room_id = await _pair(practice)
    stranger = await practice.client("Stranger")
    # No endpoint gives a stranger a token for this room: sign one as the server would.
    claims = practice.context.tokens.verify(
        stranger.user.access_token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP
    )
    token = practice.context.tokens.issue(
        audience=ROOM_AUDIENCE,
        typ=ROOM_TYP,
        subject=stranger.id,
        ttl=60,
        claims={
            "room": room_id,
            "device": stranger.device,
            "role": "participant",
            "sid": claims["sid"],
        },
    ).token
    return Refusal(stranger, room_id, token)


async def removed(practice: Practice) -> Refusal:
    return await _client_then(
        practice, "DELETE", "/v1/rooms/{room}/participants/{client}", by_host=True
    )


async def revoked_device(practice: Practice) -> Refusal:
    return await _client_then(practice, "DELETE", "/v1/devices/{device}", by_host=False)


async def removed_with_revoked_device(practice: Practice) -> Refusal:
    """Two reasons at once: membership is asked before the device, on every path."""
    refusal = await removed(practice)
    revoked = await practice.http.delete(
        f"/v1/devices/{refusal.person.device}", headers=refusal.person.auth
    )
    assert revoked.status_code == 204
    return refusal


async def withdrawn_consent(practice: Practice) -> Refusal:
    document = practice.documents["telehealth"]
    return await _client_then(practice, "DELETE", f"/v1/me/consents/{document}", by_host=False)


async def locked_room_newcomer(practice: Practice) -> Refusal:
    counselor, client, room_id = await _pair(practice, waiting_room=True)
    token = await practice.token(client, room_id)
    locked = await practice.http.post(f"/v1/rooms/{room_id}/lock", headers=counselor.auth)
    assert locked.status_code == 200, locked.text
    return Refusal(client, room_id, token)


async def outside_time_window(practice: Practice) -> Refusal:
    counselor, client, room_id = await _pair(practice)
    token = await practice.token(client, room_id)
    starts = practice.context.clock.now() + timedelta(hours=2)
    moved = await practice.http.patch(
        f"/v1/rooms/{room_id}",
        json={
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=1)).isoformat(),
        },
        headers=counselor.auth,
    )
    assert moved.status_code == 200, moved.text
    return Refusal(client, room_id, token)


async def erased_account(practice: Practice) -> Refusal:
    return await _client_then(practice, "DELETE", "/v1/me", by_host=False)


async def logged_out(practice: Practice) -> Refusal:
    return await _client_then(practice, "POST", "/v1/auth/logout", by_host=False)


async def room_gone(practice: Practice) -> Refusal:
    _, client, room_id = await _pair(practice)
    token = await practice.token(client, room_id)
    async with practice.context.engine.begin() as conn:
        await conn.execute(text("DELETE FROM rooms WHERE id = :id"), {"id": room_id})
    return Refusal(client, room_id, token)


async def checkin_now_required(practice: Practice) -> Refusal:
    counselor, client, room_id = await _pair(practice)
    token = await practice.token(client, room_id)
    patched = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"safety_checkin": "required"}, headers=counselor.auth
    )
    assert patched.status_code == 200, patched.text
    return Refusal(client, room_id, token)


Setup = Callable[[Practice], Awaitable[Refusal]]

#: The setup, the error `admit_device` raises, the token endpoint's status and
#: code, the socket's close code and reason.
CASES: list[tuple[Setup, type[ConfideError], int, str, int, str]] = [
    (ended_room, RoomEnded, 409, "room_ended", 4010, "room_ended"),
    (not_a_participant, NotFound, 404, "not_found", 4003, "not_found"),
    (removed, NotFound, 404, "not_found", 4003, "not_found"),
    (revoked_device, DeviceRevoked, 404, "not_found", 4003, "device_revoked"),
    (removed_with_revoked_device, NotFound, 404, "not_found", 4003, "not_found"),
    (withdrawn_consent, ConsentRequired, 403, "consent_required", 4003, "consent_required"),
    (locked_room_newcomer, RoomLocked, 403, "room_locked", 4003, "room_locked"),
    (
        checkin_now_required,
        SafetyCheckinRequired,
        403,
        "safety_checkin_required",
        4003,
        "safety_checkin_required",
    ),
    (
        outside_time_window,
        OutsideTimeWindow,
        403,
        "outside_time_window",
        4003,
        "outside_time_window",
    ),
    (erased_account, Unauthorized, 401, "token_invalid", 4001, "token_invalid"),
    (logged_out, Unauthorized, 401, "token_invalid", 4001, "token_invalid"),
    (room_gone, RoomNotFound, 404, "not_found", 4004, "not_found"),
]


@pytest.mark.parametrize(
    ("setup", "error", "status", "code", "close", "reason"),
    CASES,
    ids=[case[0].__name__ for case in CASES],
)
async def test_every_path_refuses_by_the_one_rule_and_its_error(
    practice: Practice,
    setup: Setup,
    error: type[ConfideError],
    status: int,
    code: str,
    close: int,
    reason: str,
) -> None:
    refusal = await setup(practice)
    ctx = practice.context

    # The rule: the token's holder, room and device, asked once.
    claims = ctx.tokens.verify(refusal.token, audience=ROOM_AUDIENCE, typ=ROOM_TYP)
    with pytest.raises(ConfideError) as raised:
        async with ctx.transaction() as session:
            await rooms.admit_device(
                session,
                ctx,
                account_id=str(claims["sub"]),
                login_id=str(claims["sid"]),
                room_id=refusal.room_id,
                device_id=str(claims["device"]),
            )
    assert type(raised.value) is error
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.close_code == close
    assert (raised.value.close_reason or raised.value.code) == reason

    # The room-token endpoint answers that error's problem.
    answer = await practice.token_response(refusal.person, refusal.room_id)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code

    # TURN credentials follow the same rule, the device aside.
    ice = await practice.http.get(
        f"/v1/rooms/{refusal.room_id}/ice-servers", headers=refusal.person.auth
    )
    if error is DeviceRevoked:
        assert ice.status_code == 200, ice.text
    else:
        assert (ice.status_code, ice.json()["code"]) == (status, code)

    # The socket, opened with the token issued before, closes with its close code.
    ws = await open_socket(practice.base, refusal.room_id, refusal.token)
    assert await closed_with(ws) == close
    assert ws.close_reason == reason


async def test_an_admitted_device_gets_its_room_and_the_welcome_seats(
    practice: Practice,
) -> None:
    counselor, client, room_id = await _pair(practice, waiting_room=True)
    ctx = practice.context
    claims = ctx.tokens.verify(client.user.access_token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    async with ctx.transaction() as session:
        admission = await rooms.admit_device(
            session,
            ctx,
            account_id=client.id,
            login_id=str(claims["sid"]),
            room_id=room_id,
            device_id=client.device,
            with_seats=True,
        )
        bare = await rooms.admit_device(
            session,
            ctx,
            account_id=client.id,
            login_id=str(claims["sid"]),
            room_id=room_id,
            device_id=None,
        )
    assert (admission.account.id, admission.login_id) == (client.id, claims["sid"])
    assert admission.state.room.id == room_id
    assert (admission.member.account_id, admission.member.role) == (client.id, "participant")
    assert admission.device is not None
    assert admission.device.id == client.device
    assert admission.admitted is False  # in the waiting room
    seats = {seat.account_id: seat for seat in admission.seats or []}
    assert set(seats) == {counselor.id, client.id}
    assert (seats[counselor.id].role, seats[counselor.id].admitted) == ("host", True)
    assert (seats[client.id].display_name, seats[client.id].admitted) == ("Client", False)
    assert set(seats[client.id].devices) == {client.device}
    assert (bare.device, bare.seats) == (None, None)


def test_the_errors_carry_the_protocol_close_codes() -> None:
    """PROTOCOL.md, "Close codes": 4001 token, 4003 forbidden, 4004 room not found, 4010 ended."""
    codes: dict[type[ConfideError], int] = {
        Unauthorized: 4001,
        NotFound: 4003,
        DeviceRevoked: 4003,
        ConsentRequired: 4003,
        OutsideTimeWindow: 4003,
        RoomLocked: 4003,
        SafetyCheckinRequired: 4003,
        JurisdictionMismatch: 4003,
        RoomNotFound: 4004,
        RoomEnded: 4010,
    }
    assert {error: int(error.close_code) for error in codes} == codes
