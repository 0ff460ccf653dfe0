"""A withdrawn consent puts a participant back in the waiting room of the rooms that need it.

On a real server, on SQLite and PostgreSQL, with the in-process broker and
with Redis: the stored admission, who hears `presence` `waiting`, the audit
entry, and that the next admission is a new admission point.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from app.core.config import Settings
from tests.fixtures.redis_server import delete_prefix, shared_redis, unique_prefix
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice


@pytest.fixture(params=["memory", "redis"])
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Settings]:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "database_url": SecretStr(database_url)}
    if request.param == "memory":
        yield Settings(**base)
        return
    url, prefix = await shared_redis(), unique_prefix()
    yield Settings(**base, broker_url=url, broker_prefix=prefix)
    await delete_prefix(url, prefix)


async def joined(practice: Practice, person: Person, room_id: str) -> ClientConnection:
    ws = await open_socket(practice.base, room_id, await practice.token(person, room_id))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    return ws


async def admitted_in(practice: Practice, host: Person, room_id: str) -> dict[str, bool]:
    response = await practice.http.get(f"/v1/rooms/{room_id}", headers=host.auth)
    assert response.status_code == 200, response.text
    return {p["account_id"]: p["admitted"] for p in response.json()["participants"]}


async def withdraw(practice: Practice, person: Person, kind: str) -> None:
    response = await practice.http.delete(
        f"/v1/me/consents/{practice.documents[kind]}", headers=person.auth
    )
    assert response.status_code == 204, response.text


async def accept(practice: Practice, person: Person, kind: str) -> None:
    response = await practice.http.post(
        "/v1/me/consents", json={"document_id": practice.documents[kind]}, headers=person.auth
    )
    assert response.status_code == 201, response.text


async def send(ws: ClientConnection, cid: str) -> int:
    await ws.send(json.dumps({"type": "send", "id": cid, "ciphertext": "AQID"}))
    seq: int = (await recv_until(ws, "ack", id=cid))["seq"]
    return seq


async def resume(ws: ClientConnection) -> list[dict[str, Any]]:
    """What a `resume` from 0 gives, up to `resumed` (presence left out)."""
    await ws.send(json.dumps({"type": "resume", "after": 0}))
    frames = []
    while (frame := await recv(ws))["type"] != "resumed":
        if frame["type"] != "presence":
            frames.append(frame)
    return frames


async def room_with(practice: Practice, host: Person, guests: list[Person], **body: Any) -> str:
    room = await practice.room(host, waiting_room=True, **body)
    for guest in guests:
        await practice.invite(host, room["id"], guest)
        await practice.admit(host, room["id"], guest)
    room_id: str = room["id"]
    return room_id


async def test_withdrawal_sends_an_admitted_client_back_to_the_waiting_room_live(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    client = await practice.client("Client")
    other = await practice.client("Other")
    room_id = await room_with(practice, counselor, [client, other], kind="group")
    host_ws = await joined(practice, counselor, room_id)
    client_ws = await joined(practice, client, room_id)
    other_ws = await joined(practice, other, room_id)

    await withdraw(practice, client, "telehealth")

    assert await closed_with(client_ws) == 4003
    waiting = {"type": "presence", "event": "waiting", "account_id": client.id}
    assert await recv_until(host_ws, "presence", event="waiting") == waiting
    assert await recv_until(other_ws, "presence", event="waiting") == waiting
    assert await admitted_in(practice, counselor, room_id) == {
        counselor.id: True,
        client.id: False,
        other.id: True,
    }
    # Only the account that withdrew: the other client still hears the host.
    await send(host_ws, "still-here")
    assert (await recv_until(other_ws, "message"))["id"] == "still-here"
    for ws in (host_ws, other_ws):
        await ws.close()


async def test_after_accepting_again_the_host_admits_a_new_admission_point(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room_id = await room_with(practice, counselor, [client])
    host_ws = await joined(practice, counselor, room_id)
    client_ws = await joined(practice, client, room_id)
    assert await send(host_ws, "before") == 1

    await withdraw(practice, client, "informed_consent")
    assert await closed_with(client_ws) == 4003
    await recv_until(host_ws, "presence", event="waiting", account_id=client.id)
    assert await send(host_ws, "while-out") == 2
    refused = await practice.token_response(client, room_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "consent_required")

    await accept(practice, client, "informed_consent")
    back = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    welcome = await recv(back)
    assert welcome["state"] == "waiting"
    seen = await recv_until(host_ws, "presence", event="waiting", device_id=client.device)
    assert seen["account_id"] == client.id
    await back.send(json.dumps({"type": "send", "id": "too-soon", "ciphertext": "AQID"}))
    assert (await recv_until(back, "error"))["code"] == "not_admitted"

    await practice.admit(counselor, room_id, client)
    await recv_until(back, "presence", event="admitted", account_id=client.id)
    assert await send(host_ws, "after") == 3
    assert (await recv_until(back, "message"))["id"] == "after"
    # Nothing said while they were out, nor before: the replay starts at the new
    # point ("after", sent live already, is not sent twice).
    assert await resume(back) == [{"type": "replay_truncated", "earliest": 3}]
    for ws in (host_ws, back):
        await ws.close()


async def test_only_rooms_that_need_the_kind_not_ended_and_admitted_are_left(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    individual = await room_with(practice, counselor, [client])
    group = await room_with(practice, counselor, [client], kind="group")
    ended = await room_with(practice, counselor, [client], kind="group")
    done = await practice.http.post(f"/v1/rooms/{ended}/end", headers=counselor.auth)
    assert done.status_code == 200
    waiting = await practice.room(counselor, waiting_room=True, kind="group")
    await practice.invite(counselor, waiting["id"], client)

    # The group agreement only binds group rooms.
    await withdraw(practice, client, "group_agreement")
    assert (await admitted_in(practice, counselor, individual))[client.id] is True
    assert (await admitted_in(practice, counselor, group))[client.id] is False
    assert (await admitted_in(practice, counselor, ended))[client.id] is True
    assert (await admitted_in(practice, counselor, waiting["id"]))[client.id] is False

    # Telehealth binds every room; the host needs no consent and stays.
    await accept(practice, client, "group_agreement")
    await withdraw(practice, client, "telehealth")
    for room_id in (individual, group, waiting["id"]):
        assert await admitted_in(practice, counselor, room_id) == {
            counselor.id: True,
            client.id: False,
        }
    assert (await admitted_in(practice, counselor, ended))[client.id] is True

    async with practice.context.transaction() as session:
        entries = await practice.context.audit.entries(session, after=0, limit=1000)
    unadmitted = [e for e in entries if e.action == "room.unadmit"]
    assert sorted(e.details["room"] for e in unadmitted) == sorted([group, individual])
    assert {(e.actor_id, e.target, e.details["reason"]) for e in unadmitted} == {
        (client.id, client.id, "consent_withdrawn")
    }


async def test_a_host_who_withdraws_stays_admitted(practice: Practice) -> None:
    counselor = await practice.counselor()
    await accept(practice, counselor, "telehealth")
    room_id = await room_with(practice, counselor, [])
    host_ws = await joined(practice, counselor, room_id)
    await withdraw(practice, counselor, "telehealth")
    assert await closed_with(host_ws) == 4003  # every socket of the account, as before
    assert await admitted_in(practice, counselor, room_id) == {counselor.id: True}
    again = await joined(practice, counselor, room_id)
    await again.close()


async def test_in_a_room_without_a_waiting_room_the_next_join_lets_them_in(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=False)
    room_id = room["id"]
    await practice.invite(counselor, room_id, client)
    host_ws = await joined(practice, counselor, room_id)
    client_ws = await joined(practice, client, room_id)
    assert await send(host_ws, "before") == 1

    await withdraw(practice, client, "informed_consent")
    assert await closed_with(client_ws) == 4003
    await recv_until(host_ws, "presence", event="waiting", account_id=client.id)
    assert await send(host_ws, "while-out") == 2

    await accept(practice, client, "informed_consent")
    back = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    assert (await recv(back))["state"] == "admitted"
    await recv_until(host_ws, "presence", event="online", account_id=client.id)
    assert await resume(back) == [{"type": "replay_truncated", "earliest": 3}]
    assert await send(host_ws, "after") == 3
    assert (await recv_until(back, "message"))["id"] == "after"
    for ws in (host_ws, back):
        await ws.close()
