"""The composition root: what fills each part of the running context."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import AuditLog
from app.core.clock import Clock, SystemClock
from app.core.config import Settings
from app.core.context import Context
from app.core.db import Budgets, create_engine, create_sessionmaker, is_sqlite
from app.core.keys import load_keys
from app.core.passwords import PasswordHasher
from app.core.tokens import TokenService
from app.core.vault import Vault
from app.core.webhooks import Announcement
from app.models import DataKeyRows
from app.webhooks.service import write_outbox


def build_context(settings: Settings, clock: Clock | None = None) -> Context:
    clock = clock or SystemClock()
    keys = load_keys(settings)
    url = settings.resolved_database_url
    if is_sqlite(url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    budgets = Budgets.of(settings)
    engine = create_engine(url, budgets=budgets)
    vault = Vault(keys.source, keys.keyring, keys.index_key, clock, DataKeyRows())

    async def outbox(session: AsyncSession, announcements: list[Announcement]) -> None:
        await write_outbox(session, vault, announcements)

    return Context(
        settings=settings,
        outbox=outbox,
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
        audit=AuditLog(vault, clock, sqlite=is_sqlite(url), budgets=budgets),
        passwords=PasswordHasher(
            settings.password_memory_kib,
            settings.password_time_cost,
            settings.password_parallelism,
            concurrency=settings.password_concurrency,
            queue=settings.password_queue,
        ),
    )
