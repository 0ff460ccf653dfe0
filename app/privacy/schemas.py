"""The person's own data: the access log, the export."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.accounts.schemas import AccountOut, LoginOut
from app.consent.schemas import SHA256_DESCRIPTION
from app.core import examples
from app.core.schemas import ResponseModel, with_example
from app.disclosures.schemas import DisclosureOut
from app.guardians.schemas import GuardianshipOut
from app.keys.schemas import KeyLogOut
from app.mfa.schemas import FactorList
from app.models import ConsentKind
from app.notices.schemas import NoticeOut
from app.rights.schemas import RightsRequestOut
from app.rooms.schemas import RoomOut
from app.safety.schemas import CheckinOut


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
    model_config = with_example(
        {
            "at": "2026-11-24T20:01:00Z",
            "actor": {"account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10", "role": "counselor"},
            "action": "room.participant_add",
        }
    )

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
    model_config = with_example(
        {
            "exported_at": "2026-11-25T08:00:00Z",
            "account": {
                "id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
                "email": "ada@example.org",
                "display_name": "Ada",
                "role": "client",
                "created_at": "2026-11-01T10:00:00Z",
            },
            "devices": [
                {
                    "device_id": "2f6a8c1e-4b3d-4a5f-8e7c-9d0b1a2c3e4f",
                    "label": "Ada's laptop",
                    "public_key": examples.PUBLIC_KEY,
                    "signing_key": examples.SIGNING_KEY,
                    "signature": examples.SIGNATURE,
                    "created_at": "2026-11-01T10:05:00Z",
                    "revoked_at": None,
                }
            ],
            "rooms": [examples.ROOM],
            "consents": [
                {
                    "document_id": "c4e1f2a3-b5d6-4e7f-8a9b-0c1d2e3f4a5b",
                    "sha256": examples.HASH_1,
                    "accepted_at": "2026-11-01T10:10:00Z",
                    "kind": "telehealth",
                    "locale": "en",
                    "version": 3,
                    "title": "Sessions online",
                }
            ],
            "disclosures": [],
            "notices": [],
            "access_log": [
                {
                    "at": "2026-11-24T20:01:00Z",
                    "actor": {
                        "account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
                        "role": "counselor",
                    },
                    "action": "room.participant_add",
                }
            ],
            "key_log": examples.KEY_LOG,
            "factors": {"factors": [], "recovery_codes_remaining": 0},
            "logins": [
                {
                    "id": "7d1f0c2e-3b4a-4c5d-8e6f-9a0b1c2d3e4f",
                    "device": "Firefox on Linux",
                    "created_at": "2026-11-24T20:00:00Z",
                    "last_used_at": "2026-11-25T08:00:00Z",
                    "current": True,
                }
            ],
            "checkins": [],
            "licensure": [],
            "guardianship": {"minor": None, "guardians": [], "wards": []},
            "jurisdiction": "US-CO",
            "rights_requests": [],
        }
    )

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
    factors: FactorList = Field(
        description="As `GET /v1/me/factors`: the second factors, never their secrets."
    )
    logins: list[LoginOut] = Field(description="As `GET /v1/me/logins`.")
    checkins: list[CheckinOut] = Field(
        description="The caller's latest safety check-in in each room, oldest first, as"
        " `GET /v1/rooms/{room_id}/checkin` answers it (clients; empty for staff)."
    )
    licensure: list[str] = Field(
        description="The jurisdictions the caller is licensed for (counselors; empty for others)."
    )
    guardianship: GuardianshipOut = Field(
        description=(
            "The caller's minor status (as the practice recorded it), guardians, and wards"
            " (`GET /v1/me/wards`). Each room's participants carry their roles (`rooms`)."
        )
    )
    jurisdiction: str | None = Field(description="As `GET /v1/me/jurisdiction`.")
    rights_requests: list[RightsRequestOut] = Field(
        description="As `GET /v1/me/rights-requests`, newest first (clients; empty for staff)."
    )
