"""One test suite, three brokers: the in-process one, Redis, and Redis Cluster."""

from __future__ import annotations

import ast
import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from app.core.events import Admitted, Event, ParticipantAdded, ParticipantRemoved, RoomEnded
from app.relay import frames, redis_broker
from app.relay.broker import (
    Broker,
    BrokerUnavailable,
    InProcessBroker,
    Outgoing,
    QuotaExceeded,
    ReplayLimits,
    Stored,
)
from app.relay.redis_broker import RedisBroker
from tests.fixtures.redis_cluster import RedisClusterServers, url_of
from tests.fixtures.redis_server import (
    PrivateRedis,
    delete_prefix,
    dump_prefix,
    unique_prefix,
)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Stored]] = []
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    async def on_message(self, room: str, stored: Stored) -> None:
        self.messages.append((room, stored))
        self.changed.set()

    async def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, count: int, what: str = "messages") -> None:
        async with asyncio.timeout(5):
            while len(getattr(self, what)) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broker, Recorder]]:
    recorder = Recorder()
    instance: Broker
    if request.param == "memory":
        instance = InProcessBroker()
        await instance.start(recorder.on_message, recorder.on_event)
        yield instance, recorder
        await instance.close()
        return
    url = await url_of(request, request.param)
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


async def test_a_token_issued_after_start_but_spent_later_is_accepted(make: Maker) -> None:
    clock = Clock()
    b = await make(ReplayLimits(), clock)
    issued = clock.now
    clock.now += 1.5  # the first spend comes well after the issue
    assert await b.spend_jti("slow", 60, issued) is True


async def test_events_reach_every_subscriber(broker: tuple[Broker, Recorder]) -> None:
    b, seen = broker
    await b.publish(RoomEnded("r"))
    await seen.wait_for(1, "events")
    assert seen.events == [RoomEnded("r")]


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


async def test_two_redis_brokers_share_seq_and_fan_out(redis_url: str) -> None:
    url = redis_url
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
        await client.delete(a._instance_key(b.instance))
        assert await a.online("r") == {"da"}
    finally:
        await a.close()
        await delete_prefix(url, prefix)


async def test_what_redis_delivers_that_is_no_event_or_message_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    url, prefix = redis_url, unique_prefix()
    seen = Recorder()
    b = RedisBroker(url, prefix=prefix)
    await b.start(seen.on_message, seen.on_event)
    caplog.set_level(logging.WARNING, logger="confide.broker")
    try:
        redis = b._redis
        for junk in ("not json", '{"kind":"room_ended"}', '{"kind":"rm_rf","room":"r"}', "[]"):
            await redis.publish(f"{prefix}:events", junk)
        await redis.publish(f"{prefix}:messages", "r\nnot a seq\nd\nb\n{}")
        await redis.publish(f"{prefix}:messages", "r\n1\nd\nd\n[1]")
        # The listener reads on: what comes next is delivered.
        await b.publish(RoomEnded("r"))
        await b.append(broadcast("r", "d", "m1"))
        await seen.wait_for(1, "events")
        await seen.wait_for(1)
        assert seen.events == [RoomEnded("r")]
        assert [s.seq for _, s in seen.messages] == [1]

        def dropped() -> int:
            return sum("dropped" in r.getMessage() for r in caplog.records)

        # A cluster keeps the order of what one node publishes, not across nodes.
        async with asyncio.timeout(5):
            while dropped() < 6:
                await asyncio.sleep(0.05)
        assert dropped() == 6
    finally:
        await b.close()
        await delete_prefix(url, prefix)


async def test_redis_down_is_an_error_never_a_silent_drop(volatile_redis: PrivateRedis) -> None:
    private_redis = volatile_redis
    seen = Recorder()
    clock = Clock()
    b = RedisBroker(private_redis.url, prefix="p", now=clock)
    await b.start(seen.on_message, seen.on_event)
    try:
        assert (await b.append(broadcast("r", "d", "a")))[0] == 1
        assert await b.ready() is True
        issued_before = clock.now
        assert await b.spend_jti("old", 60, issued_before) is True
        clock.now += 1.5
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
        assert await b.spend_jti("new", 60, clock.now) is True
    finally:
        await b.close()


