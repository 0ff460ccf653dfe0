"""The frame sink (`app.relay.wsproto`): frames encoded once, written straight to the
transport, in order, intact, to every recipient; and the encoding itself."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from app.core.config import Settings
from app.relay.wsproto import Flag, Inbox, text_frame
from tests.fixtures.server import open_socket, recv, recv_until
from tests.relay.conftest import Practice

#: Ciphertext sizes on both sides of the frame header's length boundaries
#: (125/126 and 65535/65536 bytes of payload) and one well past them.
SIZES = (1, 40, 60, 61, 62, 48_000, 49_100, 49_200, 60_000)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for every message of the test in the replay store, and no rate limit."""
    return settings.model_copy(
        update={
            "ws_rate_per_s": 10_000,
            "replay_max_bytes": 1 << 30,
            "replay_sender_max_bytes": 1 << 30,
        }
    )


@pytest.fixture
def sink_expected() -> bool:
    """Whether the server under test offers the frame sink (`confide serve`'s protocol)."""
    return True


@given(st.binary(max_size=70_000))
def test_a_text_frame_is_what_websockets_would_write(data: bytes) -> None:
    assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


@pytest.mark.parametrize("size", [0, 125, 126, 127, 65_535, 65_536, 65_537, 200_000])
def test_a_text_frame_at_each_length_boundary(size: int) -> None:
    data = b"x" * size
    assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


@given(st.lists(st.integers(), max_size=50))
def test_an_inbox_gives_back_what_was_put_in_order(items: list[int]) -> None:
    async def run() -> list[int]:
        inbox: Inbox[int] = Inbox()
        got: list[int] = []

        async def get_all() -> None:
            for _ in items:
                got.append(await inbox.get())

        reader = asyncio.create_task(get_all())
        for item in items:
            inbox.put_nowait(item)
            await asyncio.sleep(0)
        await asyncio.wait_for(reader, 5)
        assert inbox.empty()
        return got

    assert asyncio.run(run()) == items


def test_an_inbox_wakes_every_getter_and_survives_a_cancelled_one() -> None:
    async def run() -> None:
        inbox: Inbox[str] = Inbox()
        cancelled = asyncio.create_task(inbox.get())
        first, second = asyncio.create_task(inbox.get()), asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        inbox.put_nowait("a")
        inbox.put_nowait("b")
        assert sorted(await asyncio.wait_for(asyncio.gather(first, second), 5)) == ["a", "b"]
        assert inbox.empty()
        assert inbox.qsize() == 0

    asyncio.run(run())


def test_a_flag_releases_its_waiters_when_set() -> None:
    async def run() -> None:
        flag = Flag(True)
        assert await flag.wait()
        flag.clear()
        assert not flag.is_set()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
        cancelled = asyncio.create_task(flag.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        assert not any(w.done() for w in waiters)
        flag.set()
        assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True, True, True]

    asyncio.run(run())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_broadcasts_reach_every_recipient_intact_and_in_order(
    practice: Practice, sink_expected: bool
) -> None:
    counselor = await practice.counselor()
    members = [await practice.client(f"Member {i}") for i in range(3)]
    room = await practice.room(counselor, kind="group", waiting_room=False, max_participants=4)
    for member in members:
        await practice.invite(counselor, room["id"], member)
    people = [counselor, *members]
    sockets = {}
    for person in people:
        ws = await open_socket(practice.base, room["id"], await practice.token(person, room["id"]))
        assert (await recv(ws))["state"] == "admitted"
        sockets[person.id] = ws
    connections = list(practice.live_hub._connections.values())
    assert len(connections) == 4
    assert all((conn.sink is not None) is sink_expected for conn in connections)

    per_sender = 40
    sent: dict[str, list[tuple[str, str]]] = {p.id: [] for p in people}
    for person in people:
        for i in range(per_sender):
            size = SIZES[i % len(SIZES)]
            body = f"{person.id}:{i}:".encode().ljust(size, b"z")
            sent[person.id].append((f"{person.id[:8]}-{i}", b64(body)))

    async def send_all(person_id: str) -> None:
        ws = sockets[person_id]
        for client_id, ciphertext in sent[person_id]:
            await ws.send(json.dumps({"type": "send", "id": client_id, "ciphertext": ciphertext}))

    async def read_all(person_id: str) -> tuple[dict[str, list[tuple[str, str]]], int]:
        ws = sockets[person_id]
        got: dict[str, list[tuple[str, str]]] = {}
        acks = 0
        expected = per_sender * (len(people) - 1)
        received = 0
        seqs: list[int] = []
        while received < expected or acks < per_sender:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "message":
                received += 1
                seqs.append(frame["seq"])
                sender = frame["sender"]["account_id"]
                got.setdefault(sender, []).append((frame["id"], frame["ciphertext"]))
            elif frame["type"] == "ack":
                acks += 1
        # The room's order: every recipient sees the seqs rising.
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        return got, acks

    readers = [asyncio.create_task(read_all(p.id)) for p in people]
    await asyncio.gather(*(send_all(p.id) for p in people))
    results = await asyncio.gather(*readers)
    for person, (got, acks) in zip(people, results, strict=True):
        assert acks == per_sender
        # Everything every other member sent, once, intact, in the order sent.
        assert got == {p.id: sent[p.id] for p in people if p is not person}
    for ws in sockets.values():
        await ws.close()


async def test_a_replayed_backlog_arrives_whole_through_the_same_path(
    practice: Practice, sink_expected: bool
) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=False)
    await practice.invite(counselor, room["id"], client)
    host = await open_socket(practice.base, room["id"], await practice.token(counselor, room["id"]))
    await recv(host)
    bodies = [b64(f"m{i}".encode().ljust(SIZES[i % len(SIZES)], b"q")) for i in range(60)]
    for i, body in enumerate(bodies):
        await host.send(json.dumps({"type": "send", "id": f"b{i}", "ciphertext": body}))
    for _ in bodies:
        await recv_until(host, "ack", timeout=30)
    guest = await open_socket(practice.base, room["id"], await practice.token(client, room["id"]))
    await recv(guest)
    assert all(
        (conn.sink is not None) is sink_expected for conn in practice.live_hub._connections.values()
    )
    await guest.send(json.dumps({"type": "resume", "after": 0}))
    got = []
    while True:
        frame = await recv(guest, timeout=30)
        if frame["type"] == "resumed":
            break
        if frame["type"] == "message":
            got.append(frame["ciphertext"])
    assert got == bodies
    await host.close()
    await guest.close()
