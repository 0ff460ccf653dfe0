from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_engine
from app.core.migrations import downgrade_on, upgrade_on
from app.models import Base
from tests.fixtures.services import create_pg_database, drop_pg_database, pg_url, unavailable


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
        yield engine
        await engine.dispose()
        return
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    engine = create_engine(pg_url(name))
    yield engine
    await engine.dispose()
    await drop_pg_database(name)


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


async def test_upgrade_downgrade_upgrade(empty_engine: AsyncEngine) -> None:
    async with empty_engine.begin() as conn:
        await conn.run_sync(upgrade_on)
        assert await conn.run_sync(_tables) == set(Base.metadata.tables)
    async with empty_engine.begin() as conn:
        await conn.run_sync(downgrade_on)
        assert await conn.run_sync(_tables) == set()
    async with empty_engine.begin() as conn:
        await conn.run_sync(upgrade_on)
        assert await conn.run_sync(_tables) == set(Base.metadata.tables)


async def test_models_match_the_migrations(empty_engine: AsyncEngine) -> None:
    async with empty_engine.begin() as conn:
        await conn.run_sync(upgrade_on)
        assert await conn.run_sync(_diff) == []
