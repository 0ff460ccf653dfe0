"""Erasure reaches the relay's replay store: nothing there names the erased person any more.

Through the real API (DELETE /v1/me) on a real server, with the in-process
broker and with Redis; then every key of the Redis prefix (or the in-process
broker's memory) is searched for the erased account id and its device ids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from app.core.config import Settings
from tests.fixtures.redis_cluster import url_of
from tests.fixtures.redis_server import delete_prefix, dump_prefix, unique_prefix
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Practice

NOBODY = {"account_id": "", "device_id": ""}


@pytest.fixture(params=["memory", "redis", "cluster"])
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Settings]:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "database_url": SecretStr(database_url)}
    if request.param == "memory":
        yield Settings(**base)
        return
    url, prefix = await url_of(request, request.param), unique_prefix()
    yield Settings(**base, broker_url=url, broker_prefix=prefix)
    await delete_prefix(url, prefix)


async def stored(practice: Practice, settings: Settings) -> str:
    if settings.broker_url.get_secret_value().startswith("memory://"):
        return repr(vars(practice.live_hub.broker))
    return await dump_prefix(settings.broker_url.get_secret_value(), settings.broker_prefix)


async def send(ws: ClientConnection, frame: dict[str, Any]) -> int:
    await ws.send(json.dumps({"type": "send", **frame}))
    ack = await recv_until(ws, "ack", id=frame["id"])
    seq: int = ack["seq"]
    return seq


async def replayed(ws: ClientConnection) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "resume", "after": 0}))
    frames = []
    while (frame := await recv(ws))["type"] != "resumed":
        if frame["type"] == "message":
            frames.append(frame)
    return frames


async def test_erasure_leaves_no_id_of_the_person_in_the_replay_store(
    practice: Practice, settings: Settings
) -> None:
    counselor = await practice.counselor("Dr Stays")
    client = await practice.client("Erased Client")
    room_id = (await practice.room(counselor, title="Last session"))["id"]
    await practice.invite(counselor, room_id, client)
    await practice.admit(counselor, room_id, client)

    host = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    assert (await recv(host))["type"] == "welcome"
    guest = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    assert (await recv(guest))["state"] == "admitted"
    assert await send(guest, {"id": "g1", "ciphertext": "AQID"}) == 1
    assert await send(guest, {"id": "g2", "recipients": {counselor.device: "BAUG"}}) == 2
    assert await send(host, {"id": "h1", "recipients": {client.device: "BwgJ"}}) == 3
    assert await send(host, {"id": "h2", "ciphertext": "CgsM"}) == 4
    # A second device, used once and revoked before the erasure: forgotten too.
    tablet = await practice.add_device(client, "tablet")
    second = await open_socket(
        practice.base, room_id, await practice.token(client, room_id, tablet)
    )
    await recv(second)
    assert await send(second, {"id": "t1", "ciphertext": "DQ4P"}) == 5
    revoked = await practice.http.delete(f"/v1/devices/{tablet}", headers=client.auth)
    assert revoked.status_code == 204
    assert await closed_with(second) == 4003

    ids = [client.id, *client.devices]
    before = await stored(practice, settings)
    assert all(i in before for i in ids)

    erased = await practice.http.delete("/v1/me", headers=client.auth)
    assert erased.status_code == 204, erased.text
    assert await closed_with(guest) == 4001

    # Every instance hears the erasure through the broker; it is done within moments.
    async with asyncio.timeout(5):
        while True:
            after = await stored(practice, settings)
            if not any(i in after for i in ids):
                break
            await asyncio.sleep(0.05)
    for kept in (counselor.id, counselor.device):
        assert kept in after

    # The host, on a new socket, gets every message meant for it, the erased
    # person's with an empty sender.
    again = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    await recv(again)
    assert await closed_with(host) == 4011
    got = await replayed(again)
    assert [(f["seq"], f["id"], f["sender"], f["ciphertext"]) for f in got] == [
        (1, "g1", NOBODY, "AQID"),
        (2, "g2", NOBODY, "BAUG"),
        (5, "t1", NOBODY, "DQ4P"),
    ]
    # Its own resend still dedupes, and the room goes on from the same seq.
    assert await send(again, {"id": "h2", "ciphertext": "CgsM"}) == 4
    assert await send(again, {"id": "h3", "ciphertext": "EBES"}) == 6
