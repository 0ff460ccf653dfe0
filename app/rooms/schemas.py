from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints, model_validator

from app.core.schemas import AwareDatetime, Clean, RequestModel, ResponseModel
from app.models import RoomKind

Title = Annotated[str, StringConstraints(min_length=1, max_length=200), Clean]
MaxParticipants = Annotated[int, Field(ge=2, le=50)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64), Clean]


class CreateRoom(RequestModel):
    title: Title = Field(examples=["Weekly session"])
    kind: RoomKind = Field(strict=False, examples=["individual"])
    starts_at: AwareDatetime | None = Field(default=None, examples=["2026-11-24T20:00:00Z"])
    ends_at: AwareDatetime | None = Field(default=None, examples=["2026-11-24T21:00:00Z"])
    max_participants: MaxParticipants | None = Field(
        default=None, description="default: 2 for individual rooms, 8 for group rooms"
    )
    waiting_room: bool = True

    @model_validator(mode="after")
    def _window(self) -> CreateRoom:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PatchRoom(RequestModel):
    title: Title | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    max_participants: MaxParticipants | None = None
    waiting_room: bool | None = None


class AddParticipant(RequestModel):
    account_id: Id | None = None
    email: Annotated[EmailStr, StringConstraints(max_length=320), Clean] | None = None

    @model_validator(mode="after")
    def _one(self) -> AddParticipant:
        if (self.account_id is None) == (self.email is None):
            raise ValueError("give exactly one of account_id or email")
        return self


class ParticipantOut(ResponseModel):
    account_id: str
    display_name: str
    role: Literal["host", "participant"]
    admitted: bool


class InvitationPending(ResponseModel):
    """The host's answer to an invitation: the same whoever it named, or no one."""

    invitation_id: str
    status: Literal["pending"] = "pending"


class InvitationHost(ResponseModel):
    account_id: str
    display_name: str


class InvitationOut(ResponseModel):
    """A pending invitation, as its invitee sees it."""

    id: str
    room_id: str
    host: InvitationHost
    title: str
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


class PendingInvitationOut(ResponseModel):
    """A pending invitation, as the room's hosts see it: no one named."""

    id: str
    status: Literal["pending"] = "pending"
    created_at: datetime


class RoomOut(ResponseModel):
    id: str
    title: str
    kind: RoomKind
    status: Literal["scheduled", "open", "ended"]
    starts_at: datetime | None
    ends_at: datetime | None
    max_participants: int
    waiting_room: bool
    locked: bool
    participants: list[ParticipantOut]
    mls_group_id: str = Field(
        description="the room's MLS group id, base64url without padding (PROTOCOL.md)"
    )


class TokenRequest(RequestModel):
    device_id: Id


class RoomTokenOut(ResponseModel):
    token: str
    expires_at: datetime
    ws_url: str = Field(description="where to open the room socket with this token")


class IceServer(ResponseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServersOut(ResponseModel):
    ice_servers: list[IceServer]
    expires_at: datetime | None


class ClaimKeyPackages(RequestModel):
    device_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=100,
        description="Devices of admitted participants of the room, one package each",
    )


class ClaimedKeyPackageOut(ResponseModel):
    device_id: str
    key_package: str = Field(
        description="The encoded MLSMessage (wire_format 5), base64url without padding"
    )
    last_resort: bool = Field(
        description="The device's last-resort package: it may have been handed out before"
    )


class ClaimedKeyPackagesOut(ResponseModel):
    key_packages: list[ClaimedKeyPackageOut]


class GroupInfoIn(RequestModel):
    group_info: str = Field(
        min_length=1,
        max_length=90_000,
        description="the room's MLS GroupInfo (wire_format 4), base64url without padding",
    )


class GroupInfoOut(ResponseModel):
    group_info: str = Field(description="the room's latest MLS GroupInfo, base64url")
