"""Alembic environment: async engines, SQLite batch mode, or a connection handed in.

The URL is the one given in the config (`confide migrate`, the tests), else
the configured `CONFIDE_DATABASE_URL` (by default the SQLite file in the data
directory). An upgrade or downgrade holds the migration lock, so instances
starting together migrate once. A new revision is numbered after the head
(0006, 0007, ...) unless `--rev-id` names it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.core.db import create_engine
from app.core.migrations import (
    APPLIED,
    SERVER_ROLE,
    apply_privileges,
    postgresql_lock,
    sqlite_lock,
)
from app.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.core.config import get_settings

    return get_settings().resolved_database_url


def _number(
    migration: MigrationContext, revision: Any, directives: Iterable[ops.MigrationScript]
) -> None:
    """Name a new revision after the highest numbered one, as 0001 to 0005 are."""
    numbers = [int(r.revision) for r in context.script.walk_revisions() if r.revision.isdigit()]
    for script in directives:
        if re.fullmatch(r"[0-9a-f]{12}", script.rev_id or ""):  # generated, not --rev-id
            script.rev_id = f"{max(numbers, default=0) + 1:04d}"


def _configure(connection: Connection) -> None:
    postgresql_lock(connection)
    applied = config.attributes.get(APPLIED)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        process_revision_directives=_number,
        # The caller's list of the revisions this run applies, in order.
        on_version_apply=(
            None if applied is None else lambda *, step, **_: applied.append(step.up_revision_id)
        ),
    )
    with context.begin_transaction():
        context.run_migrations()
        # In the same transaction, under the same lock: the server's role gets its
        # rights, and no role but the owner may change the audit log (0016).
        apply_privileges(connection, config.attributes.get(SERVER_ROLE))


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # The caller commits: on SQLite the lock covers the statements, not the commit.
        with sqlite_lock(connection.engine.url.render_as_string(hide_password=False)):
            _configure(connection)
        return
    url = _url()
    with sqlite_lock(url):
        asyncio.run(_run_async(url))


if context.is_offline_mode():
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
