"""`confide backup` and `confide restore`: the database and the keys that open it.

A backup is two directories, meant to be kept apart:

- the database directory: `confide.db` (SQLite, copied with SQLite's online
  backup API while the server runs) or `confide.pgdump` (PostgreSQL,
  `pg_dump --format=custom`), and `manifest.json` (its SHA-256, the schema
  revision, the ids of the master keys its data keys are wrapped by);
- the keys directory, laid out as a data dir's `keys/`: `master_keys`,
  `index_key` and `signing/signing-<UTC time>.pem`, each usable as it is
  through `CONFIDE_MASTER_KEYS_FILE`, `CONFIDE_INDEX_KEY_FILE` and
  `CONFIDE_SIGNING_KEY_FILE`.

Without its master keys the database is unreadable (every data key is wrapped
by one); together they are everything, which is why they go to different places.
`restore` refuses a target database that holds any table, and keys that do
not open every data key of the backup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import encryption
from app.core.codec import b64url_decode, b64url_encode
from app.core.config import Settings
from app.core.keys import (
    INDEX_FILE,
    MASTER_FILE,
    SIGNING_DIR,
    SIGNING_FILE,
    SIGNING_NAME,
    KeyConfigError,
    KeySource,
    load_keys,
    signing_key_name,
)
from app.core.migrations import apply_privileges

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "confide.db"
PG_FILE = "confide.pgdump"
TOOL_TIMEOUT_S = 3600


class BackupError(Exception):
    """A backup or restore refused or failed; the message is one line for the operator."""


@dataclass(frozen=True)
class Manifest:
    database: str  # "sqlite" or "postgresql"
    file: str
    sha256: str
    schema_revision: str | None
    master_key_ids: list[str]
    #: one wrapped data key under each master key, [id, base64url]: checks the keys
    #: before a restore writes anything (the dump holds them all anyway)
    key_checks: list[list[str]]
    data_keys: int
    created_at: str

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **self.__dict__}, indent=2) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            raw: Any = json.loads(path.read_text())
        except OSError as error:
            raise BackupError(f"cannot read {path}: {error.strerror}") from None
        except ValueError:
            raise BackupError(f"{path} is not JSON") from None
        if not isinstance(raw, dict):
            raise BackupError(f"{path} is not a backup manifest")
        if raw.get("format") != FORMAT:
            raise BackupError(f"{path}: unknown backup format {raw.get('format')!r}")
        revision = raw.get("schema_revision")
        if revision is not None and not isinstance(revision, str):
            raise BackupError(f"{path}: schema_revision is malformed")
        try:
            return cls(
                database=str(raw["database"]),
                file=str(raw["file"]),
                sha256=str(raw["sha256"]),
                schema_revision=revision,
                master_key_ids=[str(kid) for kid in raw["master_key_ids"]],
                key_checks=[[str(key_id), str(wrapped)] for key_id, wrapped in raw["key_checks"]],
                data_keys=int(raw["data_keys"]),
                created_at=str(raw["created_at"]),
            )
        except (KeyError, TypeError, ValueError):
            raise BackupError(f"{path}: a field is missing or malformed") from None


# -- the database -------------------------------------------------------------------


def _kind(settings: Settings) -> str:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return "sqlite"
    if url.get_backend_name() == "postgresql":
        return "postgresql"
    raise BackupError(f"CONFIDE_DATABASE_URL: cannot back up a {url.get_backend_name()} database")


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.resolved_database_url).database
    if not database or database == ":memory:":
        raise BackupError("CONFIDE_DATABASE_URL names no SQLite file")
    return Path(database)


def _libpq(database_url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore connection options, and the environment that carries the password
    (never on the command line, where `ps` shows it)."""
    url = make_url(database_url)
    args = []
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    args += ["--dbname", url.database or ""]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        env["PGSSLMODE"] = ssl
    return args, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found on PATH: install the PostgreSQL client tools "
            "(the server's major version or newer)"
        )
    return found


