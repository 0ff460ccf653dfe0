"""Each kind of retained data is deleted on time, and not before (an injected clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import PasswordReset, RefreshToken
from app.relay.broker import Broker, InProcessBroker, Outgoing
from app.relay.redis_broker import RedisBroker
from app.retention.service import purge
from tests.fixtures.accounts import User, login, register_client
from tests.fixtures.redis_server import delete_prefix, shared_redis, unique_prefix

HOUR = 3600


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest, clock: FrozenClock) -> AsyncIterator[Broker]:
    async def ignore(*_: Any) -> None:
        return None

    if request.param == "memory":
        memory = InProcessBroker(clock.time)
        await memory.start(ignore, ignore)
        yield memory
        return
    url = await shared_redis()
    prefix = unique_prefix()
    redis = RedisBroker(url, prefix=prefix, now=clock.time)
    await redis.start(ignore, ignore)
    yield redis
    await redis.close()
    await delete_prefix(url, prefix)


async def a_room_with_messages(
    client: httpx.AsyncClient, counselor: User, broker: Broker, **body: Any
) -> str:
    response = await client.post(
        "/v1/rooms",
        json={"title": "Retained", "kind": "individual", **body},
        headers=counselor.auth,
    )
    assert response.status_code == 201, response.text
    room_id: str = response.json()["id"]
    for i in range(3):
        await broker.append(Outgoing(room_id, "device", f"m{i}", '"x":1}', None))
    return room_id


async def test_ciphertexts_of_an_ended_room_go_after_the_retention(
    client: httpx.AsyncClient, counselor: User, ctx: Context, clock: FrozenClock, broker: Broker
) -> None:
    room_id = await a_room_with_messages(client, counselor, broker)
    ended = await client.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
    assert ended.status_code == 200
    clock.advance(HOUR - 1)
    assert (await purge(ctx, broker)).rooms == 0
    assert [s.seq for s in await broker.replay(room_id, 0)] == [1, 2, 3]
    clock.advance(1)
    assert (await purge(ctx, broker)).rooms == 1
    assert await broker.replay(room_id, 0) == []
    assert await broker.has_room(room_id) is False


async def test_a_room_ended_by_its_clock_follows_the_same_rule(
    client: httpx.AsyncClient, counselor: User, ctx: Context, clock: FrozenClock, broker: Broker
) -> None:
    ends = clock.now() + timedelta(minutes=10)
    room_id = await a_room_with_messages(client, counselor, broker, ends_at=ends.isoformat())
    open_room = await a_room_with_messages(client, counselor, broker)
    clock.set(ends + timedelta(seconds=HOUR - 1))
    await purge(ctx, broker)
    assert await broker.has_room(room_id) is True
    clock.advance(1)
    await purge(ctx, broker)
    assert await broker.has_room(room_id) is False
    # A room that never ended keeps its messages.
    assert await broker.has_room(open_room) is True


async def test_retention_is_configurable_up_to_a_day(ctx: Context) -> None:
    from pydantic import ValidationError

    from app.core.config import Settings

    assert ctx.settings.retention_ended_room_s == HOUR
    with pytest.raises(ValidationError):
        Settings(retention_ended_room_s=86401)


async def family_rows(ctx: Context) -> int:
    async with ctx.sessionmaker() as session:
        return int((await session.execute(select(func.count(RefreshToken.id)))).scalar_one())


async def test_dead_refresh_tokens_go_after_the_retention(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, broker: Broker
) -> None:
    idle = ctx.settings.refresh_idle_timeout
    keep = ctx.settings.retention_dead_tokens_s
    await register_client(client)  # its family will die of idleness
    out_user = await register_client(client)
    await client.post("/v1/auth/logout", headers=out_user.auth)
    live_user = await register_client(client)
    assert await family_rows(ctx) == 3

    clock.advance(keep - 1)
    await purge(ctx, broker)
    assert await family_rows(ctx) == 3  # the logged-out family: not yet
    clock.advance(1)
    await purge(ctx, broker)
    assert await family_rows(ctx) == 2  # the logged-out family is gone

    # Keep one login alive by refreshing; its spent token stays (reuse is still detected).
    clock.set(clock.now() - timedelta(seconds=keep) + timedelta(seconds=idle - 60))
    fresh = await client.post("/v1/auth/refresh", json={"refresh_token": live_user.refresh_token})
    assert fresh.status_code == 200
    assert await family_rows(ctx) == 3
    clock.advance(keep + 61)  # idle user's family died `keep` seconds ago
    await purge(ctx, broker)
    assert await family_rows(ctx) == 2
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": live_user.refresh_token})
    assert replay.json()["code"] == "refresh_reused"


async def test_spent_token_ids_are_forgotten_when_the_token_could_no_longer_be_used(
    clock: FrozenClock,
) -> None:
    memory = InProcessBroker(clock.time)
    assert await memory.spend_jti("j", 60, clock.time()) is True
    clock.advance(59)
    assert await memory.purge_expired() == 0
    assert await memory.spend_jti("j", 60, clock.time()) is False
    clock.advance(1)
    assert await memory.purge_expired() == 1


async def test_expired_reset_tokens_go_and_live_ones_stay(
    client: httpx.AsyncClient, admin: User, ctx: Context, clock: FrozenClock, broker: Broker
) -> None:
    first = await register_client(client)
    second = await register_client(client)
    path = "/v1/admin/accounts/{}/password-reset"
    assert (await client.post(path.format(first.id), headers=admin.auth)).status_code == 201
    clock.advance(20 * 60)
    await login(client, admin)
    assert (await client.post(path.format(second.id), headers=admin.auth)).status_code == 201
    assert (await purge(ctx, broker)).password_resets == 0
    clock.advance(10 * 60)
    assert (await purge(ctx, broker)).password_resets == 1
    async with ctx.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(PasswordReset)) == 1
    clock.advance(20 * 60)
    assert (await purge(ctx, broker)).password_resets == 1
