"""Engines and sessions. Only the request boundary (or a CLI unit of work) commits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class BudgetedConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that is dropped, not cancelled, when a statement overruns.

    asyncpg answers a statement past its `command_timeout` (or a cancelled one)
    with a cancel request on a second connection, and holds the first until
    that is done; the pool then rolls back on it, and closes it gracefully
    (2 s) when that fails. Against a database that does not answer, each step
    waits out its own timeout, so one refused request took several budgets.
    Closed at once instead, every later step finds it closed and the pool
    replaces it; on the server, the same budget as `statement_timeout` ends
    the statement. `_cancel_current_command` is asyncpg's own (private) hook
    for this; tests/core/test_budgets.py fails should a release change it.
    """

    def _cancel_current_command(
        self, waiter: asyncio.Future[None], cancel_waiter: asyncio.Future[None] | None = None
    ) -> None:
        if not waiter.done():
            waiter.set_result(None)
        # Soon, not now: the protocol is still in the middle of its timeout.
        self._loop.call_soon(self.terminate)


@dataclass(frozen=True)
class Budgets:
    """How long each step of a call to PostgreSQL may take, in seconds.

    Without them a database that hangs (a dropped route, a frozen host) holds
    every request that asks it: asyncpg waits 60 s to connect and for ever for
    an answer, and the pool makes a request wait 30 s for a connection. With
    them each step fails in its budget with an error `is_unavailable` knows
    (a 503), and the connection it was on is dropped, not reused.
    """

    connect_s: float
    statement_s: float
    pool_s: float

    @classmethod
    def of(cls, settings: Settings) -> Budgets:
        return cls(
            connect_s=settings.database_connect_timeout_s,
            statement_s=settings.database_statement_timeout_s,
            pool_s=settings.database_pool_timeout_s,
        )

    def connect_args(self) -> dict[str, Any]:
        """asyncpg's: the connect timeout, the statement timeout on the client (which
        also bounds the cancel request sent after one) and on the server (which ends
        a statement that waits on a lock or runs too long, and frees its locks)."""
        return {
            "connection_class": BudgetedConnection,
            "timeout": self.connect_s,
            "command_timeout": self.statement_s,
            "server_settings": {"statement_timeout": str(max(1, round(self.statement_s * 1000)))},
        }


def create_engine(
    url: str,
    *,
    echo: bool = False,
    budgets: Budgets | None = None,
    pool_size: int = 10,
    max_overflow: int = 20,
) -> AsyncEngine:
    """An engine for `url`; on PostgreSQL (asyncpg) every call within `budgets` when given."""
    # hide_parameters: a database error's text (which reaches the log with its
    # traceback) names the statement, never the values (ids side by side).
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "echo": echo, "hide_parameters": True}
    if not is_sqlite(url):
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)
        if budgets is not None:
            kwargs["pool_timeout"] = budgets.pool_s
            if make_url(url).get_driver_name() == "asyncpg":
                kwargs["connect_args"] = budgets.connect_args()
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
