from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class AuthFactor(Base):
    """One second factor of an account (a TOTP secret, a passkey), or its recovery codes.

    The owner is only `owner_ix`, the account's slot index (`app.core.slots`:
    unique, it groups nothing). Everything else (kind, label, secret or
    credential id and public key, sign count, the last TOTP step accepted,
    the recovery codes' hashes, created_at, whether it is confirmed) is sealed
    under the account's data key, so that erasure shreds it; erasure also
    deletes the rows.
    """

    __tablename__ = "auth_factors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = slot_index()
    # {kind, label, created_at, confirmed, secret | credential_id, public_key,
    #  sign_count | last_step | codes}
    details: Mapped[bytes] = encrypted()
