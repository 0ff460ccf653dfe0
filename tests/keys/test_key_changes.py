"""GET /v1/me/key-changes: the key changes of the people one shares a room with."""

from __future__ import annotations

from typing import Any

import httpx

from app.core.clock import FrozenClock
from tests.fixtures.accounts import User, register_client
from tests.fixtures.identity import b64, device_body, identity_of, new_device, point
from tests.fixtures.rooms import add_and_accept


async def changes(
    client: httpx.AsyncClient, user: User, after: str | None = None
) -> list[dict[str, Any]]:
    params = {"after": after} if after else {}
    response = await client.get("/v1/me/key-changes", params=params, headers=user.auth)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def add(client: httpx.AsyncClient, user: User, label: str) -> str:
    response = await client.post(
        "/v1/devices", json=device_body(user.id, label, "AQID"), headers=user.auth
    )
    assert response.status_code == 201, response.text
    device_id: str = response.json()["device_id"]
    return device_id


async def test_contacts_see_each_others_key_changes_and_strangers_see_none(
    client: httpx.AsyncClient, client_user: User, counselor: User, clock: FrozenClock
) -> None:
    phone = await add(client, client_user, "phone")
    stranger = await register_client(client)
    await add(client, stranger, "theirs")
    assert await changes(client, counselor) == []

    room = await client.post(
        "/v1/rooms", json={"title": "Session", "kind": "individual"}, headers=counselor.auth
    )
    assert room.status_code == 201, room.text
    await add_and_accept(
        client, room.json()["id"], counselor.auth, client_user.auth, account_id=client_user.id
    )
    seen = await changes(client, counselor)
    assert [(c["account_id"], c["seq"], c["kind"], c["device_id"]) for c in seen] == [
        (client_user.id, 1, "identity_set", None),
        (client_user.id, 2, "device_added", phone),
    ]
    assert await changes(client, client_user) == []  # the counselor has no keys yet
    assert await changes(client, stranger) == []

    clock.advance(60)
    since = clock.now().isoformat()
    new_identity = identity_of(client_user.id, generation=1)
    device = {"label": "new", **new_device(client_user.id, "AQID", new_identity)}
    reset = await client.post(
        "/v1/me/identity/reset",
        json={"identity_key": b64(point(new_identity)), "device": device},
        headers=client_user.auth,
    )
    assert reset.status_code == 201, reset.text
    later = await changes(client, counselor, after=since)
    assert [(c["seq"], c["kind"]) for c in later] == [
        (3, "device_revoked"),
        (4, "identity_reset"),
        (5, "device_added"),
    ]
    assert all(c["at"] == later[0]["at"] for c in later)
    bad = await client.get(
        "/v1/me/key-changes", params={"after": "yesterday"}, headers=counselor.auth
    )
    assert bad.status_code == 422
    assert (await client.get("/v1/me/key-changes")).status_code == 401
