"""Key changes reach the account's rooms live: `device` `added`/`revoked` with the
device's public key and signing key, and `welcome` lists every device's keys."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.fixtures.identity import b64, identity_of, new_device, point
from tests.fixtures.server import open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice


async def devices_of(practice: Practice, person: Person) -> dict[str, dict[str, Any]]:
    response = await practice.http.get("/v1/devices", headers=person.auth)
    assert response.status_code == 200, response.text
    return {d["device_id"]: d for d in response.json()}


def shown(device: dict[str, Any]) -> dict[str, Any]:
    """A device as the socket shows it."""
    return {k: device[k] for k in ("device_id", "public_key", "signing_key")}


async def setting(practice: Practice) -> tuple[Person, Person, str, ClientConnection]:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=False)
    await practice.invite(counselor, room["id"], client)
    host = await open_socket(practice.base, room["id"], await practice.token(counselor, room["id"]))
    welcome = await recv(host)
    assert welcome["type"] == "welcome"
    (entry,) = [p for p in welcome["participants"] if p["account_id"] == client.id]
    registered = await devices_of(practice, client)
    assert entry["devices"] == [shown(d) for d in registered.values()]
    assert all(d["signing_key"] for d in entry["devices"])
    return counselor, client, room["id"], host


async def test_a_registered_device_is_announced_with_its_signing_key(practice: Practice) -> None:
    _, client, _, host = await setting(practice)
    device = await practice.add_device(client, "tablet")
    told = await recv_until(host, "device", event="added")
    assert told == {
        "type": "device",
        "event": "added",
        "account_id": client.id,
        "device": shown((await devices_of(practice, client))[device]),
    }
    await host.close()


async def test_a_revoked_device_is_announced_with_the_keys_it_had(practice: Practice) -> None:
    _, client, _, host = await setting(practice)
    before = (await devices_of(practice, client))[client.device]
    revoked = await practice.http.delete(f"/v1/devices/{client.device}", headers=client.auth)
    assert revoked.status_code == 204
    told = await recv_until(host, "device", event="revoked")
    assert told == {
        "type": "device",
        "event": "revoked",
        "account_id": client.id,
        "device": shown(before),
    }
    await host.close()


async def test_an_identity_reset_revokes_every_device_then_adds_the_new_one(
    practice: Practice,
) -> None:
    counselor, client, room_id, host = await setting(practice)
    await practice.add_device(client, "laptop")
    await recv_until(host, "device", event="added")
    old = await devices_of(practice, client)
    assert len(old) == 2

    identity = identity_of(client.id, generation=1)
    device = {"label": "new phone", **new_device(client.id, "AQID", identity)}
    body = {"identity_key": b64(point(identity)), "device": device}
    reset = await practice.http.post("/v1/me/identity/reset", json=body, headers=client.auth)
    assert reset.status_code == 201, reset.text

    told = [await recv_until(host, "device") for _ in range(3)]
    assert [(f["event"], f["account_id"]) for f in told] == [
        ("revoked", client.id),
        ("revoked", client.id),
        ("added", client.id),
    ]
    assert sorted((f["device"] for f in told[:2]), key=lambda d: d["device_id"]) == sorted(
        (shown(d) for d in old.values()), key=lambda d: d["device_id"]
    )
    assert told[2]["device"] == {
        "device_id": device["device_id"],
        "public_key": "AQID",
        "signing_key": device["signing_key"],
    }
    await host.close()

    # A socket opened now is welcomed with the new device alone.
    again = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    welcome = await recv(again)
    (entry,) = [p for p in welcome["participants"] if p["account_id"] == client.id]
    assert entry["devices"] == [told[2]["device"]]
    await again.close()