async def test_a_redis_that_does_not_answer_in_time_is_an_error_then_sends_work_again(
    volatile_redis: PrivateRedis,
) -> None:
    seen = Recorder()
    b = RedisBroker(volatile_redis.url, prefix="p")
    await b.start(seen.on_message, seen.on_event)
    other = aioredis.Redis.from_url(volatile_redis.url)
    try:
        assert (await b.append(broadcast("r", "d", "a")))[0] == 1
        # A script that keeps Redis busy for 4 to 5 s: past the 2 s budget of a command.
        busy = asyncio.ensure_future(
            other.eval(
                "local t = redis.call('TIME'); local s = t[1] + 5; "
                "while tonumber(redis.call('TIME')[1]) < s do end; return 1",
                0,
            )
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        results = await asyncio.gather(
            *(b.append(broadcast("r", "d", f"late{i}")) for i in range(20)),
            return_exceptions=True,
        )
        # Refused at the budget, not answered when the script ended.
        assert all(isinstance(r, BrokerUnavailable) for r in results), results
        assert time.monotonic() - started < 4
        await busy
        # A refused send took no seq, or kept the one it got: sent again, it is stored once.
        seqs = [(await b.append(broadcast("r", "d", f"late{i}")))[0] for i in range(20)]
        assert len(set(seqs)) == 20
        assert await b.latest_seq("r") == max(seqs)
        async with asyncio.timeout(5):
            while {s.seq for _, s in seen.messages} < set(seqs):
                await asyncio.sleep(0.05)
    finally:
        await other.aclose()
        await b.close()


async def test_scripts_run_again_after_redis_forgot_them(volatile_redis: PrivateRedis) -> None:
    seen = Recorder()
    b = RedisBroker(volatile_redis.url, prefix="p")
    await b.start(seen.on_message, seen.on_event)
    other = aioredis.Redis.from_url(volatile_redis.url)
    try:
        assert (await b.append(broadcast("r", "d", "a")))[0] == 1
        assert await b.spend_jti("j1", 60, time.time()) is True
        await other.script_flush()
        assert (await b.append(broadcast("r", "d", "b")))[0] == 2
        assert await b.append(broadcast("r", "d", "a")) == (1, True)
        assert await b.spend_jti("j1", 60, time.time()) is False
        await seen.wait_for(2)
        assert [s.seq for _, s in seen.messages] == [1, 2]
    finally:
        await other.aclose()
        await b.close()


async def test_many_concurrent_sends_to_many_rooms_keep_each_rooms_order(
    redis_url: str,
) -> None:
    url, prefix = redis_url, unique_prefix()
    seen = Recorder()
    b = RedisBroker(url, prefix=prefix)
    await b.start(seen.on_message, seen.on_event)
    try:
        rooms = [f"r{i}" for i in range(10)]
        results = await asyncio.gather(
            *(b.append(broadcast(room, "d", f"m{n}")) for n in range(30) for room in rooms)
        )
        for i, room in enumerate(rooms):
            seqs = [seq for seq, _ in results[i :: len(rooms)]]
            if "+cluster://" in url:
                assert sorted(seqs) == list(range(1, 31)), room
            else:
                # One Redis: one connection, answered in order, so sends
                # issued in order get increasing seqs.
                assert seqs == list(range(1, 31)), room
        await seen.wait_for(300)
        for room in rooms:
            assert [s.seq for r, s in seen.messages if r == room] == list(range(1, 31))
    finally:
        await b.close()
        await delete_prefix(url, prefix)


async def test_a_cluster_master_down_is_an_error_never_a_silent_drop(
    private_redis_cluster: RedisClusterServers,
) -> None:
    servers = private_redis_cluster
    seen = Recorder()
    clock = Clock()
    b = RedisBroker(servers.url, prefix="p", now=clock)
    await b.start(seen.on_message, seen.on_event)
    cluster = b._redis
    assert isinstance(cluster, RedisCluster)
    # The master this instance subscribes on: it must subscribe on another one.
    assert b.subscribed_node is not None
    victim = b.subscribed_node[1]

    def on_victim(key: str) -> bool:
        node = cluster.get_node_from_key(key)
        assert node is not None
        return int(node.port) == victim

    room = next(r for r in (f"r{i}" for i in range(1000)) if on_victim(b._k(r, "seq")))
    other = next(r for r in (f"r{i}" for i in range(1000)) if not on_victim(b._k(r, "seq")))
    jti = next(j for j in (f"j{i}" for i in range(1000)) if on_victim(b._jti_keys(j)[0]))
    try:
        assert (await b.append(broadcast(room, "d", "a")))[0] == 1
        issued_before = clock.now
        assert await b.spend_jti(jti, 60, issued_before) is True
        clock.now += 1.5
        servers.stop_node(victim)
        # The room's slot has no node: its sends are refused, never lost silently.
        with pytest.raises(BrokerUnavailable):
            await b.append(broadcast(room, "d", "b"))
        with pytest.raises(BrokerUnavailable):
            await b.spend_jti(jti, 60, time.time())
        servers.start_node(victim)
        # Back (empty): sends to both rooms work and the subscriber hears them again.
        async with asyncio.timeout(30):
            for target in (room, other):
                heard = False
                while not heard:
                    cid = uid()
                    try:
                        await b.append(broadcast(target, "d", cid, f'"n":"{cid}"}}'))
                    except BrokerUnavailable:
                        await asyncio.sleep(0.2)
                        continue
                    for _ in range(20):
                        heard = any(cid in (s.broadcast or "") for _, s in seen.messages)
                        if heard:
                            break
                        await asyncio.sleep(0.05)
        # The master came back without the spent ids of its shards, and without
        # their epoch: a token issued before is refused, one issued now accepted once.
        assert await b.spend_jti(jti, 60, issued_before) is False
        assert await b.spend_jti(f"{jti}-new", 60, clock.now) is True
        assert await b.spend_jti(f"{jti}-new", 60, clock.now) is False
    finally:
        await b.close()


# -- erasure -----------------------------------------------------------------------


async def dump(b: Broker) -> str:
    """Everything the broker holds, as text: every key of its Redis prefix, or its memory."""
    if isinstance(b, InProcessBroker):
        return repr(vars(b))
    assert isinstance(b, RedisBroker)
    return await dump_prefix(b._url, b._prefix)


def uid() -> str:
    return str(uuid.uuid4())


def said(cid: str, account: str, device: str, ciphertext: str) -> str:
    return frames.fragment(cid, account, device, ciphertext, "T")


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis forgets in batches of 4 entries, so that a short stream takes several."""
    monkeypatch.setattr(redis_broker, "FORGET_BATCH", 4, raising=False)


async def test_forget_leaves_nothing_that_names_the_erased_person(
    broker: tuple[Broker, Recorder], small_batches: None
) -> None:
    b, _ = broker
    erased, e1, e2 = uid(), uid(), uid()  # the erased account and its two devices
    alice, a1, bob, b1 = uid(), uid(), uid(), uid()
    room, elsewhere = uid(), uid()

    def send(device: str, cid: str, text: str, to: list[str] | None = None) -> Outgoing:
        account = {e1: erased, e2: erased, a1: alice, b1: bob}[device]
        if to is None:
            return Outgoing(room, device, cid, said(cid, account, device, text), None)
        directed = {d: said(cid, account, device, f"{text}.{d[:4]}") for d in to}
        return Outgoing(room, device, cid, None, directed)

    sends = [
        send(a1, "a", "AAAA"),  # 1
        send(e1, "b", "BBBB"),  # 2: the erased person's broadcast
        send(e1, "c", "CCCC", [a1, b1]),  # 3: directed, from the erased person
        send(a1, "d", "DDDD", [e1, b1]),  # 4: directed, partly to the erased person
        send(b1, "e", "EEEE", [e2]),  # 5: directed to the erased person only
        send(e2, "f", "FFFF"),  # 6
    ]
    sends += [send(a1 if i % 2 else e2, f"x{i}", f"X{i:03}") for i in range(7, 16)]  # 7..15
    for message in sends:
        await b.append(message)
    await b.append(Outgoing(elsewhere, e1, "b", said("b", erased, e1, "GGGG"), None))
    await b.set_online(room, e1, True)
    await b.set_online(room, a1, True)
    assert await b.spend_jti(uid(), 60, time.time())
    before = await dump(b)
    for named in (erased, e1, e2):
        assert named in before

    await b.forget(erased, [e1, e2], [room, elsewhere])

    after = await dump(b)
    for gone in (erased, e1, e2):
        assert gone not in after
    for kept in (alice, a1, b1):
        assert kept in after
    assert ":forget:" not in after  # no copy left behind

    # Every seq is still there, in order; the erased sender is empty.
    replayed = await b.replay(room, 0)
    assert [s.seq for s in replayed] == list(range(1, 16))
    by_seq = {s.seq: s for s in replayed}
    nobody = '"sender":{"account_id":"","device_id":""}'
    assert by_seq[2].fragment_for(a1) == f'"id":"b",{nobody},"ciphertext":"BBBB","sent_at":"T"}}'
    assert by_seq[2].fragment_for(b1) == by_seq[2].fragment_for(a1)
    assert (
        by_seq[3].fragment_for(a1)
        == f'"id":"c",{nobody},"ciphertext":"CCCC.{a1[:4]}","sent_at":"T"}}'
    )
    assert (
        by_seq[3].fragment_for(b1)
        == f'"id":"c",{nobody},"ciphertext":"CCCC.{b1[:4]}","sent_at":"T"}}'
    )
    assert by_seq[4].fragment_for(b1) == said("d", alice, a1, f"DDDD.{b1[:4]}")  # untouched
    assert by_seq[4].fragment_for(e1) is None
    assert by_seq[5].fragment_for(e2) is None
    assert by_seq[5].fragment_for(a1) is None
    assert by_seq[6].fragment_for(a1) == f'"id":"f",{nobody},"ciphertext":"FFFF","sent_at":"T"}}'
    assert by_seq[1].fragment_for(a1) is None  # still its own broadcast
    assert by_seq[1].fragment_for(b1) == said("a", alice, a1, "AAAA")
    (other,) = await b.replay(elsewhere, 0)
    assert other.fragment_for(a1) == f'"id":"b",{nobody},"ciphertext":"GGGG","sent_at":"T"}}'

    # Resends by the others still dedupe; the seq goes on.
    assert await b.append(sends[0]) == (1, True)
    assert await b.append(sends[4]) == (5, True)
    assert await b.latest_seq(room) == 15
    assert await b.append(send(b1, "next", "HHHH")) == (16, False)
    assert await b.online(room) == {a1}

    # Idempotent: a second erasure of the same person (another instance's) changes nothing.
    again = await dump(b)
    await b.forget(erased, [e1, e2], [room, elsewhere])
    assert await dump(b) == again


async def test_forget_of_rooms_with_nothing_retained_creates_nothing(
    broker: tuple[Broker, Recorder],
) -> None:
    b, _ = broker
    room = uid()
    await b.append(broadcast(room, "d1", "a"))
    before = await dump(b)
    await b.forget(uid(), [uid()], [room, uid()])
    await b.forget(uid(), [], [room])
    assert await dump(b) == before
    assert not await b.has_room(uid())


async def test_forget_while_others_keep_sending_loses_nothing(
    broker: tuple[Broker, Recorder], small_batches: None
) -> None:
    b, _ = broker
    erased, gone, stays, room = uid(), uid(), uid(), uid()
    for i in range(40):
        device, account = (gone, erased) if i % 3 == 0 else (stays, "a")
        await b.append(Outgoing(room, device, f"m{i}", said(f"m{i}", account, device, "QQ"), None))

    async def keep_sending() -> list[int]:
        seqs = []
        for i in range(40):
            seqs.append((await b.append(broadcast(room, stays, f"late{i}")))[0])
            await asyncio.sleep(0)
        return seqs

    async with asyncio.TaskGroup() as group:  # a failure of either cancels the other
        sending = group.create_task(keep_sending())
        group.create_task(b.forget(erased, [gone], [room]))
    late = sending.result()
    assert late == list(range(41, 81))
    replayed = await b.replay(room, 0)
    assert [s.seq for s in replayed] == list(range(1, 81))
    text = await dump(b)
    assert erased not in text
    assert gone not in text
    assert await b.append(broadcast(room, stays, "late0")) == (41, True)


async def test_two_redis_instances_forget_at_once(redis_url: str) -> None:
    url = redis_url
    prefix = unique_prefix()
    a, b = RedisBroker(url, prefix=prefix), RedisBroker(url, prefix=prefix)
    one, two = Recorder(), Recorder()
    await a.start(one.on_message, one.on_event)
    await b.start(two.on_message, two.on_event)
    try:
        erased, gone, stays, room = uid(), uid(), uid(), uid()
        for i in range(300):
            device, account = (gone, erased) if i % 2 else (stays, "a")
            to = {stays: said(f"m{i}", account, device, "Z")} if i % 5 == 0 else None
            body = None if to else said(f"m{i}", account, device, "Y")
            await a.append(Outgoing(room, device, f"m{i}", body, to))
        async with asyncio.TaskGroup() as group:
            group.create_task(a.forget(erased, [gone], [room]))
            group.create_task(b.forget(erased, [gone], [room]))
        text = await dump(a)
        for left in (erased, gone, ":forget:"):
            assert left not in text
        assert [s.seq for s in await b.replay(room, 0)] == list(range(1, 301))
        # The copy's short TTL is not carried over: the stream keeps the room's idle TTL.
        idle = round(a.limits.idle_s)
        assert idle - 5 <= await a._redis.ttl(f"{prefix}:room:{{{room}}}:log") <= idle
    finally:
        await a.close()
        await b.close()
        await delete_prefix(url, prefix)


# -- bounds and admission points (issue 9) ------------------------------------------


class Clock:
    """A clock the in-process broker reads; Redis keeps its own (TTLs)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Maker:
    """Started brokers of one kind, with the limits and clock a test gives."""

    def __init__(self, kind: str, url: str = "") -> None:
        self.kind = kind
        self.url = url
        self.made: list[Broker] = []
        self.prefixes: list[str] = []

    async def __call__(self, limits: ReplayLimits, now: Callable[[], float] = time.time) -> Broker:
        instance: Broker
        if self.kind == "memory":
            instance = InProcessBroker(now, limits=limits)
        else:
            self.prefixes.append(unique_prefix())
            instance = RedisBroker(self.url, prefix=self.prefixes[-1], now=now, limits=limits)
        await instance.start(Recorder().on_message, Recorder().on_event)
        self.made.append(instance)
        return instance


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Maker]:
    url = "" if request.param == "memory" else await url_of(request, request.param)
    maker = Maker(request.param, url)
    yield maker
    for instance in maker.made:
        await instance.close()
    for prefix in maker.prefixes:
        await delete_prefix(url, prefix)


