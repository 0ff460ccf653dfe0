from __future__ import annotations

import enum

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, blind_index, encrypted, slot_index
from app.models.safety import SafetyCheckinMode


class RoomKind(enum.StrEnum):
    individual = "individual"
    group = "group"


class Room(Base):
    """A scheduled session. Title and times are sealed under the room's own data key."""

    __tablename__ = "rooms"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[RoomKind] = mapped_column(Enum(RoomKind, native_enum=False, length=16))
    data_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("data_keys.id", ondelete="SET NULL"), nullable=True
    )
    # {title, starts_at, ends_at, created_at, ended_at}: every time a dump must not show.
    details: Mapped[bytes] = encrypted()
    max_participants: Mapped[int] = mapped_column(Integer)
    waiting_room: Mapped[bool] = mapped_column(Boolean, default=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Whether a client's room token needs a safety check-in (`app.safety`).
    safety_checkin: Mapped[SafetyCheckinMode] = mapped_column(
        Enum(SafetyCheckinMode, native_enum=False, length=16),
        default=SafetyCheckinMode.off,
        server_default=SafetyCheckinMode.off.value,
    )


class RoomMember(Base):
    """Membership, kept so that a dump does not show who shares a room.

    `member_ix` = HMAC(index key, room id + account id): the server finds "is
    account A in room R" by computing it; the dump shows an opaque value that
    differs per room, so the same person is not recognisable across rooms.
    Who the member is, their role and admission live in `details`, sealed
    under the room's key.
    """

    __tablename__ = "room_members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    member_ix: Mapped[bytes] = blind_index(unique=True)
    details: Mapped[bytes] = encrypted()


class AccountRoom(Base):
    """The other direction, for "my rooms": sealed under the member's own key.

    `owner_ix` is the member's slot index (`app.core.slots`: unique, it
    groups nothing) and the room id is inside `room`, sealed under the
    account's data key. A row written beside a `room_members` row pairs with
    it by row order, but leads to no one: nothing in it is shared with any
    other row of the same person (decision note 0007).
    """

    __tablename__ = "account_rooms"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_ix: Mapped[bytes] = slot_index()
    room_ix: Mapped[bytes] = blind_index(unique=True)
    room: Mapped[bytes] = encrypted()


class RoomInvitation(Base):
    """A host's pending invitation of someone to a room; it names no one in clear.

    `invitee_ix` is the invitee's slot index (`app.core.slots`): the invitee
    lists their invitations by computing it, a dump sees a value that occurs
    once. `details` ({room, host, created_at}) is sealed under the invitee's
    own data key, so only they can open it; `room_details` ({created_at}) is
    sealed under the room's key, for the host's list of what is pending. An
    invitation of an address or id that is no one's (or an admin's, or a
    member's) is a decoy of the same shape that no one can open or accept
    (decision note 0008).
    """

    __tablename__ = "room_invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    invitee_ix: Mapped[bytes] = slot_index()
    details: Mapped[bytes] = encrypted()
    room_details: Mapped[bytes] = encrypted()


class CareRelationship(Base):
    """A counselor's client, by the client's acceptance of that counselor's invitation.

    Only `pair_ix` = HMAC(index key, counselor id + client id): the server asks
    "is C a client of H" by computing it; the value occurs once and leads to
    neither person (decision note 0008).
    """

    __tablename__ = "care_relationships"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    pair_ix: Mapped[bytes] = blind_index(unique=True)
