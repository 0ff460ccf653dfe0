"""One MLS commit per epoch: the room core reads a commit's epoch, the broker accepts
only the room's current one (atomically, in process and in Redis)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.core import mls
from app.relay.broker import Broker, InProcessBroker, Outgoing, StaleEpoch
from app.relay.redis_broker import RedisBroker
from app.relay.room import _commit_epoch
from tests.fixtures.mls import private_message, public_message
from tests.fixtures.redis_cluster import url_of
from tests.fixtures.redis_server import delete_prefix, unique_prefix
from tests.relay.roomworld import World
from tests.relay.test_room import ROOM, pair, send

VECTORS = {
    v["name"]: v
    for v in json.loads(
        (Path(__file__).parent.parent / "vectors" / "mls_vectors.json").read_text()
    )["vectors"]
}


def b64(raw: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(raw).decode()
    return text if padded else text.rstrip("=")


#: The MLS group of the room of tests/relay/test_room.py.
GROUP = mls.room_group_id(ROOM)


def commit(epoch: int, *, public: bool = False, group: bytes = GROUP) -> str:
    if public:
        return b64(public_message(group, epoch, 1, 0, b"", 3))
    return b64(private_message(group, epoch, 3, [b"", b"sender", b"ciphertext"]))


def application(epoch: int) -> str:
    return b64(private_message(GROUP, epoch, 1, [b"", b"sender", b"ciphertext"]))


def test_the_epoch_of_a_commit_is_read_and_nothing_else() -> None:
    assert _commit_epoch(b64(bytes.fromhex(VECTORS["commit_private_epoch0"]["message"]))) == 0
    assert _commit_epoch(b64(bytes.fromhex(VECTORS["commit_public_epoch1"]["message"]))) == 1
    app_message = bytes.fromhex(VECTORS["application_private_epoch1"]["message"])
    assert _commit_epoch(b64(app_message)) is None
    assert _commit_epoch(b64(bytes.fromhex(VECTORS["welcome_bob_carol"]["message"]))) is None
    assert _commit_epoch(commit(7)) == 7
    assert _commit_epoch(b64(private_message(b"r", 7, 3, [b"", b"", b""]), padded=True)) == 7
    assert _commit_epoch(commit(2**64 - 1, public=True)) == 2**64 - 1
    for opaque in ("AQID", "", "A", b64(b"\x00\x01\x00\x02"), b64(b"\x00\x01\x00\x02\x05")):
        assert _commit_epoch(opaque) is None


def test_a_commit_for_another_epoch_gets_stale_epoch_with_the_current_one() -> None:
    world = World()
    host, ann = pair(world)
    world.say(ann, send("c0", commit(0)))
    world.say(host, send("h0", commit(0)))  # lost the race for epoch 0
    world.say(host, send("h2", commit(2)))  # from the future
    world.say(ann, send("c0", commit(0)))  # a resend of the winner: its seq again
    world.say(host, send("a5", application(5)))  # not a commit: relayed as before
    world.say(host, send("x", "AQID"))  # not MLS: relayed as before
    world.say(host, send("h1", commit(1, public=True)))
    assert ann.of("ack") == [{"type": "ack", "id": "c0", "seq": 1}] * 2
    assert host.of("ack") == [
        {"type": "ack", "id": "a5", "seq": 2},
        {"type": "ack", "id": "x", "seq": 3},
        {"type": "ack", "id": "h1", "seq": 4},
    ]
    detail = "a commit for another epoch than the room's; apply the newer commit first"
    assert host.of("error") == [
        {"type": "error", "code": "stale_epoch", "detail": detail, "id": "h0", "epoch": 1},
        {"type": "error", "code": "stale_epoch", "detail": detail, "id": "h2", "epoch": 1},
    ]
    assert [f["id"] for f in ann.of("message")] == ["a5", "x", "h1"]
    assert [f["id"] for f in host.of("message")] == ["c0"]
    assert host.open
    assert ann.open
    world.say(ann, send("c1", commit(1)))
    assert ann.of("error")[-1]["epoch"] == 2


@pytest.fixture(params=["memory", "redis", "cluster"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    async def ignore(*_: object) -> None:
        return None

    if request.param == "memory":
        memory = InProcessBroker()
        await memory.start(ignore, ignore)
        yield memory
        await memory.close()
        return
    url = await url_of(request, request.param)
    prefix = unique_prefix()
    redis = RedisBroker(url, prefix=prefix)
    await redis.start(ignore, ignore)
    yield redis
    await redis.close()
    await delete_prefix(url, prefix)


def outgoing(room: str, device: str, cid: str, epoch: int | None) -> Outgoing:
    return Outgoing(room, device, cid, f'"id":"{cid}"}}', None, "acct", epoch)


async def test_concurrent_commits_for_one_epoch_one_is_stored(broker: Broker) -> None:
    told: list[int] = []

    async def attempt(device: int, epoch: int) -> int | None:
        try:
            seq, _ = await broker.append(outgoing("r1", f"d{device}", f"c{epoch}", epoch))
        except StaleEpoch as stale:
            told.append(stale.epoch)
            return None
        return seq

    for epoch in range(3):
        told.clear()
        seqs = await asyncio.gather(*(attempt(device, epoch) for device in range(20)))
        assert len([s for s in seqs if s is not None]) == 1, seqs
        assert told == [epoch + 1] * 19
    assert await broker.latest_seq("r1") == 3
    with pytest.raises(StaleEpoch) as caught:
        await broker.append(outgoing("r1", "d0", "late", 1))
    assert caught.value.epoch == 3
    # Other messages, and other rooms, are not held to the epoch.
    assert (await broker.append(outgoing("r1", "d0", "m", None)))[0] == 4
    assert (await broker.append(outgoing("r2", "d0", "c9", 9)))[0] == 1
    # A room dropped forgets its epoch with everything else.
    await broker.drop_room("r1")
    assert (await broker.append(outgoing("r1", "d0", "again", 5)))[0] == 1


async def test_a_commit_refused_for_its_quota_does_not_move_the_epoch() -> None:
    from app.relay.broker import QuotaExceeded, ReplayLimits

    memory = InProcessBroker(limits=ReplayLimits(sender_max_bytes=20))
    with pytest.raises(QuotaExceeded):
        await memory.append(Outgoing("r", "d", "big", '"x":"' + "y" * 40 + '"}', None, "a", 0))
    assert (await memory.append(outgoing("r", "d", "c0", 0)))[0] == 1


async def test_two_redis_instances_store_one_commit_per_epoch(redis_url: str) -> None:
    async def ignore(*_: object) -> None:
        return None

    url = redis_url
    prefix = unique_prefix()
    one, two = RedisBroker(url, prefix=prefix), RedisBroker(url, prefix=prefix)
    for instance in (one, two):
        await instance.start(ignore, ignore)
    try:

        async def attempt(instance: Broker, device: int) -> bool:
            try:
                await instance.append(outgoing("r", f"d{device}", "c0", 0))
            except StaleEpoch:
                return False
            return True

        won = await asyncio.gather(*(attempt((one, two)[i % 2], i) for i in range(20)))
        assert won.count(True) == 1
        with pytest.raises(StaleEpoch):
            await one.append(outgoing("r", "late", "c0", 0))
        assert (await two.append(outgoing("r", "d0", "c1", 1)))[0] == 2
    finally:
        for instance in (one, two):
            await instance.close()
        await delete_prefix(url, prefix)


async def test_the_broker_tells_the_room_s_current_epoch(broker: Broker) -> None:
    assert await broker.mls_epoch("r1") is None
    await broker.append(outgoing("r1", "d0", "m", None))
    assert await broker.mls_epoch("r1") is None  # no commit yet
    for epoch in range(3):
        await broker.append(outgoing("r1", "d0", f"c{epoch}", epoch))
        assert await broker.mls_epoch("r1") == epoch + 1
    with pytest.raises(StaleEpoch):
        await broker.append(outgoing("r1", "d1", "late", 1))
    assert await broker.mls_epoch("r1") == 3
    assert await broker.mls_epoch("r2") is None
    await broker.drop_room("r1")
    assert await broker.mls_epoch("r1") is None
