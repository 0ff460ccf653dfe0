from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.core.schemas import Clean, RequestModel, ResponseModel, UtcDatetime, with_example
from app.models import IncidentStatus, Severity

SUMMARY_MAX = 2000
MESSAGE_MAX = 5000
MAX_AFFECTED = 10_000

Summary = Annotated[str, StringConstraints(min_length=1, max_length=SUMMARY_MAX), Clean]
Message = Annotated[str, StringConstraints(min_length=1, max_length=MESSAGE_MAX), Clean]


class CreateIncident(RequestModel):
    summary: Summary = Field(
        description=f"What happened, at most {SUMMARY_MAX} characters.",
        examples=["A laptop holding an unencrypted export was stolen."],
    )
    discovered_at: UtcDatetime = Field(
        description="When the breach was discovered; not in the future.",
        examples=["2026-11-24T09:00:00Z"],
    )
    severity: Severity = Field(strict=False, examples=["high"])
    affected_account_ids: list[Annotated[uuid.UUID, Field(strict=False)]] = Field(
        max_length=MAX_AFFECTED,
        description=(
            f"Ids of existing accounts whose information was involved, at most {MAX_AFFECTED};"
            " an unknown id refuses the whole request (422). Repeats count once."
        ),
    )


class PatchIncident(RequestModel):
    status: IncidentStatus = Field(
        strict=False,
        description=(
            "Forward only, along assessing → notifying → mitigated → closed (steps may be"
            " skipped); the same or an earlier status is 409 `invalid_transition`."
        ),
    )


class NotifyIncident(RequestModel):
    message: Message = Field(
        description=(
            "The notice each affected account receives: what happened, what information"
            f" was involved, what they should do. At most {MESSAGE_MAX} characters."
        ),
        examples=["On 24 November a laptop with your email address was stolen. …"],
    )


class NotifyByRule(ResponseModel):
    """The deadline that set `notify_by`."""

    jurisdiction: str | None = Field(
        description="The ISO 3166-2 jurisdiction whose law sets it; null: HIPAA's.",
        examples=["US-CO"],
    )
    days: int = Field(description="Days from discovery.", examples=[30])
    source: str = Field(description="The statute.", examples=["Colo. Rev. Stat. 6-1-716(2)"])


class IncidentOut(ResponseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b9e0d4e-3f5c-4f0a-9d6e-2a7c1c3b9e11",
                    "summary": "A laptop holding an unencrypted export was stolen.",
                    "discovered_at": "2026-11-24T09:00:00Z",
                    "severity": "high",
                    "status": "assessing",
                    "notify_by": "2026-12-24T09:00:00Z",
                    "notified_at": None,
                    "overdue": False,
                    "affected_account_ids": ["3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"],
                    "jurisdictions": ["US-CO"],
                    "notify_by_rule": {
                        "jurisdiction": "US-CO",
                        "days": 30,
                        "source": "Colo. Rev. Stat. 6-1-716(2)",
                    },
                }
            ]
        },
    )

    id: str
    summary: str
    discovered_at: datetime
    severity: Severity
    status: IncidentStatus
    notify_by: datetime = Field(
        description=(
            "`discovered_at` + the shortest deadline among HIPAA's 60 days (45 CFR 164.404(b))"
            " and each affected account's state deadline; `notify_by_rule` says which."
        )
    )
    notified_at: datetime | None = Field(description="When affected accounts were first notified.")
    overdue: bool = Field(description="Not yet notified and past `notify_by`.")
    affected_account_ids: list[str]
    jurisdictions: list[str] = Field(
        description=(
            "The affected accounts' jurisdictions (ISO 3166-2) when the incident was opened,"
            " each once, in code order."
        )
    )
    notify_by_rule: NotifyByRule


class NotifiedOut(BaseModel):
    model_config = with_example({"notified": 12})

    notified: int = Field(
        description="Notices delivered: one per affected account (erased accounts get none)."
    )