def _run_tool(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(  # noqa: S603 (pg_dump or pg_restore from PATH, no shell)
        args, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit status {done.returncode}"
        raise BackupError(f"{Path(args[0]).name} failed: {reason}")


async def _read_state(url: str) -> tuple[list[str], str | None, list[tuple[str, bytes]]]:
    """The database's tables, its schema revision, and its wrapped data keys."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables: list[str] = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            revision = None
            if "alembic_version" in tables:
                revision = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
            keys: list[tuple[str, bytes]] = []
            if "data_keys" in tables:
                rows = await conn.execute(text("SELECT id, wrapped FROM data_keys ORDER BY id"))
                keys = [(str(key_id), bytes(wrapped)) for key_id, wrapped in rows]
        return tables, revision, keys
    except (SQLAlchemyError, OSError) as error:
        raise BackupError(f"the database does not answer: {type(error).__name__}") from None
    finally:
        await engine.dispose()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _empty_dir(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} exists and is not an empty directory ({what})")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


# -- the keys -----------------------------------------------------------------------


def _signing_files(source: KeySource) -> list[tuple[str, bytes]]:
    """Every signing key file in use, named as in a key directory."""
    found: list[tuple[str, bytes]] = []
    legacy = source.key_dir / SIGNING_FILE
    if source.settings.signing_key_file is None and legacy.exists():
        found.append((signing_key_name(0), legacy.read_bytes()))
    path = source.signing_path
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if SIGNING_NAME.fullmatch(entry.name):
                found.append((entry.name, entry.read_bytes()))
    elif path.exists():
        found.append((signing_key_name(0), path.read_bytes()))
    return found


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def export_keys(settings: Settings, directory: Path) -> None:
    """The keys this configuration uses (generated or configured) into `directory`."""
    keys = load_keys(settings)
    _empty_dir(directory, "--keys")
    _write(directory / MASTER_FILE, (keys.keyring.serialize() + "\n").encode())
    _write(directory / INDEX_FILE, (b64url_encode(keys.index_key) + "\n").encode())
    for name, pem in _signing_files(keys.source):
        _write(directory / SIGNING_DIR / name, pem)


def _read_keyring(directory: Path | None, settings: Settings) -> encryption.Keyring:
    try:
        if directory is not None:
            return encryption.Keyring.parse((directory / MASTER_FILE).read_text())
        return KeySource(settings).keyring()
    except FileNotFoundError:
        raise BackupError(
            "no master keys: pass --keys with the backed-up keys, or configure "
            "CONFIDE_MASTER_KEYS (or CONFIDE_MASTER_KEYS_FILE)"
        ) from None
    except ValueError as error:
        raise BackupError(f"the master keys cannot be read: {error}") from None


def _check_keys_dir(directory: Path) -> None:
    for name in (MASTER_FILE, INDEX_FILE):
        if not (directory / name).is_file():
            raise BackupError(f"{directory / name} is missing: not a Confide keys backup")
    try:
        index_key = b64url_decode((directory / INDEX_FILE).read_text().strip().rstrip("="))
    except ValueError:
        index_key = b""
    if len(index_key) != encryption.KEY_BYTES:
        raise BackupError(f"{directory / INDEX_FILE} is not a 32-byte base64url key")
    signing = directory / SIGNING_DIR
    if not signing.is_dir() or not any(
        SIGNING_NAME.fullmatch(entry.name) for entry in signing.iterdir()
    ):
        raise BackupError(f"{signing} holds no signing key: not a Confide keys backup")


def _install_keys(settings: Settings, directory: Path) -> None:
    configured = [
        name
        for name, value in (
            ("CONFIDE_MASTER_KEYS", settings.master_keys),
            ("CONFIDE_INDEX_KEY", settings.index_key),
            ("CONFIDE_SIGNING_KEY_FILE", settings.signing_key_file),
        )
        if value is not None
    ]
    if configured:
        raise BackupError(
            f"{', '.join(configured)} configured: keys do not go into the data dir; point "
            f"CONFIDE_MASTER_KEYS_FILE at {directory / MASTER_FILE}, CONFIDE_INDEX_KEY_FILE at "
            f"{directory / INDEX_FILE} and CONFIDE_SIGNING_KEY_FILE at "
            f"{directory / SIGNING_DIR}, and restore without --keys"
        )
    target = settings.data_dir / "keys"
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} already holds keys: restore into a fresh data dir")
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            _write(target / path.relative_to(directory), path.read_bytes())


def _unopened(keyring: encryption.Keyring, keys: list[tuple[str, bytes]]) -> int:
    failed = 0
    for key_id, wrapped in keys:
        try:
            encryption.unwrap_data_key(keyring, key_id, wrapped)
        except encryption.DecryptionError:
            failed += 1
    return failed


def _restore_database(settings: Settings, kind: str, dump: Path) -> None:
    if kind == "sqlite":
        target = _sqlite_path(settings)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            partial = Path(scratch) / target.name
            _sqlite_copy(f"file:{dump.resolve()}?mode=ro", partial)
            _sqlite_check(partial)
            partial.chmod(0o600)
            partial.replace(target)
        return
    # As the owner where there are two roles: the restored tables are its own.
    args, env = _libpq(settings.resolved_migration_database_url)
    _run_tool(
        [
            _tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            *args,
            str(dump),
        ],
        env,
    )


async def _apply_privileges(url: str, server_role: str | None) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(apply_privileges, server_role)
    finally:
        await engine.dispose()


def _sqlite_copy(source_uri: str, target: Path) -> None:
    """SQLite's online backup API: a consistent copy, pages read under a read lock."""
    try:
        source = sqlite3.connect(source_uri, uri=True, timeout=30)
        copy = sqlite3.connect(target)
        try:
            with copy:
                source.backup(copy)
        finally:
            copy.close()
            source.close()
    except sqlite3.Error as error:
        raise BackupError(f"SQLite could not copy the database: {error}") from None


def _sqlite_check(path: Path) -> None:
    """The copy is a whole SQLite database holding Confide's schema."""
    try:
        conn = sqlite3.connect(path)
        try:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()
            schema = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise BackupError(f"the backed-up SQLite database is damaged: {error}") from None
    if verdict != ("ok",):
        raise BackupError("the backed-up SQLite database is damaged (PRAGMA integrity_check)")
    if schema is None:
        raise BackupError("the backed-up SQLite database holds no Confide schema")


# -- backup and restore -------------------------------------------------------------


def backup(settings: Settings, directory: Path, keys_directory: Path | None) -> Manifest:
    """Back up the configured database into `directory` (and the keys into
    `keys_directory`), while servers keep serving."""
    kind = _kind(settings)
    url = settings.resolved_database_url
    if keys_directory is not None and keys_directory.resolve() == directory.resolve():
        raise BackupError("--keys must be another directory than the database backup")
    if kind == "sqlite" and not _sqlite_path(settings).exists():
        raise BackupError(f"no database at {_sqlite_path(settings)}")
    tables, _, _ = asyncio.run(_read_state(url))
    if "alembic_version" not in tables:
        raise BackupError("the database holds no Confide schema: nothing to back up")
    _empty_dir(directory, "the backup")
    if keys_directory is not None:
        export_keys(settings, keys_directory)
    if kind == "sqlite":
        target = directory / SQLITE_FILE
        _sqlite_copy(_sqlite_path(settings).resolve().as_uri(), target)
        target.chmod(0o600)
        snapshot_url = f"sqlite+aiosqlite:///{target.resolve()}"
    else:
        target = directory / PG_FILE
        args, env = _libpq(settings.resolved_database_url)
        # One transaction (REPEATABLE READ): a consistent snapshot while servers write.
        _run_tool(
            [
                _tool("pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "--file",
                str(target),
                *args,
            ],
            env,
        )
        target.chmod(0o600)
        snapshot_url = ""
    if snapshot_url:
        _, revision, keys = asyncio.run(_read_state(snapshot_url))
    else:
        # pg_dump's snapshot is not readable without a restore; its data keys and revision
        # are read now. A data key made between the dump and this read is listed, one
        # removed then is not: the key ids listed are a superset or the same.
        _, revision, keys = asyncio.run(_read_state(url))
    samples: dict[str, tuple[str, bytes]] = {}
    for key_id, wrapped in keys:
        samples.setdefault(encryption.wrapped_kid(wrapped), (key_id, wrapped))
    master_kids = sorted(samples)
    manifest = Manifest(
        database=kind,
        file=target.name,
        sha256=_sha256(target),
        schema_revision=revision,
        master_key_ids=master_kids,
        key_checks=[[samples[kid][0], b64url_encode(samples[kid][1])] for kid in master_kids],
        data_keys=len(keys),
        created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    )
    _write(directory / MANIFEST, manifest.to_json().encode())
    return manifest


def restore(
    settings: Settings, directory: Path, keys_directory: Path | None
) -> tuple[Manifest, int]:
    """Restore the backup in `directory` into the configured (empty) database, and the keys
    in `keys_directory` into the data dir; the number of data keys the keys open."""
    manifest = Manifest.read(directory)
    kind = _kind(settings)
    if manifest.database != kind:
        raise BackupError(
            f"the backup is of a {manifest.database} database; CONFIDE_DATABASE_URL names "
            f"a {kind} one"
        )
    dump = directory / manifest.file
    if not dump.is_file() or dump.name not in (SQLITE_FILE, PG_FILE):
        raise BackupError(f"{dump} is missing")
    if _sha256(dump) != manifest.sha256:
        raise BackupError(f"{dump} does not match its SHA-256 in {MANIFEST}: damaged")
    if keys_directory is not None:
        _check_keys_dir(keys_directory)
    keyring = _read_keyring(keys_directory, settings)
    missing = sorted(set(manifest.master_key_ids) - set(keyring.kids()))
    if missing:
        raise BackupError(
            f"the keys lack the master key(s) {', '.join(missing)} that wrap this backup's "
            "data keys: restore them from the keys backup made with it"
        )

    url = settings.resolved_migration_database_url
    if kind == "sqlite":
        target = _sqlite_path(settings)
        if target.exists():
            raise BackupError(f"{target} exists: restore into a fresh data dir")
    else:
        tables, _, _ = asyncio.run(_read_state(url))
        if tables:
            raise BackupError(
                "the target database holds tables: restore into a new, empty database"
            )

    # The keys must open the backup's data keys before anything is written.
    try:
        samples = [(key_id, b64url_decode(wrapped)) for key_id, wrapped in manifest.key_checks]
    except ValueError:
        raise BackupError(f"{directory / MANIFEST}: key_checks is malformed") from None
    if _unopened(keyring, samples):
        raise BackupError(
            "the master keys do not open this backup's data keys: they are not the keys "
            "this backup was made with"
        )

    installed = settings.data_dir / "keys"
    fresh = not installed.exists()
    if keys_directory is not None:
        _install_keys(settings, keys_directory)
    try:
        _restore_database(settings, kind, dump)
        tables, _, keys = asyncio.run(_read_state(url))
        if "alembic_version" not in tables:
            raise BackupError(f"{dump} restored no Confide schema: it is damaged")
        if kind == "postgresql":
            # The dump carries no privileges: the server's role gets its rights
            # again, and the audit log is append-only for it as before.
            asyncio.run(_apply_privileges(url, settings.server_role))
    except BaseException:
        if keys_directory is not None:  # take back what this restore installed
            if fresh:
                shutil.rmtree(installed, ignore_errors=True)
            else:
                for entry in installed.iterdir():
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
        raise
    failed = _unopened(keyring, keys)
    if failed:
        raise BackupError(
            f"restored, but {failed} of {len(keys)} data keys do not open with these master "
            "keys: the keys are not the ones this backup was made with"
        )
    return manifest, len(keys)


__all__ = [
    "BackupError",
    "KeyConfigError",
    "Manifest",
    "backup",
    "export_keys",
    "restore",
]
