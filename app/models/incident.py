from __future__ import annotations

import enum

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted


class IncidentStatus(enum.StrEnum):
    """In the only order an incident moves through (forward, never back)."""

    assessing = "assessing"
    notifying = "notifying"
    mitigated = "mitigated"
    closed = "closed"


class Severity(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Incident(Base):
    """A (suspected) breach under assessment (45 CFR 164.404).

    Status and severity are plain: they say nothing about any person. What
    happened and every time are in `details`; who was affected is in
    `subjects`; both sealed under the system key (an incident is no one
    person's record), so a dump shows neither the affected ids nor dates.
    """

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[IncidentStatus] = mapped_column(
        Enum(IncidentStatus, native_enum=False, length=16)
    )
    severity: Mapped[Severity] = mapped_column(Enum(Severity, native_enum=False, length=16))
    # {summary, discovered_at, notify_by, notified_at, created_at, created_by}
    details: Mapped[bytes] = encrypted()
    # {accounts: [account id, ...]}
    subjects: Mapped[bytes] = encrypted()
