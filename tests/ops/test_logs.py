"""What the server's log shows: one JSON object a line, and no line that links people.

A real `confide serve` runs a short session (accounts, a room, two
participants on WebSockets with the `bearer.<token>` subprotocol, a message
each way, a refused socket, disconnects) at every level.
Every line it writes must parse as JSON; no line may carry a room, account or
device id at all (so never next to an address, a port, a token or a frame),
no token, no `bearer.` header value, no frame content, no name, email, title
or session time, and by default no client address. The clients connect from
127.0.0.2, so that their address cannot be confused with the listening one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import subprocess
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.codec import b64url_encode as b64url
from tests.fixtures.processes import (
    CLI_TIMEOUT_S,
    CONFIDE,
    Backend,
    Server,
    free_port,
    run_cli,
)
from tests.fixtures.server import closed_with, recv
from tests.ops.story import CLIENT_HOST, Story, practice_on, run_story, socket

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}")
UUID_LIKE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
ROOM_SOCKET = "/v1/rooms/{room_id}/ws"


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every line the server wrote, as JSON objects; a line that is not one fails."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"log line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict), line
        for key in ("time", "level", "logger", "message"):
            assert key in record, f"log line {number} has no {key}: {line[:300]}"
        records.append(record)
    return records


def check_no_links(records: list[dict[str, Any]], lines: list[str], story: Story) -> None:
    """No line names anyone, or carries a token, a frame, an address or a port."""
    for line in lines:
        for label, value in {**story.ids, **story.secrets}.items():
            assert value not in line, f"the {label} appears in the log: {line[:300]}"
        assert "bearer." not in line.lower(), line[:300]
        assert not JWT.search(line), line[:300]
        assert "ciphertext" not in line.lower(), line[:300]
        assert "[redacted]" not in line, f"the redaction safety net had to act: {line[:300]}"
        for port in story.client_ports:
            assert f":{port}" not in line, f"a client port appears: {line[:300]}"
    for record in records:
        assert "client" not in record, record
        if not record["logger"].startswith("confide"):
            # uvicorn's handshake lines and the websockets protocol's own lines are gone.
            assert "websocket" not in str(record["message"]).lower(), record
            assert "connection open" not in str(record["message"]), record


def check_story_log(records: list[dict[str, Any]], lines: list[str], story: Story) -> None:
    check_no_links(records, lines, story)
    access = [r for r in records if r["logger"] == "confide.access"]
    http_lines = [r for r in access if r.get("kind") == "http"]
    assert len(http_lines) >= 15, access
    for record in http_lines:
        assert re.fullmatch(r"[0-9a-f]{16,32}", str(record.get("request_id", ""))), record
        assert {"method", "route", "status", "duration_ms"} <= set(record), record
        assert "{" in record["route"] or "/" in record["route"] or record["route"] == "unmatched"
    by_request = {r["request_id"]: r for r in http_lines}
    assert by_request[story.request_ids["room read"]]["route"] == "/v1/rooms/{room_id}"
    assert by_request[story.request_ids["room read"]]["status"] == 200
    assert by_request[story.request_ids["unmatched"]]["route"] == "unmatched"
    assert len(by_request) == len(http_lines), "request ids repeat"

    socket_lines = [r for r in records if r["logger"].startswith("confide.relay")]
    for record in socket_lines:
        assert re.fullmatch(r"[0-9a-f]{16,32}", str(record.get("conn_id", ""))), record
    opened = [r for r in access if r.get("kind") == "websocket"]
    assert len(opened) == 3, access  # host, guest, the refused replay
    assert {r["route"] for r in opened} == {ROOM_SOCKET}
    assert len({r["conn_id"] for r in opened}) == 3
    assert sorted(r["code"] for r in opened).count(4001) == 1
    assert any(r["message"].startswith("socket refused") for r in socket_lines)


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
async def test_the_log_is_json_and_links_no_one(tmp_path: Path, level: str) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    server = Server(backend, tmp_path / "logs", backend.env(CONFIDE_LOG_LEVEL=level)).start()
    try:
        async with practice_on(server) as practice:
            story = await run_story(practice)
    finally:
        server.stop()
    text = server.logs()
    records = parse_lines(text)
    if level in ("warning", "error"):
        # Quieter levels write less; what they write links no one either.
        assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in records), records
        check_no_links(records, text.splitlines(), story)
        return
    assert any(r["message"] == "Application startup complete." for r in records)
    started = [r for r in records if r["message"] == "logging configured"]
    assert [(r["log_level"], r["client_addresses"]) for r in started] == [(level, "off")]
    (serving,) = [r for r in records if r["message"].startswith("serving on ")]
    base = f"http://127.0.0.1:{server.port}"
    assert (serving["web_client"], serving["api_docs"]) == (f"{base}/app/", f"{base}/docs")
    check_story_log(records, text.splitlines(), story)


# -- client addresses, when asked for ------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "truncated", "keyed"])
async def test_client_address_setting(tmp_path: Path, mode: str) -> None:
    index_key = secrets.token_bytes(32)
    backend = Backend("sqlite", tmp_path / "data")
    env = backend.env(CONFIDE_LOG_CLIENT_ADDRESSES=mode, CONFIDE_INDEX_KEY=b64url(index_key))
    server = Server(backend, tmp_path / "logs", env).start()
    try:
        async with practice_on(server) as practice:
            counselor = await practice.counselor()
            room = await practice.room(counselor)
            ws = await socket(
                practice.base, room["id"], await practice.token(counselor, room["id"])
            )
            await recv(ws)
            port = ws.local_address[1]
            await ws.close()
    finally:
        server.stop()
    records = parse_lines(server.logs())
    access = [r for r in records if r["logger"] == "confide.access"]
    mine = [r for r in access if r.get("route") != "/healthz"]  # the fixture asks from .1
    assert len(mine) >= 5
    expected = {
        "off": None,
        "truncated": "127.0.0.0/24",
        "keyed": hmac.new(
            HKDF(hashes.SHA256(), 32, salt=None, info=b"confide log client address").derive(
                index_key
            ),
            CLIENT_HOST.encode(),
            hashlib.sha256,
        ).hexdigest()[:16],
    }[mode]
    for record in mine:
        assert record.get("client") == expected, record
    assert any(r.get("kind") == "websocket" and r.get("client") == expected for r in mine)
    text = server.logs()
    assert CLIENT_HOST not in text
    assert f":{port}" not in text
    assert str(port) not in json.dumps([r.get("client") for r in records])


def test_client_address_forms() -> None:
    from app.core.logging import address_key, client_address

    key = address_key(b"k" * 32)
    assert client_address("off", key, "203.0.113.77") is None
    assert client_address("truncated", key, "203.0.113.77") == "203.0.113.0/24"
    assert client_address("truncated", key, "2001:db8:abcd:12:1:2:3:4") == "2001:db8:abcd::/48"
    assert client_address("truncated", key, "::ffff:203.0.113.77") == "203.0.113.0/24"
    keyed = client_address("keyed", key, "203.0.113.77")
    assert keyed is not None
    assert re.fullmatch(r"[0-9a-f]{16}", keyed)
    assert keyed == client_address("keyed", key, "203.0.113.77")
    assert keyed != client_address("keyed", key, "203.0.113.78")
    assert keyed != client_address("keyed", address_key(b"j" * 32), "203.0.113.77")
    assert client_address("truncated", key, "not an address") is None
    assert client_address("truncated", key, None) is None
    assert not UUID_LIKE.search(keyed)


def test_a_bad_address_setting_stops_the_server_with_one_line(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    result = subprocess.run(
        [str(CONFIDE), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=backend.env(CONFIDE_LOG_CLIENT_ADDRESSES="full"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CONFIDE_LOG_CLIENT_ADDRESSES" in lines[0]
    assert "Traceback" not in result.stderr
    assert not backend.sqlite_path.exists()


async def test_uvicorn_started_by_hand_logs_the_same_way(tmp_path: Path) -> None:
    """The README's TLS command: `uvicorn --factory app.main:create_served_app`."""
    backend = Backend("sqlite", tmp_path / "data")
    env = backend.env()
    assert run_cli(env, "migrate").returncode == 0
    port = free_port()
    err = tmp_path / "stderr.log"
    with err.open("wb") as handle:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "uvicorn"),
                "--factory",
                "app.main:create_served_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            transport = httpx.AsyncHTTPTransport(local_address=CLIENT_HOST)
            async with httpx.AsyncClient(base_url=base, transport=transport) as http:
                for _ in range(300):
                    assert proc.poll() is None, err.read_text()
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                room_id = str(uuid.uuid4())
                response = await http.get(f"/v1/rooms/{room_id}")
                assert response.status_code == 401
                ws = await socket(base, room_id, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
                assert await closed_with(ws) == 4001
        finally:
            proc.terminate()
            proc.wait(15)
    text = err.read_text()
    records = parse_lines(text)
    assert any(r["message"] == "Application startup complete." for r in records)
    assert any(r.get("route") == "/v1/rooms/{room_id}" and r.get("request_id") for r in records)
    assert any(r.get("kind") == "websocket" and r.get("conn_id") for r in records)
    for forbidden in (room_id, CLIENT_HOST, "bearer.", "eyJ"):
        assert forbidden not in text, forbidden


def test_the_formatter_is_one_json_object_and_redacts_token_shaped_strings() -> None:
    from app.core.logging import REDACTED, ContextFilter, JsonFormatter, PrivacyFilter, request_id

    formatter, context, privacy = JsonFormatter(), ContextFilter(), PrivacyFilter()

    def render(name: str, level: int, msg: str, *args: object) -> str | None:
        record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
        if not (privacy.filter(record) and context.filter(record)):
            return None
        return formatter.format(record)

    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    line = render("confide.test", logging.INFO, "got %s and %s", f"bearer.{token}", token)
    assert line is not None
    record = json.loads(line)
    assert record["message"] == f"got {REDACTED} and {REDACTED}"
    assert {"time", "level", "logger"} <= set(record)
    assert token[:12] not in line
    # uvicorn's handshake line (address and raw path) and its access log never pass.
    assert render("uvicorn.error", logging.INFO, '%s - "WebSocket %s" [accepted]', "a", "b") is None
    assert render("uvicorn.access", logging.INFO, '%s - "%s %s"', "a", "GET", "/x") is None
    assert render("websockets.server", logging.DEBUG, "< %s: %s", "h", "v") is None
    assert render("uvicorn.error", 5, "%sHTTP connection made", "1.2.3.4:5 - ") is None
    reset = request_id.set("0123456789abcdef")
    try:
        line = render("confide.access", logging.INFO, "GET /healthz 200")
    finally:
        request_id.reset(reset)
    assert line is not None
    assert json.loads(line)["request_id"] == "0123456789abcdef"


async def test_database_errors_name_no_values(tmp_path: Path) -> None:
    """A database error's text reaches the log with its traceback: no values in it."""
    from sqlalchemy import text as sql
    from sqlalchemy.exc import IntegrityError

    from app.core.db import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    marker = str(uuid.uuid4())
    try:
        async with engine.begin() as conn:
            await conn.execute(sql("CREATE TABLE t (id TEXT PRIMARY KEY)"))
            await conn.execute(sql("INSERT INTO t VALUES (:id)"), {"id": marker})
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as conn:
                await conn.execute(sql("INSERT INTO t VALUES (:id)"), {"id": marker})
    finally:
        await engine.dispose()
    assert marker not in str(caught.value)
    assert marker not in "".join(traceback.format_exception(caught.value))
