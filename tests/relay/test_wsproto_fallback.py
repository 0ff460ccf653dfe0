"""The same relay on uvicorn's own WebSocket protocol, which offers no frame sink: every
frame goes through the ASGI send, and the guarantees are the same."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.context import Context
from app.main import create_app
from tests.fixtures.server import serve
from tests.relay.test_socket_rules import test_slow_consumer_is_closed_1013
from tests.relay.test_wsproto import (
    settings,
    test_a_replayed_backlog_arrives_whole_through_the_same_path,
    test_broadcasts_reach_every_recipient_intact_and_in_order,
)

__all__ = [
    "settings",
    "test_a_replayed_backlog_arrives_whole_through_the_same_path",
    "test_broadcasts_reach_every_recipient_intact_and_in_order",
    "test_slow_consumer_is_closed_1013",
]


@pytest.fixture
def sink_expected() -> bool:
    return False


@pytest.fixture
async def live(ctx: Context) -> AsyncIterator[tuple[str, httpx.AsyncClient, FastAPI]]:
    app = create_app(context=ctx)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield base, http, app
