"""The pipelined Redis connection: RESP encoding, order, budgets, recovery."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.relay import resp
from app.relay.redis_pipe import (
    Address,
    Pipe,
    PipeError,
    ReplyError,
    Script,
    Subscription,
    parse_address,
)
from tests.fixtures.redis_server import PrivateRedis, delete_prefix, shared_redis, unique_prefix

args = st.lists(
    st.one_of(
        st.text(),
        st.binary(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
    ),
    min_size=1,
    max_size=8,
)


def as_bytes(arg: resp.Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, float):
        return repr(arg).encode()
    return str(arg).encode()


@given(args)
def test_a_command_is_an_array_of_its_arguments_as_bulk_strings(command: list[resp.Arg]) -> None:
    reader = hiredis.Reader()
    reader.feed(resp.encode(command))
    assert reader.gets() == [as_bytes(arg) for arg in command]
    assert reader.gets() is False


@given(st.lists(args, min_size=1, max_size=5), st.data())
def test_commands_read_back_whatever_the_chunks(
    commands: list[list[resp.Arg]], data: st.DataObject
) -> None:
    stream = b"".join(resp.encode(command) for command in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = hiredis.Reader()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.feed(stream[start:end])
        while (reply := reader.gets()) is not False:
            got.append(reply)
    assert got == [[as_bytes(arg) for arg in command] for command in commands]


def test_what_is_not_an_argument_is_refused() -> None:
    with pytest.raises(TypeError):
        resp.encode([True])
    with pytest.raises(TypeError):
        resp.encode([None])  # type: ignore[list-item]


def test_addresses() -> None:
    assert parse_address("redis://127.0.0.1:6380/2") == Address("127.0.0.1", 6380, db=2)
    assert parse_address("redis://u:p%40ss@h") == Address("h", username="u", password="p@ss")
    assert parse_address("redis://:secret@h:1") == Address("h", 1, password="secret")
    assert parse_address("rediss://h/0") == Address("h", tls=True)
    assert parse_address("unix:///run/redis.sock?db=3") == Address(path="/run/redis.sock", db=3)
    # Options are redis-py's to read.
    assert parse_address("rediss://h/0?ssl_cert_reqs=none") is None
    assert parse_address("redis+cluster://h:1") is None
    # What this cannot read is left to redis-py (which refuses it), never raised here.
    for unreadable in (
        "redis://h:1/?db=abc",
        "redis://h:1/abc",
        "redis://h:99999/",
        "redis://h:x/",
    ):
        assert parse_address(unreadable) is None


@pytest.fixture
async def shared() -> AsyncIterator[tuple[Pipe, str]]:
    url = await shared_redis()
    address = parse_address(url)
    assert address is not None
    pipe, prefix = Pipe(address), unique_prefix()
    yield pipe, prefix
    pipe.close()
    await delete_prefix(url, prefix)


async def test_concurrent_commands_get_their_own_replies_in_order(
    shared: tuple[Pipe, str],
) -> None:
    pipe, prefix = shared
    key = f"{prefix}:n"
    # INCR in one turn of the loop: one write; each caller gets its own value.
    results = await asyncio.gather(*(pipe.execute("INCR", key) for _ in range(500)))
    assert results == list(range(1, 501))
    mixed = await asyncio.gather(
        pipe.execute("SET", f"{prefix}:a", "é\n"),
        pipe.execute("GET", f"{prefix}:a"),
        pipe.execute("GET", f"{prefix}:missing"),
        pipe.execute("RPUSH", f"{prefix}:l", 1, 2),
        pipe.execute("LRANGE", f"{prefix}:l", 0, -1),
        pipe.execute("NOT-A-COMMAND"),
        pipe.execute("GET", key),
        return_exceptions=True,
    )
    assert mixed[:5] == ["OK", "é\n", None, 2, ["1", "2"]]
    assert isinstance(mixed[5], ReplyError)  # fails its own command only
    assert mixed[6] == "500"


async def test_a_caller_that_stops_waiting_does_not_shift_the_replies(
    shared: tuple[Pipe, str],
) -> None:
    pipe, prefix = shared
    await pipe.execute("SET", f"{prefix}:a", "a")
    slow = asyncio.ensure_future(pipe.execute("BLPOP", f"{prefix}:nothing", "0.2"))
    other = asyncio.ensure_future(pipe.execute("GET", f"{prefix}:a"))
    await asyncio.sleep(0.01)
    slow.cancel()
    assert await other == "a"
    assert await pipe.execute("GET", f"{prefix}:a") == "a"


async def test_a_script_is_loaded_again_after_script_flush(volatile_redis: PrivateRedis) -> None:
    address = parse_address(volatile_redis.url)
    assert address is not None
    pipe = Pipe(address)
    script = Script("return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])")
    try:
        assert await script(pipe, ["s"], [10]) == 11
        await pipe.execute("SCRIPT", "FLUSH")
        assert await pipe.execute("SCRIPT", "EXISTS", script.sha) == [0]
        assert await script(pipe, ["s"], [10]) == 12
        assert await pipe.execute("SCRIPT", "EXISTS", script.sha) == [1]
        with pytest.raises(ReplyError):
            await Script("return redis.call('NOPE')")(pipe, [], [])
    finally:
        pipe.close()


async def test_a_command_not_answered_in_time_fails_every_command_then_recovers(
    shared: tuple[Pipe, str],
) -> None:
    pipe, prefix = shared
    quick = Pipe(pipe.address, timeout=0.5)
    try:
        await quick.execute("SET", f"{prefix}:a", "a")
        started = time.monotonic()
        blocked = asyncio.gather(
            quick.execute("BLPOP", f"{prefix}:nothing", "3"),
            quick.execute("GET", f"{prefix}:a"),
            return_exceptions=True,
        )
        results = await blocked
        assert all(isinstance(r, PipeError) for r in results), results
        assert time.monotonic() - started < 1.5
        # The next command connects again.
        assert await quick.execute("GET", f"{prefix}:a") == "a"
    finally:
        quick.close()


async def test_redis_down_fails_at_once_and_the_pipe_recovers_when_it_is_back(
    volatile_redis: PrivateRedis,
) -> None:
    address = parse_address(volatile_redis.url)
    assert address is not None
    pipe = Pipe(address)
    try:
        assert await pipe.execute("SET", "k", "v") == "OK"
        volatile_redis.stop()
        started = time.monotonic()
        with pytest.raises(PipeError):
            await pipe.execute("GET", "k")
        with pytest.raises(PipeError):
            await pipe.execute("GET", "k")
        assert time.monotonic() - started < 2.5
        await volatile_redis.start()
        assert await pipe.execute("SET", "k", "w") == "OK"
        assert await pipe.execute("GET", "k") == "w"
    finally:
        pipe.close()


class FakeRedis:
    """A server that answers every command with the bytes it is given."""

    def __init__(self, answer: bytes, *, hang: bool = False) -> None:
        self.answer = answer
        self.hang = hang
        self.connections = 0

    async def start(self) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            await reader.read(1000)
            writer.write(self.answer)
            await writer.drain()
            while await reader.read(1000):
                if not self.hang:
                    writer.write(self.answer)
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        sock: socket.socket = self.server.sockets[0]
        port: int = sock.getsockname()[1]
        return port

    async def stop(self) -> None:
        self.server.close()


@pytest.mark.parametrize(
    "answer",
    [b"?what\r\n", b"$3\r\n\xff\xfe\xfd\r\n", b"+OK\r\n+extra reply\r\n"],
    ids=["not-resp", "not-utf8", "reply-to-nothing"],
)
async def test_a_malformed_reply_fails_the_connection_not_the_process(answer: bytes) -> None:
    fake = FakeRedis(answer)
    port = await fake.start()
    pipe = Pipe(Address(port=port), timeout=1)
    try:
        if answer.startswith(b"+OK"):
            assert await pipe.execute("PING") == "OK"
            await asyncio.sleep(0.1)
            # The extra reply closed the connection: the next command opens another.
            assert await pipe.execute("PING") == "OK"
            assert fake.connections == 2
        else:
            with pytest.raises(PipeError, match="unreadable"):
                await pipe.execute("PING")
        assert fake.connections >= 1
    finally:
        pipe.close()
        await fake.stop()


async def test_a_subscription_hands_on_every_message_in_order(
    shared: tuple[Pipe, str],
) -> None:
    pipe, prefix = shared
    channels = [f"{prefix}:one", f"{prefix}:two"]
    subscription = Subscription(pipe.address, channels)
    await subscription.open()
    try:
        await asyncio.gather(
            *(pipe.execute("PUBLISH", channels[i % 2], f"m{i}\n") for i in range(300))
        )
        got: list[tuple[str, str]] = []
        async with asyncio.timeout(5):
            while len(got) < 300:
                got += await subscription.read()
        assert got == [(channels[i % 2], f"m{i}\n") for i in range(300)]
    finally:
        subscription.close()


async def test_a_subscription_notices_a_silent_server() -> None:
    fake = FakeRedis(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n", hang=True)
    port = await fake.start()
    subscription = Subscription(Address(port=port), ["c"], timeout=0.3, health_s=0.3)
    try:
        await subscription.open()
        started = time.monotonic()
        with pytest.raises(PipeError, match="PING"):
            await subscription.read()
        assert time.monotonic() - started < 2
    finally:
        subscription.close()
        await fake.stop()


async def test_a_subscription_on_a_stopped_redis_fails(volatile_redis: PrivateRedis) -> None:
    address = parse_address(volatile_redis.url)
    assert address is not None
    subscription = Subscription(address, ["c"])
    await subscription.open()
    volatile_redis.stop()
    with pytest.raises(PipeError):
        async with asyncio.timeout(5):
            await subscription.read()
    subscription.close()
    with pytest.raises(PipeError):
        await Subscription(address, ["c"]).open()


def test_the_pipe_and_the_subscription_run_on_uvloop() -> None:
    """The server runs on uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def scenario() -> None:
        url = await shared_redis()
        address = parse_address(url)
        assert address is not None
        prefix = unique_prefix()
        pipe = Pipe(address)
        subscription = Subscription(address, [f"{prefix}:c"])
        try:
            await subscription.open()
            counts = await asyncio.gather(*(pipe.execute("INCR", f"{prefix}:n") for _ in range(50)))
            assert counts == list(range(1, 51))
            await pipe.execute("PUBLISH", f"{prefix}:c", "hello")
            async with asyncio.timeout(5):
                assert await subscription.read() == [(f"{prefix}:c", "hello")]
        finally:
            subscription.close()
            pipe.close()
            await delete_prefix(url, prefix)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
