"""Running Alembic from code: `confide migrate`, `confide serve` and the tests.

The scripts are `alembic/` at the repository root (the `alembic` command uses
them through `alembic.ini`); a wheel ships them as the `confide_migrations`
package. Both ways run the same `env.py`, which takes the migration lock
below, so instances starting together migrate once.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection

from app.core.encryption import Keyring

#: The package the scripts are installed as (pyproject.toml maps `alembic/` to it).
PACKAGE = "confide_migrations"

#: Under this key `Config.attributes` carries (keyring, index key) to the
#: migrations that re-seal data (0004); without it they load the configured keys.
KEYS = "confide.keys"

#: The PostgreSQL advisory lock an upgrade or downgrade holds (b"confide~").
LOCK_KEY = int.from_bytes(b"confide~", "big")


class MigrationsMissing(RuntimeError):
    pass


def script_location() -> Path:
    """`alembic/` beside `alembic.ini` in a checkout, else the installed package."""
    root = Path(__file__).resolve().parents[2]
    if (root / "alembic.ini").is_file() and (root / "alembic" / "env.py").is_file():
        return root / "alembic"
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "env.py").is_file():
            return Path(location)
    raise MigrationsMissing(
        f"the migration scripts are missing: no alembic/ beside alembic.ini in {root}, "
        f"and no installed {PACKAGE} package"
    )


def alembic_config(
    url: str | None = None,
    connection: Connection | None = None,
    keys: tuple[Keyring, bytes] | None = None,
) -> Config:
    cfg = Config()
    if keys is not None:
        cfg.attributes[KEYS] = keys
    cfg.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


#: `Config.attributes` key of a list that env.py fills with the revisions a run applies.
APPLIED = "confide_applied"


def upgrade(
    url: str, revision: str = "head", keys: tuple[Keyring, bytes] | None = None
) -> list[str]:
    """Migrate to `revision`; the revisions applied, oldest first (none: it was there)."""
    cfg = alembic_config(url, keys=keys)
    applied: list[str] = []
    cfg.attributes[APPLIED] = applied
    command.upgrade(cfg, revision)
    return applied


def upgrade_on(
    connection: Connection, revision: str = "head", keys: tuple[Keyring, bytes] | None = None
) -> None:
    command.upgrade(alembic_config(connection=connection, keys=keys), revision)


def downgrade_on(connection: Connection, revision: str = "base") -> None:
    command.downgrade(alembic_config(connection=connection), revision)


# What env.py uses: the database file, and the lock around a run.


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


@contextmanager
def sqlite_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock on `<database file>.migrate-lock`; nothing for other URLs.

    It creates the file's directory (the default database lives in the data
    directory, which may not exist yet). Without `fcntl` (Windows) it only
    creates the directory.
    """
    path = sqlite_file(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        yield
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postgresql_lock(connection: Connection) -> None:
    """Wait for the migration lock on PostgreSQL; the transaction's end releases it.

    Taken before Alembic reads the current revision, so an instance that
    waited finds the revision the one before it left, and has nothing to do.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
