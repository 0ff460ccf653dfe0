"""`room.ended` for a room that reaches its `ends_at`: the worker's scan, on both
databases, on a frozen clock. Deliveries go to a port where nothing listens
(each attempt fails), so the outbox shows what was announced."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.context import build_context
from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import Room
from app.rooms import service as rooms
from app.webhooks.worker import Deliverer
from tests.fixtures.accounts import User, login
from tests.fixtures.processes import free_port
from tests.webhooks.test_worker import _endpoint, _log

pytestmark = pytest.mark.usefixtures("system_key")


async def _room(client: httpx.AsyncClient, host: User, clock: FrozenClock, minutes: int) -> str:
    body = {
        "title": "Weekly",
        "kind": "individual",
        "starts_at": clock.now().isoformat(),
        "ends_at": (clock.now() + timedelta(minutes=minutes)).isoformat(),
    }
    created = await client.post("/v1/rooms", headers=host.auth, json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _ended(ctx: Context, endpoint_id: str) -> list[dict[str, Any]]:
    """The `room.ended` bodies in the endpoint's outbox, oldest first."""
    return [json.loads(d.body) for d in await _log(ctx, endpoint_id) if d.type == "room.ended"]


def _at(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["timestamp"])


async def test_a_room_reaching_its_end_is_announced_once_at_its_end(
    ctx: Context, clock: FrozenClock, client: httpx.AsyncClient, counselor: User
) -> None:
    hook = await _endpoint(ctx, f"http://127.0.0.1:{free_port()}/hook")
    ends_soon = await _room(client, counselor, clock, 30)
    ends_later = await _room(client, counselor, clock, 90)
    end = clock.now() + timedelta(minutes=30)
    deliverer = Deliverer(ctx)
    try:
        await deliverer.tick()
        assert await _ended(ctx, hook.id) == []  # not yet
        clock.advance(31 * 60)
        await deliverer.tick()
        [first] = await _ended(ctx, hook.id)
        assert first["data"]["room_id"] == ends_soon
        assert _at(first) == end
        for _ in range(3):
            await deliverer.tick()
        assert len(await _ended(ctx, hook.id)) == 1
    finally:
        await deliverer.close()
    # A restarted worker (an empty cache) does not announce it again; the other
    # room is announced once it ends.
    clock.advance(60 * 60)
    restarted = Deliverer(ctx)
    try:
        await restarted.tick()
        await restarted.tick()
    finally:
        await restarted.close()
    assert [b["data"]["room_id"] for b in await _ended(ctx, hook.id)] == [ends_soon, ends_later]
    # The room reads as ended at its `ends_at`, and a host's end is no second announcement.
    host = await login(client, counselor)
    ended = await client.post(f"/v1/rooms/{ends_soon}/end", headers=host.auth)
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"
    assert len(await _ended(ctx, hook.id)) == 2


async def test_a_room_its_host_ended_is_not_announced_again_by_the_scan(
    ctx: Context, clock: FrozenClock, client: httpx.AsyncClient, counselor: User
) -> None:
    hook = await _endpoint(ctx, f"http://127.0.0.1:{free_port()}/hook")
    room_id = await _room(client, counselor, clock, 30)
    clock.advance(10 * 60)
    ended = await client.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
    assert ended.status_code == 200, ended.text
    host_end = clock.now()
    clock.advance(60 * 60)
    deliverer = Deliverer(ctx)
    try:
        for _ in range(3):
            await deliverer.tick()
    finally:
        await deliverer.close()
    [only] = await _ended(ctx, hook.id)
    assert only["data"]["room_id"] == room_id
    assert _at(only) == host_end


async def test_a_host_end_after_ends_at_before_the_scan_is_one_announcement_at_ends_at(
    ctx: Context, clock: FrozenClock, client: httpx.AsyncClient, counselor: User
) -> None:
    hook = await _endpoint(ctx, f"http://127.0.0.1:{free_port()}/hook")
    room_id = await _room(client, counselor, clock, 30)
    end = clock.now() + timedelta(minutes=30)
    clock.advance(45 * 60)
    host = await login(client, counselor)
    ended = await client.post(f"/v1/rooms/{room_id}/end", headers=host.auth)
    assert ended.status_code == 200, ended.text
    deliverer = Deliverer(ctx)
    try:
        await deliverer.tick()
    finally:
        await deliverer.close()
    [only] = await _ended(ctx, hook.id)
    assert _at(only) == end


async def test_two_instances_announce_a_room_end_once(
    ctx: Context, clock: FrozenClock, client: httpx.AsyncClient, counselor: User
) -> None:
    hook = await _endpoint(ctx, f"http://127.0.0.1:{free_port()}/hook")
    room_ids = {await _room(client, counselor, clock, 30) for _ in range(4)}
    clock.advance(31 * 60)
    other = build_context(ctx.settings, clock)
    first, second = Deliverer(ctx), Deliverer(other)
    try:
        await asyncio.gather(*(d.tick() for d in (first, second, first, second)))
    finally:
        await first.close()
        await second.close()
        await other.close()
    bodies = await _ended(ctx, hook.id)
    assert sorted(b["data"]["room_id"] for b in bodies) == sorted(room_ids)


async def test_two_scans_at_once_announce_a_room_end_once(
    ctx: Context, clock: FrozenClock, client: httpx.AsyncClient, counselor: User
) -> None:
    """The scan itself, without the worker's SQLite lock: two instances' transactions."""
    hook = await _endpoint(ctx, f"http://127.0.0.1:{free_port()}/hook")
    room_id = await _room(client, counselor, clock, 30)
    clock.advance(31 * 60)
    other = build_context(ctx.settings, clock)

    async def scan(context: Context) -> int:
        async with context.transaction() as session:
            return await rooms.announce_ends(
                session, context.vault, context.clock, {}, max_age=timedelta(days=3)
            )

    try:
        if ctx.engine.dialect.name == "sqlite":  # one writer at a time by nature
            counts = [await scan(ctx), await scan(other)]
        else:
            counts = list(await asyncio.gather(scan(ctx), scan(other)))
        counts.append(await scan(other))
    finally:
        await other.close()
    assert sorted(counts) == [0, 0, 1]
    [only] = await _ended(ctx, hook.id)
    assert only["data"]["room_id"] == room_id
    async with ctx.transaction() as session:
        room = await session.get(Room, room_id)
        assert room is not None
        assert room.ended


async def test_a_room_that_ended_longer_ago_than_a_delivery_lives_is_marked_unannounced(
    ctx: Context, clock: FrozenClock, client: httpx.AsyncClient, counselor: User
) -> None:
    """Rooms of before an upgrade (or of a stopped worker) are not announced days late."""
    hook = await _endpoint(ctx, f"http://127.0.0.1:{free_port()}/hook")
    old = await _room(client, counselor, clock, 30)
    clock.advance(ctx.settings.webhook_max_age_s + 31 * 60 + 1)
    recent = await _room(client, await login(client, counselor), clock, 30)
    clock.advance(31 * 60)
    deliverer = Deliverer(ctx)
    try:
        await deliverer.tick()
    finally:
        await deliverer.close()
    assert [b["data"]["room_id"] for b in await _ended(ctx, hook.id)] == [recent]
    async with ctx.transaction() as session:
        room = await session.get(Room, old)
        assert room is not None
        assert room.ended
        state = await rooms.room_state(session, ctx.vault, room)
        assert state.ended_at == state.ends_at
