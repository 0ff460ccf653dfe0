"""The room's latest MLS GroupInfo over REST: uploaded by an admitted participant for
the room's group at the room's current epoch, read back by one, gone with the room's
relay state."""

from __future__ import annotations

from typing import Any

import httpx

from app.core import mls
from app.core.clock import FrozenClock
from app.models import RoomGroupInfo
from app.relay.store import Outgoing
from app.retention.service import purge
from tests.fixtures.mls import group_info
from tests.relay.conftest import Person, Practice
from tests.relay.test_mls_epoch import VECTORS, b64


def url(room_id: str) -> str:
    return f"/v1/rooms/{room_id}/group-info"


async def put(practice: Practice, who: Person, room_id: str, raw: bytes) -> httpx.Response:
    body = {"group_info": b64(raw)}
    return await practice.http.put(url(room_id), json=body, headers=who.auth)


async def commit(practice: Practice, room_id: str, epoch: int) -> None:
    message = Outgoing(room_id, "d", f"c{epoch}", '"x":1}', None, "a", epoch)
    await practice.live_hub.broker.append(message)


async def test_upload_replace_and_read_the_group_info(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=False)
    room_id = room["id"]
    await practice.invite(counselor, room_id, client)
    group = mls.room_group_id(room_id)

    nothing = await practice.http.get(url(room_id), headers=client.auth)
    assert nothing.status_code == 404, nothing.text
    first = group_info(2, group, 0)  # no commit yet: epoch 0
    assert (await put(practice, counselor, room_id, first)).status_code == 204
    read = await practice.http.get(url(room_id), headers=client.auth)
    assert read.status_code == 200, read.text
    assert read.json() == {"group_info": b64(first)}

    await commit(practice, room_id, 0)
    await commit(practice, room_id, 1)
    stale = await put(practice, client, room_id, group_info(2, group, 1))
    assert stale.status_code == 409, stale.text
    assert (stale.json()["code"], stale.json()["epoch"]) == ("stale_epoch", 2)
    newer = group_info(2, group, 2)
    assert (await put(practice, client, room_id, newer)).status_code == 204
    read = await practice.http.get(url(room_id), headers=counselor.auth)
    assert read.json() == {"group_info": b64(newer)}

    # The real ts-mls GroupInfo is for a group of its own.
    ts_mls = bytes.fromhex(VECTORS["group_info_epoch1"]["message"])
    wrong = await put(practice, client, room_id, ts_mls)
    assert (wrong.status_code, wrong.json()["code"]) == (409, "wrong_group"), wrong.text
    not_info = await put(
        practice, client, room_id, bytes.fromhex(VECTORS["welcome_bob_carol"]["message"])
    )
    assert not_info.status_code == 422, not_info.text
    junk = await practice.http.put(url(room_id), json={"group_info": "***"}, headers=client.auth)
    assert junk.status_code == 422, junk.text
    read = await practice.http.get(url(room_id), headers=counselor.auth)
    assert read.json() == {"group_info": b64(newer)}

    # Sealed: the row holds no GroupInfo in the clear.
    async with practice.context.sessionmaker() as session:
        row = await session.get(RoomGroupInfo, room_id)
        assert row is not None
        assert newer not in row.group_info
        assert newer.hex().encode() not in row.group_info


async def test_only_admitted_participants(practice: Practice) -> None:
    counselor = await practice.counselor()
    waiting = await practice.client("Waiting")
    outsider = await practice.client("Outsider")
    room = await practice.room(counselor)  # a waiting room
    room_id = room["id"]
    await practice.invite(counselor, room_id, waiting)
    raw = group_info(2, mls.room_group_id(room_id), 0)
    assert (await put(practice, counselor, room_id, raw)).status_code == 204
    answers: list[tuple[Person, int, Any]] = [
        (outsider, 404, "not_found"),
        (waiting, 403, "not_admitted"),
    ]
    for who, code, error in answers:
        uploaded = await put(practice, who, room_id, raw)
        assert (uploaded.status_code, uploaded.json()["code"]) == (code, error), uploaded.text
        read = await practice.http.get(url(room_id), headers=who.auth)
        assert (read.status_code, read.json()["code"]) == (code, error), read.text
    missing = await practice.http.get(
        url("0" * 8 + "-0000-4000-8000-" + "0" * 12), headers=counselor.auth
    )
    assert missing.status_code == 404


async def test_the_group_info_goes_with_the_room_s_relay_state(practice: Practice) -> None:
    ctx = practice.context
    counselor = await practice.counselor()
    room = await practice.room(counselor, waiting_room=False)
    room_id = room["id"]
    raw = group_info(2, mls.room_group_id(room_id), 0)
    assert (await put(practice, counselor, room_id, raw)).status_code == 204
    ended = await practice.http.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
    assert ended.status_code == 200, ended.text
    assert isinstance(ctx.clock, FrozenClock)
    ctx.clock.advance(ctx.settings.retention_ended_room_s + 1)
    assert (await purge(ctx, practice.live_hub.broker)).rooms == 1
    async with ctx.sessionmaker() as session:
        assert await session.get(RoomGroupInfo, room_id) is None
