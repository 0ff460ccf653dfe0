from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, encrypted, new_id

MAX_PUBLIC_KEY_BYTES = 4096


class Device(Base):
    """One installation of a client app, with its end-to-end public key (opaque)."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[bytes] = encrypted()
    public_key: Mapped[bytes] = mapped_column(LargeBinary(MAX_PUBLIC_KEY_BYTES))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
