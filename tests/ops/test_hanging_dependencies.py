"""PostgreSQL or Redis that hangs instead of refusing: every call fails within its budget.

A proxy (tests/fixtures/tcp_proxy.py) sits between an in-process server and
each dependency. It first delays every byte by more than any budget (the 5 s
of a congested link, scaled down with the budgets), then swallows everything
(a black hole: no reset, no answer) for longer than any budget, then lets
bytes through again. Throughout:
- a request answers 503 `unavailable` with Retry-After within `LIMIT_S`, and
  a socket opened meanwhile closes 1013 within it (its token stays unspent);
- `/readyz` says not ready within its own 2 s;
- a socket already in the room keeps its pings answered while PostgreSQL is
  away (nothing on an admitted socket asks it); while Redis is away its sends
  get `unavailable` error frames within the budget;
- no task and no pooled connection is left behind by the failed calls;
then everything works again without a restart: requests, sockets, the audit
writer (each join is audited, fail-closed) and the webhook worker.

Before the budgets, asyncpg waited 60 s to connect and for ever for a reply,
so each request hung as long as the fault did, its task and connection with
it, and a cancelled statement's cancel request hung behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import exc as sa_exc

from app.context import build_context
from app.core import audit
from app.core.config import Settings
from app.core.db import create_engine
from app.core.errors import is_unavailable
from app.core.migrations import upgrade_on
from app.main import create_app
from app.models import Role
from tests.fixtures.accounts import make_account
from tests.fixtures.redis_server import delete_prefix, shared_redis, unique_prefix
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.fixtures.services import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    create_pg_database,
    drop_pg_database,
    pg_dsn,
    pg_url,
    unavailable,
)
from tests.fixtures.tcp_proxy import TcpProxy, is_proxy_task, tcp_proxy
from tests.ops.test_outage import assert_unavailable, wait_ready
from tests.relay.conftest import Person, Practice, publish_documents, serve_as_deployed

T = TypeVar("T")

#: Every budget of these tests: connecting, one statement, waiting for a pooled
#: connection, one Redis call (production's are 5, 10, 5 and 2 s).
BUDGET_S = 0.3
#: What one refused request or socket may take at most: the budgets a call can
#: meet in a row (waiting for the pool, a pooled connection's ping, a new
#: connection, its first statement: 1.2 s here), and the slack of a shared
#: machine serving CONCURRENT of them at once.
LIMIT_S = 3.0
#: The latency the proxy adds first (5 s against production's budgets).
DELAY_S = 1.0
#: How long the black hole lasts at least: longer than every budget and limit.
BLACK_HOLE_S = 4.0
#: Requests sent at once in each phase (more than the pool's 30 connections).
CONCURRENT = 40


@dataclass
class Setup:
    practice: Practice
    app: FastAPI
    postgres: TcpProxy
    redis: TcpProxy


@asynccontextmanager
async def behind_proxies(tmp_path: Path) -> AsyncIterator[Setup]:
    """An in-process server whose PostgreSQL and Redis are each behind a proxy."""
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    redis_url = await shared_redis()
    redis = urlsplit(redis_url)
    prefix = unique_prefix()
    try:
        engine = create_engine(pg_url(name))
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_on)
        await engine.dispose()
        async with (
            tcp_proxy(PG_HOST, PG_PORT) as postgres,
            tcp_proxy(redis.hostname or "127.0.0.1", redis.port or 6379) as broker,
        ):
            settings = Settings(
                data_dir=tmp_path / "data",
                database_url=SecretStr(
                    f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{postgres.port}/{name}"
                ),
                broker_url=SecretStr(f"redis://127.0.0.1:{broker.port}{redis.path or '/0'}"),
                broker_prefix=prefix,
                webhook_poll_s=0.1,
                database_connect_timeout_s=BUDGET_S,
                database_statement_timeout_s=BUDGET_S,
                database_pool_timeout_s=BUDGET_S,
                broker_timeout_s=BUDGET_S,
            )
            ctx = build_context(settings)
            app = create_app(context=ctx)
            try:
                async with (
                    serve_as_deployed(app) as base,
                    httpx.AsyncClient(base_url=base, timeout=30) as http,
                ):
                    admin = await make_account(ctx, http, Role.admin)
                    documents = await publish_documents(http, admin)
                    practice = Practice(base, http, ctx, app.state.hub, admin, documents)
                    yield Setup(practice, app, postgres, broker)
            finally:
                await ctx.close()
    finally:
        await delete_prefix(redis_url, prefix)
        await drop_pg_database(name)


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


def server_tasks() -> int:
    """The loop's tasks but the proxy's (the test, the server, its background work)."""
    return sum(1 for task in asyncio.all_tasks() if not is_proxy_task(task))


async def room_with_host(setup: Setup) -> tuple[Any, Person, str]:
    """A room, its host's socket (admitted), and a client invited to it."""
    practice = setup.practice
    counselor = await practice.counselor()
    client = await practice.client()
    room = (await practice.room(counselor, waiting_room=False))["id"]
    await practice.invite(counselor, room, client)
    host = await open_socket(practice.base, room, await practice.token(counselor, room))
    await recv_until(host, "welcome")
    return host, client, room


