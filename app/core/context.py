"""Everything a running Confide holds, and its unit of work.

Built once in the lifespan (or by the CLI) by `app.context.build_context`,
which picks what fills each part (the audit log, the data keys' table).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.audit import AuditTrail
from app.core.clock import Clock
from app.core.config import Settings
from app.core.errors import ConfideError
from app.core.events import Publisher, take
from app.core.keys import KeyMaterial
from app.core.passwords import PasswordHasher
from app.core.throttle import Throttle
from app.core.tokens import TokenService
from app.core.vault import Vault
from app.core.webhooks import Outbox
from app.core.webhooks import take as take_announcements


@dataclass
class Context:
    settings: Settings
    clock: Clock
    keys: KeyMaterial
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    vault: Vault
    tokens: TokenService
    audit: AuditTrail
    passwords: PasswordHasher
    login_throttle: Throttle = field(init=False)
    claim_throttle: Throttle = field(init=False)
    group_info_throttle: Throttle = field(init=False)
    publisher: Publisher | None = None
    #: Writes queued webhook events to the outbox, in the transaction (app.webhooks.outbox).
    outbox: Outbox | None = None

    def __post_init__(self) -> None:
        self.login_throttle = Throttle(self.clock, window_s=self.settings.login_window_s)
        self.claim_throttle = Throttle(
            self.clock, window_s=self.settings.key_package_claim_window_s
        )
        self.group_info_throttle = Throttle(
            self.clock, window_s=self.settings.group_info_upload_window_s
        )

    async def _commit(self, session: AsyncSession) -> None:
        announcements = take_announcements(session)
        if announcements and self.outbox is not None:
            await self.outbox(session, announcements)
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
        await self.audit.close()
        await self.engine.dispose()
        self.passwords.close()
