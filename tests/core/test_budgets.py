"""The database's budgets: the settings, what they give asyncpg, and a real overrun.

tests/ops/test_hanging_dependencies.py puts whole faults under a server; here a
statement past its budget on a real PostgreSQL fails in time with an error
that means 503, and the pool drops its connection and goes on with a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import BudgetedConnection, Budgets, create_engine
from app.core.errors import is_unavailable
from tests.fixtures.services import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    create_pg_database,
    drop_pg_database,
    pg_url,
    unavailable,
)
from tests.fixtures.tcp_proxy import tcp_proxy


def test_the_defaults_bound_every_call() -> None:
    settings = Settings()
    assert Budgets.of(settings) == Budgets(connect_s=5.0, statement_s=10.0, pool_s=5.0)
    assert settings.broker_timeout_s == 2.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("broker_timeout_s", 2.5),  # Redis gets 2 s at most
        ("broker_timeout_s", 0),
        ("database_connect_timeout_s", 0),
        ("database_connect_timeout_s", 61),
        ("database_statement_timeout_s", -1),
        ("database_pool_timeout_s", 0),
    ],
)
def test_a_budget_out_of_bounds_is_refused(name: str, value: float) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({name: value})
    assert refused.value.errors()[0]["loc"] == (name,)


@given(
    st.floats(min_value=0.001, max_value=60),
    st.floats(min_value=0.0001, max_value=600),
    st.floats(min_value=0.001, max_value=60),
)
def test_asyncpg_gets_each_budget(connect: float, statement: float, pool: float) -> None:
    args = Budgets(connect_s=connect, statement_s=statement, pool_s=pool).connect_args()
    assert args["timeout"] == connect
    assert args["command_timeout"] == statement
    assert args["connection_class"] is BudgetedConnection
    # The server's statement_timeout is in whole milliseconds, never 0 (which means none).
    server = int(args["server_settings"]["statement_timeout"])
    assert server >= 1
    assert abs(server - statement * 1000) <= 0.5 or server == 1


@pytest.fixture
async def database() -> AsyncIterator[str]:
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    yield name
    await drop_pg_database(name)


async def test_the_server_ends_a_statement_past_its_budget_and_the_pool_goes_on(
    database: str,
) -> None:
    budgets = Budgets(connect_s=2, statement_s=0.3, pool_s=0.3)
    engine = create_engine(pg_url(database), budgets=budgets, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            shown = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
            assert shown == "300ms"
        started = time.monotonic()
        with pytest.raises((OSError, sa_exc.DBAPIError)) as raised:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(5)"))
        took = time.monotonic() - started
        assert is_unavailable(raised.value), raised.value
        assert took < 1.5, f"a statement of a 0.3 s budget took {took:.2f} s to fail"
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_a_statement_the_server_never_answers_drops_its_connection(database: str) -> None:
    """No answer at all (a black hole): the client's budget ends the statement, and the
    connection is closed at once, with no cancel request left waiting on the fault."""
    budgets = Budgets(connect_s=2, statement_s=0.3, pool_s=0.3)
    async with tcp_proxy(PG_HOST, PG_PORT) as proxy:
        dsn = f"postgresql://{PG_USER}@127.0.0.1:{proxy.port}/{database}"
        conn = await asyncpg.connect(dsn, **budgets.connect_args())
        try:
            assert await conn.fetchval("SELECT 1") == 1
            proxy.black_hole()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await conn.fetchval("SELECT 1")
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0)  # the close is scheduled, not done in the timeout
            assert conn.is_closed()
            assert not [task for task in asyncio.all_tasks() if "_cancel" in repr(task.get_coro())]
        finally:
            conn.terminate()
