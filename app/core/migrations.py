"""Running Alembic from code: `confide migrate`, `confide serve` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from app.core.encryption import Keyring

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


#: Under this key `Config.attributes` carries (keyring, index key) to the
#: migrations that re-seal data (0004); without it they load the configured keys.
KEYS = "confide.keys"


def alembic_config(
    url: str | None = None,
    connection: Connection | None = None,
    keys: tuple[Keyring, bytes] | None = None,
) -> Config:
    cfg = Config()
    if keys is not None:
        cfg.attributes[KEYS] = keys
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head", keys: tuple[Keyring, bytes] | None = None) -> None:
    command.upgrade(alembic_config(url, keys=keys), revision)


def upgrade_on(
    connection: Connection, revision: str = "head", keys: tuple[Keyring, bytes] | None = None
) -> None:
    command.upgrade(alembic_config(connection=connection, keys=keys), revision)


def downgrade_on(connection: Connection, revision: str = "base") -> None:
    command.downgrade(alembic_config(connection=connection), revision)
