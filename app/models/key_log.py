from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class KeyLogEntry(Base):
    """One entry of an account's key log (`app.keys.log`).

    Nothing names the account: `slot_ix` is the account's slot index
    (`app.core.slots`), slot i holding entry seq i + 1, and the entry itself
    (kind, keys, signature, hashes) is sealed under the account's data key.
    The row id is random, not the device's.
    """

    __tablename__ = "key_log_entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slot_ix: Mapped[bytes] = slot_index()
    # {seq, kind, device_id, identity_key, signing_key, public_key, signature,
    #  prev_hash, hash (hex), identity (the identity key in force after it), at}
    entry: Mapped[bytes] = encrypted()
