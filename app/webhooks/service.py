"""Webhook endpoints (the admin's), the outbox their deliveries wait in, and its log.

Everything about an endpoint but its enabled flag and its event filter is
sealed under the system key, and so is everything about a delivery but its
state. `write_outbox` runs inside the unit of work that made the change
(`Context.outbox`): one pending delivery per enabled endpoint that takes the
event's type, committed with the change or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import audit
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.errors import NotFound, ValidationFailed
from app.core.vault import SYSTEM_KEY_ID, Vault
from app.core.webhooks import EVENT_TYPES, Announcement, EventType
from app.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from app.webhooks.signing import new_secret

_NO_SUCH_WEBHOOK = "No such webhook."


@dataclass
class EndpointView:
    id: str
    url: str
    secret: str
    events: list[EventType]
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None


@dataclass
class DeliveryView:
    seq: int
    id: str
    endpoint_id: str
    state: DeliveryState
    type: EventType
    body: str
    created_at: datetime
    next_attempt_at: datetime | None
    attempts: list[Attempt] = field(default_factory=list)


# -- endpoints ------------------------------------------------------------------------


def check_url(url: str, *, production: bool) -> str:
    """An absolute https URL (http too in development), with a host and no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)  # what the worker will send to
    except (ValueError, UnicodeError, httpx.InvalidURL):
        raise ValidationFailed("url is not a valid URL.") from None
    allowed = ("https",) if production else ("https", "http")
    if parts.scheme not in allowed:
        raise ValidationFailed(
            "url must use https." if production else "url must use https or http."
        )
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValidationFailed("url needs a host and no user name or password.")
    if port == 0 or any(c.isspace() for c in url):
        raise ValidationFailed("url is not a valid URL.")
    return url


def _events(stored: str) -> list[EventType]:
    return [t for t in EVENT_TYPES if t in stored.split(",")]


async def _open_endpoint(session: AsyncSession, vault: Vault, row: WebhookEndpoint) -> EndpointView:
    data = await vault.open_json(
        session, SYSTEM_KEY_ID, WebhookEndpoint.details, row.id, row.details
    )
    return EndpointView(
        id=row.id,
        url=data["url"],
        secret=data["secret"],
        events=_events(row.events),
        enabled=row.enabled,
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
    )


async def _seal_endpoint(
    session: AsyncSession, vault: Vault, row: WebhookEndpoint, view: EndpointView
) -> None:
    row.enabled = view.enabled
    row.events = ",".join(t for t in EVENT_TYPES if t in view.events)
    row.details = await vault.seal_json(
        session,
        SYSTEM_KEY_ID,
        WebhookEndpoint.details,
        row.id,
        {
            "url": view.url,
            "secret": view.secret,
            "created_at": view.created_at.isoformat(),
            "updated_at": view.updated_at.isoformat(),
        },
    )


