"""What `resume` gives back, on a real server, with the in-process broker and with Redis.

Issue 9: a late joiner reads nothing from before its admission; the replay
store is bounded, and a resume from before what it keeps says where it starts;
a device away for a backlog many times its send queue catches up, in order,
without being closed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from app.core.config import Settings
from app.relay import hub
from tests.fixtures.redis_cluster import url_of
from tests.fixtures.redis_server import delete_prefix, unique_prefix
from tests.fixtures.server import open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings a test changes (parametrize `overrides` to change them)."""
    return {}


@pytest.fixture(params=["memory", "redis", "cluster"])
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, overrides: dict[str, Any]
) -> AsyncIterator[Settings]:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": SecretStr(database_url),
        **overrides,
    }
    if request.param == "memory":
        yield Settings(**base)
        return
    url, prefix = await url_of(request, request.param), unique_prefix()
    yield Settings(**base, broker_url=url, broker_prefix=prefix)
    await delete_prefix(url, prefix)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def joined(practice: Practice, person: Person, room_id: str) -> ClientConnection:
    ws = await open_socket(practice.base, room_id, await practice.token(person, room_id))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    return ws


async def send(ws: ClientConnection, cid: str, **body: Any) -> int:
    await ws.send(json.dumps({"type": "send", "id": cid, **body}))
    ack = await recv_until(ws, "ack", id=cid)
    seq: int = ack["seq"]
    return seq


async def resume(ws: ClientConnection, after: int = 0) -> list[dict[str, Any]]:
    """Every frame the resume gives up to `resumed`, that one included (presence left out)."""
    await ws.send(json.dumps({"type": "resume", "after": after}))
    frames = []
    while True:
        frame = await recv(ws, timeout=30)
        if frame["type"] != "presence":
            frames.append(frame)
        if frame["type"] == "resumed":
            return frames