async def requests_fail_in_budget(practice: Practice, person: Person) -> None:
    """CONCURRENT requests at once: each one a 503 within LIMIT_S."""
    answers = await asyncio.gather(
        *(timed(practice.http.get("/v1/me", headers=person.auth)) for _ in range(CONCURRENT))
    )
    for response, took in answers:
        assert_unavailable(response)
        assert took < LIMIT_S, f"a refused request took {took:.2f} s"


async def socket_refused_in_budget(practice: Practice, room: str, token: str) -> None:
    ws, took = await timed(open_socket(practice.base, room, token))
    code, closing = await timed(closed_with(ws, timeout=LIMIT_S * 2))
    assert code == 1013
    assert took + closing < LIMIT_S, f"a refused socket took {took + closing:.2f} s"


async def not_ready_in_budget(practice: Practice, check: str) -> None:
    response, took = await timed(practice.http.get("/readyz"))
    assert response.status_code == 503
    assert response.json()["checks"][check] == "unavailable"
    assert took < 2 * 2 + 0.5  # two checks of 2 s at most each


async def pinged(ws: Any) -> None:
    await ws.send('{"type": "ping"}')
    assert (await recv_until(ws, "pong", timeout=BUDGET_S * 2))["type"] == "pong"


async def audited(practice: Practice, person: Person) -> None:
    """A unit of work that only writes an audit entry: through the audit writer on
    PostgreSQL, which commits it before the unit of work may."""
    async with practice.context.transaction() as session:
        audit.record(session, "account.read", actor_id=person.id, target=person.id)


async def audit_fails_closed_in_budget(practice: Practice, person: Person) -> None:
    started = time.monotonic()
    with pytest.raises((OSError, sa_exc.DBAPIError, sa_exc.TimeoutError)) as raised:
        async with asyncio.timeout(LIMIT_S * 2):  # a hang fails here, as too slow
            await audited(practice, person)
    took = time.monotonic() - started
    assert is_unavailable(raised.value), raised.value
    assert took < LIMIT_S, f"an audited unit of work took {took:.2f} s to fail"


async def settle(engine_checked_out: Any, baseline: int) -> None:
    """Wait (LIMIT_S at most) for the failed calls' tasks and connections to be gone."""
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        if server_tasks() <= baseline and engine_checked_out() == 0:
            return
        await asyncio.sleep(0.05)


