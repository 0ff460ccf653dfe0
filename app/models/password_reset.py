from __future__ import annotations

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class PasswordReset(Base):
    """A reset token an admin started for an account; only its SHA-256 is stored.

    Whose it is, who started it and every time (created, expires) are sealed
    under the system key; `slot_ix` is the account's slot index
    (`app.core.slots`), so a new reset finds and voids the earlier ones, and
    erasure deletes them, while a dump cannot tell whose a row is. A token is
    spent by deleting its row: of two requests with the same token, one wins.
    """

    __tablename__ = "password_resets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slot_ix: Mapped[bytes] = slot_index()
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # {account, created_at, expires_at}
    details: Mapped[bytes] = encrypted()
