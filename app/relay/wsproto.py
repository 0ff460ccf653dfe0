"""The server's WebSocket protocol: uvicorn's, bounded, with a frame sink for room sockets.

Two additions to uvicorn's websockets-sansio protocol:

- An upgrade request its parser refuses is answered. The parser (websockets)
  refuses a request line or header line over 8 KiB, or over 128 headers;
  uvicorn then neither answers nor closes, and the connection hangs until the
  client gives up. This answers 431 for a head too large (400 for anything
  else the parser refused) and closes.
- An ASGI extension, `confide.frames` in the scope's `extensions`: a
  `FrameSink` that writes a text frame already encoded for the wire
  (`text_frame`) straight to the transport, with no ASGI message, no
  per-frame task switch and, for a frame that goes to several sockets, one
  encoding for all of them. It is offered only when no WebSocket extension
  (compression) was negotiated, since a frame encoded once must be the same
  bytes for every socket. The room socket uses it when it is there, and
  the ordinary ASGI `send` when it is not (another server, tests).

The sink never waits: a caller writes only while `ready()` (the socket is
open and the transport is not paused, i.e. its buffer is under the high-water
mark) and otherwise queues the frame and awaits `wait_writable()`.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Generic, Protocol, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import SecurityError
from websockets.http11 import Request
from websockets.protocol import State

__all__ = ["EXTENSION", "Flag", "FrameSink", "Inbox", "WebSocketProtocol", "sink_of", "text_frame"]

#: The scope's `extensions` key under which the sink is offered.
EXTENSION = "confide.frames"

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x81  # FIN, opcode 1 (text); a server's frames are never masked (RFC 6455 5.1)


def text_frame(data: bytes) -> bytes:
    """`data` (UTF-8 text) as one unmasked, final WebSocket text frame (RFC 6455 5.2)."""
    n = len(data)
    if n < 126:
        return _SHORT.pack(_FIN_TEXT, n) + data
    if n < 65536:
        return _MEDIUM.pack(_FIN_TEXT, 126, n) + data
    return _LONG.pack(_FIN_TEXT, 127, n) + data


class FrameSink(Protocol):
    """Writes encoded frames to one socket's transport (see the module's docstring)."""

    def open(self) -> bool:
        """Whether the socket is open for frames (whether or not the transport is paused)."""

    def ready(self) -> bool:
        """Whether a frame written now goes out in order, without growing the buffer
        past its mark: the socket is open and the transport is not paused."""

    def write_frame(self, frame: bytes) -> None:
        """Write `frame` (from `text_frame`); only when `ready()`."""

    async def wait_writable(self) -> None:
        """Return once the transport is not paused, or the connection is lost."""


def sink_of(scope: Any) -> FrameSink | None:
    """The frame sink the server offers in `scope`, if any."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    sink: FrameSink | None = extensions.get(EXTENSION)
    return sink


T = TypeVar("T")


class _Waiters:
    """Futures parked until something happens: none allocated while nobody waits."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _park(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class Inbox(_Waiters, Generic[T]):
    """What uvicorn's protocol asks of its `asyncio.Queue` of received events
    (`put_nowait`, `get`, `empty`), in a fraction of its memory: an idle socket
    holds an empty list, not the queue's deques and its `Event`. Unbounded, as
    uvicorn's queue is (uvicorn pauses reading while an event waits)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        super().__init__()
        self._items: list[T] = []

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._wake()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        while not self._items:
            await self._park()
        return self._items.pop(0)


class Flag(_Waiters):
    """What uvicorn's protocol asks of its `writable` `asyncio.Event` (`set`, `clear`,
    `is_set`, `wait`), without a deque per socket while nobody waits."""

    __slots__ = ("_set",)

    def __init__(self, value: bool) -> None:
        super().__init__()
        self._set = value

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        self._wake()

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            await self._park()
        return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, answering refused upgrades, offering a sink."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same behaviour as uvicorn's asyncio.Queue and asyncio.Event, ~4 KB
        # less per socket.
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        refused = self.conn.handshake_exc
        if self.handshake_initiated or refused is None or self.transport.is_closing():
            return
        too_large = isinstance(refused, SecurityError) or isinstance(
            refused.__cause__, SecurityError
        )
        status = b"431 Request Header Fields Too Large" if too_large else b"400 Bad Request"
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        self.transport.close()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The application's task is created but has not run yet: the scope it
        # will see can still be given the sink.
        scope = getattr(self, "scope", None)
        if scope is not None and not self.conn.extensions:
            scope["extensions"][EXTENSION] = self

    # -- FrameSink --------------------------------------------------------------
    def open(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
            and not self.transport.is_closing()
        )

    def ready(self) -> bool:
        return self.writable.is_set() and self.open()

    def write_frame(self, frame: bytes) -> None:
        self.transport.write(frame)

    async def wait_writable(self) -> None:
        await self.writable.wait()
