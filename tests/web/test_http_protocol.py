"""`BoundedHttpToolsProtocol`: httptools, with the request head bounded while it is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from app.web.http_protocol import HEAD_LIMIT, BoundedHttpToolsProtocol, body_deadline


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the length of the request body it read."""
    assert scope["type"] == "http"
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"size": size}).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = uvicorn.Config(
        echo_length,
        host="127.0.0.1",
        port=0,
        http=BoundedHttpToolsProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def exchange(port: int, *chunks: bytes) -> tuple[bytes, bool]:
    """Send `chunks` (one write each): what was answered until the server closed (or 5 s
    passed), and whether the server closed before every chunk was sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cut = False
    try:
        for chunk in chunks:
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                cut = True
                break
            if reader.at_eof() or writer.is_closing():
                cut = True
                break
            await asyncio.sleep(0.002)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while data := await asyncio.wait_for(reader.read(65536), 5):
                answer += data
        return answer, cut
    finally:
        writer.close()


def refused(answer: bytes, cut: bool) -> None:
    """431 and closed; or closed without an answer (a reset can discard the 431): never served."""
    assert cut, answer[:200]
    if answer:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b'"code": "headers_too_large"' in answer
        assert answer.count(b"HTTP/1.1 ") == 1


def request(body: bytes = b"", extra: bytes = b"") -> bytes:
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def test_a_head_sent_past_the_limit_is_431_and_closed(port: int) -> None:
    line = b"x-h: " + b"a" * 1000 + b"\r\n"
    chunks = [b"GET /x HTTP/1.1\r\nHost: t\r\n"] + [line] * (HEAD_LIMIT // len(line) * 8)
    refused(*await exchange(port, *chunks, b"\r\n"))


async def test_one_long_header_line_is_refused_too(port: int) -> None:
    chunks = [b"GET /x HTTP/1.1\r\nHost: t\r\nx-huge: "] + [b"a" * 16384] * 400
    refused(*await exchange(port, *chunks, b"\r\n\r\n"))


async def test_a_head_under_the_limit_is_served(port: int) -> None:
    extra = b"x-h: " + b"a" * (HEAD_LIMIT // 2) + b"\r\n"
    answer, _ = await exchange(port, request(b"abc", extra))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b'{"size": 3}')


@pytest.mark.parametrize("chunked", [False, True], ids=["one-write", "many-writes"])
async def test_a_large_body_is_never_taken_for_a_head(port: int, chunked: bool) -> None:
    body = b"b" * (4 * HEAD_LIMIT)
    whole = request(body)
    chunks = [whole[i : i + 8192] for i in range(0, len(whole), 8192)] if chunked else [whole]
    answer, _ = await exchange(port, *chunks)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b'{"size": %d}' % len(body))


async def test_pipelined_requests_with_bodies_are_served(port: int) -> None:
    body = b"c" * (2 * HEAD_LIMIT)
    first = request(body).replace(b"Connection: close\r\n", b"")
    answer, _ = await exchange(port, first + request(body))
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer[:300]


times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
timeouts = st.floats(min_value=0.1, max_value=600, allow_nan=False)
rates = st.integers(min_value=1, max_value=10 * 1024 * 1024)


@given(times, st.floats(0, 1e4), st.integers(0, 2**20), st.integers(0, 2**20), timeouts, rates)
def test_a_body_deadline_never_moves_earlier_for_more_bytes_or_a_later_byte(
    started: float, gap: float, received: int, more: int, timeout: float, rate: int
) -> None:
    last = started + gap
    deadline = body_deadline(started, last, received, timeout, rate)
    assert deadline <= last + timeout  # a stall is cut
    assert deadline <= started + timeout + received / rate  # so is a trickle
    assert body_deadline(started, last, received + more, timeout, rate) >= deadline
    assert body_deadline(started, last + gap, received, timeout, rate) >= deadline


@given(timeouts, rates, st.floats(min_value=0.01, max_value=0.99))
def test_a_body_slower_than_the_rate_is_cut_in_bounded_time(
    timeout: float, rate: int, fraction: float
) -> None:
    """A byte every 1/r seconds, r below the minimum rate: past its deadline once
    timeout / (1 - r / rate) seconds (and one interval) have passed, however long."""
    sent_rate = rate * fraction
    now = timeout / (1 - fraction) + 1 / sent_rate
    received = int(now * sent_rate)  # the bytes sent by then, the last at received / r
    assert now > body_deadline(0.0, received / sent_rate, received, timeout, rate)


@given(timeouts, rates, st.floats(min_value=1.0, max_value=100.0), st.integers(1, 400))
def test_a_steady_body_at_the_rate_is_never_cut(
    timeout: float, rate: int, factor: float, chunks: int
) -> None:
    """Chunks of `rate * interval * factor` bytes (factor >= 1) every interval < timeout."""
    interval = timeout / 2
    size = rate * interval * factor
    received = 0.0
    for i in range(1, chunks + 1):
        now = i * interval
        # Just before the i-th chunk arrives: the (i-1)-th came at now - interval.
        last = now - interval
        assert now <= body_deadline(0.0, last, int(received), timeout, rate) + 1e-9
        received += size
