from __future__ import annotations

import enum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, blind_index, encrypted, slot_index


class SafetyCheckinMode(enum.StrEnum):
    """A room's `safety_checkin` setting: whether a client's room token needs a check-in."""

    required = "required"
    optional = "optional"
    off = "off"


class SafetyCheckin(Base):
    """A client's latest safety check-in for one room, sealed under the client's key.

    `checkin_ix` = HMAC(index key, room id + account id): the room's hosts and
    the client find "the check-in of C in R" by computing it; it occurs once
    and names neither. `owner_ix` is the client's slot index (`app.core.slots`)
    for their export and erasure: unique, it groups nothing. `details`
    ({room, location, emergency_contact, callback_phone, recorded_at}) is
    sealed under the client's data key, so erasure shreds it. No room id,
    account id or time is in clear.
    """

    __tablename__ = "safety_checkins"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = slot_index()
    checkin_ix: Mapped[bytes] = blind_index(unique=True)
    details: Mapped[bytes] = encrypted()


class Licensure(Base):
    """The jurisdictions one counselor is licensed for, sealed under the counselor's key.

    `owner_ix` = HMAC(index key, account id), one row per counselor: it occurs
    once. `details` ({jurisdictions, updated_at}) is sealed under the
    counselor's data key.
    """

    __tablename__ = "licensures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = blind_index(unique=True)
    details: Mapped[bytes] = encrypted()
