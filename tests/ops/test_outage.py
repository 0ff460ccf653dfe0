"""A database or broker that goes away under a running server: 503 and 1013, never 500.

While PostgreSQL was unreachable, `POST /v1/rooms/{id}/token` answered 500
`internal_error`, each with a traceback in the log, and a socket opened then
got no close frame (1006) and had its room token spent. Now each request gets
a 503 `unavailable` problem with `Retry-After` and one log line without a
traceback; the socket closes with 1013 (try again later) and its token stays
unspent, so that it works once the database is back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from app.core.errors import PROBLEM_JSON
from tests.fixtures.accounts import PASSWORD
from tests.fixtures.postgres_server import PrivatePostgres
from tests.fixtures.processes import Server
from tests.fixtures.redis_server import PrivateRedis, shared_redis
from tests.fixtures.server import closed_with, open_socket, recv
from tests.relay.cluster import cluster
from tests.relay.conftest import Person, Practice


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1


def log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


async def wait_ready(http: httpx.AsyncClient) -> None:
    async with asyncio.timeout(30):
        while (await http.get("/readyz")).status_code != 200:
            await asyncio.sleep(0.2)


@asynccontextmanager
async def room_on_private_postgres(
    tmp_path: Path, postgres: PrivatePostgres
) -> AsyncIterator[tuple[Server, Practice, Person, str]]:
    """A server on `postgres`, a room, and its client (consented, with a device)."""
    async with cluster(tmp_path, await shared_redis(), database_url=postgres.url) as group:
        server = group.start("a")
        practice = await group.first_practice(server)
        counselor = await practice.counselor()
        client = await practice.client()
        room = await practice.room(counselor, waiting_room=False)
        await practice.invite(counselor, room["id"], client)
        yield server, practice, client, room["id"]


async def test_a_database_outage_is_a_503_with_one_log_line_each(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    async with room_on_private_postgres(tmp_path, private_postgres) as (
        server,
        practice,
        client,
        room_id,
    ):
        http = practice.http
        private_postgres.stop()
        for _ in range(5):
            assert_unavailable(await practice.token_response(client, room_id))
        assert_unavailable(await http.get("/v1/me", headers=client.auth))
        login = {"username": client.user.email, "password": PASSWORD}
        assert_unavailable(await http.post("/v1/auth/token", data=login))
        assert (await http.get("/healthz")).status_code == 200

        private_postgres.start()
        await wait_ready(http)
        assert (await practice.token_response(client, room_id)).status_code == 200

        logs = server.logs()
        assert "Traceback" not in logs
        lines = log_lines(logs)
        assert not [line for line in lines if line.get("level") in ("ERROR", "CRITICAL")]
        warnings = [line for line in lines if line.get("level") == "WARNING"]
        # One line per refused request, naming the route template and the error type.
        assert [line["logger"] for line in warnings] == ["confide.errors"] * 7, warnings
        assert "POST /v1/rooms/{room_id}/token" in warnings[0]["message"]
        assert "ConnectionRefusedError" in warnings[0]["message"]
        assert room_id not in logs
        assert server.proc is not None
        assert server.proc.poll() is None


async def test_a_socket_opened_in_a_database_outage_closes_1013_and_keeps_its_token(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    async with room_on_private_postgres(tmp_path, private_postgres) as (
        server,
        practice,
        client,
        room_id,
    ):
        token = await practice.token(client, room_id)  # issued before the outage
        private_postgres.stop()
        ws = await open_socket(practice.base, room_id, token)
        assert await closed_with(ws, timeout=15) == 1013  # a close frame: try again later

        private_postgres.start()
        await wait_ready(practice.http)
        ws = await open_socket(practice.base, room_id, token)  # the same token: not spent
        welcome = await recv(ws)
        assert (welcome["type"], welcome["state"]) == ("welcome", "admitted")
        again = await open_socket(practice.base, room_id, token)
        assert await closed_with(again) == 4001  # spent now, by the socket that opened
        await ws.close()

        assert "Traceback" not in server.logs()
        relay = [line for line in log_lines(server.logs()) if line.get("logger") == "confide.relay"]
        assert [line["message"] for line in relay if line["level"] != "INFO"] == [
            "database unavailable: ConnectionRefusedError"
        ]


async def test_a_broker_outage_is_503_on_rest(tmp_path: Path, private_redis: PrivateRedis) -> None:
    async with cluster(tmp_path, private_redis.url) as group:
        server = group.start("a")
        practice = await group.first_practice(server)
        client = await practice.client()
        private_redis.stop()
        # Revoking a device tells every instance (the broker) to close its sockets.
        revoked = await practice.http.delete(f"/v1/devices/{client.device}", headers=client.auth)
        assert_unavailable(revoked)
        await private_redis.start()
        await wait_ready(practice.http)
        assert "Traceback" not in server.logs()
