"""One pipelined connection to one Redis, and a subscription read the same way.

`Pipe` sends every command on one connection. The commands issued in one
turn of the event loop leave in one write, and the replies are matched to
them in order (Redis answers a connection's commands in the order it reads
them): many concurrent sends cost one system call each way, not one round
trip and one pooled connection each.

Budgets: a command not answered within `timeout` seconds (checked every
quarter second, or twice within a shorter budget, and found overdue twice)
fails with `PipeError`, and so does every other one waiting on the
connection, which is closed (the next command connects again). A
connection refused or not established within `connect_timeout`, a reply
that is not RESP, or a closed connection fail the same way. An error reply
fails only its own command (`ReplyError`). Nothing is retried here: the
caller decides (a send is refused, never silently lost).

`Script` runs a Lua script by its SHA1 (EVALSHA) and falls back to EVAL,
which loads it again, when Redis answers NOSCRIPT (after a restart or
SCRIPT FLUSH).

`Subscription` subscribes to channels on a connection of its own and hands
on every message of a read at once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

from app.relay import resp
from app.relay.resp import Arg

#: How often an open connection checks its oldest unanswered command.
_WATCH_S = 0.25


class PipeError(Exception):
    """The connection failed, or a command was not answered in time."""


class ReplyError(Exception):
    """Redis answered a command with an error."""


@dataclass(frozen=True)
class Address:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_address(url: str) -> Address | None:
    """The address of a plain `redis://`, `rediss://` or `unix://` URL.

    None for a URL with options in its query (other than `db`), or one this
    cannot read (a port or database that is not a number): those are
    redis-py's to interpret, or to refuse.
    """
    try:
        return _parse_address(url)
    except ValueError:
        return None


def _parse_address(url: str) -> Address | None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return None
    query = [item.split("=", 1) for item in parts.query.split("&") if item]
    if any(len(item) != 2 or item[0] != "db" for item in query):
        return None
    db = int(query[-1][1]) if query else 0
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == "unix":
        return Address(path=unquote(parts.path), db=db, username=username, password=password)
    path = parts.path.strip("/")
    if path and not query:
        db = int(path)
    return Address(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=db,
        username=username,
        password=password,
        tls=parts.scheme == "rediss",
    )


class _Protocol(asyncio.Protocol):
    """The commands in flight on one connection, answered in order."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        # Checked at least twice within a short budget, so it is kept.
        self._watch_s = min(_WATCH_S, timeout / 2)
        self._reader = resp.reader()
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._watch: asyncio.TimerHandle | None = None
        self._overdue: asyncio.Future[Any] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no subclasses of asyncio's, only alike.
        self._transport = cast(asyncio.Transport, transport)
        self._watch = self._loop.call_later(self._watch_s, self._check)

    def execute(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:
            future.set_exception(PipeError("connection closed"))
            return future
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(command)
        self._pending.append((future, time.monotonic()))
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed and self._transport is not None:
            self._transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                if not self._pending:
                    raise hiredis.ProtocolError("a reply to no command")
                future, _ = self._pending.popleft()
                if future.done():
                    continue  # its caller stopped waiting
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(ReplyError(str(reply)))
                else:
                    future.set_result(reply)
        except Exception as error:  # hiredis.ProtocolError, UnicodeDecodeError
            self.fail(f"unreadable reply ({type(error).__name__})")

    def _check(self) -> None:
        if self.closed:
            return
        if self._pending and time.monotonic() - self._pending[0][1] > self._timeout:
            # Overdue: fail at the next check if it is still unanswered (after a
            # stall of the loop, its reply may be read in between).
            head = self._pending[0][0]
            if head is self._overdue:
                self.fail("timeout")
                return
            self._overdue = head
        self._watch = self._loop.call_later(self._watch_s, self._check)

    def fail(self, reason: str) -> None:
        """Close, failing every command in flight."""
        if self.closed:
            return
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        if self._transport is not None:
            self._transport.abort()
        pending, self._pending = self._pending, deque()
        self._out = []
        for future, _ in pending:
            if not future.done():
                future.set_exception(PipeError(reason))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection lost")


async def _open(
    address: Address, factory: Any, connect_timeout: float
) -> tuple[asyncio.Transport, Any]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            if address.path is not None:
                transport, protocol = await loop.create_unix_connection(factory, address.path)
            else:
                context = ssl.create_default_context() if address.tls else None
                transport, protocol = await loop.create_connection(
                    factory, address.host, address.port, ssl=context
                )
    except (OSError, TimeoutError, ssl.SSLError) as error:
        raise PipeError(f"cannot connect ({type(error).__name__})") from None
    return transport, protocol


def _hello(address: Address) -> list[list[Arg]]:
    """The commands a new connection sends first: AUTH, SELECT."""
    commands: list[list[Arg]] = []
    if address.password is not None:
        if address.username is not None:
            commands.append(["AUTH", address.username, address.password])
        else:
            commands.append(["AUTH", address.password])
    if address.db:
        commands.append(["SELECT", address.db])
    return commands


class Pipe:
    """Commands to one Redis on one connection, pipelined; connects when needed."""

    def __init__(self, address: Address, *, timeout: float = 2.0, connect_timeout: float = 2.0):
        self.address = address
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        #: When the last attempt to connect failed, and why.
        self._failed: tuple[float, PipeError] | None = None

    async def _connection(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        asked = time.monotonic()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            if self._failed is not None and self._failed[0] >= asked:
                # An attempt made while this caller waited failed: so does this one.
                raise self._failed[1]
            try:
                protocol = await self._connect()
            except PipeError as error:
                self._failed = (time.monotonic(), error)
                raise
            self._protocol = protocol
            return protocol

    async def _connect(self) -> _Protocol:
        timeout = self._timeout
        _, protocol = await _open(self.address, lambda: _Protocol(timeout), self._connect_timeout)
        assert isinstance(protocol, _Protocol)
        for command in _hello(self.address):
            try:
                await protocol.execute(resp.encode(command))
            except ReplyError as error:
                protocol.fail("refused")
                raise PipeError(f"Redis refused the connection: {error}") from None
        return protocol

    async def execute(self, *args: Arg) -> Any:
        """Send one command; its reply (str, int, list, None)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        return await protocol.execute(resp.encode(args))

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.fail("closed")
            self._protocol = None


class Script:
    """A Lua script run by SHA1, loaded again when Redis no longer knows it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, pipe: Pipe, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await pipe.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except ReplyError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        return await pipe.execute("EVAL", self.source, len(keys), *keys, *args)


class _Listening(asyncio.Protocol):
    """A subscribed connection: its messages, a read at a time."""

    def __init__(self) -> None:
        self._reader = resp.reader(lenient=True)
        self.batches: deque[list[tuple[str, str]]] = deque()
        self.changed = asyncio.Event()
        self.subscribed = 0
        self.last_read = time.monotonic()
        self.error: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        reader = self._reader
        batch: list[tuple[str, str]] = []
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not isinstance(reply, list) or len(reply) < 2:
                    if isinstance(reply, hiredis.ReplyError):
                        raise hiredis.ProtocolError(str(reply))
                    continue
                kind = reply[0]
                if kind == "message" and len(reply) == 3:
                    batch.append((reply[1], reply[2]))
                elif kind == "subscribe":
                    self.subscribed += 1
        except Exception as error:
            self._stop(f"unreadable reply ({type(error).__name__})")
        if batch:
            self.batches.append(batch)
        self.changed.set()

    def _stop(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        if self.transport is not None:
            self.transport.abort()
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop("connection lost")


class Subscription:
    """Channels heard on a connection of their own; `read` gives what arrived since."""

    def __init__(
        self,
        address: Address,
        channels: Sequence[str],
        *,
        timeout: float = 2.0,
        connect_timeout: float = 2.0,
        health_s: float = 10.0,
    ) -> None:
        self.address = address
        self.channels = list(channels)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._health_s = health_s
        self._protocol: _Listening | None = None

    async def open(self) -> None:
        """Connect and subscribe; PipeError if that fails or takes longer than the budget."""
        _, protocol = await _open(self.address, _Listening, self._connect_timeout)
        assert isinstance(protocol, _Listening)
        self._protocol = protocol
        assert protocol.transport is not None
        commands: list[list[Arg]] = [*_hello(self.address), ["SUBSCRIBE", *self.channels]]
        protocol.transport.write(b"".join(resp.encode(c) for c in commands))
        try:
            async with asyncio.timeout(self._timeout):
                while protocol.subscribed < len(self.channels):
                    if protocol.error is not None:
                        raise PipeError(protocol.error)
                    protocol.changed.clear()
                    await protocol.changed.wait()
        except TimeoutError:
            self.close()
            raise PipeError("subscription not confirmed") from None

    async def read(self) -> list[tuple[str, str]]:
        """Every (channel, data) received since the last read, in order (waits for one).

        PipeError once the connection is lost, or when it stays silent past a
        PING's budget.
        """
        protocol = self._protocol
        if protocol is None:
            raise PipeError("not subscribed")
        pinged_at: float | None = None
        while True:
            if protocol.batches:
                out: list[tuple[str, str]] = []
                while protocol.batches:
                    out += protocol.batches.popleft()
                return out
            if protocol.error is not None:
                raise PipeError(protocol.error)
            protocol.changed.clear()
            now = time.monotonic()
            if pinged_at is not None and protocol.last_read >= pinged_at:
                pinged_at = None  # heard from since
            if pinged_at is None:
                wait = self._health_s - (now - protocol.last_read)
                if wait <= 0:
                    assert protocol.transport is not None
                    protocol.transport.write(resp.encode(["PING"]))
                    pinged_at = now
                    continue
            else:
                wait = self._timeout - (now - pinged_at)
                if wait <= 0:
                    protocol._stop("no answer to PING")
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await protocol.changed.wait()

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol._stop("closed")
            self._protocol = None
