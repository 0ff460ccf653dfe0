"""A client's rights requests: filed, clocked, moved forward only, denied with a reason, and
answered with a statement of disagreement; each on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.context import Context
from tests.fixtures.accounts import User, login, register_client

Json = dict[str, Any]
MINE = "/v1/me/rights-requests"
ADMIN = "/v1/admin/rights-requests"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def later(
    client: httpx.AsyncClient, clock: FrozenClock, seconds: float, *users: User
) -> None:
    """Let time pass; the users log in again (their tokens have expired meanwhile)."""
    clock.advance(seconds)
    for user in users:
        await login(client, user)


async def file(client: httpx.AsyncClient, user: User, kind: str, details: str = "x") -> Json:
    response = await client.post(MINE, json={"kind": kind, "details": details}, headers=user.auth)
    assert response.status_code == 201, response.text
    made: Json = response.json()
    return made


async def move(
    client: httpx.AsyncClient, admin: User, request_id: str, state: str, reason: str | None = None
) -> httpx.Response:
    body: Json = {"state": state}
    if reason is not None:
        body["reason"] = reason
    return await client.patch(f"{ADMIN}/{request_id}", json=body, headers=admin.auth)


async def extend(
    client: httpx.AsyncClient, admin: User, request_id: str, reason: str = "Archived off site."
) -> httpx.Response:
    return await client.post(
        f"{ADMIN}/{request_id}/extension", json={"reason": reason}, headers=admin.auth
    )


async def admin_get(client: httpx.AsyncClient, admin: User, request_id: str) -> Json:
    response = await client.get(f"{ADMIN}/{request_id}", headers=admin.auth)
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


async def listed(client: httpx.AsyncClient, user: User, path: str) -> list[Json]:
    response = await client.get(path, headers=user.auth)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()
    return found


async def log_actions(client: httpx.AsyncClient, user: User) -> list[str]:
    return [e["action"] for e in await listed(client, user, "/v1/me/access-log")]


# -- filing and the clocks -----------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "days", "rule"),
    [
        ("access", 30, "45 CFR 164.524(b)(2)"),
        ("amendment", 60, "45 CFR 164.526(b)(2)"),
        ("accounting", 60, "45 CFR 164.528(c)(1)"),
    ],
)
async def test_a_client_files_a_request_and_its_clock_starts(
    client: httpx.AsyncClient,
    client_user: User,
    admin: User,
    clock: FrozenClock,
    kind: str,
    days: int,
    rule: str,
) -> None:
    made = await file(client, client_user, kind, "Ünïcödé — my record ✓")
    assert made["kind"] == kind
    assert made["details"] == "Ünïcödé — my record ✓"
    assert made["account_id"] == client_user.id
    assert made["state"] == "received"
    assert at(made["received_at"]) == clock.now()
    assert at(made["due_at"]) == clock.now() + timedelta(days=days)
    assert made["rule"] == rule
    assert made["extended"] is None
    assert made["overdue"] is False
    assert [(s["state"], s["by"]) for s in made["history"]] == [("received", client_user.id)]

    await later(client, clock, days * 86400, client_user, admin)
    assert (await admin_get(client, admin, made["id"]))["overdue"] is False  # at due_at exactly
    clock.advance(1)
    found = await admin_get(client, admin, made["id"])
    assert found["overdue"] is True
    mine = await listed(client, client_user, MINE)
    assert [(r["id"], r["overdue"]) for r in mine] == [(made["id"], True)]

    # Deciding it stops the clock: a decided request is no longer overdue.
    assert (await move(client, admin, made["id"], "in_review")).json()["overdue"] is True
    granted = await move(client, admin, made["id"], "granted")
    assert granted.status_code == 200, granted.text
    assert granted.json()["overdue"] is False


async def test_a_restriction_has_no_clock_and_is_never_overdue(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    made = await file(client, client_user, "restriction", "Do not tell my insurer.")
    assert made["due_at"] is None
    assert made["rule"] == "45 CFR 164.522(a)"
    await later(client, clock, 400 * 86400, client_user, admin)
    assert (await admin_get(client, admin, made["id"]))["overdue"] is False
    refused = await extend(client, admin, made["id"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "extension_not_allowed"


async def test_an_extension_moves_due_at_by_30_days_once_with_its_reason(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    made = await file(client, client_user, "access")
    received = at(made["received_at"])
    await later(client, clock, 10 * 86400, client_user, admin)
    extended = await extend(client, admin, made["id"], "The records are archived off site.")
    assert extended.status_code == 200, extended.text
    body = extended.json()
    assert at(body["due_at"]) == received + timedelta(days=60)
    assert body["extended"]["text"] == "The records are archived off site."
    assert at(body["extended"]["at"]) == clock.now()
    assert body["extended"]["by"] == admin.id

    again = await extend(client, admin, made["id"])
    assert again.status_code == 409
    assert again.json()["code"] == "extension_not_allowed"
    assert await admin_get(client, admin, made["id"]) == body  # changed nothing

    # Day 55: past the first 30 days, within the extension.
    await later(client, clock, 45 * 86400, client_user, admin)
    assert (await admin_get(client, admin, made["id"]))["overdue"] is False
    await later(client, clock, 6 * 86400, client_user, admin)
    assert (await admin_get(client, admin, made["id"]))["overdue"] is True
    assert "rights_request.extend" in await log_actions(client, client_user)


async def test_an_extension_comes_within_the_first_period_and_before_a_decision(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    late = await file(client, client_user, "amendment")
    decided = await file(client, client_user, "accounting")
    assert (await move(client, admin, decided["id"], "in_review")).status_code == 200
    assert (await move(client, admin, decided["id"], "granted")).status_code == 200
    refused = await extend(client, admin, decided["id"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "extension_not_allowed"

    await later(client, clock, 60 * 86400 + 1, client_user, admin)
    refused = await extend(client, admin, late["id"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "extension_not_allowed"
    assert (await admin_get(client, admin, late["id"]))["extended"] is None


# -- states --------------------------------------------------------------------------
async def test_states_move_forward_one_step_and_a_wrong_move_changes_nothing(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    made = await file(client, client_user, "access")
    rid = made["id"]
    for wrong in ("granted", "denied", "closed", "received"):  # skipped or in place
        refused = await move(client, admin, rid, wrong, reason="r")
        assert refused.status_code == 409, wrong
        assert refused.json()["code"] == "invalid_transition"
        assert refused.json()["allowed"] == ["in_review"]
    assert await admin_get(client, admin, rid) == made

    clock.advance(60)
    assert (await move(client, admin, rid, "in_review")).status_code == 200
    clock.advance(60)
    granted = await move(client, admin, rid, "granted")
    assert granted.status_code == 200
    before = await admin_get(client, admin, rid)
    for wrong in ("received", "in_review", "granted", "denied"):  # backward or sideways
        refused = await move(client, admin, rid, wrong, reason="r")
        assert refused.status_code == 409, wrong
        assert refused.json()["code"] == "invalid_transition"
    assert await admin_get(client, admin, rid) == before

    closed = await move(client, admin, rid, "closed")
    assert closed.status_code == 200
    body = closed.json()
    assert body["state"] == "closed"
    assert [s["state"] for s in body["history"]] == ["received", "in_review", "granted", "closed"]
    assert [at(s["at"]) for s in body["history"]] == [
        clock.now() - timedelta(seconds=120),
        clock.now() - timedelta(seconds=60),
        clock.now(),
        clock.now(),
    ]
    assert (await move(client, admin, rid, "closed")).status_code == 409
    actions = await log_actions(client, client_user)
    assert actions.count("rights_request.update") == 3


async def test_a_denial_needs_a_reason_and_keeps_it(
    client: httpx.AsyncClient, client_user: User, admin: User
) -> None:
    made = await file(client, client_user, "amendment")
    assert (await move(client, admin, made["id"], "in_review")).status_code == 200
    refused = await move(client, admin, made["id"], "denied")
    assert refused.status_code == 422
    assert refused.json()["code"] == "reason_required"
    assert (await admin_get(client, admin, made["id"]))["state"] == "in_review"
    empty = await move(client, admin, made["id"], "denied", reason="")
    assert empty.status_code == 422

    denied = await move(client, admin, made["id"], "denied", reason="The record is accurate.")
    assert denied.status_code == 200, denied.text
    assert denied.json()["denial"]["text"] == "The record is accurate."
    assert denied.json()["denial"]["by"] == admin.id
    closed = (await move(client, admin, made["id"], "closed")).json()
    assert closed["denial"] == denied.json()["denial"]
    mine = (await listed(client, client_user, MINE))[0]
    assert mine["denial"]["text"] == "The record is accurate."


async def test_the_client_files_one_statement_of_disagreement_with_a_denied_amendment(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    amendment = await file(client, client_user, "amendment")
    access = await file(client, client_user, "access")
    path = f"{MINE}/{amendment['id']}/disagreement"
    statement = {"statement": "My first session was on 3 March ✓"}

    early = await client.post(path, json=statement, headers=client_user.auth)
    assert early.status_code == 409
    assert early.json()["code"] == "disagreement_not_allowed"
    for rid in (amendment["id"], access["id"]):
        assert (await move(client, admin, rid, "in_review")).status_code == 200
        assert (await move(client, admin, rid, "denied", reason="No.")).status_code == 200
    not_amendment = await client.post(
        f"{MINE}/{access['id']}/disagreement", json=statement, headers=client_user.auth
    )
    assert not_amendment.status_code == 409
    assert not_amendment.json()["code"] == "disagreement_not_allowed"
    other = await register_client(client)
    theirs = await client.post(path, json=statement, headers=other.auth)
    assert theirs.status_code == 404

    await later(client, clock, 3600, client_user, admin)
    filed = await client.post(path, json=statement, headers=client_user.auth)
    assert filed.status_code == 200, filed.text
    body = filed.json()
    assert body["disagreement"]["text"] == "My first session was on 3 March ✓"
    assert at(body["disagreement"]["at"]) == clock.now()
    assert body["denial"]["text"] == "No."
    again = await client.post(path, json={"statement": "Again"}, headers=client_user.auth)
    assert again.status_code == 409
    # Linked: the admin's view of the request carries both, after it is closed too.
    assert (await move(client, admin, amendment["id"], "closed")).status_code == 200
    seen = await admin_get(client, admin, amendment["id"])
    assert seen["disagreement"] == body["disagreement"]
    assert seen["denial"] == body["denial"]
    assert "rights_request.disagreement" in await log_actions(client, client_user)


# -- who sees what ---------------------------------------------------------------------
async def test_a_client_sees_only_their_own_requests(
    client: httpx.AsyncClient, client_user: User, admin: User, counselor: User
) -> None:
    other = await register_client(client)
    mine = await file(client, client_user, "access", "mine")
    theirs = await file(client, other, "amendment", "theirs")
    assert [r["id"] for r in await listed(client, client_user, MINE)] == [mine["id"]]
    assert [r["id"] for r in await listed(client, other, MINE)] == [theirs["id"]]
    hidden = await client.get(f"{MINE}/{theirs['id']}", headers=client_user.auth)
    missing = await client.get(f"{MINE}/not-an-id", headers=client_user.auth)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"] == "not_found"
    own = await client.get(f"{MINE}/{mine['id']}", headers=client_user.auth)
    assert own.status_code == 200
    assert own.json() == mine

    # Staff do not file; clients do not use the admin list.
    staff = await client.post(MINE, json={"kind": "access", "details": "x"}, headers=counselor.auth)
    assert staff.status_code == 403
    for path in (ADMIN, f"{ADMIN}/{mine['id']}"):
        assert (await client.get(path, headers=client_user.auth)).status_code == 403
    assert (await move(client, client_user, mine["id"], "in_review")).status_code == 403


async def test_the_admin_lists_every_request_filtered_and_paginated(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    other = await register_client(client)
    access = await file(client, client_user, "access")
    clock.advance(60)
    restriction = await file(client, other, "restriction")
    clock.advance(60)
    amendment = await file(client, other, "amendment")
    assert (await move(client, admin, amendment["id"], "in_review")).status_code == 200
    # The access request is overdue now.
    await later(client, clock, 31 * 86400, client_user, admin)

    everything = await listed(client, admin, ADMIN)
    assert [r["id"] for r in everything] == [amendment["id"], restriction["id"], access["id"]]
    assert [r["account_id"] for r in everything] == [other.id, other.id, client_user.id]
    assert [r["id"] for r in await listed(client, admin, f"{ADMIN}?kind=restriction")] == [
        restriction["id"]
    ]
    assert [r["id"] for r in await listed(client, admin, f"{ADMIN}?state=in_review")] == [
        amendment["id"]
    ]
    assert [r["id"] for r in await listed(client, admin, f"{ADMIN}?overdue=true")] == [access["id"]]
    assert [r["id"] for r in await listed(client, admin, f"{ADMIN}?overdue=false")] == [
        amendment["id"],
        restriction["id"],
    ]
    bad = await client.get(f"{ADMIN}?kind=other", headers=admin.auth)
    assert bad.status_code == 422

    first = await client.get(f"{ADMIN}?limit=2", headers=admin.auth)
    assert [r["id"] for r in first.json()] == [amendment["id"], restriction["id"]]
    cursor = first.headers["X-Next-Cursor"]
    rest = await client.get(f"{ADMIN}?limit=2&cursor={cursor}", headers=admin.auth)
    assert [r["id"] for r in rest.json()] == [access["id"]]
    assert "X-Next-Cursor" not in rest.headers

    # Each request the admin read shows in its client's access log.
    assert "rights_request.read" in await log_actions(client, client_user)


async def test_filing_reading_and_deciding_show_in_the_clients_access_log(
    client: httpx.AsyncClient, client_user: User, admin: User
) -> None:
    made = await file(client, client_user, "access")
    await admin_get(client, admin, made["id"])
    assert (await move(client, admin, made["id"], "in_review")).status_code == 200
    entries = await listed(client, client_user, "/v1/me/access-log")
    ours = [(e["action"], e["actor"]["account_id"]) for e in entries if "rights" in e["action"]]
    assert ours == [
        ("rights_request.create", client_user.id),
        ("rights_request.read", admin.id),
        ("rights_request.update", admin.id),
    ]


# -- bad input ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {"kind": "complaint", "details": "x"},
        {"kind": "access", "details": ""},
        {"kind": "access", "details": "x" * 5001},
        {"kind": "access", "details": "nul\x00"},
        {"kind": "access"},
        {"kind": "access", "details": "x", "extra": 1},
        {"kind": 1, "details": "x"},
    ],
)
async def test_bad_input_files_nothing(
    client: httpx.AsyncClient, client_user: User, ctx: Context, body: Json
) -> None:
    response = await client.post(MINE, json=body, headers=client_user.auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    async with ctx.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM rights_requests"))).scalar_one()
    assert count == 0


async def test_erasure_deletes_the_clients_requests(
    client: httpx.AsyncClient, client_user: User, admin: User, ctx: Context
) -> None:
    other = await register_client(client)
    await file(client, client_user, "access")
    await file(client, client_user, "amendment")
    kept = await file(client, other, "access")
    erased = await client.delete("/v1/me", headers=client_user.auth)
    assert erased.status_code == 204, erased.text
    async with ctx.engine.connect() as conn:
        ids = (await conn.execute(text("SELECT id FROM rights_requests"))).scalars().all()
    assert ids == [kept["id"]]
    assert [r["id"] for r in await listed(client, admin, ADMIN)] == [kept["id"]]
