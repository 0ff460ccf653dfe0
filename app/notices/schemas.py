from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from app.core.schemas import ResponseModel
from app.models import NoticeKind
from app.notices.service import NoticeView


class NoticeOut(ResponseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "5f0c6c1e-8d1b-4a53-9a57-0c1f1b6e2f10",
                    "kind": "incident",
                    "message": "On 2 March a laptop holding appointment times was stolen. "
                    "Your name and session dates were on it. Watch for messages claiming "
                    "to be from us; call 555-0100 with questions.",
                    "created_at": "2026-03-04T09:00:00Z",
                    "incident_id": "0b9e0d4e-3f5c-4f0a-9d6e-2a7c1c3b9e11",
                    "disclosure_id": None,
                }
            ]
        },
    )

    id: str
    kind: NoticeKind
    message: str = Field(
        description=(
            "For an incident, the admin's notice: what happened, what was involved,"
            " what to do. For a disclosure, a summary; the details are in"
            " `GET /v1/me/disclosures`."
        )
    )
    created_at: datetime = Field(description="When the notice reached the caller.")
    incident_id: str | None = Field(default=None, description="Set on `incident` notices.")
    disclosure_id: str | None = Field(default=None, description="Set on `disclosure` notices.")


def notice_out(notice: NoticeView) -> NoticeOut:
    """A notice as its recipient reads it."""
    return NoticeOut(
        id=notice.id,
        kind=notice.kind,
        message=notice.message,
        created_at=notice.created_at,
        incident_id=notice.ref if notice.kind == NoticeKind.incident else None,
        disclosure_id=notice.ref if notice.kind == NoticeKind.disclosure else None,
    )
