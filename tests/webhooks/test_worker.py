"""The outbox and its worker, on both databases, driven tick by tick on a frozen clock.

The receiver is a real process on a real port (`receiver.py`); a refused
connection is a port where nothing listens.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.context import build_context
from app.core.clock import FrozenClock
from app.core.context import Context
from app.core.errors import NotFound
from app.core.webhooks import announce
from app.models import WebhookDelivery
from app.webhooks import service
from app.webhooks.worker import Deliverer
from tests.fixtures.processes import free_port
from tests.webhooks.conftest import BASE_S, receiver_on

pytestmark = pytest.mark.usefixtures("system_key")

ADMIN = ("00000000-0000-4000-8000-000000000001", "admin")


async def _endpoint(ctx: Context, url: str, **kwargs: Any) -> service.EndpointView:
    async with ctx.transaction() as session:
        return await service.create(
            session,
            ctx,
            url=url,
            events=kwargs.get("events", []),
            enabled=kwargs.get("enabled", True),
            actor=ADMIN,
        )


async def _room_ended(ctx: Context, room_id: str) -> None:
    async with ctx.transaction() as session:
        announce(session, "room.ended", ctx.clock.now(), room_id=room_id)


async def _log(ctx: Context, endpoint_id: str) -> list[service.DeliveryView]:
    async with ctx.transaction() as session:
        views, _ = await service.deliveries(session, ctx, endpoint_id, limit=500, before=None)
    return views[::-1]


async def test_refused_attempts_back_off_with_jitter_then_deliver_under_one_id(
    ctx: Context, clock: FrozenClock, tmp_path: Path
) -> None:
    port = free_port()
    hook = await _endpoint(ctx, f"http://127.0.0.1:{port}/hook")
    await _room_ended(ctx, "room-1")
    deliverer = Deliverer(ctx)
    try:
        assert await deliverer.tick() == 1
        [first] = await _log(ctx, hook.id)
        assert first.attempts[0].error == "connection_failed"
        assert first.attempts[0].status_code is None
        assert first.next_attempt_at is not None
        wait = (first.next_attempt_at - clock.now()).total_seconds()
        assert BASE_S * 0.5 <= wait <= BASE_S
        assert await deliverer.tick() == 0  # not due yet: no attempt, no sleeping
        clock.advance(wait)
        assert await deliverer.tick() == 1
        [second] = await _log(ctx, hook.id)
        assert second.next_attempt_at is not None
        wait = (second.next_attempt_at - clock.now()).total_seconds()
        assert BASE_S <= wait <= 2 * BASE_S
        clock.advance(wait)
        with receiver_on(port, hook.secret, tmp_path / "received.jsonl") as receiver:
            assert await deliverer.tick() == 1
            [done] = await _log(ctx, hook.id)
            assert done.state == "delivered"
            assert [a.status_code for a in done.attempts] == [None, None, 204]
            assert done.next_attempt_at is None
            [line] = receiver.lines()
    finally:
        await deliverer.close()
    assert line["valid"]
    assert line["id"] == first.id
    assert line["body"] == first.body


async def test_an_event_is_given_up_after_three_days_and_the_next_one_goes(
    ctx: Context, clock: FrozenClock, tmp_path: Path
) -> None:
    port = free_port()
    hook = await _endpoint(ctx, f"http://127.0.0.1:{port}/hook")
    await _room_ended(ctx, "room-1")
    start = clock.now()
    deliverer = Deliverer(ctx)
    try:
        for _ in range(200):
            await deliverer.tick()
            [only] = await _log(ctx, hook.id)
            if only.state != "pending":
                break
            assert only.next_attempt_at is not None
            clock.advance((only.next_attempt_at - clock.now()).total_seconds())
        assert only.state == "failed"
        assert only.next_attempt_at is None
        assert timedelta(days=2) < only.attempts[-1].at - start <= timedelta(days=3)
        gaps = [b.at - a.at for a, b in zip(only.attempts, only.attempts[1:], strict=False)]
        assert max(gaps) <= timedelta(hours=1)  # the cap
        await _room_ended(ctx, "room-2")
        with receiver_on(port, hook.secret, tmp_path / "received.jsonl") as receiver:
            assert await deliverer.tick() == 1
            assert [line["body"] for line in receiver.lines()] == [
                (await _log(ctx, hook.id))[1].body
            ]
    finally:
        await deliverer.close()


@pytest.mark.parametrize(
    ("path", "error", "code"),
    [("/redirect", "redirect", 307), ("/slow", "timeout", None), ("/fail", "status", 500)],
)
async def test_an_answer_other_than_2xx_is_a_failed_attempt(
    ctx: Context, tmp_path: Path, path: str, error: str, code: int | None
) -> None:
    port = free_port()
    hook = await _endpoint(ctx, f"http://127.0.0.1:{port}{path}")
    await _room_ended(ctx, "room-1")
    deliverer = Deliverer(ctx)
    try:
        with receiver_on(port, hook.secret, tmp_path / "received.jsonl") as receiver:
            assert await deliverer.tick() == 1
            [pending] = await _log(ctx, hook.id)
            await asyncio.sleep(0.1)
            requests = receiver.lines()
    finally:
        await deliverer.close()
    assert pending.state == "pending"
    assert (pending.attempts[0].error, pending.attempts[0].status_code) == (error, code)
    # One request: a redirect is not followed.
    assert [line["path"] for line in requests][:1] == [path]
    assert all(line["path"] == path for line in requests)


async def test_a_rolled_back_change_announces_nothing(ctx: Context) -> None:
    hook = await _endpoint(ctx, "https://hooks.example.org/in")

    async def refused_change() -> None:
        async with ctx.transaction() as session:
            announce(session, "room.ended", ctx.clock.now(), room_id="room-1")
            raise NotFound("gone")

    with pytest.raises(NotFound):
        await refused_change()
    assert await _log(ctx, hook.id) == []


async def test_filters_and_the_enabled_flag_choose_who_gets_an_event(ctx: Context) -> None:
    everything = await _endpoint(ctx, "https://a.example.org/in")
    rooms_only = await _endpoint(ctx, "https://b.example.org/in", events=["room.started"])
    disabled = await _endpoint(ctx, "https://c.example.org/in", enabled=False)
    await _room_ended(ctx, "room-1")
    async with ctx.transaction() as session:
        announce(session, "room.started", ctx.clock.now(), room_id="room-2")
    assert [d.type for d in await _log(ctx, everything.id)] == ["room.ended", "room.started"]
    assert [d.type for d in await _log(ctx, rooms_only.id)] == ["room.started"]
    assert await _log(ctx, disabled.id) == []


async def test_events_of_one_endpoint_leave_in_order_once_with_two_instances(
    ctx: Context, clock: FrozenClock, tmp_path: Path
) -> None:
    """Two workers (two contexts: two connection pools) drain one outbox at once."""
    port = free_port()
    hook = await _endpoint(ctx, f"http://127.0.0.1:{port}/hook")
    for n in range(12):
        await _room_ended(ctx, f"room-{n}")
    other = build_context(ctx.settings, clock)
    first, second = Deliverer(ctx), Deliverer(other)
    try:
        with receiver_on(port, hook.secret, tmp_path / "received.jsonl") as receiver:

            async def drain(deliverer: Deliverer) -> None:
                for _ in range(40):
                    await deliverer.tick()
                    await asyncio.sleep(0)

            await asyncio.gather(drain(first), drain(second))
            lines = receiver.lines()
            holders = [d._lock_fd is not None for d in (first, second)]
    finally:
        await first.close()
        await second.close()
        await other.close()
    log = await _log(ctx, hook.id)
    assert all(d.state == "delivered" for d in log)
    assert [line["id"] for line in lines] == [d.id for d in log]  # each once, in order
    if ctx.engine.dialect.name == "sqlite":
        # One process sends: the other found the lock file taken.
        assert sorted(holders) == [False, True]


async def test_deleting_an_endpoint_drops_what_waits_for_it(ctx: Context) -> None:
    hook = await _endpoint(ctx, "https://hooks.example.org/in")
    await _room_ended(ctx, "room-1")
    async with ctx.transaction() as session:
        assert await service.backlog(session) == 1
        await service.remove(session, ctx, hook.id, actor=ADMIN)
    async with ctx.transaction() as session:
        assert await service.backlog(session) == 0
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


async def test_the_log_keeps_the_newest_finished_deliveries_and_all_that_wait(
    ctx: Context, tmp_path: Path
) -> None:
    port = free_port()
    hook = await _endpoint(ctx, f"http://127.0.0.1:{port}/hook")
    for n in range(4):
        await _room_ended(ctx, f"room-{n}")
    deliverer = Deliverer(ctx)
    try:
        with receiver_on(port, hook.secret, tmp_path / "received.jsonl"):
            assert await deliverer.tick() == 4
    finally:
        await deliverer.close()
    await _room_ended(ctx, "room-waiting")
    before = await _log(ctx, hook.id)
    async with ctx.transaction() as session:
        assert await service.prune_log(session, keep=2) == 2
    after = await _log(ctx, hook.id)
    assert [d.id for d in after] == [d.id for d in before[2:]]
    assert [d.state for d in after] == ["delivered", "delivered", "pending"]


async def test_a_url_no_connection_can_be_made_to_is_a_failed_attempt(ctx: Context) -> None:
    hook = await _endpoint(ctx, "http://" + "a" * 64 + ".invalid/x")  # a label too long for DNS
    await _room_ended(ctx, "room-1")
    deliverer = Deliverer(ctx)
    try:
        assert await deliverer.tick() == 1
    finally:
        await deliverer.close()
    [pending] = await _log(ctx, hook.id)
    assert (pending.state, pending.attempts[0].error) == ("pending", "connection_failed")