async def _load(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    row = await session.get(WebhookEndpoint, endpoint_id) if is_id(endpoint_id) else None
    if row is None:
        raise NotFound(_NO_SUCH_WEBHOOK)
    return row


def _record(
    session: AsyncSession, action: str, actor: tuple[str, str], target: str, **details: Any
) -> None:
    audit.record(
        session, action, actor_id=actor[0], actor_role=actor[1], target=target, details=details
    )


async def create(
    session: AsyncSession,
    ctx: Context,
    *,
    url: str,
    events: Sequence[EventType],
    enabled: bool,
    actor: tuple[str, str],
) -> EndpointView:
    """A new endpoint; its secret (in the view) is shown to the caller only now."""
    now = ctx.clock.now()
    view = EndpointView(
        id=new_id(),
        url=check_url(url, production=ctx.settings.is_production),
        secret=new_secret(),
        events=[t for t in EVENT_TYPES if t in events],
        enabled=enabled,
        created_at=now,
        updated_at=now,
    )
    row = WebhookEndpoint(id=view.id, enabled=enabled, events="", details=b"")
    await _seal_endpoint(session, ctx.vault, row, view)
    session.add(row)
    await session.flush()
    _record(session, "webhook.create", actor, view.id, events=view.events, enabled=view.enabled)
    return view


async def list_all(session: AsyncSession, ctx: Context) -> list[EndpointView]:
    rows = (await session.execute(select(WebhookEndpoint))).scalars()
    views = [await _open_endpoint(session, ctx.vault, row) for row in rows]
    return sorted(views, key=lambda v: (v.created_at, v.id))


async def get(session: AsyncSession, ctx: Context, endpoint_id: str) -> EndpointView:
    return await _open_endpoint(session, ctx.vault, await _load(session, endpoint_id))


async def patch(
    session: AsyncSession,
    ctx: Context,
    endpoint_id: str,
    *,
    url: str | None,
    events: Sequence[EventType] | None,
    enabled: bool | None,
    actor: tuple[str, str],
) -> EndpointView:
    row = await _load(session, endpoint_id)
    view = await _open_endpoint(session, ctx.vault, row)
    changed = []
    if url is not None:
        view.url = check_url(url, production=ctx.settings.is_production)
        changed.append("url")
    if events is not None:
        view.events = [t for t in EVENT_TYPES if t in events]
        changed.append("events")
    if enabled is not None:
        view.enabled = enabled
        changed.append("enabled")
    view.updated_at = ctx.clock.now()
    await _seal_endpoint(session, ctx.vault, row, view)
    await session.flush()
    _record(session, "webhook.update", actor, view.id, fields=changed)
    return view


async def rotate_secret(
    session: AsyncSession, ctx: Context, endpoint_id: str, *, actor: tuple[str, str]
) -> str:
    """A new secret; deliveries from now on are signed with it alone."""
    row = await _load(session, endpoint_id)
    view = await _open_endpoint(session, ctx.vault, row)
    view.secret = new_secret()
    view.updated_at = ctx.clock.now()
    await _seal_endpoint(session, ctx.vault, row, view)
    await session.flush()
    _record(session, "webhook.rotate_secret", actor, view.id)
    return view.secret


async def remove(
    session: AsyncSession, ctx: Context, endpoint_id: str, *, actor: tuple[str, str]
) -> None:
    """Delete the endpoint and its outbox (what waits is not sent)."""
    row = await _load(session, endpoint_id)
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
    await session.delete(row)
    await session.flush()
    _record(session, "webhook.delete", actor, endpoint_id)


# -- the outbox -----------------------------------------------------------------------


def event_body(announcement: Announcement) -> str:
    """The JSON body every attempt sends (Standard Webhooks: type, timestamp, data)."""
    at = announcement.at.isoformat().replace("+00:00", "Z")
    data = {**announcement.data, "at": at}
    return json.dumps(
        {"type": announcement.type, "timestamp": at, "data": data}, separators=(",", ":")
    )


async def write_outbox(
    session: AsyncSession, vault: Vault, announcements: Sequence[Announcement]
) -> None:
    """One pending delivery per enabled endpoint that takes each event, in order."""
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.events).where(WebhookEndpoint.enabled)
        )
    ).all()
    if not endpoints:
        return
    for announcement in announcements:
        body = event_body(announcement)
        for endpoint_id, events in endpoints:
            if events and announcement.type not in events.split(","):
                continue
            delivery = DeliveryView(
                seq=0,
                id=new_id(),
                endpoint_id=endpoint_id,
                state=DeliveryState.pending,
                type=announcement.type,
                body=body,
                created_at=announcement.at,
                next_attempt_at=announcement.at,
            )
            session.add(
                WebhookDelivery(
                    id=delivery.id,
                    endpoint_id=endpoint_id,
                    state=DeliveryState.pending,
                    details=await _sealed_delivery(session, vault, delivery),
                )
            )
    await session.flush()


async def _sealed_delivery(session: AsyncSession, vault: Vault, d: DeliveryView) -> bytes:
    return await vault.seal_json(
        session,
        SYSTEM_KEY_ID,
        WebhookDelivery.details,
        d.id,
        {
            "type": d.type,
            "body": d.body,
            "created_at": d.created_at.isoformat(),
            "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
            "attempts": [
                {"at": a.at.isoformat(), "status_code": a.status_code, "error": a.error}
                for a in d.attempts
            ],
        },
    )


