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

`confide serve` runs it (`http="app.web.http_protocol:BoundedHttpToolsProtocol"`).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.errors import PROBLEM_JSON
from app.web.middleware import MAX_HEADER_BYTES, OVERSIZE_HEADERS_BODY

#: The most bytes of an incomplete request head a connection may send.
HEAD_LIMIT = 4 * MAX_HEADER_BYTES

_BODY = OVERSIZE_HEADERS_BODY
REFUSAL = b"".join(
    [
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
        b"content-length: " + str(len(_BODY)).encode() + b"\r\n",
        b"connection: close\r\n",
        b"\r\n",
        _BODY,
    ]
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses (431, then closes) a head past `HEAD_LIMIT` bytes."""

    # The bytes of the current head received so far (a lower bound: the read in
    # which a head begins is not counted, and a read is at most 256 KiB).
    _head_bytes = 0
    # No head under way: the last one has been read whole (or none has begun).
    _head_done = True
    # A head began during the read being fed to the parser.
    _began = False

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
        self.transport.write(REFUSAL)
        self.transport.close()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._head_done = False
        self._began = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_done = True
        super().on_headers_complete()
