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
    url: str,
    revision: str = "head",
    keys: tuple[Keyring, bytes] | None = None,
    server_role: str | None = None,
) -> list[str]:
    """Migrate to `revision`; the revisions applied, oldest first (none: it was there).
    With `server_role`, `url` is the owner's, and that role is granted its rights."""
    cfg = alembic_config(url, keys=keys)
    if server_role is not None:
        cfg.attributes[SERVER_ROLE] = server_role
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


# The two-role set-up on PostgreSQL (docs/operations.md, "Two database roles").

#: `Config.attributes` key of the role the server runs as, when migrations run as
#: another (the owner's): after every upgrade that role is granted its rights.
SERVER_ROLE = "confide.server_role"

#: What no role but the owner may do to the audit log: change or remove its
#: rows, or hang a trigger on it that could.
AUDIT_FENCED = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")


def _owns_audit_log(connection: Connection) -> bool:
    """Whether the connected role owns `audit_log` (False when there is none yet)."""
    owns = connection.execute(
        text(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
            "WHERE c.oid = to_regclass('audit_log')"
        )
    ).scalar()
    return bool(owns)


def fence_audit_log(connection: Connection) -> None:
    """Take UPDATE, DELETE, TRUNCATE and TRIGGER on `audit_log` from every role but its
    owner (PUBLIC included); PostgreSQL, run by the owner. Idempotent."""
    grantees = connection.execute(
        text(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
            "ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
            "FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.oid = to_regclass('audit_log') AND a.grantee <> c.relowner "
            "AND a.privilege_type = ANY(:fenced)"
        ),
        {"fenced": list(AUDIT_FENCED)},
    ).scalars()
    for grantee in ["PUBLIC", *grantees]:
        connection.execute(text(f"REVOKE {', '.join(AUDIT_FENCED)} ON audit_log FROM {grantee}"))


def apply_privileges(connection: Connection, server_role: str | None) -> None:
    """After an upgrade, as the owner (PostgreSQL; nothing elsewhere, or for another role):
    the server's role gets ordinary rights on every table and sequence but
    `alembic_version` (SELECT only), and the audit log is fenced, so that role may
    only SELECT and INSERT there. Run after every
    upgrade, so that tables a migration adds and a restored database (whose dump
    carries no privileges) are covered too."""
    if connection.dialect.name != "postgresql" or not _owns_audit_log(connection):
        return
    if server_role:
        role = connection.dialect.identifier_preparer.quote(server_role)
        schema = connection.dialect.identifier_preparer.quote(
            str(connection.execute(text("SELECT current_schema()")).scalar_one())
        )
        for statement in (
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            # The schema's revision is the owner's to move: a server that finds
            # migrations pending is refused, not half-migrating as itself.
            f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}",
        ):
            connection.execute(text(statement))
    fence_audit_log(connection)


def audit_log_rights(connection: Connection) -> list[str]:
    """Which of UPDATE, DELETE, TRUNCATE the connected role holds on `audit_log`
    (PostgreSQL; a superuser and the owner hold them all; elsewhere none)."""
    if connection.dialect.name != "postgresql":
        return []
    held = connection.execute(
        text(
            "SELECT p FROM unnest(CAST(:rights AS text[])) AS p "
            "WHERE to_regclass('audit_log') IS NOT NULL "
            "AND has_table_privilege(current_user, 'audit_log', p)"
        ),
        {"rights": ["UPDATE", "DELETE", "TRUNCATE"]},
    ).scalars()
    return list(held)