async def _open_delivery(session: AsyncSession, vault: Vault, row: WebhookDelivery) -> DeliveryView:
    data = await vault.open_json(
        session, SYSTEM_KEY_ID, WebhookDelivery.details, row.id, row.details
    )
    following = data["next_attempt_at"]
    return DeliveryView(
        seq=row.seq,
        id=row.id,
        endpoint_id=row.endpoint_id,
        state=row.state,
        type=data["type"],
        body=data["body"],
        created_at=datetime.fromisoformat(data["created_at"]),
        next_attempt_at=datetime.fromisoformat(following) if following else None,
        attempts=[
            Attempt(datetime.fromisoformat(a["at"]), a["status_code"], a["error"])
            for a in data["attempts"]
        ],
    )


async def deliveries(
    session: AsyncSession, ctx: Context, endpoint_id: str, *, limit: int, before: int | None
) -> tuple[list[DeliveryView], bool]:
    """The endpoint's delivery log, newest first: `limit` deliveries older than `before`
    (a delivery's `seq`; None: from the newest), and whether older ones follow."""
    row = await _load(session, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id)
    if before is not None:
        query = query.where(WebhookDelivery.seq < before)
    rows = list(
        (await session.execute(query.order_by(WebhookDelivery.seq.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    views = [await _open_delivery(session, ctx.vault, r) for r in rows[:limit]]
    return views, len(rows) > limit


async def enabled_endpoints(session: AsyncSession) -> list[str]:
    return list(
        (
            await session.execute(
                select(WebhookEndpoint.id)
                .where(WebhookEndpoint.enabled)
                .order_by(WebhookEndpoint.id)
            )
        ).scalars()
    )


async def head(
    session: AsyncSession, vault: Vault, endpoint_id: str
) -> tuple[DeliveryView, EndpointView] | None:
    """The endpoint's oldest pending delivery and the endpoint (URL, secret), claimed.

    On PostgreSQL the row is locked (`FOR UPDATE SKIP LOCKED`) until the
    transaction ends; if an older pending row of the endpoint is locked by
    another instance (the skipped one), nothing is claimed, so one endpoint's
    events leave in order whichever instance sends them.
    """
    pending = (
        WebhookDelivery.endpoint_id == endpoint_id,
        WebhookDelivery.state == DeliveryState.pending,
    )
    row = (
        await session.execute(
            select(WebhookDelivery)
            .where(*pending)
            .order_by(WebhookDelivery.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    older = await session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(*pending, WebhookDelivery.seq < row.seq)
    )
    if older:
        return None
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        return None
    return await _open_delivery(session, vault, row), await _open_endpoint(session, vault, endpoint)


async def record_attempt(session: AsyncSession, vault: Vault, delivery: DeliveryView) -> None:
    """Store the delivery's new state, attempts and next attempt."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.seq == delivery.seq)
        .values(state=delivery.state, details=await _sealed_delivery(session, vault, delivery))
        .execution_options(synchronize_session=False)
    )


#: Finished deliveries (delivered or failed) each endpoint's log keeps; older ones go.
LOG_KEEP = 1000


async def prune_log(session: AsyncSession, keep: int = LOG_KEEP) -> int:
    """Delete each endpoint's finished deliveries but the newest `keep`; the number deleted.

    By `seq`, not by time: the times are sealed. Pending deliveries stay.
    """
    finished = WebhookDelivery.state != DeliveryState.pending
    deleted = 0
    for endpoint_id in (await session.execute(select(WebhookEndpoint.id))).scalars().all():
        oldest_kept = await session.scalar(
            select(WebhookDelivery.seq)
            .where(WebhookDelivery.endpoint_id == endpoint_id, finished)
            .order_by(WebhookDelivery.seq.desc())
            .offset(keep - 1)
            .limit(1)
        )
        if oldest_kept is None:
            continue
        result = await session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.endpoint_id == endpoint_id,
                finished,
                WebhookDelivery.seq < oldest_kept,
            )
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


async def backlog(session: AsyncSession) -> int:
    """How many deliveries wait in the outbox."""
    count = await session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.state == DeliveryState.pending)
    )
    return int(count or 0)
