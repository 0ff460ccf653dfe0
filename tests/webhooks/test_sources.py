"""Where events come from: each is announced once, from the change that makes it true."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from app.cli import _settings_errors
from app.core.config import Settings
from app.core.context import Context
from app.core.webhooks import take
from app.incidents import service as incidents
from app.main import create_app
from app.models import Room
from app.rooms import service as rooms
from app.webhooks.worker import Deliverer
from tests.fixtures.accounts import User
from tests.webhooks.test_worker import _endpoint, _room_ended

pytestmark = pytest.mark.usefixtures("system_key")

TOKEN = "metrics-token-" + "k3Jw8sPq1zXc5vNb"


async def test_a_room_starts_once(ctx: Context, client: httpx.AsyncClient, counselor: User) -> None:
    created = await client.post(
        "/v1/rooms", headers=counselor.auth, json={"title": "T", "kind": "individual"}
    )
    assert created.status_code == 201, created.text
    room_id = created.json()["id"]
    announced = []
    for _ in range(2):
        async with ctx.transaction() as session:
            room = await session.get(Room, room_id)
            assert room is not None
            state = await rooms.room_state(session, ctx.vault, room)
            await rooms.mark_started(session, ctx, state)
            announced.append([(a.type, a.data) for a in take(session)])
    assert announced == [[("room.started", {"room_id": room_id})], []]


async def test_an_overdue_incident_is_announced_once(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    body = {
        "summary": "A laptop was stolen.",
        "discovered_at": (ctx.clock.now() - timedelta(days=59)).isoformat(),
        "severity": "high",
        "affected_account_ids": [],
    }
    created = await client.post("/v1/incidents", headers=admin.auth, json=body)
    assert created.status_code == 201, created.text
    counts = []
    for days in (0, 2, 2):
        ctx.clock.advance(days * 86400)  # type: ignore[attr-defined]
        async with ctx.transaction() as session:
            counts.append(await incidents.announce_overdue(session, ctx.vault, ctx.clock))
            pending = take(session)
        if counts[-1]:
            assert [(a.type, a.data["incident_id"]) for a in pending] == [
                ("incident.overdue", created.json()["id"])
            ]
    assert counts == [0, 1, 0]


async def test_the_backlog_is_a_gauge_on_metrics(ctx: Context) -> None:
    await _endpoint(ctx, "https://hooks.example.org/in")
    for n in range(3):
        await _room_ended(ctx, f"room-{n}")
    configured = Settings(
        data_dir=ctx.settings.data_dir,
        database_url=ctx.settings.database_url,
        metrics_token=SecretStr(TOKEN),
        webhook_worker=False,
    )
    app = create_app(configured, context=ctx)
    async with app.router.lifespan_context(app):
        deliverer = Deliverer(ctx, on_backlog=app.state.webhook_backlog.set)
        try:
            ctx.clock.advance(-3600)  # type: ignore[attr-defined]  # nothing is due: no attempt
            await deliverer.tick()
        finally:
            await deliverer.close()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            text = (await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    [gauge] = [
        f for f in text_string_to_metric_families(text) if f.name == "confide_webhook_backlog"
    ]
    assert [s.value for s in gauge.samples] == [3.0]


def test_a_backoff_cap_below_its_base_is_one_clear_line() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(webhook_backoff_base_s=60, webhook_backoff_max_s=10)
    assert _settings_errors(caught.value) == [
        "confide: CONFIDE_WEBHOOK_BACKOFF_MAX_S must be at least CONFIDE_WEBHOOK_BACKOFF_BASE_S"
    ]
