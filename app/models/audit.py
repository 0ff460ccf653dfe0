from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, encrypted, slot_index


class AuditEntry(Base):
    """One link of the hash chain.

    Only `seq`, the hashes, the target's slot index and a sealed payload are
    stored: who acted, on whom, what and when live inside `payload` (sealed
    under the system key), so a dump shows no pair of people. `target_ix` is
    HMAC(target, i) for the target's i-th entry (`app.core.slots`): it occurs
    once, so a dump cannot group one person's entries.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    target_ix: Mapped[bytes | None] = slot_index(nullable=True)
    payload: Mapped[bytes] = encrypted()
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
