"""Everything a running Confide holds: built once in the lifespan (or by the CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.audit import AuditLog
from app.core.clock import Clock, SystemClock
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, is_sqlite
from app.core.errors import ConfideError
from app.core.events import Publisher, take
from app.core.keys import KeyMaterial, load_keys
from app.core.passwords import PasswordHasher
from app.core.throttle import Throttle
from app.core.tokens import TokenService
from app.core.vault import Vault
from app.models import DataKeyRows


@dataclass
class Context:
    settings: Settings
    clock: Clock
    keys: KeyMaterial
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    vault: Vault
    tokens: TokenService
    audit: AuditLog
    passwords: PasswordHasher
    login_throttle: Throttle = field(init=False)
    publisher: Publisher | None = None

    def __post_init__(self) -> None:
        self.login_throttle = Throttle(self.clock, window_s=self.settings.login_window_s)

    async def _commit(self, session: AsyncSession) -> None:
        await self.audit.commit(session)
        events = take(session)
        if events and self.publisher is not None:
            for event in events:
                await self.publisher(event)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits (with its audit entries) on success, else rolls back."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await self._commit(session)
            except ConfideError as error:
                if not error.persist:
                    await session.rollback()
                    raise
                await self._commit(session)
                raise
            except BaseException:
                await session.rollback()
                raise

    async def close(self) -> None:
        await self.engine.dispose()


def build_context(settings: Settings, clock: Clock | None = None) -> Context:
    clock = clock or SystemClock()
    keys = load_keys(settings)
    url = settings.resolved_database_url
    if is_sqlite(url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    vault = Vault(keys.source, keys.keyring, keys.index_key, clock, DataKeyRows())
    return Context(
        settings=settings,
        clock=clock,
        keys=keys,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        vault=vault,
        # Re-reads the signing keys (at most once a second): a rotation reaches the server.
        tokens=TokenService(
            keys.signing_keys,
            issuer=settings.issuer,
            now=clock.time,
            reload=keys.source.reload_signing_keys,
        ),
        audit=AuditLog(vault, clock, sqlite=is_sqlite(url)),
        passwords=PasswordHasher(
            settings.password_memory_kib, settings.password_time_cost, settings.password_parallelism
        ),
    )
