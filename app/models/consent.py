from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, UTCDateTime, blind_index, encrypted, slot_index


class ConsentKind(enum.StrEnum):
    informed_consent = "informed_consent"
    telehealth = "telehealth"
    group_agreement = "group_agreement"


class ConsentDocument(Base):
    """A published, immutable version of a consent text (public: stored plain)."""

    __tablename__ = "consent_documents"
    __table_args__ = (UniqueConstraint("kind", "locale", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[ConsentKind] = mapped_column(Enum(ConsentKind, native_enum=False, length=32))
    locale: Mapped[str] = mapped_column(String(35))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentAcceptance(Base):
    """A person's acceptance: which document and when are sealed under their key.

    `owner_ix` is the owner's slot index (`app.core.slots`): unique, it groups nothing.
    """

    __tablename__ = "consent_acceptances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = slot_index()
    # HMAC(owner + document): one acceptance per person and document.
    acceptance_ix: Mapped[bytes] = blind_index(unique=True)
    details: Mapped[bytes] = encrypted()
