from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class LoginFamily(Base):
    """One log-in: the family of refresh tokens that rotate from it.

    Whose log-in it is and every time (started, last used, revoked) are
    sealed under the system key; `slot_ix` is the account's slot index
    (`app.core.slots`), so erasure finds and deletes every log-in of the
    account at once, and a dump cannot group them. The purge opens each
    family to learn when it died (decision note 0007).
    """

    __tablename__ = "login_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slot_ix: Mapped[bytes] = slot_index()
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # {account, started_at, last_at, revoked_at}
    details: Mapped[bytes] = encrypted()


class RefreshToken(Base):
    """One refresh token of a family; only its SHA-256 is stored.

    `spent` is plain so that spending is one conditional update: of several
    requests with the same token, exactly one wins. When it was issued and
    spent is sealed under the system key.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("login_families.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    spent: Mapped[bool] = mapped_column(Boolean, default=False)
    # {created_at}
    details: Mapped[bytes] = encrypted()
