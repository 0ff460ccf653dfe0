from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.core.schemas import Clean, RequestModel, ResponseModel, with_example
from app.core.webhooks import EventType

URL_MAX = 2048

Url = Annotated[str, StringConstraints(min_length=1, max_length=URL_MAX), Clean]
Events = Annotated[
    list[EventType],
    Field(
        max_length=16,
        description="The event types to send; empty: every type.",
        examples=[["room.started", "room.ended"]],
    ),
]


class CreateWebhook(RequestModel):
    url: Url = Field(
        description=(
            "Where events are POSTed: https (http only in development); no user or password."
        ),
        examples=["https://hooks.example.org/confide"],
    )
    events: Events = Field(default_factory=list)
    enabled: bool = True


class PatchWebhook(RequestModel):
    url: Url | None = None
    events: Events | None = None
    enabled: bool | None = None


_WEBHOOK: dict[str, object] = {
    "id": "3f6c1e52-8a4d-4b7e-9c21-5d0e8f7a6b13",
    "url": "https://hooks.example.org/confide",
    "events": ["room.started", "room.ended"],
    "enabled": True,
    "created_at": "2026-11-24T09:00:00Z",
    "updated_at": "2026-11-24T09:00:00Z",
}
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_DELIVERY: dict[str, object] = {
    "id": "msg_2b1c7a0e9d8f4e3a",
    "type": "room.started",
    "state": "delivered",
    "created_at": "2026-11-24T09:00:00Z",
    "next_attempt_at": None,
    "attempts": [{"at": "2026-11-24T09:00:01Z", "status_code": 204, "error": None}],
}


class WebhookOut(ResponseModel):
    model_config = with_example(_WEBHOOK)

    id: str
    url: str
    events: list[EventType] = Field(description="Empty: every type.")
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreatedOut(WebhookOut):
    model_config = with_example({**_WEBHOOK, "secret": _SECRET})

    secret: str = Field(
        description="`whsec_` + base64: shown only now; verify each `webhook-signature` with it."
    )


class SecretOut(ResponseModel):
    model_config = with_example({"secret": _SECRET})

    secret: str = Field(description="The new secret, shown only now; the old one stops at once.")


class AttemptOut(ResponseModel):
    model_config = with_example({"at": "2026-11-24T09:00:01Z", "status_code": 204, "error": None})

    at: datetime
    status_code: int | None = Field(description="The receiver's answer; null: no answer.")
    error: str | None = Field(
        description="`timeout`, `connection_failed`, `redirect` or `status`; null on success."
    )


class DeliveryOut(ResponseModel):
    model_config = with_example(_DELIVERY)

    id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    type: EventType
    state: Literal["pending", "delivered", "failed"]
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="Null once delivered or failed.")
    attempts: list[AttemptOut]
