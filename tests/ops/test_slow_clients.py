"""Slow clients are cut off: a head or a body trickling in gets 408 and a closed connection.

uvicorn's `timeout_keep_alive` covers only the idle time between requests: a
head or a body sent a byte at a time held its connection for as long as the
client liked. `confide serve` runs `app.web.http_protocol`, which bounds both
(`CONFIDE_HEAD_TIMEOUT`, `CONFIDE_BODY_TIMEOUT`, `CONFIDE_BODY_MIN_RATE`).
These tests run the real server with timeouts of a second, so that each
takes a second or two, and send from a raw socket one byte at a time.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.core.errors import PROBLEM_JSON
from tests.fixtures.processes import Server, backend_for, new_user, running_server

TIMEOUT_S = 1.0
MIN_RATE = 100  # bytes a second
#: How long a cut may take beyond its timeout on a busy machine.
SLACK_S = 3.0


@dataclass
class Exchange:
    answer: bytes
    sent: int  # bytes written before the server answered or closed
    elapsed: float  # seconds from the first byte to the server's answer or close
    closed: bool


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("slow")
    with (
        backend_for("sqlite", root / "data") as backend,
        running_server(
            backend,
            root / "logs",
            CONFIDE_HEAD_TIMEOUT=str(TIMEOUT_S),
            CONFIDE_BODY_TIMEOUT=str(TIMEOUT_S),
            CONFIDE_BODY_MIN_RATE=str(MIN_RATE),
            CONFIDE_WS_AUTH_TIMEOUT="10",
        ) as server,
    ):
        yield server


def trickle(
    port: int, chunks: list[bytes], interval: float, *, wait: float = 10, whole: bool = False
) -> Exchange:
    """Send `chunks` one per `interval` seconds from a raw socket until the server
    answers (unless `whole`) or closes; then read until it closes (or `wait` seconds pass)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        started = time.monotonic()
        answer, sent, closed = b"", 0, False
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and not whole:
                break
            try:
                sock.sendall(chunk)
            except OSError:
                closed = True
                break
            sent += len(chunk)
            time.sleep(interval)
        elapsed = time.monotonic() - started
        try:
            while data := sock.recv(65536):
                answer += data
            closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
        return Exchange(answer, sent, elapsed, closed)
    finally:
        sock.close()


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def assert_408(exchange: Exchange) -> None:
    assert exchange.closed
    assert exchange.answer.startswith(b"HTTP/1.1 408 "), exchange.answer[:200]
    head, _, body = exchange.answer.partition(b"\r\n\r\n")
    assert b"content-type: " + PROBLEM_JSON.encode() in head
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (408, "request_timeout")
    assert exchange.answer.count(b"HTTP/1.1 ") == 1


def registration(padding: int = 0) -> bytes:
    email, password, name = new_user("slow")
    body = json.dumps({"email": email, "password": password, "display_name": name})
    return (body + " " * padding).encode()


def post(body: bytes, path: str = "/v1/accounts") -> tuple[bytes, bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: confide.test\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    return head, body


def test_a_head_sent_a_byte_at_a_time_is_cut_off(server: Server) -> None:
    head, _ = post(b"{}")
    exchange = trickle(server.port, bytewise(head * 4), 0.05)
    assert_408(exchange)
    assert exchange.sent < len(head * 4)
    assert TIMEOUT_S * 0.8 <= exchange.elapsed <= TIMEOUT_S + SLACK_S


def test_a_body_sent_a_byte_at_a_time_is_cut_off(server: Server) -> None:
    head, body = post(registration(padding=400))
    exchange = trickle(server.port, [head, *bytewise(body)], 0.05)
    assert_408(exchange)
    assert exchange.sent < len(head) + len(body)
    assert TIMEOUT_S * 0.8 <= exchange.elapsed <= TIMEOUT_S + SLACK_S


def test_a_body_that_stops_is_cut_off(server: Server) -> None:
    head, body = post(registration())
    exchange = trickle(server.port, [head + body[:10]], 0)
    assert_408(exchange)


def test_a_websocket_upgrade_sent_a_byte_at_a_time_is_cut_off(server: Server) -> None:
    upgrade = (
        f"GET /v1/rooms/{uuid.uuid4()}/ws HTTP/1.1\r\nHost: confide.test\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: confide.v1\r\n\r\n"
    ).encode()
    exchange = trickle(server.port, bytewise(upgrade), 0.05)
    assert_408(exchange)
    assert exchange.sent < len(upgrade)


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    exchange = trickle(server.port, [], 0)
    assert exchange.closed
    assert exchange.answer == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert TIMEOUT_S * 0.8 <= time.monotonic() - started <= TIMEOUT_S + SLACK_S


def test_a_slow_but_steady_client_is_served(server: Server) -> None:
    """A head in pieces within the head timeout, and a body that takes longer than the
    body timeout at a rate above the minimum, on a keep-alive connection twice."""
    body = registration(padding=3000)
    head, _ = post(body)
    head = head.replace(b"connection: close\r\n", b"")
    pieces = [head[:20], head[20:40], head[40:]] + [body[i : i + 400] for i in range(0, 3400, 400)]
    assert len(body) / (len(pieces) * 0.2) > 4 * MIN_RATE
    assert len(pieces) * 0.2 > 1.5 * TIMEOUT_S
    again, _ = post(b"")
    again = again.replace(b"POST /v1/accounts", b"GET /healthz")
    exchange = trickle(server.port, [*pieces, again], 0.2, whole=True)
    assert exchange.sent == len(head) + len(body) + len(again)
    assert exchange.answer.startswith(b"HTTP/1.1 201 "), exchange.answer[:300]
    assert exchange.answer.count(b"HTTP/1.1 200 ") == 1, exchange.answer[-300:]


async def test_an_open_room_socket_outlives_the_request_timeouts(server: Server) -> None:
    """After the upgrade, the socket's own rules apply (here: authenticate within 10 s)."""
    url = f"ws://127.0.0.1:{server.port}/v1/rooms/{uuid.uuid4()}/ws"
    async with connect(url, subprotocols=[Subprotocol("confide.v1")], open_timeout=10) as ws:
        # The wall clock is what is tested: the HTTP timers must not fire on the socket.
        await asyncio.sleep(2.5 * TIMEOUT_S)
        await asyncio.wait_for(await ws.ping(), 5)
        assert ws.close_code is None
