"""A Welcome goes only to the devices whose KeyPackageRefs it lists, as handed out in
the room (`welcome_refused` otherwise); through the core, and on a real server with the
in-process broker and with Redis, with a real ts-mls Welcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from app.core import mls
from app.core.config import Settings
from app.relay.room import WELCOME_REFUSED
from tests.fixtures.redis_cluster import url_of
from tests.fixtures.redis_server import delete_prefix, unique_prefix
from tests.fixtures.server import open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice
from tests.relay.roomworld import World
from tests.relay.test_mls_epoch import VECTORS, b64
from tests.relay.test_replay import send
from tests.relay.test_room import ROOM, pair, people
from tests.relay.test_room import send as send_frame

WELCOME = bytes.fromhex(VECTORS["welcome_bob_carol"]["message"])
BOB_REF = bytes.fromhex(VECTORS["key_package_bob"]["ref"])
CAROL_REF = bytes.fromhex(VECTORS["key_package_carol"]["ref"])


def test_the_vector_welcome_lists_bob_and_carol() -> None:
    header = mls.parse(WELCOME)
    assert isinstance(header, mls.WelcomeHeader)
    assert header.new_members == (BOB_REF, CAROL_REF)


def test_a_welcome_reaches_only_the_devices_of_its_refs() -> None:
    world = World()
    host, ann = pair(world)
    bob = world.join(ROOM, "bob", "bob-1", people(host=True, ann=True, bob=True))
    wes = world.join(ROOM, "wes", "wes-1", people(host=True, ann=True, bob=True, wes=True))
    world.claims[(ROOM, BOB_REF)] = "ann-1"
    world.claims[(ROOM, CAROL_REF)] = "bob-1"
    world.say(host, send_frame("w1", b64(WELCOME)))
    assert host.of("ack") == [{"type": "ack", "id": "w1", "seq": 1}]
    assert [f["ciphertext"] for f in ann.of("message")] == [b64(WELCOME)]
    assert [f["ciphertext"] for f in bob.of("message")] == [b64(WELCOME)]
    assert wes.of("message") == []
    assert host.of("message") == []


def test_a_welcome_with_a_ref_not_handed_out_in_the_room_is_refused() -> None:
    world = World()
    host, ann = pair(world)
    world.claims[(ROOM, BOB_REF)] = "ann-1"
    world.claims[("room-2", CAROL_REF)] = "ann-1"  # handed out, but in another room
    world.say(host, send_frame("w1", b64(WELCOME)))
    refused = {"type": "error", "code": "welcome_refused", "detail": WELCOME_REFUSED, "id": "w1"}
    assert host.of("error") == [refused]
    assert host.of("ack") == []
    assert world.published == []
    assert ann.of("message") == []
    # To a device no longer in the room: refused too.
    world.claims[(ROOM, CAROL_REF)] = "gone-1"
    world.say(host, send_frame("w2", b64(WELCOME)))
    assert host.of("error")[-1]["code"] == "welcome_refused"
    assert world.published == []
    # The database could not say: send again.
    world.claims[(ROOM, CAROL_REF)] = "host-1"
    world.broker_down = True
    world.say(host, send_frame("w3", b64(WELCOME)))
    assert host.of("error")[-1]["code"] == "unavailable"
    world.say(host, send_frame("w3", b64(WELCOME)))
    assert host.of("ack") == [{"type": "ack", "id": "w3", "seq": 1}]
    assert [f["id"] for f in ann.of("message")] == ["w3"]
    assert host.open


@pytest.fixture(params=["memory", "redis", "cluster"])
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Settings]:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "database_url": SecretStr(database_url)}
    if request.param == "memory":
        yield Settings(**base)
        return
    url, prefix = await url_of(request, request.param), unique_prefix()
    yield Settings(**base, broker_url=url, broker_prefix=prefix)
    await delete_prefix(url, prefix)


async def joined(practice: Practice, person: Person, room_id: str, device: str) -> ClientConnection:
    ws = await open_socket(practice.base, room_id, await practice.token(person, room_id, device))
    assert (await recv(ws))["type"] == "welcome"
    return ws


async def test_a_real_welcome_on_a_real_server(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    phone, laptop = client.device, await practice.add_device(client, "laptop")
    for device, name in ((phone, "key_package_bob"), (laptop, "key_package_carol")):
        body = {"key_packages": [b64(bytes.fromhex(VECTORS[name]["message"]))]}
        uploaded = await practice.http.post(
            f"/v1/devices/{device}/key-packages", json=body, headers=client.auth
        )
        assert uploaded.status_code == 200, uploaded.text
    room = await practice.room(counselor, waiting_room=False)
    other = await practice.room(counselor, waiting_room=False)
    for room_id in (room["id"], other["id"]):
        await practice.invite(counselor, room_id, client)
    claimed = await practice.http.post(
        f"/v1/rooms/{room['id']}/key-packages/claim",
        json={"device_ids": [phone, laptop]},
        headers=counselor.auth,
    )
    assert claimed.status_code == 200, claimed.text

    host = await joined(practice, counselor, room["id"], counselor.device)
    on_phone = await joined(practice, client, room["id"], phone)
    on_laptop = await joined(practice, client, room["id"], laptop)
    seq = await send(host, "w", ciphertext=b64(WELCOME))
    for ws in (on_phone, on_laptop):
        message = await recv_until(ws, "message", id="w")
        assert (message["seq"], message["ciphertext"]) == (seq, b64(WELCOME))

    # The same Welcome in a room where nothing was handed out: refused, stored nowhere.
    elsewhere = await joined(practice, counselor, other["id"], counselor.device)
    await elsewhere.send(json.dumps({"type": "send", "id": "x", "ciphertext": b64(WELCOME)}))
    error = await recv_until(elsewhere, "error", id="x")
    assert (error["code"], error["detail"]) == ("welcome_refused", WELCOME_REFUSED)
    assert await practice.live_hub.broker.latest_seq(other["id"]) == 0
    for ws in (host, on_phone, on_laptop, elsewhere):
        await ws.close()