async def test_a_hanging_database_fails_each_call_within_its_budget_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="confide.webhooks")
    async with behind_proxies(tmp_path) as setup:
        practice, postgres = setup.practice, setup.postgres
        host, client, room = await room_with_host(setup)
        tokens = [await practice.token(client, room) for _ in range(2)]
        pool = practice.context.engine.pool
        checked_out = pool.checkedout  # type: ignore[attr-defined]
        baseline = server_tasks()

        postgres.delaying(DELAY_S)
        await requests_fail_in_budget(practice, client)
        await pinged(host)

        postgres.black_hole()
        began = time.monotonic()
        await requests_fail_in_budget(practice, client)
        await socket_refused_in_budget(practice, room, tokens[0])
        await not_ready_in_budget(practice, "database")
        await audit_fails_closed_in_budget(practice, client)
        await pinged(host)
        await settle(checked_out, baseline)
        assert checked_out() == 0
        assert server_tasks() <= baseline, [
            task for task in asyncio.all_tasks() if not is_proxy_task(task)
        ]
        while time.monotonic() - began < BLACK_HOLE_S:
            await pinged(host)
            await asyncio.sleep(0.2)

        postgres.passing()
        await wait_ready(practice.http)
        assert (await practice.http.get("/v1/me", headers=client.auth)).status_code == 200
        # The token of the refused socket was not spent; joining writes audit entries.
        ws = await open_socket(practice.base, room, tokens[0])
        welcome = await recv(ws)
        assert (welcome["type"], welcome["state"]) == ("welcome", "admitted")
        await pinged(host)
        await ws.close()
        await host.close()
        await audited(practice, client)  # the same audit writer, once more
        async with practice.context.transaction() as session:
            assert (await practice.context.audit.verify(session)).ok
        messages = [r.getMessage() for r in caplog.records if r.name == "confide.webhooks"]
        deadline = time.monotonic() + 5
        while "webhook delivery resumed" not in messages and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            messages = [r.getMessage() for r in caplog.records if r.name == "confide.webhooks"]
        assert messages[:2] == [
            "webhook delivery paused: a dependency is unavailable",
            "webhook delivery resumed",
        ], messages


async def test_a_hanging_broker_fails_each_call_within_its_budget_and_recovers(
    tmp_path: Path,
) -> None:
    async with behind_proxies(tmp_path) as setup:
        practice, redis = setup.practice, setup.redis
        host, client, room = await room_with_host(setup)
        # A call Redis receives late still runs after its caller gave up: a token
        # whose spend timed out may be spent. Each refused socket has its own.
        tokens = [await practice.token(client, room) for _ in range(3)]
        baseline = server_tasks()

        for delay, token in zip((DELAY_S, None), tokens[:2], strict=True):
            if delay is not None:
                redis.delaying(delay)
            else:
                redis.black_hole()
            began = time.monotonic()
            await host.send('{"type": "send", "id": "m1", "ciphertext": "AAECAw"}')
            error, took = await timed(recv_until(host, "error", timeout=LIMIT_S * 2, id="m1"))
            assert error["code"] == "unavailable"
            assert took < LIMIT_S, f"a refused send took {took:.2f} s"
            await pinged(host)
            await socket_refused_in_budget(practice, room, token)
            await not_ready_in_budget(practice, "broker")
        await settle(lambda: 0, baseline)
        assert server_tasks() <= baseline
        while time.monotonic() - began < BLACK_HOLE_S:
            await asyncio.sleep(0.2)

        redis.passing()
        await wait_ready(practice.http)
        await host.send('{"type": "send", "id": "m2", "ciphertext": "AAECAw"}')
        assert (await recv_until(host, "ack", id="m2"))["seq"] >= 1
        ws = await open_socket(practice.base, room, tokens[2])
        assert (await recv(ws))["type"] == "welcome"
        await ws.close()
        await host.close()


async def test_too_many_connections_is_a_503(tmp_path: Path) -> None:
    """asyncpg raises TooManyConnectionsError (SQLSTATE 53300) from connect, unwrapped:
    it was a 500 with a traceback; it is the database being full for now, a 503."""
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    role = f"confide_limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn(name), timeout=5)
    try:
        engine = create_engine(pg_url(name))
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_on)
        await engine.dispose()
        # Not a superuser: the connection limit does not hold for one.
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        url = f"postgresql+asyncpg://{role}@{PG_HOST}:{PG_PORT}/{name}"
        settings = Settings(
            data_dir=tmp_path / "data", database_url=SecretStr(url), webhook_worker=False
        )
        ctx = build_context(settings)
        app = create_app(context=ctx)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                ) as http,
            ):
                await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
                await ctx.engine.dispose()  # the next request needs a new connection
                login = {"username": "nobody@example.org", "password": "x" * 12}
                assert_unavailable(await http.post("/v1/auth/token", data=login))
                await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
                response = await http.post("/v1/auth/token", data=login)
                assert response.json()["code"] == "invalid_credentials"
        finally:
            await ctx.close()
    finally:
        await admin.close()
        await drop_pg_database(name)
        server = await asyncpg.connect(pg_dsn("postgres"), timeout=5)
        try:
            await server.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await server.close()
