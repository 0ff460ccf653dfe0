from __future__ import annotations

import enum

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted


class WebhookEndpoint(Base):
    """A receiver of signed webhooks, the practice's own integration.

    Plain: whether it is enabled and which event types it takes (a fixed
    list of names). Its URL (it may name the practice's systems), secret and
    times are sealed under the system key.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Comma-separated event types; empty: every type.
    events: Mapped[str] = mapped_column(String(512), default="")
    # {url, secret, created_at, updated_at}
    details: Mapped[bytes] = encrypted()


class DeliveryState(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row, then its delivery log.

    `seq` orders an endpoint's events (they are sent one at a time, in this
    order); `id` is the `webhook-id` the receiver sees on every attempt. The
    event (type, body with its room and account ids), every attempt and every
    time (created, next attempt) are sealed under the system key: a dump
    shows how many events wait and how many were delivered, not which, when
    or about whom.
    """

    __tablename__ = "webhook_deliveries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[DeliveryState] = mapped_column(
        Enum(DeliveryState, native_enum=False, length=16), default=DeliveryState.pending
    )
    # {type, body, created_at, next_attempt_at, attempts: [{at, status_code, error}]}
    details: Mapped[bytes] = encrypted()
