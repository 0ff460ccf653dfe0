"""Instances starting together migrate once.

Several processes upgrade a fresh database while the test holds the
migration lock; once every one of them waits for it, the test lets go: all
succeed, and each revision ran in exactly one of them.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from app.core.migrations import LOCK_KEY, script_location, sqlite_file, sqlite_lock
from app.models import Base
from tests.fixtures.services import (
    create_pg_database,
    drop_pg_database,
    pg_dsn,
    pg_url,
    unavailable,
)

INSTANCES = 4
WAIT_S = 60.0
CHILD = textwrap.dedent(
    """
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from app.core.migrations import upgrade

    upgrade(sys.argv[1])
    """
)
REVISIONS = [s.revision for s in ScriptDirectory(str(script_location())).walk_revisions()]


async def _start(url: str, data_dir: Path) -> list[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env["CONFIDE_DATA_DIR"] = str(data_dir)
    return [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            url,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(INSTANCES)
    ]


async def _until_all_wait(
    procs: list[asyncio.subprocess.Process], waiting: Callable[[], Awaitable[int]]
) -> None:
    deadline = time.monotonic() + WAIT_S
    while (count := await waiting()) < INSTANCES:
        for proc in procs:
            if proc.returncode is not None:
                out, err = await proc.communicate()
                pytest.fail(f"an instance exited before the lock was free:\n{out!r}\n{err!r}")
        if time.monotonic() > deadline:
            pytest.fail(f"{count} of {INSTANCES} instances waited for the migration lock")
        await asyncio.sleep(0.1)


async def _ran_once_each(procs: list[asyncio.subprocess.Process]) -> None:
    runs: Counter[str] = Counter()
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err
        for line in out.decode().splitlines():
            if match := re.match(r"Running upgrade \S* -> (\S+),", line.strip()):
                runs[match[1]] += 1
    assert runs == dict.fromkeys(REVISIONS, 1)


async def test_instances_starting_together_migrate_once_on_postgresql(tmp_path: Path) -> None:
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    holder = await asyncpg.connect(pg_dsn(name), timeout=5)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        procs = await _start(pg_url(name), tmp_path)

        async def waiting() -> int:
            count: int = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = $1)",
                name,
            )
            return count

        await _until_all_wait(procs, waiting)
        assert not await holder.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        await _ran_once_each(procs)

        found = {
            row[0]
            for row in await holder.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert found == set(Base.metadata.tables) | {"alembic_version"}
        assert await holder.fetch("SELECT version_num FROM alembic_version") == [(REVISIONS[0],)]
    finally:
        await holder.close()
        await drop_pg_database(name)


def _flock_waiters(path: Path) -> int:
    """Processes blocked on a flock of the file, from /proc/locks (`->` marks a waiter)."""
    inode = os.stat(path).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and f":{inode} " in line and "FLOCK" in line)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="waiters are seen in /proc/locks")
async def test_instances_starting_together_migrate_once_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'confide.db'}"
    database = sqlite_file(url)
    assert database is not None
    with sqlite_lock(url):
        procs = await _start(url, tmp_path / "data")
        lock = Path(f"{database}.migrate-lock")

        async def waiting() -> int:
            return _flock_waiters(lock)

        await _until_all_wait(procs, waiting)
        assert not database.exists()
    await _ran_once_each(procs)

    conn = sqlite3.connect(database)
    try:
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        conn.close()
    assert found == set(Base.metadata.tables) | {"alembic_version"}
    assert version == [(REVISIONS[0],)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:////var/lib/confide/confide.db", Path("/var/lib/confide/confide.db")),
        ("sqlite+aiosqlite:///data/confide.db", Path("data/confide.db")),
        ("sqlite+aiosqlite://", None),
        ("sqlite+aiosqlite:///:memory:", None),
        ("postgresql+asyncpg://confide@db:5432/confide", None),
    ],
)
def test_sqlite_file(url: str, expected: Path | None) -> None:
    assert sqlite_file(url) == expected
