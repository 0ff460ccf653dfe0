"""The person's own data: the access log, the export."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.accounts.schemas import AccountOut
from app.consent.schemas import SHA256_DESCRIPTION
from app.core.schemas import ResponseModel
from app.disclosures.schemas import DisclosureOut
from app.keys.schemas import KeyLogOut
from app.models import ConsentKind
from app.notices.schemas import NoticeOut
from app.rooms.schemas import RoomOut


class Actor(ResponseModel):
    account_id: str | None = Field(
        description="Who acted; null when no one was signed in (a failed log-in)."
    )
    role: str | None = Field(
        description=(
            "The actor's role then: client, counselor, admin, or host or participant in a room."
        )
    )


class AccessEntry(ResponseModel):
    at: datetime = Field(examples=["2026-11-24T20:01:00Z"])
    actor: Actor
    action: str = Field(examples=["room.participant_add"])


class DeviceRecord(ResponseModel):
    device_id: str
    label: str
    public_key: str = Field(description="base64url without padding")
    signing_key: str | None
    signature: str | None
    created_at: datetime
    revoked_at: datetime | None


class ConsentRecord(ResponseModel):
    document_id: str
    sha256: str = Field(description=SHA256_DESCRIPTION)
    accepted_at: datetime
    # From the published document; documents are never deleted, so these are
    # null only if the database lost one.
    kind: ConsentKind | None
    locale: str | None
    version: int | None
    title: str | None


class Export(ResponseModel):
    exported_at: datetime
    account: AccountOut
    devices: list[DeviceRecord] = Field(description="Every device, revoked ones too, oldest first.")
    rooms: list[RoomOut] = Field(description="As `GET /v1/rooms` answers.")
    consents: list[ConsentRecord] = Field(
        description="As `GET /v1/me/consents`, with the document's kind, locale, version, title."
    )
    disclosures: list[DisclosureOut] = Field(
        description="As `GET /v1/me/disclosures` (clients; empty for staff)."
    )
    notices: list[NoticeOut] = Field(description="As `GET /v1/me/notices`.")
    access_log: list[AccessEntry] = Field(description="As `GET /v1/me/access-log`.")
    key_log: KeyLogOut = Field(
        description=(
            "The caller's own key log, as `GET /v1/accounts/{account_id}/key-log` answers it."
        )
    )
