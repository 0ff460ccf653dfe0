from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import Account, AccountStatus, Role
from tests.fixtures.accounts import User, login, make_account, register_client
from tests.fixtures.dump import column_bytes

Json = dict[str, Any]
DAY = 24 * 3600


def incident(clock: FrozenClock, affected: list[str], **overrides: Any) -> Json:
    body: Json = {
        "summary": "A laptop holding an export of contact details was stolen.",
        "discovered_at": (clock.now() - timedelta(hours=1)).isoformat(),
        "severity": "high",
        "affected_account_ids": affected,
    }
    body.update(overrides)
    return body


async def post_json(
    client: httpx.AsyncClient, path: str, user: User | None, body: object
) -> httpx.Response:
    return await client.post(
        path,
        content=json.dumps(body),
        headers={**(user.auth if user else {}), "content-type": "application/json"},
    )


async def open_incident(client: httpx.AsyncClient, admin: User, body: Json) -> Json:
    response = await post_json(client, "/v1/incidents", admin, body)
    assert response.status_code == 201, response.text
    made: Json = response.json()
    return made


async def get_incident(client: httpx.AsyncClient, admin: User, incident_id: str) -> Json:
    response = await client.get(f"/v1/incidents/{incident_id}", headers=admin.auth)
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


async def all_incidents(client: httpx.AsyncClient, admin: User) -> list[Json]:
    response = await client.get("/v1/incidents", headers=admin.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def move(
    client: httpx.AsyncClient, admin: User, incident_id: str, status: str
) -> httpx.Response:
    return await client.patch(
        f"/v1/incidents/{incident_id}", json={"status": status}, headers=admin.auth
    )


async def notify(
    client: httpx.AsyncClient, admin: User, incident_id: str, message: str
) -> httpx.Response:
    return await post_json(
        client, f"/v1/incidents/{incident_id}/notify", admin, {"message": message}
    )


async def notices(client: httpx.AsyncClient, user: User) -> list[Json]:
    response = await client.get("/v1/me/notices", headers=user.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def table_count(ctx: Context, table: str) -> int:
    async with ctx.engine.connect() as conn:
        count: int = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    return count


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- opening and reading ----------------------------------------------------------
async def test_an_admin_opens_an_incident_and_reads_it_back(
    client: httpx.AsyncClient,
    admin: User,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    discovered = clock.now() - timedelta(days=3)
    affected = [client_user.id, counselor.id, client_user.id.upper(), client_user.id]
    made = await open_incident(
        client,
        admin,
        incident(
            clock,
            affected,
            summary="Laptop stolen — Ünïcödé ✓",
            discovered_at=discovered.isoformat(),
            severity="critical",
        ),
    )
    uuid.UUID(made["id"])
    assert made["summary"] == "Laptop stolen — Ünïcödé ✓"
    assert at(made["discovered_at"]) == discovered
    assert made["severity"] == "critical"
    assert made["status"] == "assessing"
    assert at(made["notify_by"]) == discovered + timedelta(days=60)
    assert made["notified_at"] is None
    assert made["overdue"] is False
    # Repeats count once, in the order first given.
    assert made["affected_account_ids"] == [client_user.id, counselor.id]

    assert await get_incident(client, admin, made["id"]) == made
    assert await all_incidents(client, admin) == [made]
    # Nobody is told anything before the admin notifies.
    assert await notices(client, client_user) == []


async def test_the_list_shows_the_most_recently_discovered_first(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    made = [
        await open_incident(
            client,
            admin,
            incident(clock, [], discovered_at=(clock.now() - timedelta(days=d)).isoformat()),
        )
        for d in (5, 1, 9)
    ]
    assert [i["id"] for i in await all_incidents(client, admin)] == [
        made[1]["id"],
        made[0]["id"],
        made[2]["id"],
    ]


async def test_only_admins_handle_incidents(
    client: httpx.AsyncClient,
    admin: User,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    made = await open_incident(client, admin, incident(clock, [client_user.id]))
    path = f"/v1/incidents/{made['id']}"
    for user in (client_user, counselor, None):
        headers = user.auth if user else {}
        answers = [
            await post_json(client, "/v1/incidents", user, incident(clock, [client_user.id])),
            await client.get("/v1/incidents", headers=headers),
            await client.get(path, headers=headers),
            await client.patch(path, json={"status": "notifying"}, headers=headers),
            await post_json(client, f"{path}/notify", user, {"message": "Hello"}),
        ]
        for answer in answers:
            expected = (403, "forbidden") if user else (401, "token_invalid")
            assert (answer.status_code, answer.json()["code"]) == expected, answer.text
    (only,) = await all_incidents(client, admin)
    assert only == made
    assert await notices(client, client_user) == []


async def test_unknown_incidents_are_not_found(client: httpx.AsyncClient, admin: User) -> None:
    for incident_id in (str(uuid.uuid4()), "not-an-id", "%00"):
        path = f"/v1/incidents/{incident_id}"
        answers = [
            await client.get(path, headers=admin.auth),
            await move(client, admin, incident_id, "notifying"),
            await notify(client, admin, incident_id, "Hello"),
        ]
        for answer in answers:
            assert answer.status_code == 404, answer.text
            assert answer.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"summary": ""},
        {"summary": "x" * 2001},
        {"summary": "nul\x00"},
        {"summary": None},
        {"severity": "apocalyptic"},
        {"severity": 3},
        {"discovered_at": "2026-11-24T10:00:00"},
        {"discovered_at": "last week"},
        {"discovered_at": "future"},
        {"discovered_at": "0001-01-01T00:00:00+01:00"},
        {"affected_account_ids": "everyone"},
        {"affected_account_ids": ["not-an-id"]},
        {"affected_account_ids": [7]},
        {"affected_account_ids": None},
        {"affected_account_ids": "unknown"},
        {"affected_account_ids": "too many"},
        "missing severity",
        "not an object",
    ],
    ids=repr,
)
async def test_bad_incidents_get_422_and_create_nothing(
    ctx: Context,
    client: httpx.AsyncClient,
    admin: User,
    client_user: User,
    clock: FrozenClock,
    change: object,
) -> None:
    body: object
    if change == "missing severity":
        body = incident(clock, [client_user.id])
        assert isinstance(body, dict)
        del body["severity"]
    elif change == "not an object":
        body = [incident(clock, [client_user.id])]
    else:
        assert isinstance(change, dict)
        body = incident(clock, [client_user.id], **change)
        special = change.get("discovered_at"), change.get("affected_account_ids")
        if special[0] == "future":
            body["discovered_at"] = (clock.now() + timedelta(seconds=1)).isoformat()
        if special[1] == "unknown":
            body["affected_account_ids"] = [client_user.id, str(uuid.uuid4())]
        if special[1] == "too many":
            body["affected_account_ids"] = [str(uuid.uuid4()) for _ in range(10_001)]
    response = await post_json(client, "/v1/incidents", admin, body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert "nul" not in response.text
    assert await all_incidents(client, admin) == []
    assert await table_count(ctx, "incidents") == 0


async def test_an_unknown_affected_account_is_named_in_the_422(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    ghost = str(uuid.uuid4())
    response = await post_json(
        client, "/v1/incidents", admin, incident(clock, [client_user.id, ghost])
    )
    assert response.status_code == 422
    assert response.json()["unknown"] == [ghost]


# -- status ---------------------------------------------------------------------------
async def test_status_only_moves_forward(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    made = await open_incident(client, admin, incident(clock, []))
    moved = await move(client, admin, made["id"], "notifying")
    assert moved.status_code == 200, moved.text
    assert moved.json() == {**made, "status": "notifying"}
    for refused in ("assessing", "notifying"):
        answer = await move(client, admin, made["id"], refused)
        assert answer.status_code == 409
        assert answer.json()["code"] == "invalid_transition"
    # Skipping forward is allowed.
    assert (await move(client, admin, made["id"], "closed")).status_code == 200
    for refused in ("assessing", "notifying", "mitigated", "closed"):
        answer = await move(client, admin, made["id"], refused)
        assert answer.status_code == 409
        assert answer.json()["code"] == "invalid_transition"
    assert (await get_incident(client, admin, made["id"]))["status"] == "closed"


@pytest.mark.parametrize(
    "body", [{"status": "reopened"}, {"status": None}, {}, {"status": "closed", "severity": "low"}]
)
async def test_bad_status_changes_get_422(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock, body: Json
) -> None:
    made = await open_incident(client, admin, incident(clock, []))
    answer = await client.patch(f"/v1/incidents/{made['id']}", json=body, headers=admin.auth)
    assert answer.status_code == 422, answer.text
    assert (await get_incident(client, admin, made["id"])) == made


# -- deadlines and notices -----------------------------------------------------------
async def test_an_unnotified_incident_is_overdue_after_60_days_until_notified(
    client: httpx.AsyncClient,
    admin: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    made = await open_incident(
        client, admin, incident(clock, [client_user.id], discovered_at=clock.now().isoformat())
    )
    clock.advance(60 * DAY)
    await login(client, admin)  # access tokens do not last 60 days
    assert (await get_incident(client, admin, made["id"]))["overdue"] is False
    clock.advance(1)
    await login(client, admin)
    assert (await get_incident(client, admin, made["id"]))["overdue"] is True
    assert (await all_incidents(client, admin))[0]["overdue"] is True

    sent = await notify(client, admin, made["id"], "Late, but: your email address was exposed.")
    assert sent.status_code == 201, sent.text
    assert sent.json() == {"notified": 1}
    after = await get_incident(client, admin, made["id"])
    assert after["overdue"] is False
    assert at(after["notified_at"]) == clock.now()


async def test_an_incident_discovered_long_ago_is_overdue_at_once(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    long_ago = (clock.now() - timedelta(days=61)).isoformat()
    made = await open_incident(client, admin, incident(clock, [], discovered_at=long_ago))
    assert made["overdue"] is True


async def test_notify_sends_one_notice_to_each_affected_account(
    ctx: Context,
    client: httpx.AsyncClient,
    admin: User,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    bystander = await register_client(client)
    erased = await register_client(client)
    made = await open_incident(
        client, admin, incident(clock, [client_user.id, counselor.id, erased.id])
    )
    async with ctx.transaction() as session:
        account = await session.get(Account, erased.id)
        assert account is not None
        account.status = AccountStatus.erased
        account.data_key_id = None

    message = (
        "On 24 November a laptop holding your email address and session dates was stolen."
        " No session content was involved. Please watch for phishing; call us at 555-0100."
    )
    sent = await notify(client, admin, made["id"], message)
    assert sent.status_code == 201, sent.text
    # The erased account has nothing left to seal a notice under.
    assert sent.json() == {"notified": 2}
    for user in (client_user, counselor):
        (notice,) = await notices(client, user)
        assert notice["kind"] == "incident"
        assert notice["incident_id"] == made["id"]
        assert notice["disclosure_id"] is None
        assert notice["message"] == message
        assert at(notice["created_at"]) == clock.now()
    assert await notices(client, bystander) == []
    assert await notices(client, admin) == []

    # A further notice (an update) reaches them too, newest first; the deadline
    # is measured against the first notification.
    first_notified = (await get_incident(client, admin, made["id"]))["notified_at"]
    clock.advance(3600)
    await login(client, admin)
    await login(client, client_user)
    assert (await notify(client, admin, made["id"], "Update: passwords reset.")).json() == {
        "notified": 2
    }
    assert [n["message"] for n in await notices(client, client_user)] == [
        "Update: passwords reset.",
        message,
    ]
    assert (await get_incident(client, admin, made["id"]))["notified_at"] == first_notified


async def test_a_notice_goes_only_to_its_recipient_newest_first(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    other = await register_client(client)
    first = await open_incident(client, admin, incident(clock, [client_user.id, other.id]))
    second = await open_incident(client, admin, incident(clock, [client_user.id]))
    assert (await notify(client, admin, first["id"], "First notice")).status_code == 201
    clock.advance(60)
    assert (await notify(client, admin, second["id"], "Second notice")).status_code == 201
    told = await notices(client, client_user)
    assert [(n["incident_id"], n["message"]) for n in told] == [
        (second["id"], "Second notice"),
        (first["id"], "First notice"),
    ]
    assert [n["message"] for n in await notices(client, other)] == ["First notice"]


@pytest.mark.parametrize(
    "body",
    [{"message": ""}, {"message": "x" * 5001}, {"message": "a\x00b"}, {}, {"message": "m", "x": 1}],
    ids=repr,
)
async def test_bad_notifications_get_422_and_send_nothing(
    ctx: Context,
    client: httpx.AsyncClient,
    admin: User,
    client_user: User,
    clock: FrozenClock,
    body: Json,
) -> None:
    made = await open_incident(client, admin, incident(clock, [client_user.id]))
    answer = await post_json(client, f"/v1/incidents/{made['id']}/notify", admin, body)
    assert answer.status_code == 422, answer.text
    assert await notices(client, client_user) == []
    assert await table_count(ctx, "notices") == 0
    assert (await get_incident(client, admin, made["id"]))["notified_at"] is None


async def test_every_change_is_audited(
    ctx: Context, client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    affected = await make_account(ctx, client, Role.client)
    made = await open_incident(client, admin, incident(clock, [affected.id], severity="low"))
    assert (await move(client, admin, made["id"], "notifying")).status_code == 200
    assert (await notify(client, admin, made["id"], "Hello")).status_code == 201
    await notices(client, affected)
    response = await client.get("/v1/admin/audit", params={"limit": 1000}, headers=admin.auth)
    entries = response.json()
    actions = [(e["action"], e["actor"], e["target"]) for e in entries]
    for expected in (
        ("incident.create", admin.id, made["id"]),
        ("incident.update", admin.id, made["id"]),
        ("incident.notify", admin.id, made["id"]),
        ("notice.create", admin.id, affected.id),
        ("notice.read", affected.id, affected.id),
    ):
        assert expected in actions
    (update,) = [
        e for e in entries if e["action"] == "incident.update" and e["target"] == made["id"]
    ]
    assert update["details"] == {"from": "assessing", "to": "notifying"}
    # And in the affected person's own log (decision note 0007: a slot of theirs).
    (theirs,) = [
        e for e in entries if e["action"] == "incident.update" and e["target"] == affected.id
    ]
    assert theirs["details"] == {"incident": made["id"]}
    (notified,) = [e for e in entries if e["action"] == "incident.notify"]
    assert notified["details"] == {"notified": 1}


# -- the dump promise ---------------------------------------------------------------
ISO_DATE = re.compile(rb"\d{4}-\d{2}-\d{2}")


async def test_a_dump_shows_no_incident_text_no_affected_account_and_no_time(
    ctx: Context,
    client: httpx.AsyncClient,
    admin: User,
    counselor: User,
    client_user: User,
    clock: FrozenClock,
) -> None:
    marker = uuid.uuid4().hex
    discovered = clock.now() - timedelta(days=2)
    made = await open_incident(
        client,
        admin,
        incident(
            clock,
            [client_user.id, counselor.id],
            summary=f"Summary {marker}",
            discovered_at=discovered.isoformat(),
        ),
    )
    assert (await move(client, admin, made["id"], "notifying")).status_code == 200
    sent = await notify(client, admin, made["id"], f"Notice {marker}")
    assert sent.json() == {"notified": 2}

    needles = [marker.encode(), b"laptop", b"Summary", b"Notice"]
    for account_id in (client_user.id, counselor.id, admin.id):
        needles += [
            account_id.encode(),
            account_id.replace("-", "").encode(),
            uuid.UUID(account_id).bytes,
        ]
    for when in (discovered, discovered + timedelta(days=60), clock.now()):
        needles += [when.isoformat().encode(), str(int(when.timestamp())).encode()]
    async with ctx.engine.connect() as conn:
        for table, expected in (("incidents", 1), ("notices", 2)):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            assert len(rows) == expected
            for row in rows:
                for value in row:
                    column = column_bytes(value)
                    assert not ISO_DATE.search(column), table
                    for needle in needles:
                        assert needle not in column, (table, needle)
