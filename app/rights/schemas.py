from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from app.core.schemas import Clean, RequestModel, ResponseModel, with_example
from app.rights import rules
from app.rights.rules import RightsKind, RightsState
from app.rights.service import RequestView, Written

DETAILS_MAX = 5000
REASON_MAX = 2000
STATEMENT_MAX = 5000

Details = Annotated[str, StringConstraints(min_length=1, max_length=DETAILS_MAX), Clean]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=REASON_MAX), Clean]
Statement = Annotated[str, StringConstraints(min_length=1, max_length=STATEMENT_MAX), Clean]

_ID = "7d1f0c2e-5b8a-4e6f-9c3d-1a2b3c4d5e6f"
_CLIENT = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"
_ADMIN = "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10"


class FileRightsRequest(RequestModel):
    kind: RightsKind = Field(
        strict=False,
        description=(
            "`access` (164.524), `amendment` (164.526), `restriction` (164.522) or"
            " `accounting` of disclosures (164.528)."
        ),
        examples=["amendment"],
    )
    details: Details = Field(
        description=f"What the client asks for, at most {DETAILS_MAX} characters.",
        examples=["Please correct the date of my first session in my record."],
    )


class MoveRightsRequest(RequestModel):
    state: RightsState = Field(
        strict=False,
        description=(
            "One step forward along received → in_review → granted | denied → closed; any"
            " other move is 409 `invalid_transition`."
        ),
        examples=["denied"],
    )
    reason: Reason | None = Field(
        default=None,
        description=(
            f"The written reason, at most {REASON_MAX} characters; required to deny"
            " (422 `reason_required`)."
        ),
        examples=["The record is accurate and complete (164.526(a)(2)(iv))."],
    )


class ExtendRightsRequest(RequestModel):
    reason: Reason = Field(
        description=f"The written reason for the delay, at most {REASON_MAX} characters.",
        examples=["The records are archived off site."],
    )


class FileDisagreement(RequestModel):
    statement: Statement = Field(
        description=f"The client's statement of disagreement, at most {STATEMENT_MAX} characters.",
        examples=["My first session was on 3 March, not 3 May."],
    )


class WrittenOut(ResponseModel):
    text: str = Field(description="The reason or statement as written.")
    at: datetime
    by: str = Field(description="The account that wrote it.")


class StepOut(ResponseModel):
    state: RightsState
    at: datetime
    by: str = Field(description="The account that moved the request (the client, for received).")
    reason: str | None


class RightsRequestOut(ResponseModel):
    model_config = with_example(
        {
            "id": _ID,
            "account_id": _CLIENT,
            "kind": "amendment",
            "details": "Please correct the date of my first session in my record.",
            "state": "denied",
            "received_at": "2026-11-02T10:00:00Z",
            "due_at": "2027-01-01T10:00:00Z",
            "rule": "45 CFR 164.526(b)(2)",
            "extended": None,
            "overdue": False,
            "denial": {
                "text": "The record is accurate and complete.",
                "at": "2026-11-20T09:00:00Z",
                "by": _ADMIN,
            },
            "disagreement": None,
            "history": [
                {"state": "received", "at": "2026-11-02T10:00:00Z", "by": _CLIENT, "reason": None},
                {"state": "in_review", "at": "2026-11-03T09:00:00Z", "by": _ADMIN, "reason": None},
                {
                    "state": "denied",
                    "at": "2026-11-20T09:00:00Z",
                    "by": _ADMIN,
                    "reason": "The record is accurate and complete.",
                },
            ],
        }
    )

    id: str
    account_id: str = Field(description="The client whose request it is.")
    kind: RightsKind
    details: str
    state: RightsState
    received_at: datetime
    due_at: datetime | None = Field(
        description=(
            "When the practice must act: `received_at` + 30 days (access), 60 (amendment,"
            " accounting), plus 30 once extended; null for a restriction, which has no"
            " statutory clock."
        )
    )
    rule: str = Field(description="The regulation whose clock `due_at` follows.")
    extended: WrittenOut | None = Field(description="The one extension, with its reason.")
    overdue: bool = Field(description="Still received or in_review, and past `due_at`.")
    denial: WrittenOut | None = Field(description="The written denial, once denied.")
    disagreement: WrittenOut | None = Field(
        description="The client's statement of disagreement with a denied amendment (164.526(d))."
    )
    history: list[StepOut] = Field(description="Every state the request has been in, oldest first.")


def _written(value: Written | None) -> WrittenOut | None:
    return None if value is None else WrittenOut(text=value.text, at=value.at, by=value.by)


def rights_request_out(view: RequestView, now: datetime) -> RightsRequestOut:
    """The request as the API answers it, `overdue` as of `now`."""
    return RightsRequestOut(
        id=view.id,
        account_id=view.account_id,
        kind=view.kind,
        details=view.text,
        state=view.state,
        received_at=view.received_at,
        due_at=view.due_at,
        rule=rules.RULES[view.kind].source,
        extended=_written(view.extension),
        overdue=view.overdue(now),
        denial=_written(view.denial),
        disagreement=_written(view.disagreement),
        history=[StepOut(state=s.state, at=s.at, by=s.by, reason=s.reason) for s in view.history],
    )
