"""Floods of bad tokens and of socket handshakes cost no database or broker call.

Thousands of requests a second with random, oversized, wrong-audience or
expired bearer tokens must be refused on the token alone: every statement
sent to the database (SQLAlchemy's `before_cursor_execute` on every engine)
and every call to the broker is counted while they are served, on REST and on
the room socket (the subprotocol `bearer.<token>` and the first `auth` frame).

A per-address handshake rate limit refuses upgrades past a burst with HTTP
429 and Retry-After, before any token work: a storm from one address does not
keep another from connecting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from app.core.clock import FrozenClock
from app.core.close_codes import Close
from app.core.config import Settings
from app.core.context import Context
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP, MAX_TOKEN_BYTES, ROOM_AUDIENCE, ROOM_TYP
from app.main import create_app
from app.relay.hub import Hub
from tests.fixtures.server import closed_with, open_socket, serve, ws_url

SUBPROTOCOL = Subprotocol("confide.v1")
ROOM = "0" * 26  # a well-formed room id nobody has: the token is refused before it matters


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A small burst, so that the storm below reaches it quickly.
    return settings.model_copy(update={"ws_handshake_burst": 5, "ws_handshake_rate_per_s": 1.0})


@pytest.fixture
async def server(ctx: Context) -> AsyncIterator[tuple[str, Any]]:
    app = create_app(context=ctx)
    async with serve(app) as base:
        yield base, app


@contextmanager
def counting(hub: Hub) -> Iterator[list[str]]:
    """Every database statement and every broker call made meanwhile."""
    calls: list[str] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        calls.append(f"sql: {text}")

    broker = hub.broker
    originals: dict[str, Any] = {}
    for name in dir(type(broker)):
        method = getattr(broker, name, None)
        if name.startswith("_") or not asyncio.iscoroutinefunction(method):
            continue
        originals[name] = method

        def counted(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
            calls.append(f"broker: {_name}")
            return _method(*args, **kw)

        setattr(broker, name, counted)
    event.listen(Engine, "before_cursor_execute", statement)
    try:
        yield calls
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        for name in originals:
            delattr(broker, name)


def bad_tokens(ctx: Context, clock: FrozenClock) -> dict[str, str]:
    """One of each kind of bad token, by kind; the expired ones expire by `clock`."""
    room_claims = {"room": ROOM, "device": "d" * 26, "sid": "s" * 26}
    expired_room = ctx.tokens.issue(
        audience=ROOM_AUDIENCE, typ=ROOM_TYP, subject="a" * 26, ttl=60, claims=room_claims
    ).token
    expired_access = ctx.tokens.issue(
        audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="a" * 26, ttl=60, claims={"sid": "s"}
    ).token
    # Issued now, expired once the clock moves past their minute.
    clock.advance(120)
    return {
        "random": secrets.token_urlsafe(48),
        "jws-shaped": ".".join(secrets.token_urlsafe(n) for n in (20, 60, 64)),
        "oversized": "a" * (MAX_TOKEN_BYTES + 1),
        "oversized-jws": ".".join("A" * 2000 for _ in range(3)),
        "expired-room": expired_room,
        "expired-access": expired_access,
        # Valid, each where the other audience is wanted (REST takes the access
        # token, the socket the room token: each is left out there).
        "room-token": ctx.tokens.issue(
            audience=ROOM_AUDIENCE, typ=ROOM_TYP, subject="a" * 26, ttl=60, claims=room_claims
        ).token,
        "access-token": ctx.tokens.issue(
            audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="a" * 26, ttl=60, claims={"sid": "s"}
        ).token,
    }


async def test_bad_tokens_are_refused_without_a_statement_or_a_broker_call(
    server: tuple[str, Any], ctx: Context, clock: FrozenClock
) -> None:
    base, app = server
    tokens = bad_tokens(ctx, clock)
    hub: Hub = app.state.hub
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        # Warm: whatever a process does once (keys re-read) is not counted.
        await http.get("/v1/me", headers={"Authorization": "Bearer x"})
        with counting(hub) as calls:
            for kind, token in tokens.items():
                if kind == "access-token":
                    continue  # REST's own token
                for path in ("/v1/me", "/v1/rooms", f"/v1/rooms/{ROOM}/token"):
                    method = "POST" if path.endswith("/token") else "GET"
                    response = await http.request(
                        method, path, headers={"Authorization": f"Bearer {token}"}, json={}
                    )
                    assert response.status_code == 401, (kind, path, response.text)
                    assert response.json()["code"] in ("token_invalid", "token_expired")
            for kind, token in tokens.items():
                if kind == "room-token":
                    continue  # the socket's own token
                for via in ("subprotocol", "frame"):
                    ws = await open_socket(base, ROOM, token, via=via)
                    assert await closed_with(ws) == Close.TOKEN, (kind, via)
                    clock.advance(1)  # under the handshake rate (1 a second)
        assert calls == []


async def test_a_handshake_storm_is_refused_with_429_and_others_still_connect(
    server: tuple[str, Any], clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    base, app = server
    url = ws_url(base, ROOM)
    refused: list[InvalidStatus] = []
    timings: list[float] = []

    async def storm_one() -> None:
        try:
            async with connect(url, subprotocols=[SUBPROTOCOL], open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "auth", "token": "garbage"}))
                await closed_with(ws)
        except InvalidStatus as error:
            refused.append(error)

    async def legitimate_one() -> None:
        started = time.perf_counter()
        ws = await connect(
            url,
            subprotocols=[SUBPROTOCOL],
            local_addr=("127.0.0.2", 0),
            open_timeout=10,
        )
        await ws.send(json.dumps({"type": "auth", "token": "not-a-token"}))
        # Served by the room socket (refused on its token), not by the rate limit.
        assert await closed_with(ws) == Close.TOKEN
        timings.append(time.perf_counter() - started)

    # Warm (what the first socket of a process loads), from a third address.
    ws = await connect(url, subprotocols=[SUBPROTOCOL], local_addr=("127.0.0.3", 0))
    await ws.send(json.dumps({"type": "auth", "token": "not-a-token"}))
    assert await closed_with(ws) == Close.TOKEN
    storm = [asyncio.create_task(storm_one()) for _ in range(60)]
    await asyncio.sleep(0)
    legit = [asyncio.create_task(legitimate_one()) for _ in range(5)]
    with caplog.at_level(logging.INFO, logger="confide"):
        await asyncio.gather(*storm, *legit)

    # The burst from 127.0.0.1 was served; the rest refused before any token work.
    assert len(refused) == 60 - 5
    for error in refused:
        assert error.response.status_code == 429
        assert int(error.response.headers["Retry-After"]) >= 1
        body = json.loads(error.response.body)
        assert body["code"] == "rate_limited"
    timings.sort()
    assert timings[int(0.95 * (len(timings) - 1))] < 1.0, timings
    refusals = app.state.metrics.registry.get_sample_value(
        "confide_relay_refusals_total", {"reason": "handshake_rate"}
    )
    assert refusals == 55
    # Every socket above was refused; their lines are sampled (the clock stood still).
    first = app.state.log_sampler.first
    access = [r for r in caplog.records if r.name == "confide.access"]
    assert 0 < len(access) <= first  # of 65 refused sockets
    refused_lines = [r for r in caplog.records if r.getMessage().startswith("socket refused")]
    assert len(refused_lines) <= first
    # Once the clock has refilled the bucket, the address connects again.
    clock.advance(2)
    ws = await open_socket(base, ROOM, "not-a-token", via="frame")
    assert await closed_with(ws) == Close.TOKEN


async def test_behind_the_proxy_the_limit_is_the_forwarded_addresss(
    server: tuple[str, Any],
) -> None:
    """uvicorn's proxy headers (a trusted proxy on loopback): one address is limited,
    another behind the same proxy is not."""
    base, _ = server
    url = ws_url(base, ROOM)

    async def handshake(forwarded: str) -> int:
        try:
            ws = await connect(
                url,
                subprotocols=[SUBPROTOCOL],
                additional_headers={"X-Forwarded-For": forwarded},
                open_timeout=10,
            )
        except InvalidStatus as error:
            return error.response.status_code
        await ws.send(json.dumps({"type": "auth", "token": "garbage"}))
        code = await closed_with(ws)
        assert code is not None
        return code

    burst = [await handshake("203.0.113.7") for _ in range(6)]
    assert burst == [Close.TOKEN] * 5 + [429]
    assert await handshake("198.51.100.9") == Close.TOKEN
