"""One test suite, two brokers: the in-process one and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.relay.broker import Broker, BrokerUnavailable, InProcessBroker, Outgoing, Stored
from app.relay.redis_broker import RedisBroker
from tests.fixtures.redis_server import PrivateRedis, delete_prefix, shared_redis, unique_prefix


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Stored]] = []
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def on_message(self, room: str, stored: Stored) -> None:
        self.messages.append((room, stored))
        self.changed.set()

    async def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, count: int, what: str = "messages") -> None:
        async with asyncio.timeout(5):
            while len(getattr(self, what)) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broker, Recorder]]:
    recorder = Recorder()
    instance: Broker
    if request.param == "memory":
        instance = InProcessBroker()
        await instance.start(recorder.on_message, recorder.on_event)
        yield instance, recorder
        await instance.close()
        return
    url = await shared_redis()
    prefix = unique_prefix()
    instance = RedisBroker(url, prefix=prefix)
    await instance.start(recorder.on_message, recorder.on_event)
    yield instance, recorder
    await instance.close()
    await delete_prefix(url, prefix)


def broadcast(room: str, device: str, cid: str, body: str = '"x":1}') -> Outgoing:
    return Outgoing(room, device, cid, body, None)


async def test_seq_increases_per_room_and_is_published_in_order(
    broker: tuple[Broker, Recorder],
) -> None:
    b, seen = broker
    seqs = [(await b.append(broadcast("r1", "d1", f"m{i}")))[0] for i in range(5)]
    other = (await b.append(broadcast("r2", "d1", "m0")))[0]
    assert seqs == [1, 2, 3, 4, 5]
    assert other == 1
    await seen.wait_for(6)
    assert [s.seq for room, s in seen.messages if room == "r1"] == [1, 2, 3, 4, 5]
    assert await b.latest_seq("r1") == 5
    assert await b.latest_seq("never") == 0


async def test_concurrent_sends_get_distinct_consecutive_seqs(
    broker: tuple[Broker, Recorder],
) -> None:
    b, _ = broker
    results = await asyncio.gather(*(b.append(broadcast("r", "d", f"c{i}")) for i in range(50)))
    assert sorted(seq for seq, _ in results) == list(range(1, 51))


async def test_a_resend_gets_the_same_seq_and_is_not_published_again(
    broker: tuple[Broker, Recorder],
) -> None:
    b, seen = broker
    assert await b.append(broadcast("r", "d1", "same")) == (1, False)
    assert await b.append(broadcast("r", "d1", "same")) == (1, True)
    assert await b.append(broadcast("r", "d2", "same")) == (2, False)
    await seen.wait_for(2)
    await asyncio.sleep(0.1)
    assert [s.seq for _, s in seen.messages] == [1, 2]


async def test_replay_returns_what_follows_in_order(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    await b.append(broadcast("r", "d1", "a", '"n":1}'))
    await b.append(Outgoing("r", "d1", "b", None, {"d2": '"n":2}', "d3": '"n":3}'}))
    await b.append(broadcast("r", "d2", "c", '"n":4}'))
    replayed = await b.replay("r", 1)
    assert [s.seq for s in replayed] == [2, 3]
    assert replayed[0].fragment_for("d2") == '"n":2}'
    assert replayed[0].fragment_for("d4") is None
    assert replayed[1].fragment_for("d2") is None  # its own broadcast
    assert replayed[1].fragment_for("d1") == '"n":4}'
    assert [s.seq for s in await b.replay("r", 0)] == [1, 2, 3]
    assert await b.replay("r", 3) == []


async def test_a_jti_is_spent_once(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    assert await b.spend_jti("j1", 60, time.time()) is True
    assert await b.spend_jti("j1", 60, time.time()) is False
    assert await b.spend_jti("j2", 60, time.time()) is True


async def test_a_token_older_than_the_brokers_memory_is_refused(
    broker: tuple[Broker, Recorder],
) -> None:
    b, _ = broker
    assert await b.spend_jti("fresh", 60, time.time()) is True
    assert await b.spend_jti("stale", 60, time.time() - 120) is False


async def test_a_token_issued_after_start_but_spent_later_is_accepted(
    broker: tuple[Broker, Recorder],
) -> None:
    b, _ = broker
    issued = time.time()
    await asyncio.sleep(1.5)  # the first spend comes well after the issue
    assert await b.spend_jti("slow", 60, issued) is True


async def test_events_reach_every_subscriber(broker: tuple[Broker, Recorder]) -> None:
    b, seen = broker
    await b.publish({"kind": "room_ended", "room": "r"})
    await seen.wait_for(1, "events")
    assert seen.events == [{"kind": "room_ended", "room": "r"}]


async def test_presence(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    await b.set_online("r", "d1", True)
    await b.set_online("r", "d2", True)
    await b.set_online("r", "d1", False)
    assert await b.online("r") == {"d2"}


async def test_drop_room_forgets_everything(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    await b.append(broadcast("r", "d", "a"))
    await b.drop_room("r")
    assert await b.replay("r", 0) == []
    assert await b.latest_seq("r") == 0


async def test_two_redis_brokers_share_seq_and_fan_out() -> None:
    url = await shared_redis()
    prefix = unique_prefix()
    one, two = Recorder(), Recorder()
    a, b = RedisBroker(url, prefix=prefix), RedisBroker(url, prefix=prefix)
    await a.start(one.on_message, one.on_event)
    await b.start(two.on_message, two.on_event)
    try:
        results = await asyncio.gather(
            *((a if i % 2 else b).append(broadcast("r", f"d{i % 2}", f"m{i}")) for i in range(40))
        )
        assert sorted(seq for seq, _ in results) == list(range(1, 41))
        await one.wait_for(40)
        await two.wait_for(40)
        assert [s.seq for _, s in one.messages] == list(range(1, 41))
        assert [s.seq for _, s in two.messages] == list(range(1, 41))
        assert await a.spend_jti("x", 60, time.time()) is True
        assert await b.spend_jti("x", 60, time.time()) is False
        await a.set_online("r", "da", True)
        await b.set_online("r", "db", True)
        assert await a.online("r") == {"da", "db"}
        await b.close()
        # A dead instance's sockets stop counting as online once its heartbeat lapses.
        client = a._redis
        await client.delete(f"{prefix}:instance:{b.instance}")
        assert await a.online("r") == {"da"}
    finally:
        await a.close()
        await delete_prefix(url, prefix)


async def test_redis_down_is_an_error_never_a_silent_drop(volatile_redis: PrivateRedis) -> None:
    private_redis = volatile_redis
    seen = Recorder()
    b = RedisBroker(private_redis.url, prefix="p")
    await b.start(seen.on_message, seen.on_event)
    try:
        assert (await b.append(broadcast("r", "d", "a")))[0] == 1
        assert await b.ready() is True
        issued_before = time.time()
        assert await b.spend_jti("old", 60, issued_before) is True
        await asyncio.sleep(1.5)
        private_redis.stop()
        with pytest.raises(BrokerUnavailable):
            await b.append(broadcast("r", "d", "b"))
        with pytest.raises(BrokerUnavailable):
            await b.spend_jti("j", 10, time.time())
        assert await b.ready() is False
        await private_redis.start()
        # Back, without a new broker: sends work and subscribers hear them again.
        async with asyncio.timeout(10):
            while not await b.ready():
                await asyncio.sleep(0.1)
            while True:
                try:
                    seq, _ = await b.append(broadcast("r", "d", f"c{time.time()}"))
                except BrokerUnavailable:
                    await asyncio.sleep(0.2)
                    continue
                if any(s.seq == seq for _, s in seen.messages):
                    break
                await asyncio.sleep(0.3)
        # The restarted Redis forgot the spent token ids, so a token issued
        # before the restart is refused; one issued now is accepted once.
        assert await b.spend_jti("old", 60, issued_before) is False
        assert await b.spend_jti("new", 60, time.time()) is True
    finally:
        await b.close()
