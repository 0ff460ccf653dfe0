"""A socket that says nothing for the idle timeout is closed; a talking one stays."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.core.config import Settings
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Practice


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        ws_idle_timeout=0.6,
        ws_sweep_interval=0.05,
    )


async def test_silent_socket_closes_1001_and_a_pinging_one_stays(practice: Practice) -> None:
    counselor = await practice.counselor()
    room = await practice.room(counselor)
    silent = await open_socket(
        practice.base, room["id"], await practice.token(counselor, room["id"])
    )
    await recv(silent)
    device = await practice.add_device(counselor, "laptop")
    talking = await open_socket(
        practice.base, room["id"], await practice.token(counselor, room["id"], device)
    )
    await recv(talking)
    for _ in range(5):
        await talking.send(json.dumps({"type": "ping"}))
        await recv_until(talking, "pong")
        await asyncio.sleep(0.15)
    assert await closed_with(silent, timeout=3) == 1001
    await talking.send(json.dumps({"type": "ping"}))
    assert (await recv_until(talking, "pong"))["type"] == "pong"
    await talking.close()