def sized(room: str, device: str, cid: str, size: int, account: str = "") -> Outgoing:
    """A broadcast whose stored payload is exactly `size` bytes."""
    body = '"c":"' + "x" * (size - 7) + '"}'
    assert len(body) == size
    return Outgoing(room, device, cid, body, None, account)


async def test_a_room_keeps_at_most_its_cap_in_frames_the_oldest_go_first(
    make: Maker,
) -> None:
    b = await make(ReplayLimits(max_frames=5))
    for i in range(12):
        await b.append(broadcast("r", "d", f"m{i}"))
    assert [s.seq for s in await b.replay("r", 0)] == [8, 9, 10, 11, 12]
    assert [s.seq for s in await b.replay("r", 3)] == [8, 9, 10, 11, 12]
    assert [s.seq for s in await b.replay("r", 9)] == [10, 11, 12]
    assert await b.latest_seq("r") == 12
    # A resend of a message no longer kept still gets its first seq, not a new one.
    assert await b.append(broadcast("r", "d", "m0")) == (1, True)
    assert (await b.append(broadcast("r", "d", "m12")))[0] == 13
    assert [s.seq for s in await b.replay("r", 0)] == [9, 10, 11, 12, 13]


async def test_a_room_keeps_at_most_its_cap_in_bytes(make: Maker) -> None:
    b = await make(ReplayLimits(max_bytes=3500))
    for i in range(6):
        await b.append(sized("r", "d", f"m{i}", 1000))
    assert [s.seq for s in await b.replay("r", 0)] == [4, 5, 6]
    # A directed message counts by its stored map; a big one pushes out several.
    fragments = {"d1": '"c":"' + "y" * 993 + '"}', "d2": '"c":"' + "z" * 993 + '"}'}
    await b.append(Outgoing("r", "d", "big", None, fragments))
    assert [s.seq for s in await b.replay("r", 0)] == [6, 7]
    # The newest message is kept even when it alone is over the cap.
    await b.append(sized("r", "d", "huge", 4000))
    assert [s.seq for s in await b.replay("r", 0)] == [8]


