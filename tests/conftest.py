"""Fixtures: every database test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.context import build_context
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import Context
from app.core.db import create_engine
from app.core.migrations import upgrade_on
from app.main import create_app
from app.models import Base
from tests.fixtures.services import (
    FAST_PASSWORDS,
    create_pg_database,
    drop_pg_database,
    pg_url,
    unavailable,
)

os.environ.update(FAST_PASSWORDS)

pytest_plugins = [
    "tests.fixtures.accounts",
    "tests.fixtures.redis_server",
    "tests.fixtures.redis_cluster",
    "tests.fixtures.postgres_server",
]


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_on)


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "confide.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    await engine.dispose()
    return path


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    engine = create_engine(pg_url(name))
    await migrate(engine)
    await engine.dispose()
    yield name
    await drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if dialect == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "confide.db"
        shutil.copy(template, path)
        return f"sqlite+aiosqlite:///{path}"
    name: str = request.getfixturevalue("pg_database")
    return pg_url(name)


async def empty_tables(engine: AsyncEngine) -> None:
    """PostgreSQL tests share one migrated database: start each from empty tables."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The webhook worker is driven by hand where a test wants it (tests/webhooks).
    return Settings(
        data_dir=tmp_path / "data", database_url=SecretStr(database_url), webhook_worker=False
    )


@pytest.fixture
async def ctx(settings: Settings, clock: FrozenClock) -> AsyncIterator[Context]:
    context = build_context(settings, clock)
    await empty_tables(context.engine)
    yield context
    await context.close()


@pytest.fixture
async def client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context=ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
