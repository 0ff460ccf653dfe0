"""The whole session story on a real server with real WebSocket clients."""

from __future__ import annotations

import json

from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Practice


async def test_counselor_and_client_meet_through_the_waiting_room(practice: Practice) -> None:
    counselor = await practice.counselor("Dr Able")
    client = await practice.client("Casey")
    room = await practice.room(counselor, title="Intake")
    await practice.invite(counselor, room["id"], client)

    host_ws = await open_socket(
        practice.base, room["id"], await practice.token(counselor, room["id"])
    )
    assert host_ws.subprotocol == "confide.v1"
    welcome = await recv(host_ws)
    assert welcome["type"] == "welcome"
    assert welcome["state"] == "admitted"
    assert welcome["you"] == {
        "account_id": counselor.id,
        "device_id": counselor.device,
        "role": "host",
    }

    client_ws = await open_socket(
        practice.base, room["id"], await practice.token(client, room["id"]), via="frame"
    )
    waiting = await recv(client_ws)
    assert waiting["type"] == "welcome"
    assert waiting["state"] == "waiting"
    names = {p["account_id"]: p["display_name"] for p in waiting["participants"]}
    assert names == {counselor.id: "Dr Able", client.id: "Casey"}
    seen = await recv_until(host_ws, "presence", event="waiting")
    assert seen["account_id"] == client.id

    await client_ws.send(json.dumps({"type": "send", "id": "m0", "ciphertext": "AAAA"}))
    refused = await recv_until(client_ws, "error")
    assert refused["code"] == "not_admitted"
    assert refused["id"] == "m0"

    await practice.admit(counselor, room["id"], client)
    await recv_until(client_ws, "presence", event="admitted", account_id=client.id)

    await host_ws.send(json.dumps({"type": "send", "id": "h1", "ciphertext": "aGVsbG8"}))
    ack = await recv_until(host_ws, "ack")
    assert ack == {"type": "ack", "id": "h1", "seq": 1}
    message = await recv_until(client_ws, "message")
    assert message["seq"] == 1
    assert message["id"] == "h1"
    assert message["ciphertext"] == "aGVsbG8"
    assert message["sender"] == {"account_id": counselor.id, "device_id": counselor.device}

    await client_ws.send(json.dumps({"type": "send", "id": "c1", "ciphertext": "aGk"}))
    assert (await recv_until(client_ws, "ack"))["seq"] == 2
    back = await recv_until(host_ws, "message")
    assert back["seq"] == 2
    assert back["ciphertext"] == "aGk"

    ended = await practice.http.post(f"/v1/rooms/{room['id']}/end", headers=counselor.auth)
    assert ended.status_code == 200
    assert ended.json()["status"] == "ended"
    assert await closed_with(client_ws) == 4010
    assert await closed_with(host_ws) == 4010
    again = await practice.token_response(client, room["id"])
    assert again.status_code == 409
    assert again.json()["code"] == "room_ended"
