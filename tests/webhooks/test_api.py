"""The admin's webhook API: bad input changes nothing, secrets show once, the log pages."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from app.core.context import Context
from app.core.webhooks import announce
from app.models import WebhookDelivery
from app.webhooks.worker import Deliverer
from tests.fixtures.accounts import User
from tests.fixtures.processes import free_port
from tests.webhooks.conftest import receiver_on

pytestmark = pytest.mark.usefixtures("system_key")

HOOKS = "/v1/admin/webhooks"


async def _create(client: httpx.AsyncClient, admin: User, **body: object) -> dict[str, object]:
    response = await client.post(
        HOOKS, headers=admin.auth, json={"url": "https://h.example.org/x", **body}
    )
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_an_endpoint_is_created_read_changed_and_deleted_by_an_admin(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    created = await _create(client, admin, events=["room.ended", "room.started"])
    assert str(created["secret"]).startswith("whsec_")
    assert created["events"] == ["room.started", "room.ended"]
    hook = f"{HOOKS}/{created['id']}"
    read = (await client.get(hook, headers=admin.auth)).json()
    assert "secret" not in read
    assert read["url"] == "https://h.example.org/x"
    listed = (await client.get(HOOKS, headers=admin.auth)).json()
    assert [h["id"] for h in listed] == [created["id"]]
    patched = await client.patch(hook, headers=admin.auth, json={"enabled": False, "events": []})
    assert patched.status_code == 200
    assert (patched.json()["enabled"], patched.json()["events"]) == (False, [])
    rotated = (await client.post(f"{hook}/rotate-secret", headers=admin.auth)).json()["secret"]
    assert rotated.startswith("whsec_")
    assert rotated != created["secret"]
    assert (await client.delete(hook, headers=admin.auth)).status_code == 204
    assert (await client.get(hook, headers=admin.auth)).status_code == 404
    async with ctx.transaction() as session:
        entries = await ctx.audit.entries(session, after=0, limit=1000)
    actions = [e.action for e in entries if e.action.startswith("webhook.")]
    assert actions == [
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
    ]
    assert all(e.actor_id == admin.id for e in entries if e.action.startswith("webhook."))


async def test_url_and_secret_are_sealed_at_rest(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    created = await _create(client, admin, url="https://billing.practice-example.org/confide")
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM webhook_endpoints"))).all()
    stored = b"".join(
        value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row
    )
    assert b"practice-example" not in stored
    secret = str(created["secret"])
    assert secret.encode() not in stored
    assert secret.removeprefix("whsec_").encode() not in stored


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://h.example.org/x"},
        {"url": "https://user:pw@h.example.org/x"},
        {"url": ""},
        {"url": "https://h.example.org/" + "x" * 2100},
        {"url": "https://h.example.org/x", "events": ["room.exploded"]},
        {"url": "https://h.example.org/x", "enabled": "yes"},
        {"url": "https://h.example.org/x", "secret": "whsec_mine"},
        {"url": "https://h.example.org/\u0000"},
        {"events": []},
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, admin: User, body: dict[str, object]
) -> None:
    response = await client.post(HOOKS, headers=admin.auth, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert (await client.get(HOOKS, headers=admin.auth)).json() == []


async def test_a_bad_change_leaves_the_endpoint_as_it_was(
    client: httpx.AsyncClient, admin: User
) -> None:
    created = await _create(client, admin)
    hook = f"{HOOKS}/{created['id']}"
    response = await client.patch(hook, headers=admin.auth, json={"url": "gopher://x"})
    assert response.status_code == 422
    assert (await client.get(hook, headers=admin.auth)).json()["url"] == created["url"]


async def test_only_admins_may_and_unknown_ids_are_404(
    client: httpx.AsyncClient, admin: User, counselor: User
) -> None:
    created = await _create(client, admin)
    assert (await client.get(HOOKS, headers=counselor.auth)).status_code == 403
    assert (
        await client.post(HOOKS, headers=counselor.auth, json={"url": "https://a.org"})
    ).status_code == 403
    assert (
        await client.get(f"{HOOKS}/{created['id']}/deliveries", headers=counselor.auth)
    ).status_code == 403
    assert (await client.get(HOOKS)).status_code == 401
    for unknown in ("0d9ae6f2-2d3f-4a55-9a0a-1c4b8f0a7e11", "not-an-id"):
        path = f"{HOOKS}/{unknown}"
        assert (await client.get(path, headers=admin.auth)).status_code == 404
        assert (await client.patch(path, headers=admin.auth, json={})).status_code == 404
        assert (await client.delete(path, headers=admin.auth)).status_code == 404
        assert (await client.post(f"{path}/rotate-secret", headers=admin.auth)).status_code == 404
        assert (await client.get(f"{path}/deliveries", headers=admin.auth)).status_code == 404


async def test_the_delivery_log_pages_newest_first(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    created = await _create(client, admin)
    for n in range(5):
        async with ctx.transaction() as session:
            announce(session, "room.ended", ctx.clock.now(), room_id=f"room-{n}")
    path = f"{HOOKS}/{created['id']}/deliveries"
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await client.get(path, headers=admin.auth, params=params)
        page = answer.json()
        seen += [item["id"] for item in page]
        assert all(item["state"] == "pending" and item["attempts"] == [] for item in page)
        pages += 1
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            break
        assert answer.headers["link"].endswith('; rel="next"')
    assert pages == 3
    async with ctx.transaction() as session:
        oldest_first = list(
            (
                await session.execute(select(WebhookDelivery.id).order_by(WebhookDelivery.seq))
            ).scalars()
        )
    assert seen == oldest_first[::-1]
    assert len(set(seen)) == 5
    bad = await client.get(path, headers=admin.auth, params={"cursor": "abc"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")
    assert (await client.get(path, headers=admin.auth, params={"limit": 0})).status_code == 422


async def test_after_a_rotation_retries_are_signed_with_the_new_secret(
    ctx: Context, client: httpx.AsyncClient, admin: User, tmp_path: Path
) -> None:
    port = free_port()
    created = await _create(client, admin, url=f"http://127.0.0.1:{port}/hook")
    async with ctx.transaction() as session:
        announce(session, "room.ended", ctx.clock.now(), room_id="room-1")
    hook = f"{HOOKS}/{created['id']}"
    rotated = (await client.post(f"{hook}/rotate-secret", headers=admin.auth)).json()["secret"]
    deliverer = Deliverer(ctx)
    try:
        with receiver_on(port, rotated, tmp_path / "received.jsonl") as receiver:
            assert await deliverer.tick() == 1
            [line] = receiver.lines()
    finally:
        await deliverer.close()
    assert line["valid"]
    log = (await client.get(f"{hook}/deliveries", headers=admin.auth)).json()
    assert log[0]["state"] == "delivered"
    assert log[0]["attempts"][0]["status_code"] == 204
