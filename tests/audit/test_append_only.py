"""PostgreSQL with two roles: the server's role may only SELECT and INSERT audit entries.

A cluster of its own per module: an owner role that runs `confide migrate`
(CONFIDE_MIGRATION_DATABASE_URL) and owns the tables, and the server's role
(CONFIDE_DATABASE_URL), which the migrations grant ordinary rights on every
table but UPDATE, DELETE, TRUNCATE (and TRIGGER) on none of `audit_log`'s
(revision 0016 and `app.core.migrations.apply_privileges`). Role names are
unique per run (roles are cluster-wide) and dropped afterwards.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from app.cli import AuditNotFenced, _check_audit_fence
from app.context import build_context
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import Context
from tests.audit.test_fail_closed import assert_audit_unavailable
from tests.disclosures.test_disclosures import disclosure, record, share_a_room
from tests.fixtures.accounts import User
from tests.fixtures.processes import run_async, run_cli
from tests.fixtures.services import FAST_PASSWORDS, PG_HOST, PG_PORT, pg_dsn, unavailable
from tests.rooms.test_rooms import add_device, publish_documents, room_token

INSERT_ENTRY = (
    "INSERT INTO audit_log (seq, target_ix, payload, prev_hash, hash) "
    "VALUES (1000000000, NULL, '\\x00'::bytea, '\\x00'::bytea, '\\x00'::bytea)"
)


@dataclass
class Cluster:
    database: str
    owner: str
    server: str
    data_dir: Path

    def url(self, role: str) -> str:
        return f"postgresql+asyncpg://{role}@{PG_HOST}:{PG_PORT}/{self.database}"

    def dsn(self, role: str) -> str:
        return f"postgresql://{role}@{PG_HOST}:{PG_PORT}/{self.database}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
        return {
            **env,
            **FAST_PASSWORDS,
            "CONFIDE_DATA_DIR": str(self.data_dir),
            "CONFIDE_DATABASE_URL": self.url(self.server),
            "CONFIDE_MIGRATION_DATABASE_URL": self.url(self.owner),
        }

    async def run(self, role: str, *statements: str) -> None:
        conn = await asyncpg.connect(self.dsn(role), timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def count(self, table: str) -> int:
        conn = await asyncpg.connect(self.dsn(self.owner), timeout=5)
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(pg_dsn("postgres"), timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tag = uuid.uuid4().hex[:12]
    found = Cluster(
        f"confide_test_{tag}",
        f"confide_owner_{tag}",
        f"confide_server_{tag}",
        tmp_path_factory.mktemp("roles") / "data",
    )
    try:
        run_async(
            _admin(
                f'CREATE ROLE "{found.owner}" LOGIN',
                f'CREATE ROLE "{found.server}" LOGIN',
                f'CREATE DATABASE "{found.database}" OWNER "{found.owner}"',
            )
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        unavailable("PostgreSQL", error)
        raise
    try:
        # As the runbook says: the owner migrates, which grants the server's role.
        done = run_cli(found.env(), "migrate")
        assert done.returncode == 0, done.stdout + done.stderr
        yield found
    finally:
        run_async(
            _admin(
                f'DROP DATABASE IF EXISTS "{found.database}" WITH (FORCE)',
                f'DROP ROLE IF EXISTS "{found.server}"',
                f'DROP ROLE IF EXISTS "{found.owner}"',
            )
        )


# The shared fixtures (client, admin, counselor, ...) run on the server's role.


@pytest.fixture
def dialect() -> str:
    return "postgresql"


@pytest.fixture
def settings(cluster: Cluster) -> Settings:
    return Settings(
        data_dir=cluster.data_dir,
        database_url=SecretStr(cluster.url(cluster.server)),
        webhook_worker=False,
    )


@pytest.fixture
async def ctx(settings: Settings, clock: FrozenClock) -> AsyncIterator[Context]:
    context = build_context(settings, clock)  # no TRUNCATE: the server's role may not
    yield context
    await context.close()


def refused(cluster: Cluster, role: str, statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        run_async(cluster.run(role, statement))


def test_the_server_role_may_only_select_and_insert_audit_entries(cluster: Cluster) -> None:
    assert run_async(cluster.count("audit_log")) >= 0
    for statement in (
        "UPDATE audit_log SET hash = prev_hash",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "CREATE TRIGGER t BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION now()",
    ):
        refused(cluster, cluster.server, statement)
    # INSERT and SELECT work (in a transaction rolled back: the chain stays whole).
    run_async(
        cluster.run(
            cluster.server,
            "BEGIN",
            INSERT_ENTRY,
            "SELECT count(*) FROM audit_log",
            "ROLLBACK",
        )
    )
    # Ordinary rights elsewhere, sequences included (webhook deliveries' serial).
    run_async(
        cluster.run(
            cluster.server,
            "UPDATE accounts SET id = id WHERE false",
            "DELETE FROM rooms WHERE false",
            "SELECT nextval(pg_get_serial_sequence('webhook_deliveries', 'seq'))",
        )
    )


def test_migrating_again_keeps_the_fence(cluster: Cluster) -> None:
    """A grant made since (by hand, or by a restore's owner) is taken back at the next run."""
    run_async(cluster.run(cluster.owner, f'GRANT ALL ON audit_log TO "{cluster.server}"'))
    done = run_cli(cluster.env(), "migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    refused(cluster, cluster.server, "DELETE FROM audit_log")


async def test_the_server_runs_its_flows_under_that_role(
    ctx: Context,
    client: httpx.AsyncClient,
    admin: User,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    before = await ctx_count(ctx)
    await publish_documents(client, admin)
    room_id = await share_a_room(client, counselor, client_user)
    device = await add_device(client, counselor)
    token = await room_token(client, counselor, room_id, device)
    assert token.status_code == 200, token.text
    made = await record(client, counselor, client_user.id, disclosure(clock))
    assert made.status_code == 201, made.text
    assert await ctx_count(ctx) > before
    async with ctx.transaction() as session:
        assert (await ctx.audit.verify(session)).ok


async def ctx_count(ctx: Context) -> int:
    async with ctx.transaction() as session:
        return len(await ctx.audit.entries(session, after=0, limit=100_000))


async def test_an_audit_insert_refused_mid_run_fails_the_action(
    cluster: Cluster, client: httpx.AsyncClient, counselor: User
) -> None:
    rooms = await cluster.count("rooms")
    await cluster.run(cluster.owner, f'REVOKE INSERT ON audit_log FROM "{cluster.server}"')
    try:
        response = await client.post(
            "/v1/rooms",
            json={"title": "Not recorded", "kind": "individual"},
            headers=counselor.auth,
        )
        assert_audit_unavailable(response)
        assert await cluster.count("rooms") == rooms
    finally:
        await cluster.run(cluster.owner, f'GRANT INSERT ON audit_log TO "{cluster.server}"')
    again = await client.post(
        "/v1/rooms", json={"title": "Recorded", "kind": "individual"}, headers=counselor.auth
    )
    assert again.status_code == 201, again.text


def test_production_refuses_to_serve_as_a_role_that_may_change_the_log(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    def settings(role: str, env: str) -> Settings:
        return Settings(
            env=env,
            data_dir=cluster.data_dir,
            database_url=SecretStr(cluster.url(role)),
            password_memory_kib=19_456,
            password_time_cost=2,
        )

    with pytest.raises(AuditNotFenced, match="UPDATE, DELETE, TRUNCATE the audit log"):
        _check_audit_fence(settings(cluster.owner, "production"))
    _check_audit_fence(settings(cluster.server, "production"))  # fenced: serves
    with caplog.at_level(logging.INFO, logger="confide"):
        _check_audit_fence(settings(cluster.owner, "development"))
    assert "must be append-only" in caplog.text
    assert "production refuses" in caplog.text


def test_the_server_role_cannot_migrate_and_says_so_in_one_line(cluster: Cluster) -> None:
    """Pending migrations and no owner's URL: one line naming the setting, no traceback."""
    run_async(cluster.run(cluster.owner, "UPDATE alembic_version SET version_num = '0015'"))
    try:
        env = {k: v for k, v in cluster.env().items() if k != "CONFIDE_MIGRATION_DATABASE_URL"}
        done = run_cli(env, "migrate")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("confide: the database role may not apply the pending migrations")
        assert "CONFIDE_MIGRATION_DATABASE_URL" in line
    finally:
        again = run_cli(cluster.env(), "migrate")
        assert again.returncode == 0, again.stdout + again.stderr
    refused(cluster, cluster.server, "DELETE FROM audit_log")


def test_backup_as_the_server_role_and_restore_as_the_owner(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The server's role can back up (it reads everything); a restore by the owner into a
    new database gives that role its rights back, the audit log still fenced."""
    done = run_cli(cluster.env(), "backup", str(tmp_path / "db"), "--keys", str(tmp_path / "keys"))
    assert done.returncode == 0, done.stdout + done.stderr
    restored = Cluster(
        f"{cluster.database}_r", cluster.owner, cluster.server, tmp_path / "restored-data"
    )
    run_async(_admin(f'CREATE DATABASE "{restored.database}" OWNER "{cluster.owner}"'))
    try:
        done = run_cli(
            restored.env(), "restore", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert run_async(restored.count("audit_log")) == run_async(cluster.count("audit_log"))
        run_async(restored.run(cluster.server, "BEGIN", INSERT_ENTRY, "ROLLBACK"))
        refused(restored, cluster.server, "DELETE FROM audit_log")
        verified = run_cli(restored.env(), "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        run_async(_admin(f'DROP DATABASE IF EXISTS "{restored.database}" WITH (FORCE)'))
