"""Several `confide serve` processes over one PostgreSQL and one Redis, as in production."""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.core.tokens import generate_signing_key_pem
from tests.fixtures.accounts import PASSWORD, User, login, unique_email
from tests.fixtures.processes import Backend, Server, run_cli
from tests.fixtures.redis_server import delete_prefix, unique_prefix
from tests.fixtures.services import create_pg_database, drop_pg_database, unavailable
from tests.relay.conftest import Practice, publish_documents


@dataclass
class Cluster:
    backend: Backend
    env: dict[str, str]
    root: Path
    servers: list[Server] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def start(self, name: str) -> Server:
        server = Server(self.backend, self.root / name, dict(self.env)).start()
        self.servers.append(server)
        return server

    def kill(self, server: Server) -> None:
        """kill -9: no shutdown, no goodbye."""
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)

    def base(self, server: Server) -> str:
        return f"http://127.0.0.1:{server.port}"

    async def practice(self, server: Server, admin: User, documents: dict[str, str]) -> Practice:
        http = httpx.AsyncClient(base_url=self.base(server), timeout=30)
        self.clients.append(http)
        return Practice(self.base(server), http, None, None, admin, documents)

    async def first_practice(self, server: Server) -> Practice:
        email = unique_email("admin")
        created = run_cli(
            self.env, "admin", "create", "--email", email, "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
        http = httpx.AsyncClient(base_url=self.base(server), timeout=30)
        self.clients.append(http)
        admin = await login(http, User(created.stdout.strip(), email, PASSWORD, "Admin", "admin"))
        documents = await publish_documents(http, admin)
        return Practice(self.base(server), http, None, None, admin, documents)


@asynccontextmanager
async def cluster(
    tmp_path: Path, redis_url: str, database_url: str | None = None
) -> AsyncIterator[Cluster]:
    signing = tmp_path / "signing_key.pem"
    signing.write_bytes(generate_signing_key_pem())
    signing.chmod(0o600)
    prefix = unique_prefix()
    env_keys = {
        "CONFIDE_MASTER_KEYS": "k1:" + secrets.token_urlsafe(32),
        "CONFIDE_INDEX_KEY": secrets.token_urlsafe(32),
        "CONFIDE_SIGNING_KEY_FILE": str(signing),
        "CONFIDE_BROKER_URL": redis_url,
        "CONFIDE_BROKER_PREFIX": prefix,
    }
    if database_url is not None:
        env_keys["CONFIDE_DATABASE_URL"] = database_url
        name = None
    else:
        try:
            name = await create_pg_database()
        except (OSError, TimeoutError) as error:
            unavailable("PostgreSQL", error)
            raise
    backend = Backend("postgresql", tmp_path / "data", name)
    group = Cluster(backend, backend.env(**env_keys), tmp_path)
    try:
        yield group
    finally:
        for client in group.clients:
            await client.aclose()
        for server in group.servers:
            server.stop()
        with contextlib.suppress(Exception):
            await delete_prefix(redis_url, prefix)
        if name is not None:
            await drop_pg_database(name)