async def test_one_sender_cannot_put_more_than_its_quota_into_a_room(make: Maker) -> None:
    b = await make(ReplayLimits(sender_max_bytes=2500))
    # Two devices of one account share the account's quota.
    assert await b.append(sized("r", "d1", "a", 1000, "alice")) == (1, False)
    assert await b.append(sized("r", "d2", "b", 1000, "alice")) == (2, False)
    with pytest.raises(QuotaExceeded):
        await b.append(sized("r", "d1", "c", 1000, "alice"))
    assert await b.latest_seq("r") == 2  # a refused send takes no seq
    assert await b.append(sized("r", "d1", "a", 1000, "alice")) == (1, True)  # a resend is free
    assert await b.append(sized("r", "d3", "a", 1000, "bob")) == (3, False)
    assert await b.append(sized("r", "d1", "small", 500, "alice")) == (4, False)
    assert await b.append(sized("elsewhere", "d1", "c", 1000, "alice")) == (1, False)
    assert [s.seq for s in await b.replay("r", 0)] == [1, 2, 3, 4]


async def test_an_idle_room_loses_what_it_retains_but_keeps_its_seq(make: Maker) -> None:
    clock = Clock()
    # The in-process broker purges by its clock; Redis expires the keys itself,
    # by its own clock, so there the idle time is short and the test waits.
    idle = 3600.0 if make.kind == "memory" else 0.4
    b = await make(ReplayLimits(idle_s=idle), clock)
    await b.append(sized("r", "d", "m0", 100, "alice"))
    await b.publish(Admitted("r", "bob"))  # from seq 1
    for i in range(1, 3):
        await b.append(sized("r", "d", f"m{i}", 100, "alice"))
    await b.append(sized("busy", "d", "m0", 100, "alice"))
    if isinstance(b, RedisBroker):
        redis = b._redis
        for what in ("log", "sent", "quota", "bytes", "admit"):
            assert 0 < await redis.pttl(f"{b._prefix}:room:{{r}}:{what}") <= 400
        assert await redis.pttl(f"{b._prefix}:room:{{r}}:seq") == -1
        async with asyncio.timeout(5):
            while await b.replay("r", 0):
                await asyncio.sleep(0.05)
                await b.append(sized("busy", "d", f"m{time.time()}", 100, "alice"))
    else:
        clock.now += idle - 1
        await b.append(sized("busy", "d", "m1", 100, "alice"))
        await b.purge_expired()
        assert [s.seq for s in await b.replay("r", 0)] == [1, 2, 3]
        clock.now += 2
        await b.purge_expired()
    assert await b.replay("r", 0) == []
    assert await b.replay("busy", 0) != []  # written to meanwhile: kept
    assert await b.latest_seq("r") == 3  # the seq never goes back
    # The resend records, the quota and the admission points went with it.
    assert await b.admission("r", ["bob"]) == {"bob": 3}  # no longer 1: recorded anew
    assert await b.append(sized("r", "d", "m0", 100, "alice")) == (4, False)


