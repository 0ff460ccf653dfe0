"""Log injection: what a client sends never forges, splits or colours a line of the log.

A real `confide serve` receives hostile input where a client controls it: display names,
emails and titles with CR/LF, ANSI escapes and format strings (`%s`, `%(x)s`, `{}`);
percent-encoded and raw control bytes in the path and the query; hostile `User-Agent`,
`X-Request-Id`, `X-Forwarded-For`, `Origin` and `Host` headers; JSON bodies with bad
values and bodies that are not JSON; socket handshakes, frames and close reasons. Then
its standard error is read as a log shipper would: every line is one JSON object, no
raw ESC (0x1b) or CR byte appears, no line is a record the input forged, and each HTTP
request that reached the app has exactly one access record.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.fixtures.processes import Backend, Server
from tests.fixtures.server import recv, ws_url
from tests.ops.story import practice_on

FORGED = "forgedmarker"
#: One line that, written raw, would end the current record, start a forged one and
#: paint the terminal; and the format directives a `%`- or `{}`-formatting would read.
EVIL = (
    f'x\r\n{{"time":"2026-01-01","level":"CRITICAL","logger":"confide","message":"{FORGED}"}}'
    "\n\x1b[2J\x1b[31mred\x1b[0m\r %s %d %(message)s %(x)s {} {0} {message} \x7f\u2028end"
)
#: With a NUL too, where the input is not a name (names refuse NUL).
EVIL_NUL = EVIL + "\x00"


def records_of(text: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"log line {number} is not one JSON object: {line[:300]!r}")
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line[:300]
        records.append(record)
    return records


def raw_request(port: int, head: bytes) -> bytes:
    """Send bytes no HTTP client library would, and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def test_hostile_input_writes_well_formed_records_only(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    server = Server(backend, tmp_path / "logs", backend.env(CONFIDE_LOG_LEVEL="debug")).start()
    sent = 0  # HTTP requests that reach the app
    try:
        async with practice_on(server) as practice:
            sent += 2  # the admin's log-in and documents (counted below from the log)
            host = await practice.counselor(f"Dr {EVIL}")
            guest = await practice.client(f"Client {EVIL}")
            room = await practice.room(host, title=EVIL)
            await practice.invite(host, room["id"], guest)
            http = practice.http
            # Bodies: bad values, an email and password that are format strings, not JSON.
            answers = [
                await http.post("/v1/accounts", json={"email": EVIL_NUL, "password": EVIL_NUL}),
                await http.post(
                    "/v1/auth/token", data={"username": EVIL_NUL, "password": EVIL_NUL}
                ),
                await http.post("/v1/rooms", content=b'{"title": "\x1b[31m\r\n', headers=host.auth),
                await http.post(
                    "/v1/rooms",
                    content=b"\xff\xfe\x1b%s\r\n",
                    headers={**host.auth, "content-type": "application/json"},
                ),
                await http.post("/v1/rooms", json={"title": EVIL, "kind": EVIL}, headers=host.auth),
                # Paths and queries, percent-encoded.
                await http.get(
                    "/v1/%0d%0a%1b%5b31m%25s%7b%7d?q=%0d%0a%1b%25(x)s", headers=host.auth
                ),
                await http.get(f"/v1/rooms/%0d%0a{FORGED}%1b", headers=host.auth),
                # Headers a client controls.
                await http.get(
                    "/v1/me",
                    headers={
                        **host.auth,
                        "User-Agent": f"ua %s %(x)s {{}} {FORGED}",
                        "X-Request-Id": '"},"level":"CRITICAL","message":"' + FORGED,
                        "X-Forwarded-For": f"{FORGED} %s",
                        "Origin": f"http://{FORGED}.example %s",
                    },
                ),
                await http.post(
                    "/v1/rooms",
                    json={"title": "ok", "kind": "individual"},
                    headers={**host.auth, "Idempotency-Key": "%s%(x)s{}"},
                ),
            ]
            sent += len(answers)
            assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
            request_ids = [answer.headers["x-request-id"] for answer in answers]
            assert all(FORGED not in rid for rid in request_ids)
            # Requests no client library sends: raw control bytes in the target and headers.
            raw = [
                b"GET /v1/\x1b[31m%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"GET /v1/me HTTP/1.1\r\nHost: x\x1b[31m%s\r\nConnection: close\r\n\r\n",
                b"GET /v1/me HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x1b[2Jb\r\n"
                b"Connection: close\r\n\r\n",
                b"GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rb\r\n"
                b"Connection: close\r\n\r\n",
                b"GET /v1/me HTTP/1.1\r\nHost: " + FORGED.encode() + b" {} %(x)s\r\n"
                b"Connection: close\r\n\r\n",
            ]
            for head in raw:
                await asyncio.to_thread(raw_request, server.port, head)
            # Socket: a hostile handshake, then hostile frames and a hostile close reason.
            token = await practice.token(host, room["id"])
            ws = await connect(
                ws_url(practice.base, room["id"]),
                subprotocols=["confide.v1", f"bearer.{token}"],  # type: ignore[list-item]
                compression=None,
                open_timeout=10,
                user_agent_header=f"agent {FORGED} %s",
            )
            assert (await recv(ws))["state"] == "admitted"
            await ws.send(json.dumps({"type": EVIL_NUL, "id": EVIL_NUL}))
            await ws.send(EVIL)
            await ws.send(EVIL.encode())
            await ws.close(code=4000, reason=EVIL[:60])
            refused = await asyncio.to_thread(
                raw_request,
                server.port,
                f"GET /v1/rooms/{room['id']}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Protocol: confide.v1, bearer.{FORGED}%s\r\n"
                f"Origin: http://{FORGED}%s\r\n\r\n".encode(),
            )
            assert refused
    finally:
        server.stop()
    data = (tmp_path / "logs" / "stderr.log").read_bytes()
    assert b"\x1b" not in data, "a raw ESC reached the log"
    assert b"\r" not in data, "a raw CR reached the log"
    assert "\u2028".encode() not in data, "a raw line separator reached the log"
    text = data.decode("utf-8")
    records = records_of(text)
    for record in records:
        assert record["message"] != FORGED, record
        assert FORGED not in str(record.get("request_id", "")), record
        assert record.get("level") != "CRITICAL", record
    http_lines = [r for r in records if r["logger"] == "confide.access" and r.get("kind") == "http"]
    # One access record per request that reached the app, and never more; a request the
    # server's parser refused is one warning at most.
    assert len(http_lines) >= sent
    assert len({r["request_id"] for r in http_lines}) == len(http_lines)
    for rid in request_ids:
        assert [r["request_id"] for r in http_lines].count(rid) == 1, rid
    refused_heads = [r for r in records if r["message"] == "Invalid HTTP request received."]
    assert len(refused_heads) <= len(raw)


STRAY = """
import sys, threading, warnings
from app.core import logging as logs

logs.configure("info")
evil = sys.argv[1]
warnings.warn(evil)  # a library's warning


def fail() -> None:
    raise ValueError(evil)


thread = threading.Thread(target=fail)  # an error in a thread
thread.start()
thread.join()


class Leaky:
    def __del__(self) -> None:
        raise ValueError(evil)


Leaky()  # an error no code can catch (raised while an object is collected)
raise ValueError(evil)  # and one that ends the process
"""


def test_warnings_and_uncaught_errors_are_records_too(tmp_path: Path) -> None:
    """What Python writes to standard error by itself (warnings, tracebacks of threads,
    of objects being collected, of the process) goes through the log's formatter."""
    done = subprocess.run(
        [sys.executable, "-c", STRAY, EVIL_NUL.replace("\x00", "")],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 1
    data = done.stderr
    assert b"\x1b" not in data, data[:600]
    assert b"\r" not in data, data[:600]
    assert "\u2028".encode() not in data, "a raw line separator reached the log"
    records = records_of(data.decode("utf-8"))
    assert len(records) == 4, records
    assert all(record["message"] != FORGED for record in records)
    assert [r["level"] for r in records] == ["WARNING", "ERROR", "ERROR", "CRITICAL"], records
    assert all("ValueError" in r.get("exception", "") for r in records[1:]), records
