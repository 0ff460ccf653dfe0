"""A room's MLS group id: derived from the room id, shown in the room's REST view, and
the only group whose commits the room relays (`wrong_group`)."""

from __future__ import annotations

import hashlib
import json

from app.core import mls
from tests.fixtures.mls import private_message
from tests.fixtures.server import recv_until
from tests.relay.conftest import Practice
from tests.relay.roomworld import World
from tests.relay.test_mls_epoch import GROUP, VECTORS, application, b64, commit
from tests.relay.test_replay import joined, send
from tests.relay.test_room import ROOM, pair
from tests.relay.test_room import send as send_frame

DETAIL = "a commit for another MLS group than this room's"


def test_the_group_id_is_the_ref_hash_of_a_label_and_the_room_id() -> None:
    room_id = "0b6f0c3e-5f0a-4f3e-9a55-7d1c2b3a4e5f"
    label, value = b"Confide MLS group v1", room_id.encode()
    expected = hashlib.sha256(bytes([len(label)]) + label + bytes([len(value)]) + value)
    assert mls.room_group_id(room_id) == expected.digest()
    assert len(mls.room_group_id(room_id)) == 32
    assert mls.room_group_id(room_id) == mls.room_group_id(room_id)
    assert mls.room_group_id(room_id) != mls.room_group_id(room_id.replace("0b", "0c", 1))


def test_a_commit_for_another_group_is_refused_and_stored_nowhere() -> None:
    world = World()
    host, ann = pair(world)
    ts_mls_commit = b64(bytes.fromhex(VECTORS["commit_private_epoch0"]["message"]))
    world.say(host, send_frame("p", commit(0, group=b"another room")))
    world.say(host, send_frame("q", commit(0, public=True, group=mls.room_group_id("room-2"))))
    world.say(host, send_frame("t", ts_mls_commit))
    assert host.of("error") == [
        {"type": "error", "code": "wrong_group", "detail": DETAIL, "id": cid}
        for cid in ("p", "q", "t")
    ]
    assert world.published == []
    assert ann.of("message") == []
    assert host.open
    # The epoch did not move: the room's own commit for epoch 0 is taken.
    world.say(host, send_frame("c0", commit(0)))
    assert host.of("ack") == [{"type": "ack", "id": "c0", "seq": 1}]
    assert [f["id"] for f in ann.of("message")] == ["c0"]


def test_only_commits_are_held_to_the_group() -> None:
    world = World()
    host, ann = pair(world)
    other = b64(private_message(b"elsewhere", 3, 1, [b"", b"s", b"c"]))
    world.say(host, send_frame("a", other))
    world.say(host, send_frame("b", application(0)))
    assert [f["id"] for f in ann.of("message")] == ["a", "b"]
    assert host.of("error") == []
    assert mls.room_group_id(ROOM) == GROUP


async def test_the_room_view_gives_the_group_and_the_socket_holds_commits_to_it(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    room = await practice.room(counselor, waiting_room=False)
    assert room["mls_group_id"] == b64(mls.room_group_id(room["id"]))
    seen = await practice.http.get(f"/v1/rooms/{room['id']}", headers=counselor.auth)
    assert seen.status_code == 200, seen.text
    assert seen.json()["mls_group_id"] == room["mls_group_id"]

    ws = await joined(practice, counselor, room["id"])
    group = mls.room_group_id(room["id"])
    wrong = b64(private_message(b"not this room", 0, 3, [b"", b"s", b"c"]))
    await ws.send(json.dumps({"type": "send", "id": "w", "ciphertext": wrong}))
    error = await recv_until(ws, "error", id="w")
    assert (error["code"], error["detail"]) == ("wrong_group", DETAIL)
    right = b64(private_message(group, 0, 3, [b"", b"s", b"c"]))
    assert await send(ws, "r", ciphertext=right) == 1
    await ws.close()
