"""While every password-hashing place is taken, log-ins and registrations are refused at the door.

In a flood of log-ins the refusals (503 `busy`) are most of the requests. They
are answered by `PasswordGate` before routing, the form or JSON body and the
dependencies, so that they cost the event loop, which serves every other
request, little: a body that would be refused as invalid (422) is not even
read while the hasher is full. Other requests are not touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.core.context import Context
from app.core.errors import PROBLEM_JSON


@pytest.fixture
async def full(ctx: Context) -> AsyncIterator[None]:
    """Every hashing place taken (running and queued), until the test ends."""
    release = asyncio.Event()
    places = ctx.passwords.concurrency + ctx.passwords.queue

    async def hold() -> None:
        with ctx.passwords.reserve():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(places)]
    while not ctx.passwords.full:
        await asyncio.sleep(0)
    yield
    release.set()
    await asyncio.gather(*holders)


def assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "busy"
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.usefixtures("full")
async def test_log_ins_and_registrations_are_refused_before_their_body_is_read(
    client: httpx.AsyncClient,
) -> None:
    # Bodies the routes would refuse 422: the gate answers before they are parsed.
    assert_busy(await client.post("/v1/auth/token", content=b"\xff not a form"))
    assert_busy(await client.post("/v1/accounts", content=b"{not json"))
    # Everything else is served as usual.
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/v1/me")).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={})).status_code == 422


async def test_with_a_place_free_the_request_reaches_its_route(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    assert not ctx.passwords.full
    assert (await client.post("/v1/auth/token", content=b"\xff not a form")).status_code == 422
    assert (await client.post("/v1/accounts", content=b"{not json")).status_code == 422
