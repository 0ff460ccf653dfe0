"""Erasure on a real server: the erased account's sockets close, the room is told."""

from __future__ import annotations

from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Practice


async def test_erasing_an_account_closes_its_socket_and_revokes_its_devices(
    practice: Practice,
) -> None:
    counselor = await practice.counselor("Dr Stays")
    client = await practice.client("Leaving Client")
    room = await practice.room(counselor, title="Last session")
    room_id = room["id"]
    await practice.invite(counselor, room_id, client)
    await practice.admit(counselor, room_id, client)

    host = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    assert (await recv(host))["type"] == "welcome"
    guest = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    assert (await recv(guest))["state"] == "admitted"
    await recv_until(host, "presence", event="online", account_id=client.id)
    unused = await practice.token(client, room_id)  # issued before the erasure

    erased = await practice.http.delete("/v1/me", headers=client.auth)
    assert erased.status_code == 204, erased.text

    assert await closed_with(guest) == 4001
    told = await recv_until(host, "device", event="revoked", account_id=client.id)
    assert told["device"]["device_id"] == client.device
    await recv_until(host, "presence", event="removed", account_id=client.id)
    refused = await open_socket(practice.base, room_id, unused)
    assert await closed_with(refused) == 4001

    # The host joins again: the erased participant has left the room.
    again = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    welcome = await recv(again)
    assert welcome["type"] == "welcome"
    assert [p["account_id"] for p in welcome["participants"]] == [counselor.id]
    still = await practice.token_response(client, room_id)
    assert still.status_code == 401
