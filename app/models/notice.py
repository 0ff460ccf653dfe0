from __future__ import annotations

import enum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class NoticeKind(enum.StrEnum):
    incident = "incident"
    disclosure = "disclosure"


class Notice(Base):
    """A notice addressed to one account (a breach notice, a disclosure).

    The recipient is only `recipient_ix`, their slot index (`app.core.slots`:
    unique, it groups nothing); kind,
    reference, message and times are sealed under the recipient's data key.
    """

    __tablename__ = "notices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    recipient_ix: Mapped[bytes] = slot_index()
    # {kind, ref, message, created_at, visible_from}
    details: Mapped[bytes] = encrypted()
