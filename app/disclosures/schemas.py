from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from app.core.schemas import Clean, RequestModel, ResponseModel, UtcDatetime
from app.models import DisclosureBasis

RECIPIENT_MAX = 200
PURPOSE_MAX = 500
DESCRIPTION_MAX = 5000

Recipient = Annotated[str, StringConstraints(min_length=1, max_length=RECIPIENT_MAX), Clean]
Purpose = Annotated[str, StringConstraints(min_length=1, max_length=PURPOSE_MAX), Clean]
Description = Annotated[str, StringConstraints(min_length=1, max_length=DESCRIPTION_MAX), Clean]


class RecordDisclosure(RequestModel):
    basis: DisclosureBasis = Field(strict=False, examples=["mandated_report"])
    recipient: Recipient = Field(
        description=f"Who received the information, at most {RECIPIENT_MAX} characters.",
        examples=["County child protective services"],
    )
    purpose: Purpose = Field(
        description=f"Why it was disclosed, at most {PURPOSE_MAX} characters.",
        examples=["Mandated report of suspected neglect"],
    )
    description: Description = Field(
        description=f"What was disclosed, at most {DESCRIPTION_MAX} characters.",
        examples=["Session notes of 2026-11-20 concerning the home situation"],
    )
    disclosed_at: UtcDatetime = Field(
        description="When the information was disclosed; not in the future.",
        examples=["2026-11-24T20:00:00Z"],
    )
    withhold_until: UtcDatetime | None = Field(
        default=None,
        description=(
            "Hide the disclosure (and its notice) from the client until then, as a"
            " health oversight agency or law enforcement official may require"
            " (45 CFR 164.528(a)(2))."
        ),
        examples=["2027-02-24T00:00:00Z"],
    )


class DisclosureOut(ResponseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "9b2f3c1a-5d8e-4f6a-b7c9-0d1e2f3a4b5c",
                    "account_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                    "basis": "mandated_report",
                    "recipient": "County child protective services",
                    "purpose": "Mandated report of suspected neglect",
                    "description": "Session notes of 2026-11-20 concerning the home situation",
                    "disclosed_at": "2026-11-24T20:00:00Z",
                    "withhold_until": None,
                    "recorded_by": "7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b",
                    "recorded_by_role": "counselor",
                    "recorded_at": "2026-11-24T20:05:00Z",
                }
            ]
        },
    )

    id: str
    account_id: str = Field(description="The client whose information was disclosed.")
    basis: DisclosureBasis
    recipient: str
    purpose: str
    description: str
    disclosed_at: datetime
    withhold_until: datetime | None
    recorded_by: str = Field(description="Account id of whoever recorded the disclosure.")
    recorded_by_role: str
    recorded_at: datetime