def added(room: str, account: str, *, admitted: bool) -> ParticipantAdded:
    return ParticipantAdded(room, account, "participant", "", admitted, ())


async def test_admission_points_follow_the_events_that_admit(make: Maker) -> None:
    b = await make(ReplayLimits())
    await b.append(broadcast("r", "d", "m1"))
    # Added to a room without a waiting room: admitted at once, from the latest seq.
    await b.publish(added("r", "ann", admitted=True))
    # Added to the waiting room: no point until admitted.
    await b.publish(added("r", "wes", admitted=False))
    await b.append(broadcast("r", "d", "m2"))
    await b.append(broadcast("r", "d", "m3"))
    await b.publish(Admitted("r", "wes"))
    await b.append(broadcast("r", "d", "m4"))
    # Admitted again (the waiting room switched off): the first point stays.
    await b.publish(Admitted("r", "wes"))
    await b.publish(Admitted("r", "ann"))
    assert await b.admission("r", ["ann", "wes"]) == {"ann": 1, "wes": 3}
    # Removed, then added again later: a new membership, a new point.
    await b.publish(ParticipantRemoved("r", "ann"))
    await b.append(broadcast("r", "d", "m5"))
    await b.publish(added("r", "ann", admitted=True))
    # An admitted account with no point (the room's creator) gets the latest seq, kept.
    assert await b.admission("r", ["ann", "host"]) == {"ann": 5, "host": 5}
    await b.append(broadcast("r", "d", "m6"))
    assert await b.admission("r", ["host", "wes"]) == {"host": 5, "wes": 3}
    assert await b.admission("r", []) == {}


