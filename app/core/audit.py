"""What services write to the audit log, and what the log answers.

Services call `record()`; it only queues the entry on the session. The unit
of work (`Context.transaction`) hands the queue to the audit log
(`AuditTrail.commit`), which appends it to the chain, then commits the unit
of work: an action whose entry could not be written is not done. The log itself, a hash chain of
`AuditEntry` rows, is `app.audit.service.AuditLog`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

PENDING = "confide.audit.pending"


@dataclass(frozen=True)
class Pending:
    action: str
    actor_id: str | None
    actor_role: str | None
    target: str | None
    details: dict[str, Any] = field(default_factory=dict)


def record(
    session: AsyncSession,
    action: str,
    *,
    actor_id: str | None = None,
    actor_role: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Queue an audit entry; it is written when the unit of work commits."""
    session.info.setdefault(PENDING, []).append(
        Pending(action, actor_id, actor_role, target, dict(details or {}))
    )


def record_reads(
    session: AsyncSession,
    action: str,
    subjects: Iterable[str],
    *,
    actor_id: str | None,
    actor_role: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """One entry for each person whose records a read showed (never the reader).

    Each entry targets the person, so it shows in their own access log. The
    targets are slot indexes (`app.core.slots`): many entries about many
    people, written together, still group nothing in a dump.
    """
    for subject in sorted(set(subjects) - {actor_id}):
        record(
            session,
            action,
            actor_id=actor_id,
            actor_role=actor_role,
            target=subject,
            details=details,
        )


def take_pending(session: AsyncSession) -> list[Pending]:
    """The entries queued on the session, which then holds none."""
    pending: list[Pending] = session.info.pop(PENDING, [])
    return pending


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: str | None
    broken_seq: int | None = None


@dataclass(frozen=True)
class Entry:
    seq: int
    at: datetime
    action: str
    actor_id: str | None
    actor_role: str | None
    target: str | None
    details: dict[str, Any]
    hash: str
    prev_hash: str


class AuditTrail(Protocol):
    """The audit log as the unit of work and its readers use it."""

    async def commit(self, session: AsyncSession) -> None:
        """Append the entries queued on the session, then commit the transaction."""
        ...

    async def entries(self, session: AsyncSession, *, after: int, limit: int) -> list[Entry]: ...

    async def entries_about(self, session: AsyncSession, target: str) -> list[Entry]:
        """The entries whose target is `target`, in seq order."""
        ...

    async def verify(self, session: AsyncSession, batch: int = 1000) -> Verification: ...

    async def close(self) -> None:
        """Release what appending holds (a task, a connection)."""
        ...
