"""Oversize request heads are refused: 431, or a closed connection; never served.

uvicorn's default parser (httptools) has no limit of its own, and
`h11_max_incomplete_event_size` applies to h11 only: an 8 MB header was
answered 200. The app refuses a head over MAX_HEADER_BYTES with a 431
problem whatever the server and parser; `confide serve` also reads with h11,
whose bound closes a connection that keeps sending a head, before it is
buffered whole.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from app.core.context import Context
from app.core.errors import PROBLEM_JSON
from app.main import create_app
from app.web.middleware import MAX_HEADER_BYTES
from tests.fixtures.processes import Server, backend_for, running_server
from tests.fixtures.server import serve

HUGE = 8 * 1024 * 1024


@pytest.fixture
def dialect() -> str:
    return "sqlite"  # the limit is the server's, not the database's


@pytest.fixture
async def httptools_server(ctx: Context) -> AsyncIterator[str]:
    """The app under uvicorn's defaults (httptools), as someone running uvicorn by hand has it."""
    async with serve(create_app(context=ctx)) as base:
        yield base


@pytest.fixture(scope="module")
def confide_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("headers")
    with (
        backend_for("sqlite", root / "data") as backend,
        running_server(backend, root / "logs") as server,
    ):
        yield server


def padding(total: int) -> dict[str, str]:
    """Headers that bring a small request's head to about `total` bytes."""
    return {"x-padding": "a" * (total - 200)}


def assert_431(response: httpx.Response) -> None:
    assert response.status_code == 431, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert (body["status"], body["code"]) == (431, "headers_too_large")


async def test_under_httptools_a_head_over_the_limit_is_431(httptools_server: str) -> None:
    async with httpx.AsyncClient(base_url=httptools_server, timeout=30) as http:
        assert (await http.get("/healthz", headers=padding(MAX_HEADER_BYTES - 1024))).is_success
        assert_431(await http.get("/healthz", headers=padding(MAX_HEADER_BYTES + 1024)))
        assert_431(await http.get("/healthz", headers=padding(1024 * 1024)))
        # The path and query string count too.
        assert_431(await http.get("/healthz", params={"q": "a" * (MAX_HEADER_BYTES + 1)}))
        many = {f"x-h{i}": "a" * 100 for i in range(200)}
        assert_431(await http.get("/healthz", headers=many))
        assert (await http.get("/healthz")).status_code == 200


async def refused_upgrade(base: str, headers: dict[str, str]) -> int | None:
    """Open a room socket with `headers`; the HTTP status that refused it (None: closed)."""
    url = base.replace("http://", "ws://") + "/v1/rooms/r/ws"
    try:
        async with connect(
            url,
            subprotocols=["confide.v1"],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=10,
        ):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code
    except (ConnectionError, EOFError, InvalidMessage):
        return None
    raise AssertionError("the socket was opened")


# Under the WebSocket parser's own limits (8 KiB a line, 128 headers), over the app's.
SPREAD = {f"x-padding-{i}": "a" * 6000 for i in range(3)}


async def test_a_socket_with_an_oversize_head_is_refused(httptools_server: str) -> None:
    assert await refused_upgrade(httptools_server, SPREAD) == 431


@pytest.mark.parametrize(
    "headers",
    [SPREAD, {"x-padding": "a" * 9000}, {f"x-h{i}": "a" for i in range(200)}],
    ids=["spread", "one-line-over-8-kib", "200-headers"],
)
async def test_confide_serve_refuses_a_socket_with_an_oversize_head(
    confide_server: Server, headers: dict[str, str]
) -> None:
    # Not a hang either: uvicorn leaves an upgrade its parser refused unanswered.
    status = await refused_upgrade(f"http://127.0.0.1:{confide_server.port}", headers)
    assert status in (431, None)


def test_confide_serve_answers_431_past_the_limit(confide_server: Server) -> None:
    http = confide_server.http
    assert http.get("/healthz", headers=padding(MAX_HEADER_BYTES - 1024)).status_code == 200
    assert_431(http.get("/healthz", headers=padding(MAX_HEADER_BYTES + 1024)))
    assert_431(http.get("/healthz", headers=padding(3 * MAX_HEADER_BYTES)))


def send_huge_head(port: int, size: int) -> tuple[int, bytes]:
    """Send a request whose one header is `size` bytes; (bytes sent, what came back).

    Bounded: stops when the server closes or resets, and after 60 s in all.
    """
    deadline = time.monotonic() + 60
    sent = 0
    chunk = b"a" * 65536
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: "
        try:
            sock.sendall(head)
            while sent < size and time.monotonic() < deadline:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError:  # the server closed or reset the connection: refused
            pass
        with contextlib.suppress(OSError):
            sock.settimeout(10)
            while len(answer) < 65536 and time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    return sent, answer


def test_confide_serve_refuses_an_8_mb_header(confide_server: Server) -> None:
    sent, answer = send_huge_head(confide_server.port, HUGE)
    status_line = answer.split(b"\r\n", 1)[0]
    # 431 (or 400) and the connection closed, or closed without an answer: never served.
    assert b" 200 " not in status_line, (sent, answer[:500])
    if status_line:
        assert status_line.split()[1] in (b"400", b"431"), answer[:500]
    # It stopped reading long before 8 MB, and it is still serving.
    assert sent < HUGE or not answer
    assert confide_server.http.get("/healthz").status_code == 200


def test_the_bound_holds_for_a_head_sent_slowly_in_many_lines(confide_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", confide_server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        refused = False
        try:
            for i in range(2000):  # 2000 x 100 bytes: far past the bound
                sock.sendall(f"x-h{i}: {'a' * 90}\r\n".encode())
            sock.sendall(b"\r\n")
            answer = sock.recv(65536)
        except OSError:
            refused, answer = True, b""
    assert refused or not answer.startswith(b"HTTP/1.1 200"), answer[:300]