async def test_replay_reads_in_pages(make: Maker) -> None:
    b = await make(ReplayLimits(max_frames=100))
    for i in range(130):
        await b.append(broadcast("r", "d", f"m{i}"))
    assert [s.seq for s in await b.replay("r", 0, 10)] == list(range(31, 41))
    assert [s.seq for s in await b.replay("r", 40, 10)] == list(range(41, 51))
    assert [s.seq for s in await b.replay("r", 125, 10)] == list(range(126, 131))
    assert await b.replay("r", 130, 10) == []


async def test_forget_also_takes_the_persons_quota_and_admission_points(make: Maker) -> None:
    b = await make(ReplayLimits())
    erased, device, room = uid(), uid(), uid()
    await b.publish(Admitted(room, erased))
    await b.append(Outgoing(room, device, "m", said("m", erased, device, "AAAA"), None, erased))
    before = await dump(b)
    assert erased in before
    await b.forget(erased, [device], [room])
    after = await dump(b)
    assert erased not in after
    assert device not in after


def test_neither_broker_module_imports_the_other_at_import_time() -> None:
    """The Redis broker imports the shared types only (app.relay.store), never app.relay.broker."""
    source = Path(redis_broker.__file__).read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "app.relay.broker" not in imported
    assert "app.relay.hub" not in imported
