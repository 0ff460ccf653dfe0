from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.core.schemas import ResponseModel
from app.models import NoticeKind


class NoticeOut(ResponseModel):
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
