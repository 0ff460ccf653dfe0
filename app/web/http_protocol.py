"""uvicorn's httptools protocol with the request head bounded while it is read.

httptools (llhttp, in C) parses several times faster than h11 (pure Python),
but has no limit of its own: it buffers a header line, however long, until it
ends, and it takes any number of lines (an 8 MB header was answered 200). This
protocol counts the bytes that arrive while a head is incomplete and, past
`HEAD_LIMIT`, answers 431 and closes the connection, as h11's
`max_incomplete_event_size` does (h11 answers 400). The bound is four times
the app's own `MAX_HEADER_BYTES`, so that a head between the two still gets
the app's 431 problem (`app.web.middleware.HeaderLimit`); what this protocol
refuses never reaches the app.

It also bounds how long a client may take to send a request, which uvicorn
does not: its `timeout_keep_alive` covers only the idle time between
requests, and a head or a body trickling in at a byte a second held a
connection (and its task, and its buffers) for as long as the client liked.
Here a head must be whole `head_timeout` seconds after its first byte (and a
new connection that sends nothing is closed after as long), and a body must not stall for
`body_timeout` seconds nor fall behind `body_min_rate` bytes a second after
the first `body_timeout` seconds (Apache's mod_reqtimeout model: each byte
received extends the deadline by 1 / rate seconds). Past either, the
connection is answered 408 (`request_timeout`) when no response has begun,
then closed. While the server itself holds the body back (the app has not
read it yet, pipelined requests wait, `Expect: 100-continue` awaits the
app), the body's clock is restarted rather than run: only the client's
slowness is cut off. A WebSocket upgrade is a head like any other.

`confide serve` runs it (`http="app.web.http_protocol:BoundedHttpToolsProtocol"`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.config import BODY_MIN_RATE, BODY_TIMEOUT_S, HEAD_TIMEOUT_S
from app.core.errors import PROBLEM_JSON, RequestTimeout
from app.web.middleware import MAX_HEADER_BYTES, OVERSIZE_HEADERS_BODY

#: The most bytes of an incomplete request head a connection may send.
HEAD_LIMIT = 4 * MAX_HEADER_BYTES


def _problem(status_line: bytes, body: bytes) -> bytes:
    return b"".join(
        [
            status_line,
            b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )


TIMEOUT_BODY = json.dumps(
    {
        "type": f"https://confide.invalid/problems/{RequestTimeout.code}",
        "title": RequestTimeout.title,
        "status": RequestTimeout.status,
        "detail": "The request was not sent in time.",
        "code": RequestTimeout.code,
    }
).encode()
TIMEOUT = _problem(b"HTTP/1.1 408 Request Timeout\r\n", TIMEOUT_BODY)
REFUSAL = _problem(b"HTTP/1.1 431 Request Header Fields Too Large\r\n", OVERSIZE_HEADERS_BODY)


def body_deadline(
    started: float, last: float, received: int, timeout: float, min_rate: int
) -> float:
    """When a body read since `started`, of which `received` bytes came, the last at
    `last`, is too slow: `timeout` after its last byte (a stall), or `timeout` plus
    the time `received` bytes take at `min_rate` after its start (a trickle)."""
    return min(last + timeout, started + timeout + received / min_rate)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses (431, then closes) a head past `HEAD_LIMIT` bytes,
    and (408, then closes) a head or a body that arrives too slowly."""

    head_timeout: float = HEAD_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    body_min_rate: int = BODY_MIN_RATE

    # The timer of the head or the body being read, if any.
    _timer: asyncio.TimerHandle | None = None
    # While a body is read: when its clock started, how many bytes came since,
    # and when the last of them came (loop time).
    _body_started = 0.0
    _body_bytes = 0
    _body_last = 0.0
    _reading_body = False

    # The bytes of the current head received so far (a lower bound: the read in
    # which a head begins is not counted, and a read is at most 256 KiB).
    _head_bytes = 0
    # No head under way: the last one has been read whole (or none has begun).
    _head_done = True
    # A head began during the read being fed to the parser.
    _began = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing at all is held no longer than a head.
        self._arm(self.head_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._began = False
        super().data_received(data)
        if self._head_done or self._began or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > HEAD_LIMIT:
            self.refuse_head()

    def refuse_head(self) -> None:
        self._head_done = True
        self._disarm()
        self.transport.write(REFUSAL)
        self.transport.close()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._head_done = False
        self._began = True
        self._reading_body = False
        self._arm(self.head_timeout, self._head_late)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._disarm()
        super().on_headers_complete()
        if self.parser.should_upgrade():
            return  # a WebSocket: its protocol takes the connection over now
        # Whether a body follows is known only when it does (or the message
        # completes first): start its clock here, stop it at the message's end.
        self._reading_body = True
        self._restart_body_clock()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._body_last = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    # -- timers ----------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _restart_body_clock(self) -> None:
        now = self.loop.time()
        self._body_started = self._body_last = now
        self._body_bytes = 0
        self._arm(self.body_timeout, self._body_check)

    def _head_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        # A head has begun: it can be answered, unless the response to an
        # earlier (pipelined) request is still being written. A connection that
        # never sent a byte is closed without a word, as uvicorn closes an idle
        # keep-alive connection.
        cycle = self.cycle
        self._time_out(answer=not self._head_done and (cycle is None or cycle.response_complete))

    def _body_check(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._reading_body:
            return
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The server holds the body back, not the client.
            self._restart_body_clock()
            return
        now = self.loop.time()
        deadline = body_deadline(
            self._body_started,
            self._body_last,
            self._body_bytes,
            self.body_timeout,
            self.body_min_rate,
        )
        if now < deadline:
            self._timer = self.loop.call_at(deadline, self._body_check)
            return
        self._time_out(answer=cycle is None or not cycle.response_started)

    def _time_out(self, *, answer: bool) -> None:
        self._reading_body = False
        self._head_done = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app's task learns of it on its next receive (http.disconnect),
            # and nothing it sends from now on reaches the wire.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            self.transport.write(TIMEOUT)
        self.transport.close()


def with_timeouts(
    head_timeout: float, body_timeout: float, body_min_rate: int
) -> type[BoundedHttpToolsProtocol]:
    """The protocol with these timeouts (`confide serve` passes its settings)."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "head_timeout": head_timeout,
            "body_timeout": body_timeout,
            "body_min_rate": body_min_rate,
        },
    )
