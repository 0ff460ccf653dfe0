from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, blind_index, encrypted, slot_index


class KeyPackage(Base):
    """One MLS KeyPackage a device uploaded, waiting to be claimed.

    Nothing in the row names its device or owner: `slot_ix` is the device's
    slot index (`app.core.slots`, owner = the device id), a value that occurs
    once in the database; the device's last-resort package sits at an index
    of its own, `HMAC(device id)` under another purpose, that occurs once
    too. The package itself (it carries a credential that may name someone)
    is sealed under the device owner's data key, so erasure shreds it.
    """

    __tablename__ = "key_packages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slot_ix: Mapped[bytes] = slot_index()
    # The encoded MLSMessage (wire_format 5), base64url.
    package: Mapped[bytes] = encrypted()


class KeyPackageClaim(Base):
    """A KeyPackage handed out in a room: which device its KeyPackageRef stands for.

    `ref_ix` = HMAC(index key, room id + KeyPackageRef): the server finds the
    device a Welcome's ref names by computing it. The device and its owner
    are sealed under the room's data key. A last-resort package handed out
    twice in one room has two rows with the same `ref_ix`.
    """

    __tablename__ = "key_package_claims"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    ref_ix: Mapped[bytes] = blind_index()
    # {device, account}
    details: Mapped[bytes] = encrypted()


class RoomGroupInfo(Base):
    """The latest MLS GroupInfo of a room's group, as its last committer uploaded it.

    One row per room, replaced on upload; the GroupInfo (wire_format 4) is
    sealed under the room's data key, so it goes with the room's key.
    """

    __tablename__ = "room_group_infos"

    room_id: Mapped[str] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    group_info: Mapped[bytes] = encrypted()
