from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, blind_index, encrypted, slot_index


class MinorProfile(Base):
    """A client account the practice has marked as a minor (or no longer one).

    `account_ix` = HMAC(index key, account id): one row per account, found by
    computing it; the value occurs once and leads to no one. `details`
    ({minor, self_consent: {allowed, basis} | null, set_at}) is sealed under
    the minor's own data key, so erasure shreds it.
    """

    __tablename__ = "minor_profiles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_ix: Mapped[bytes] = blind_index(unique=True)
    details: Mapped[bytes] = encrypted()


class GuardianLink(Base):
    """The minor's side of a guardianship: the minor's slot index (`app.core.slots`),
    and {guardian, linked_at, consent: {given_at} | null} sealed under the minor's key.

    The guardian's side is a `WardLink`. Neither row holds anything of the
    other person in clear, and the two share no value: a dump cannot pair a
    guardian with a minor (decision note 0008's shape, as `account_rooms`).
    """

    __tablename__ = "guardian_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = slot_index()
    details: Mapped[bytes] = encrypted()


class WardLink(Base):
    """The guardian's side: the guardian's slot index and {minor, linked_at} sealed
    under the guardian's own key (their list of wards)."""

    __tablename__ = "ward_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = slot_index()
    details: Mapped[bytes] = encrypted()
