"""Cursor pagination of the lists that grow, on both databases.

A list stays a JSON array; `limit` cuts it; the next page's cursor comes in
`X-Next-Cursor` and in `Link: <...>; rel="next"`. Following the cursors
yields every item once, in the list's order. A cursor opens only for the
caller and the list that handed it out; anything else is 422 `invalid_cursor`
and changes nothing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import Role
from tests.fixtures.accounts import User, make_account, register_client


async def follow(
    client: httpx.AsyncClient, path: str, user: User, limit: int, **params: Any
) -> tuple[list[Any], int]:
    """Every item of a list, page by page through `Link`; the items and the page count."""
    items: list[Any] = []
    pages = 0
    url: str | None = path
    query: dict[str, Any] | None = {"limit": limit, **params}
    while url is not None:
        response = await client.get(url, params=query, headers=user.auth)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)
        assert len(page) <= limit
        items.extend(page)
        pages += 1
        link = response.headers.get("link")
        cursor = response.headers.get("x-next-cursor")
        assert (link is None) == (cursor is None)
        if link is None:
            url = None
        else:
            match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
            assert match, link
            url, query = match.group(1), None
            assert httpx.URL(url).params["cursor"] == cursor
            assert httpx.URL(url).params["limit"] == str(limit)
        assert pages < 50
    return items, pages


async def make_rooms(client: httpx.AsyncClient, host: User, clock: FrozenClock, n: int) -> None:
    for i in range(n):
        body: dict[str, Any] = {"title": f"Session {i}", "kind": "individual"}
        if i % 3:  # some rooms without times: they come after the others
            starts = clock.now() + timedelta(days=1 + i % 2, minutes=i)
            body |= {
                "starts_at": starts.isoformat().replace("+00:00", "Z"),
                "ends_at": (starts + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            }
        response = await client.post("/v1/rooms", json=body, headers=host.auth)
        assert response.status_code == 201, response.text


async def test_following_the_cursors_yields_every_room_once_in_order(
    ctx: Context, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    host = await make_account(ctx, client, Role.counselor)
    await make_rooms(client, host, clock, 7)
    whole = (await client.get("/v1/rooms", headers=host.auth)).json()
    assert len(whole) == 7
    for limit in (1, 2, 3, 7):
        items, pages = await follow(client, "/v1/rooms", host, limit)
        assert items == whole
        assert pages == -(-7 // limit)
    only = await client.get("/v1/rooms", params={"limit": 7}, headers=host.auth)
    assert "x-next-cursor" not in only.headers
    assert "link" not in only.headers


async def test_a_room_added_between_pages_is_neither_lost_nor_repeated(
    ctx: Context, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    host = await make_account(ctx, client, Role.counselor)
    await make_rooms(client, host, clock, 4)
    first = await client.get("/v1/rooms", params={"limit": 2}, headers=host.auth)
    cursor = first.headers["x-next-cursor"]
    await make_rooms(client, host, clock, 1)  # no times: it sorts last
    rest, _ = await follow(client, "/v1/rooms", host, 10, cursor=cursor)
    ids = [room["id"] for room in first.json() + rest]
    assert len(ids) == len(set(ids)) == 5


async def test_a_cursor_is_the_callers_and_its_lists_only(
    ctx: Context, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    host = await make_account(ctx, client, Role.counselor)
    other = await make_account(ctx, client, Role.counselor)
    await make_rooms(client, host, clock, 3)
    await make_rooms(client, other, clock, 3)
    cursor = (await client.get("/v1/rooms", params={"limit": 1}, headers=host.auth)).headers[
        "x-next-cursor"
    ]
    refused = [
        await client.get("/v1/rooms", params={"cursor": cursor}, headers=other.auth),
        await client.get("/v1/me/notices", params={"cursor": cursor}, headers=host.auth),
        await client.get("/v1/devices", params={"cursor": cursor}, headers=host.auth),
        await client.get("/v1/rooms", params={"cursor": cursor[:-2]}, headers=host.auth),
        await client.get("/v1/rooms", params={"cursor": "not a cursor"}, headers=host.auth),
    ]
    for response in refused:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_cursor"
    too_long = await client.get("/v1/rooms", params={"cursor": "A" * 600}, headers=host.auth)
    assert too_long.status_code == 422
    for limit in ("0", "1001", "x"):
        response = await client.get("/v1/rooms", params={"limit": limit}, headers=host.auth)
        assert response.status_code == 422, limit


async def test_a_bad_cursor_changes_nothing(ctx: Context, client: httpx.AsyncClient) -> None:
    """The access log records each read of it; a refused read is not recorded."""
    person = await register_client(client)
    before = await client.get("/v1/me/access-log", headers=person.auth)
    refused = await client.get(
        "/v1/me/access-log", params={"cursor": "AQ" + "A" * 60}, headers=person.auth
    )
    assert refused.status_code == 422
    after = await client.get("/v1/me/access-log", headers=person.auth)
    reads = [e for e in after.json() if e["action"] == "access_log.read"]
    assert len(reads) == len([e for e in before.json() if e["action"] == "access_log.read"]) + 1


async def test_the_access_log_pages_in_chain_order(ctx: Context, client: httpx.AsyncClient) -> None:
    person = await register_client(client)
    for _ in range(3):
        assert (await client.get("/v1/me", headers=person.auth)).status_code == 200
        assert (await client.get("/v1/me/access-log", headers=person.auth)).status_code == 200
    whole = (await client.get("/v1/me/access-log", headers=person.auth)).json()
    assert len(whole) >= 4
    items, pages = await follow(client, "/v1/me/access-log", person, 2)
    # Each page is itself a read, recorded after it: the entries paged past are the whole.
    assert items[: len(whole)] == whole
    assert pages >= 2


async def test_notices_and_incidents_page_newest_first(
    ctx: Context, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    admin = await make_account(ctx, client, Role.admin)
    person = await register_client(client)
    for days in (3, 1, 2, 5):
        body = {
            "summary": "A lost laptop",
            "discovered_at": (clock.now() - timedelta(days=days)).isoformat(),
            "severity": "low",
            "affected_account_ids": [person.id],
        }
        created = await client.post("/v1/incidents", json=body, headers=admin.auth)
        assert created.status_code == 201, created.text
        notified = await client.post(
            f"/v1/incidents/{created.json()['id']}/notify",
            json={"message": f"Notice {days}"},
            headers=admin.auth,
        )
        assert notified.status_code == 201, notified.text
        clock.advance(1)
    incidents, pages = await follow(client, "/v1/incidents", admin, 3)
    assert pages == 2
    assert incidents == (await client.get("/v1/incidents", headers=admin.auth)).json()
    found = [i["discovered_at"] for i in incidents]
    assert found == sorted(found, reverse=True)
    assert len(found) == 4
    notices, pages = await follow(client, "/v1/me/notices", person, 1)
    assert pages == 4
    created_at = [n["created_at"] for n in notices]
    assert created_at == sorted(created_at, reverse=True)


async def test_the_audit_log_keeps_after_and_limit_and_adds_the_cursor(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    admin = await make_account(ctx, client, Role.admin)
    for _ in range(3):
        await register_client(client)
    old = await client.get("/v1/admin/audit", params={"after": 2, "limit": 3}, headers=admin.auth)
    assert old.status_code == 200
    assert [e["seq"] for e in old.json()] == [3, 4, 5]
    cursor = old.headers["x-next-cursor"]
    on = await client.get(
        "/v1/admin/audit", params={"cursor": cursor, "limit": 2}, headers=admin.auth
    )
    assert [e["seq"] for e in on.json()] == [6, 7]
    entries, _ = await follow(client, "/v1/admin/audit", admin, 4)
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/rooms",
        "/v1/me/invitations",
        "/v1/devices",
        "/v1/me/consents",
        "/v1/me/key-changes",
        "/v1/me/disclosures",
        "/v1/me/notices",
        "/v1/me/access-log",
    ],
)
async def test_every_list_that_grows_takes_limit_and_cursor(
    ctx: Context, client: httpx.AsyncClient, path: str
) -> None:
    person = await register_client(client)
    response = await client.get(path, params={"limit": 1}, headers=person.auth)
    assert response.status_code == 200, response.text
    assert isinstance(response.json(), list)
    assert len(response.json()) <= 1
    bad = await client.get(path, params={"cursor": "xyz"}, headers=person.auth)
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_cursor"
