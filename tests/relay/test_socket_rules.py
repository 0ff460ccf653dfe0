"""Every refusal and close code of the room socket, on a real server."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from websockets.asyncio.client import ClientConnection

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short deadline for the auth frame, so that missing it costs no five seconds
    here; replay stores large enough that no test here meets a sender's quota."""
    return settings.model_copy(
        update={
            "ws_auth_timeout": 0.5,
            "replay_max_bytes": 1 << 30,
            "replay_sender_max_bytes": 1 << 30,
        }
    )


async def pair(practice: Practice, *, waiting_room: bool = False) -> tuple[Person, Person, str]:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=waiting_room)
    await practice.invite(counselor, room["id"], client)
    return counselor, client, room["id"]


async def joined(
    practice: Practice, person: Person, room_id: str, device: str | None = None
) -> ClientConnection:
    ws = await open_socket(practice.base, room_id, await practice.token(person, room_id, device))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    return ws


async def test_a_room_token_opens_one_socket(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    token = await practice.token(client, room_id)
    first = await open_socket(practice.base, room_id, token)
    assert (await recv(first))["type"] == "welcome"
    second = await open_socket(practice.base, room_id, token)
    assert await closed_with(second) == 4001
    await first.close()


async def test_token_for_another_room_is_refused(practice: Practice) -> None:
    counselor, _client, room_id = await pair(practice)
    other = await practice.room(counselor)
    token = await practice.token(counselor, other["id"])
    ws = await open_socket(practice.base, room_id, token)
    assert await closed_with(ws) == 4001


async def test_an_access_token_is_not_a_room_token(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await open_socket(practice.base, room_id, client.user.access_token)
    assert await closed_with(ws) == 4001
    forged = practice.context.tokens.issue(
        audience=ACCESS_AUDIENCE,
        typ=ACCESS_TYP,
        subject=client.id,
        ttl=60,
        claims={"room": room_id, "device": client.device, "role": "participant", "sid": "x"},
    )
    ws = await open_socket(practice.base, room_id, forged.token)
    assert await closed_with(ws) == 4001


async def test_garbage_token_closes_4001(practice: Practice) -> None:
    _, _, room_id = await pair(practice)
    for token in ("nonsense", "a.b.c", "x" * 3000):
        ws = await open_socket(practice.base, room_id, token)
        assert await closed_with(ws) == 4001


async def test_no_auth_frame_within_five_seconds_closes_4001(practice: Practice) -> None:
    _, _, room_id = await pair(practice)
    ws = await open_socket(practice.base, room_id, None)
    assert await closed_with(ws, timeout=8) == 4001


async def test_first_frame_must_be_auth(practice: Practice) -> None:
    _, _, room_id = await pair(practice)
    ws = await open_socket(practice.base, room_id, None)
    await ws.send(json.dumps({"type": "ping"}))
    assert await closed_with(ws) == 4001


async def test_a_token_in_the_query_string_is_never_accepted(practice: Practice) -> None:
    from websockets.asyncio.client import connect

    _, client, room_id = await pair(practice)
    token = await practice.token(client, room_id)
    url = practice.base.replace("http://", "ws://") + f"/v1/rooms/{room_id}/ws?token={token}"
    ws = await connect(url, subprotocols=["confide.v1"])  # type: ignore[list-item]
    assert await closed_with(ws) == 4001
    # The token was not spent by that attempt's refusal path either way: a real
    # client with the same token over the subprotocol still gets in.
    good = await open_socket(practice.base, room_id, token)
    assert (await recv(good))["type"] == "welcome"
    await good.close()


async def test_origin_must_be_allowed(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await open_socket(
        practice.base, room_id, await practice.token(client, room_id), origin="https://evil.example"
    )
    assert await closed_with(ws) == 4003


async def test_the_servers_own_origin_is_accepted_without_being_listed(
    practice: Practice,
) -> None:
    """The web client the server serves at /app/ opens its socket from the server's origin."""
    assert practice.base not in practice.context.settings.allowed_origins
    _, client, room_id = await pair(practice)
    ws = await open_socket(
        practice.base, room_id, await practice.token(client, room_id), origin=practice.base
    )
    assert (await recv(ws))["type"] == "welcome"
    await ws.close()


async def test_an_origin_on_another_port_of_the_same_host_is_refused(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    host, port = practice.base.removeprefix("http://").rsplit(":", 1)
    for origin in (f"http://{host}:{int(port) + 1}", f"https://{host}:{port}", f"http://{host}"):
        ws = await open_socket(
            practice.base, room_id, await practice.token(client, room_id), origin=origin
        )
        assert await closed_with(ws) == 4003, origin


async def test_a_socket_without_origin_is_accepted(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    assert (await recv(ws))["type"] == "welcome"
    await ws.close()


async def test_subprotocol_is_required(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    token = await practice.token(client, room_id)
    ws = await open_socket(practice.base, room_id, token, subprotocols=[f"bearer.{token}"])
    assert await closed_with(ws) == 1002


async def test_non_participant_is_forbidden(practice: Practice) -> None:
    counselor, _, room_id = await pair(practice)
    stranger = await practice.client("Stranger")
    refused = await practice.token_response(stranger, room_id)
    assert refused.status_code == 404
    # A token for a stranger's own room does not open this one.
    own = await practice.room(counselor)
    await practice.invite(counselor, own["id"], stranger)
    token = await practice.token(stranger, own["id"])
    ws = await open_socket(practice.base, room_id, token)
    assert await closed_with(ws) == 4001


async def test_room_token_needs_own_device(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice)
    refused = await practice.token_response(client, room_id, counselor.device)
    assert refused.status_code == 404
    assert refused.json()["code"] == "not_found"


async def test_consent_is_required_before_the_first_session(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client(consent=False)
    room = await practice.room(counselor, kind="group")
    await practice.invite(counselor, room["id"], client)
    refused = await practice.token_response(client, room["id"])
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "consent_required"
    assert sorted(body["missing"]) == sorted(practice.documents.values())


async def test_withdrawing_consent_closes_the_socket_and_stops_tokens(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await joined(practice, client, room_id)
    withdrawn = await practice.http.delete(
        f"/v1/me/consents/{practice.documents['telehealth']}", headers=client.auth
    )
    assert withdrawn.status_code == 204
    assert await closed_with(ws) == 4003
    refused = await practice.token_response(client, room_id)
    assert refused.json()["missing"] == [practice.documents["telehealth"]]


async def test_a_token_issued_before_consent_withdrawal_is_refused(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    token = await practice.token(client, room_id)
    await practice.http.delete(
        f"/v1/me/consents/{practice.documents['informed_consent']}", headers=client.auth
    )
    ws = await open_socket(practice.base, room_id, token)
    assert await closed_with(ws) == 4003


async def test_removal_closes_the_socket_and_kills_issued_tokens(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice)
    host_ws = await joined(practice, counselor, room_id)
    client_ws = await joined(practice, client, room_id)
    spare = await practice.token(client, room_id)
    removed = await practice.http.delete(
        f"/v1/rooms/{room_id}/participants/{client.id}", headers=counselor.auth
    )
    assert removed.status_code == 204
    assert await closed_with(client_ws) == 4003
    gone = await recv_until(host_ws, "presence", event="removed")
    assert gone["account_id"] == client.id
    ws = await open_socket(practice.base, room_id, spare)
    assert await closed_with(ws) == 4003
    assert (await practice.token_response(client, room_id)).status_code == 404
    await host_ws.close()


async def test_revoking_a_device_closes_its_socket_and_tells_the_room(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice)
    host_ws = await joined(practice, counselor, room_id)
    client_ws = await joined(practice, client, room_id)
    spare = await practice.token(client, room_id)
    revoked = await practice.http.delete(f"/v1/devices/{client.device}", headers=client.auth)
    assert revoked.status_code == 204
    assert await closed_with(client_ws) == 4003
    told = await recv_until(host_ws, "device", event="revoked")
    assert told["account_id"] == client.id
    assert told["device"]["device_id"] == client.device
    ws = await open_socket(practice.base, room_id, spare)
    assert await closed_with(ws) == 4003
    await host_ws.close()


async def test_a_new_device_is_announced_to_the_room(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice)
    host_ws = await joined(practice, counselor, room_id)
    device = await practice.add_device(client, "tablet")
    told = await recv_until(host_ws, "device", event="added")
    assert told["account_id"] == client.id
    assert told["device"]["device_id"] == device
    await host_ws.close()


async def test_logout_closes_the_socket_and_kills_issued_tokens(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await joined(practice, client, room_id)
    spare = await practice.token(client, room_id)
    out = await practice.http.post("/v1/auth/logout", headers=client.auth)
    assert out.status_code == 204
    assert await closed_with(ws) == 4001
    late = await open_socket(practice.base, room_id, spare)
    assert await closed_with(late) == 4001


async def test_the_same_device_again_replaces_the_first_socket(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    first = await joined(practice, client, room_id)
    second = await joined(practice, client, room_id)
    assert await closed_with(first) == 4011
    await second.send(json.dumps({"type": "ping"}))
    assert (await recv_until(second, "pong"))["type"] == "pong"
    await second.close()


async def test_a_malformed_text_frame_gets_an_error_and_the_socket_stays(
    practice: Practice,
) -> None:
    _, client, room_id = await pair(practice)
    ws = await joined(practice, client, room_id)
    for bad in ("not json", "[]", '{"type":"nope"}', '{"type":"send","id":"x"}', '{"id":1}'):
        await ws.send(bad)
        error = await recv_until(ws, "error")
        assert error["code"] == "validation_error"
    big = base64.urlsafe_b64encode(b"\0" * (64 * 1024 + 1)).decode()
    await ws.send(json.dumps({"type": "send", "id": "big", "ciphertext": big}))
    too_big = await recv_until(ws, "error")
    assert too_big["code"] == "payload_too_large"
    assert too_big["id"] == "big"
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv_until(ws, "pong"))["type"] == "pong"
    await ws.close()


async def test_a_binary_frame_closes_1008(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await joined(practice, client, room_id)
    await ws.send(b"\x00\x01")
    assert await closed_with(ws) == 1008


async def test_a_frame_over_256_kib_closes_1009(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await joined(practice, client, room_id)
    await ws.send(json.dumps({"type": "ping", "pad": "x" * (256 * 1024)}))
    assert await closed_with(ws) == 1009


async def test_rate_limit_then_1008(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    ws = await joined(practice, client, room_id)
    burst = practice.context.settings.ws_rate_per_s * 2
    for _ in range(burst + 20):
        await ws.send('{"type":"ping"}')
    error = await recv_until(ws, "error", timeout=10)
    assert error["code"] == "rate_limited"
    for _ in range(200):
        await ws.send('{"type":"ping"}')
    assert await closed_with(ws) == 1008


async def test_ended_room_closes_4010_and_refuses_tokens(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice)
    token = await practice.token(client, room_id)
    await practice.http.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
    ws = await open_socket(practice.base, room_id, token)
    assert await closed_with(ws) == 4010


async def test_unknown_room_closes_4004(practice: Practice) -> None:
    _, client, room_id = await pair(practice)
    token = await practice.token(client, room_id)
    async with practice.context.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("DELETE FROM rooms WHERE id = :id"), {"id": room_id})
    ws = await open_socket(practice.base, room_id, token)
    assert await closed_with(ws) == 4004


async def test_locked_room_refuses_the_unadmitted(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice, waiting_room=True)
    host_ws = await joined(practice, counselor, room_id)
    locked = await practice.http.post(f"/v1/rooms/{room_id}/lock", headers=counselor.auth)
    assert locked.json()["locked"] is True
    assert (await recv_until(host_ws, "room"))["event"] == "locked"
    refused = await practice.token_response(client, room_id)
    assert refused.status_code == 403
    assert refused.json()["code"] == "room_locked"
    await practice.admit(counselor, room_id, client)
    assert (await practice.token_response(client, room_id)).status_code == 200
    await host_ws.close()


async def test_outside_the_time_window(practice: Practice) -> None:
    from datetime import timedelta

    counselor = await practice.counselor()
    client = await practice.client()
    starts = practice.context.clock.now() + timedelta(hours=2)
    room = await practice.room(
        counselor,
        starts_at=starts.isoformat(),
        ends_at=(starts + timedelta(hours=1)).isoformat(),
    )
    assert room["status"] == "scheduled"
    await practice.invite(counselor, room["id"], client)
    refused = await practice.token_response(client, room["id"])
    assert refused.status_code == 403
    assert refused.json()["code"] == "outside_time_window"


async def test_ending_notice_then_end_by_the_clock(practice: Practice, clock: FrozenClock) -> None:
    from datetime import timedelta

    counselor = await practice.counselor()
    ends = practice.context.clock.now() + timedelta(seconds=2)
    room = await practice.room(counselor, ends_at=ends.isoformat())
    ws = await joined(practice, counselor, room["id"])
    ending = await recv_until(ws, "room", event="ending")
    assert ending["ends_at"].startswith(ends.strftime("%Y-%m-%dT%H:%M:%S"))
    clock.advance(2)
    practice.live_hub.tick()
    assert await closed_with(ws, timeout=10) == 4010


async def test_slow_consumer_is_closed_1013(practice: Practice) -> None:
    from websockets.asyncio.client import connect

    # The sender's own limits are not what this test is about: past its burst
    # the sender would get `rate_limited`, and past its share of the replay
    # store `quota_exceeded` (raised for this module, see `settings`), instead
    # of acks, however fast the slow reader's queue fills (on a loaded machine
    # it takes more frames to fill).
    assert practice.ctx is not None  # an in-process server
    practice.ctx.settings = practice.ctx.settings.model_copy(
        update={
            "ws_rate_per_s": 10_000,
        }
    )
    counselor, client, room_id = await pair(practice)
    host_ws = await joined(practice, counselor, room_id)
    acks = 0
    refused: list[str] = []

    async def drain_acks() -> None:
        nonlocal acks
        async for raw in host_ws:
            acks += '"ack"' in str(raw)
            if '"error"' in str(raw):
                refused.append(str(raw)[:200])

    draining = asyncio.create_task(drain_acks())
    # The client reads nothing: its library stops reading from the socket once
    # one frame waits, so the server's writes back up.
    token = await practice.token(client, room_id)
    url = practice.base.replace("http://", "ws://") + f"/v1/rooms/{room_id}/ws"
    slow = await connect(
        url,
        subprotocols=["confide.v1", f"bearer.{token}"],  # type: ignore[list-item]
        max_queue=1,
        compression=None,
    )
    async with asyncio.timeout(30):
        while practice_connections(practice, room_id, client.device) == 0:
            await asyncio.sleep(0.01)
    payload = base64.urlsafe_b64encode(b"x" * 60_000).decode()
    for i in range(400):
        await host_ws.send(json.dumps({"type": "send", "id": f"m{i}", "ciphertext": payload}))
        if practice_connections(practice, room_id, client.device) == 0:
            break
    assert practice_connections(practice, room_id, client.device) == 0
    # The sender was never slowed down or refused by the slow reader. (The
    # bound only ends a failing run: on a loaded machine the acks of some
    # megabytes of frames can take seconds to arrive.)
    async with asyncio.timeout(60):
        while acks < i:
            await asyncio.sleep(0.01)

    assert acks >= i
    assert refused == []
    # Once the slow client reads again, it finds the close behind what was in flight.
    assert await closed_with(slow, timeout=20) == 1013
    draining.cancel()
    await host_ws.close()


def practice_connections(practice: Practice, room_id: str, device: str) -> int:
    room = practice.live_hub.rooms.get(room_id)
    if room is None:
        return 0
    conn = room.connections.get(device)
    return 0 if conn is None or conn.close_code is not None else 1


@pytest.mark.parametrize("path", ["/v1/rooms/x/ws"])
async def test_plain_http_to_the_socket_path_is_refused(practice: Practice, path: str) -> None:
    response = await practice.http.get(path)
    assert response.status_code in (400, 404, 426)
    assert response.status_code < 500


async def test_extending_a_running_session_sends_ending_again_and_keeps_it_open(
    practice: Practice, clock: FrozenClock
) -> None:
    from datetime import timedelta

    counselor, client, room_id = await pair(practice)
    ends = practice.context.clock.now() + timedelta(seconds=3)
    patched = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"ends_at": ends.isoformat()}, headers=counselor.auth
    )
    assert patched.status_code == 200
    ws = await joined(practice, client, room_id)
    await recv_until(ws, "room", event="ending")
    later = ends + timedelta(minutes=4)
    extended = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"ends_at": later.isoformat()}, headers=counselor.auth
    )
    assert extended.status_code == 200
    again = await recv_until(ws, "room", event="ending")
    assert again["ends_at"].startswith(later.strftime("%Y-%m-%dT%H:%M:%S"))
    # The old end passes and the socket stays open.
    clock.advance(4)
    practice.live_hub.tick()
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv_until(ws, "pong"))["type"] == "pong"
    await ws.close()


async def test_presence_online_and_offline(practice: Practice) -> None:
    counselor, client, room_id = await pair(practice)
    host = await joined(practice, counselor, room_id)
    guest = await joined(practice, client, room_id)
    online = await recv_until(host, "presence", event="online")
    assert (online["account_id"], online["device_id"]) == (client.id, client.device)
    await guest.close()
    offline = await recv_until(host, "presence", event="offline")
    assert (offline["account_id"], offline["device_id"]) == (client.id, client.device)
    again = await joined(practice, client, room_id)
    welcome_seen = await recv_until(host, "presence", event="online")
    assert welcome_seen["account_id"] == client.id
    await again.close()
    await host.close()
