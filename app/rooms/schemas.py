from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints, model_validator

from app.core import examples
from app.core.schemas import AwareDatetime, Clean, RequestModel, ResponseModel, with_example
from app.models import RoomKind, SafetyCheckinMode

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
    safety_checkin: SafetyCheckinMode | None = Field(
        default=None,
        strict=False,
        description="whether a client's room token needs a safety check-in;"
        " default: the practice's (CONFIDE_SAFETY_CHECKIN_DEFAULT)",
        examples=["required"],
    )

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
    safety_checkin: SafetyCheckinMode | None = Field(default=None, strict=False)


ParticipantRole = Literal["host", "participant", "supervisor", "interpreter", "guardian"]
TypedRole = Literal["supervisor", "interpreter", "guardian"]
Note = Annotated[str, StringConstraints(min_length=1, max_length=2000), Clean]
Basis = Annotated[str, StringConstraints(min_length=1, max_length=500), Clean]


class Qualification(RequestModel):
    """The host's attestation that an interpreter is qualified (45 CFR 92.201)."""

    qualified: bool = Field(examples=[True])
    basis: Basis = Field(
        examples=["Certified Healthcare Interpreter (CCHI), Spanish, no. 12345"],
        description="what the qualification rests on",
    )


class QualificationOut(ResponseModel):
    qualified: bool
    basis: str


class AddParticipant(RequestModel):
    account_id: Id | None = None
    email: Annotated[EmailStr, StringConstraints(max_length=320), Clean] | None = None
    role: TypedRole | None = Field(
        default=None,
        description=(
            "a typed participant, always by invitation: `supervisor` (a counselor account),"
            " `interpreter` (any client or counselor account; needs `qualification`),"
            " `guardian` (a linked guardian of a client of the room); omitted: host or client"
        ),
    )
    qualification: Qualification | None = Field(
        default=None, description="an interpreter's attested qualification (required for one)"
    )
    consent_note: Note | None = Field(
        default=None,
        description=(
            "what the room's clients were told and agreed to about this supervisor or"
            " interpreter (required for those roles); sealed with the participant"
        ),
        examples=["Told on 2026-11-20 that Dr. Lin supervises and may observe; agreed."],
    )

    @model_validator(mode="after")
    def _one(self) -> AddParticipant:
        if (self.account_id is None) == (self.email is None):
            raise ValueError("give exactly one of account_id or email")
        if self.role in ("supervisor", "interpreter") and self.consent_note is None:
            raise ValueError("consent_note is required for a supervisor or an interpreter")
        if self.role != "interpreter" and self.qualification is not None:
            raise ValueError("qualification is for an interpreter only")
        if self.role not in ("supervisor", "interpreter") and self.consent_note is not None:
            raise ValueError("consent_note is for a supervisor or an interpreter only")
        return self


class ParticipantOut(ResponseModel):
    model_config = with_example(
        {
            "account_id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
            "display_name": "Ada",
            "role": "participant",
            "admitted": False,
        }
    )

    account_id: str
    display_name: str
    role: ParticipantRole = Field(
        description="`participant` is a client; typed participants: PROTOCOL.md, Rooms"
    )
    admitted: bool
    qualification: QualificationOut | None = Field(
        default=None, description="an interpreter's attested qualification"
    )
    consent_note: str | None = Field(
        default=None,
        description="a supervisor's or interpreter's record of what the clients consented to",
    )
    supervision_consent: bool | None = Field(
        default=None,
        description="a client's: has given this room's supervision consent (null: not a client)",
    )


class InvitationPending(ResponseModel):
    """The host's answer to an invitation: the same whoever it named, or no one."""

    model_config = with_example(
        {"invitation_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "status": "pending"}
    )

    invitation_id: str
    status: Literal["pending"] = "pending"


class InvitationHost(ResponseModel):
    account_id: str
    display_name: str


class InvitationOut(ResponseModel):
    """A pending invitation, as its invitee sees it."""

    model_config = with_example(
        {
            "id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "room_id": "7d2c9a4e-6b1f-4e8a-9c3d-1f5e7a9b2c40",
            "host": {
                "account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
                "display_name": "Dr. Grace Hopper",
            },
            "title": "Weekly session",
            "starts_at": "2026-11-24T20:00:00Z",
            "ends_at": "2026-11-24T20:50:00Z",
            "created_at": "2026-11-20T12:00:00Z",
        }
    )

    id: str
    room_id: str
    role: ParticipantRole | None = Field(
        default=None, description="the typed role invited as; null: host or client"
    )
    host: InvitationHost
    title: str
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


class PendingInvitationOut(ResponseModel):
    """A pending invitation, as the room's hosts see it: no one named."""

    model_config = with_example(
        {
            "id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "status": "pending",
            "created_at": "2026-11-20T12:00:00Z",
        }
    )

    id: str
    status: Literal["pending"] = "pending"
    created_at: datetime


class RoomOut(ResponseModel):
    model_config = with_example(examples.ROOM)

    id: str
    title: str
    kind: RoomKind
    status: Literal["scheduled", "open", "ended"]
    starts_at: datetime | None
    ends_at: datetime | None
    max_participants: int
    waiting_room: bool
    locked: bool
    safety_checkin: SafetyCheckinMode = Field(
        description="required: a client's room token needs a check-in of the last 24 hours"
    )
    participants: list[ParticipantOut]
    mls_group_id: str = Field(
        description="the room's MLS group id, base64url without padding (PROTOCOL.md)"
    )


class TokenRequest(RequestModel):
    device_id: Id


class RoomTokenOut(ResponseModel):
    model_config = with_example(
        {
            "token": examples.JWS,
            "expires_at": "2026-11-24T19:55:00Z",
            "ws_url": "wss://confide.example.org/v1/rooms/7d2c9a4e-6b1f-4e8a-9c3d-1f5e7a9b2c40/ws",
        }
    )

    token: str
    expires_at: datetime
    ws_url: str = Field(description="where to open the room socket with this token")


class IceServer(ResponseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServersOut(ResponseModel):
    model_config = with_example(
        {
            "ice_servers": [
                {
                    "urls": ["turn:turn.example.org:3478?transport=udp"],
                    "username": "1795550000:Hq3xYk2p",
                    "credential": "b6Qm3x0Z1yq2Lw8sXbA3nE5tH6k=",
                }
            ],
            "expires_at": "2026-11-24T20:50:00Z",
        }
    )

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
    model_config = with_example(
        {
            "key_packages": [
                {
                    "device_id": "2f6a8c1e-4b3d-4a5f-8e7c-9d0b1a2c3e4f",
                    "key_package": "AAEABQABAAJBBOrWlHzf2tpjqA3Nkdw",
                    "last_resort": False,
                }
            ]
        }
    )

    key_packages: list[ClaimedKeyPackageOut]


class GroupInfoIn(RequestModel):
    group_info: str = Field(
        min_length=1,
        max_length=90_000,
        description="the room's MLS GroupInfo (wire_format 4), base64url without padding",
    )


class GroupInfoOut(ResponseModel):
    model_config = with_example(
        {"group_info": "AAEABAACIM0KqYVhR7bFtP8rff7l2iCqOCUwme8bSmSs7SM8mv4p"}
    )

    group_info: str = Field(description="the room's latest MLS GroupInfo, base64url")
