from __future__ import annotations

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted


class IdempotencyKey(Base):
    """The first success answer to a write sent with an `Idempotency-Key` (note 0013).

    `key_hash` is HMAC(account | route | client key) and `fingerprint` HMAC(key_hash |
    method | path | body), both under a key derived from the index key: each value
    occurs once in a dump and names no one. The answer (status and body) is sealed
    under the caller's data key, so erasing the account shreds it; its expiry is
    sealed under the system key, which the purge opens. A row whose `answer` is NULL
    is a request still in flight: it is never committed so.
    """

    __tablename__ = "idempotency_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    # {status, body}
    answer: Mapped[bytes | None] = encrypted(nullable=True)
    # {expires_at}
    expiry: Mapped[bytes] = encrypted()
