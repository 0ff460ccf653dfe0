"""Times near the ends of what `datetime` holds are refused (422), never a 500.

A room's status is computed from `starts_at - 10 minutes`: with a start in
the first minutes of year 1 that overflowed, on creation and on PATCH. Every
request time must now lie within 1900-01-01T00:00:00Z .. 9999-01-01T00:00:00Z.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.accounts import User

OUT_OF_RANGE = [
    {"starts_at": "0001-01-01T00:00:00Z"},
    {"starts_at": "0001-01-01T00:05:00Z"},
    {"starts_at": "0001-01-01T00:00:00+01:00"},
    {"starts_at": "0001-01-01T23:00:00-23:59"},
    {"starts_at": "1899-12-31T23:59:59Z"},
    {"ends_at": "9999-12-31T23:59:59-01:00"},
    {"ends_at": "9999-12-31T23:59:59.999999Z"},
    {"ends_at": "9999-01-01T00:00:00Z"},
    {"starts_at": "9998-12-31T00:00:00Z", "ends_at": "9999-06-01T00:00:00Z"},
]
IDS = [",".join(f"{k}={v}" for k, v in case.items()) for case in OUT_OF_RANGE]


async def create(client: httpx.AsyncClient, host: User, **body: Any) -> httpx.Response:
    payload = {"title": "Session", "kind": "individual", **body}
    return await client.post("/v1/rooms", json=payload, headers=host.auth)


@pytest.mark.parametrize("times", OUT_OF_RANGE, ids=IDS)
async def test_room_creation_refuses_times_out_of_range(
    client: httpx.AsyncClient, counselor: User, times: dict[str, str]
) -> None:
    response = await create(client, counselor, **times)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    listed = await client.get("/v1/rooms", headers=counselor.auth)
    assert listed.json() == []


@pytest.mark.parametrize("times", OUT_OF_RANGE, ids=IDS)
async def test_room_patch_refuses_times_out_of_range(
    client: httpx.AsyncClient, counselor: User, times: dict[str, str]
) -> None:
    created = await create(client, counselor)
    assert created.status_code == 201, created.text
    room = created.json()
    response = await client.patch(f"/v1/rooms/{room['id']}", json=times, headers=counselor.auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    again = await client.get(f"/v1/rooms/{room['id']}", headers=counselor.auth)
    assert again.status_code == 200
    assert again.json() == room


async def test_the_edges_of_the_range_are_accepted(
    client: httpx.AsyncClient, counselor: User
) -> None:
    early = await create(client, counselor, starts_at="1900-01-01T00:00:00Z")
    assert early.status_code == 201, early.text
    assert early.json()["status"] == "open"
    late = await create(
        client, counselor, starts_at="9998-12-31T00:00:00Z", ends_at="9998-12-31T23:59:59Z"
    )
    assert late.status_code == 201, late.text
    assert late.json()["status"] == "scheduled"
    patched = await client.patch(
        f"/v1/rooms/{early.json()['id']}",
        json={"starts_at": "1900-01-01T00:09:59+00:00"},
        headers=counselor.auth,
    )
    assert patched.status_code == 200, patched.text
