"""GroupInfo uploads are limited per account, like KeyPackage claims."""

from __future__ import annotations

import pytest

from app.core import mls
from app.core.clock import FrozenClock
from app.core.config import Settings
from tests.fixtures.mls import group_info
from tests.relay.conftest import Practice
from tests.relay.test_group_info import put, url
from tests.relay.test_mls_epoch import b64

UPLOADS = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"group_info_uploads_per_window": UPLOADS})


async def test_group_info_uploads_past_the_limit_get_429_and_change_nothing(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=False)
    room_id = room["id"]
    await practice.invite(counselor, room_id, client)
    group = mls.room_group_id(room_id)
    kept = group_info(2, group, 0)
    for _ in range(UPLOADS):
        assert (await put(practice, counselor, room_id, kept)).status_code == 204
    read = await practice.http.get(url(room_id), headers=client.auth)
    assert read.json() == {"group_info": b64(kept)}

    newer = kept[:-64] + b"z" * 64  # another signature: a GroupInfo the server would keep
    refused = await put(practice, counselor, room_id, newer)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    read = await practice.http.get(url(room_id), headers=client.auth)
    assert read.json() == {"group_info": b64(kept)}
    # The limit answers first, before the body is looked at.
    junk = await practice.http.put(url(room_id), json={"group_info": "***"}, headers=counselor.auth)
    assert junk.status_code == 429, junk.text

    # Per account: the other participant may still upload.
    assert (await put(practice, client, room_id, newer)).status_code == 204
    # Reads are not limited.
    read = await practice.http.get(url(room_id), headers=counselor.auth)
    assert read.json() == {"group_info": b64(newer)}

    clock = practice.context.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(practice.context.settings.group_info_upload_window_s + 1)
    assert (await put(practice, counselor, room_id, kept)).status_code == 204
    read = await practice.http.get(url(room_id), headers=client.auth)
    assert read.json() == {"group_info": b64(kept)}
