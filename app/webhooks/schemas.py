from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.core.schemas import Clean, RequestModel, ResponseModel
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


class WebhookOut(ResponseModel):
    id: str
    url: str
    events: list[EventType] = Field(description="Empty: every type.")
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="`whsec_` + base64: shown only now; verify each `webhook-signature` with it."
    )


class SecretOut(ResponseModel):
    secret: str = Field(description="The new secret, shown only now; the old one stops at once.")


class AttemptOut(ResponseModel):
    at: datetime
    status_code: int | None = Field(description="The receiver's answer; null: no answer.")
    error: str | None = Field(
        description="`timeout`, `connection_failed`, `redirect` or `status`; null on success."
    )


class DeliveryOut(ResponseModel):
    id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    type: EventType
    state: Literal["pending", "delivered", "failed"]
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="Null once delivered or failed.")
    attempts: list[AttemptOut]


class DeliveriesOut(ResponseModel):
    items: list[DeliveryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: no more."
    )
