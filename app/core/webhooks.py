"""Webhook events, written to the outbox in the same transaction as the change.

Services call `announce(session, type, data)`; like an audit entry it only
queues on the session. The unit of work (`Context.transaction`) hands the
queue to the outbox (`Context.outbox`, `app.webhooks.outbox`) before it
commits, so an event is stored exactly when the change it announces is, and
a rolled-back change announces nothing. `data` holds ids and times only,
never a name, a title, an email or any text a person wrote.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

PENDING = "confide.webhooks.pending"

EventType = Literal[
    "room.started",
    "room.ended",
    "participant.waiting",
    "participant.admitted",
    "participant.left",
    "invitation.accepted",
    "incident.overdue",
]
EVENT_TYPES: tuple[EventType, ...] = (
    "room.started",
    "room.ended",
    "participant.waiting",
    "participant.admitted",
    "participant.left",
    "invitation.accepted",
    "incident.overdue",
)


@dataclass(frozen=True)
class Announcement:
    type: EventType
    at: datetime
    data: dict[str, str]


Outbox = Callable[[AsyncSession, list[Announcement]], Awaitable[None]]


def announce(session: AsyncSession, type: EventType, at: datetime, **data: str) -> None:
    """Queue event `type` (ids as keyword arguments); stored when the unit of work commits."""
    session.info.setdefault(PENDING, []).append(Announcement(type, at, dict(data)))


def take(session: AsyncSession) -> list[Announcement]:
    pending: list[Announcement] = session.info.pop(PENDING, [])
    return pending
