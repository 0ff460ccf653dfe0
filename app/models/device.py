from __future__ import annotations

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, blind_index, encrypted, slot_index

MAX_PUBLIC_KEY_BYTES = 4096


class Device(Base):
    """One installation of a client app, with its end-to-end public key (opaque).

    Nothing in the row names its owner: `owner_ix` = HMAC(account id + device
    id) answers "is this device account A's", `slot_ix` is the owner's slot
    index (`app.core.slots`) for "A's devices". The public key, label and
    times are sealed under the owner's data key, so erasure shreds them (and
    deletes the rows). Only the revoked flag is plain, for the conditional
    update that revokes a device exactly once.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = blind_index(unique=True)
    slot_ix: Mapped[bytes] = slot_index()
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[bytes] = encrypted()
    # {public_key (base64url), created_at, revoked_at}
    details: Mapped[bytes] = encrypted()