def shape(frames: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for frame in frames:
        if frame["type"] == "message":
            out.append(("message", frame["id"]))
        elif frame["type"] == "replay_truncated":
            out.append(("replay_truncated", frame["earliest"]))
        else:
            out.append((frame["type"], frame.get("seq")))
    return out


# -- 1. a late joiner reads nothing from before its admission ------------------------


async def test_a_participant_added_later_gets_nothing_sent_before(
    practice: Practice, settings: Settings
) -> None:
    counselor = await practice.counselor()
    early, late = await practice.client("Early"), await practice.client("Late")
    room_id = (await practice.room(counselor, kind="group", waiting_room=False))["id"]
    await practice.invite(counselor, room_id, early)
    host = await joined(practice, counselor, room_id)
    assert await send(host, "before-1", ciphertext=b64(b"said before")) == 1
    assert await send(host, "before-2", recipients={early.device: b64(b"for early")}) == 2

    await practice.invite(counselor, room_id, late)  # admitted at once: no waiting room
    assert await send(host, "after-1", ciphertext=b64(b"said after")) == 3
    ws = await joined(practice, late, room_id)
    # Asking for everything, it is told where its history starts, and gets only that.
    assert shape(await resume(ws, 0)) == [
        ("replay_truncated", 3),
        ("message", "after-1"),
        ("resumed", 3),
    ]
    assert await send(host, "after-2", ciphertext=b64(b"live")) == 4
    assert (await recv_until(ws, "message"))["id"] == "after-2"
    await ws.close()
    # On a new socket, the same.
    again = await joined(practice, late, room_id)
    assert shape(await resume(again, 0)) == [
        ("replay_truncated", 3),
        ("message", "after-1"),
        ("message", "after-2"),
        ("resumed", 4),
    ]
    # The participant who was there from the start still gets it all.
    first = await joined(practice, early, room_id)
    assert [f["id"] for f in await resume(first, 0) if f["type"] == "message"] == [
        "before-1",
        "before-2",
        "after-1",
        "after-2",
    ]
    for ws in (again, first, host):
        await ws.close()


async def test_a_device_in_the_waiting_room_gets_nothing_until_admitted_and_nothing_before(
    practice: Practice, settings: Settings
) -> None:
    counselor, client = await practice.counselor(), await practice.client()
    room_id = (await practice.room(counselor))["id"]  # with a waiting room
    host = await joined(practice, counselor, room_id)
    assert await send(host, "before-invite", ciphertext=b64(b"1")) == 1
    await practice.invite(counselor, room_id, client)
    ws = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    assert (await recv(ws))["state"] == "waiting"
    await recv_until(host, "presence", event="waiting")
    assert await send(host, "while-waiting", ciphertext=b64(b"2")) == 2
    assert await send(host, "to-the-waiting", recipients={client.device: b64(b"3")}) == 3
    # A waiting device may not resume, and is sent nothing live.
    await ws.send(json.dumps({"type": "resume", "after": 0}))
    refused = await recv(ws)
    assert refused["type"] == "error"
    assert refused["code"] == "not_admitted"
    await ws.send(json.dumps({"type": "ping"}))
    assert await recv(ws) == {"type": "pong"}  # nothing came in between

    await practice.admit(counselor, room_id, client)
    await recv_until(ws, "presence", event="admitted", account_id=client.id)
    assert await send(host, "admitted", ciphertext=b64(b"4")) == 4
    assert (await recv_until(ws, "message"))["id"] == "admitted"
    assert shape(await resume(ws, 0)) == [("replay_truncated", 4), ("resumed", 4)]
    for socket in (ws, host):
        await socket.close()


# -- 4. the replay store is bounded ---------------------------------------------------


@pytest.mark.parametrize("overrides", [{"replay_max_frames": 100}])
async def test_the_store_keeps_its_cap_and_a_resume_from_before_says_where_it_starts(
    practice: Practice, settings: Settings
) -> None:
    counselor, client = await practice.counselor(), await practice.client()
    room_id = (await practice.room(counselor, waiting_room=False))["id"]
    await practice.invite(counselor, room_id, client)
    host = await joined(practice, counselor, room_id)
    for i in range(130):
        await host.send(json.dumps({"type": "send", "id": f"m{i}", "ciphertext": b64(b"x")}))
    await recv_until(host, "ack", id="m129")
    ws = await joined(practice, client, room_id)
    frames = await resume(ws, 0)
    assert shape(frames) == [
        ("replay_truncated", 31),
        *(("message", f"m{i}") for i in range(30, 130)),
        ("resumed", 130),
    ]
    # From inside what is kept, on a new socket: no notice.
    await ws.close()
    ws = await joined(practice, client, room_id)
    assert shape(await resume(ws, 120)) == [
        *(("message", f"m{i}") for i in range(120, 130)),
        ("resumed", 130),
    ]
    for socket in (ws, host):
        await socket.close()


@pytest.mark.parametrize("overrides", [{"replay_sender_max_bytes": 1024 * 1024}])
async def test_a_sender_past_its_quota_is_refused_and_the_others_are_not(
    practice: Practice, settings: Settings
) -> None:
    counselor, client = await practice.counselor(), await practice.client()
    room_id = (await practice.room(counselor, waiting_room=False))["id"]
    await practice.invite(counselor, room_id, client)
    guest = await joined(practice, client, room_id)
    payload = b64(b"q" * 60_000)  # 80,000 characters: 13 fit in 1 MiB
    for i in range(13):
        await send(guest, f"m{i}", ciphertext=payload)
    await guest.send(json.dumps({"type": "send", "id": "m13", "ciphertext": payload}))
    refused = await recv_until(guest, "error", id="m13")
    assert refused["code"] == "quota_exceeded"
    await guest.send(json.dumps({"type": "ping"}))
    assert await recv_until(guest, "pong") == {"type": "pong"}  # still open
    # Someone else in the room is not held back by it.
    host = await joined(practice, counselor, room_id)
    assert await send(host, "h", ciphertext=payload) == 14
    assert [f["id"] for f in await resume(host, 0) if f["type"] == "message"] == [
        f"m{i}" for i in range(13)
    ]
    for ws in (guest, host):
        await ws.close()


# -- 13. a device away too long catches up ------------------------------------------


BACKLOG = 3 * hub.QUEUE_FRAMES + 100


@pytest.mark.parametrize("overrides", [{"ws_rate_per_s": 10_000}])
async def test_a_backlog_of_several_queues_of_frames_arrives_whole_and_in_order(
    practice: Practice, settings: Settings
) -> None:
    counselor, client = await practice.counselor(), await practice.client()
    room_id = (await practice.room(counselor, waiting_room=False))["id"]
    await practice.invite(counselor, room_id, client)
    host = await joined(practice, counselor, room_id)
    acks: list[int] = []

    async def read_acks(until: int) -> None:
        while len(acks) < until:
            frame = await recv(host, timeout=30)
            if frame["type"] == "ack":
                acks.append(frame["seq"])

    for start in range(0, BACKLOG, 500):  # the client is offline for all of it
        for i in range(start, min(BACKLOG, start + 500)):
            await host.send(json.dumps({"type": "send", "id": f"m{i}", "ciphertext": b64(b"hi")}))
        await read_acks(min(BACKLOG, start + 500))
    assert acks == list(range(1, BACKLOG + 1))

    ws = await joined(practice, client, room_id)
    await ws.send(json.dumps({"type": "resume", "after": 0}))
    first = await recv_until(ws, "message")
    # The room goes on while the replay runs, and the client itself sends.
    for i in range(50):
        await host.send(json.dumps({"type": "send", "id": f"late{i}", "ciphertext": b64(b"x")}))
    await ws.send(json.dumps({"type": "send", "id": "mine", "ciphertext": b64(b"me")}))
    seqs: list[int] = [first["seq"]]
    resumed = acked = None
    while len(seqs) < BACKLOG + 50 or resumed is None or acked is None:
        frame = await recv(ws, timeout=30)
        if frame["type"] == "message":
            seqs.append(frame["seq"])
        elif frame["type"] == "resumed":
            resumed = frame["seq"]
        elif frame["type"] == "ack":
            acked = frame["seq"]
        else:
            assert frame["type"] == "presence", frame
    assert acked is not None
    # Every message once, in order; its own message is acked, not sent back.
    assert seqs == [s for s in range(1, BACKLOG + 52) if s != acked]
    assert resumed is not None
    assert resumed >= BACKLOG
    await ws.send(json.dumps({"type": "ping"}))
    assert await recv_until(ws, "pong") == {"type": "pong"}
    await read_acks(BACKLOG + 50)  # so that the host's socket closes at once
    for socket in (ws, host):
        await socket.close()


@pytest.mark.parametrize(
    "overrides",
    [{"ws_rate_per_s": 10_000, "replay_max_bytes": 64 << 20, "replay_sender_max_bytes": 64 << 20}],
)
async def test_a_backlog_of_several_queues_of_bytes_arrives_whole(
    practice: Practice, settings: Settings
) -> None:
    counselor, client = await practice.counselor(), await practice.client()
    room_id = (await practice.room(counselor, waiting_room=False))["id"]
    await practice.invite(counselor, room_id, client)
    host = await joined(practice, counselor, room_id)
    payload = b64(b"z" * 60_000)
    count = 3 * hub.QUEUE_BYTES // len(payload) + 10  # over three queues' worth of bytes
    for i in range(count):
        await host.send(json.dumps({"type": "send", "id": f"m{i}", "ciphertext": payload}))
    await recv_until(host, "ack", id=f"m{count - 1}", timeout=60)

    ws = await joined(practice, client, room_id)
    frames = await resume(ws, 0)
    assert [f["seq"] for f in frames if f["type"] == "message"] == list(range(1, count + 1))
    assert frames[-1] == {"type": "resumed", "seq": count}
    for socket in (ws, host):
        await socket.close()
