from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, blind_index, encrypted


class AuditEntry(Base):
    """One link of the hash chain.

    Only `seq`, the hashes, a blind index of the target and a sealed payload
    are stored: who acted, on whom, what and when live inside `payload`
    (sealed under the system key), so a dump shows no pair of people.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    target_ix: Mapped[bytes | None] = blind_index(nullable=True)
    payload: Mapped[bytes] = encrypted()
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
