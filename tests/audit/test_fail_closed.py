"""An action whose audit entry cannot be written is not done (fail-closed).

The audit INSERT is made to fail by a trigger that raises, on SQLite and on
PostgreSQL: the action answers 503 `audit_unavailable` (a problem, not a 500),
and none of its own rows is committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from app.core.context import Context
from tests.fixtures.accounts import PASSWORD, unique_email

SQLITE_REFUSE = (
    "CREATE TRIGGER confide_test_refuse_audit BEFORE INSERT ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
)
PG_REFUSE = [
    "CREATE FUNCTION confide_test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
    "CREATE TRIGGER confide_test_refuse_audit BEFORE INSERT ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION confide_test_refuse_audit()",
]
PG_ALLOW = ["DROP FUNCTION IF EXISTS confide_test_refuse_audit() CASCADE"]


@pytest.fixture
async def audit_refused(ctx: Context) -> AsyncIterator[None]:
    """Every audit INSERT fails while the test runs."""
    sqlite = ctx.engine.dialect.name == "sqlite"
    async with ctx.engine.begin() as conn:
        for statement in [SQLITE_REFUSE] if sqlite else PG_REFUSE:
            await conn.execute(text(statement))
    try:
        yield
    finally:
        async with ctx.engine.begin() as conn:
            for statement in (
                ["DROP TRIGGER IF EXISTS confide_test_refuse_audit"] if sqlite else PG_ALLOW
            ):
                await conn.execute(text(statement))


async def count(ctx: Context, table: str) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def assert_audit_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (503, "audit_unavailable")
    assert "Traceback" not in response.text
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.usefixtures("audit_refused")
async def test_an_action_whose_entry_cannot_be_written_is_not_done(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    accounts, entries = await count(ctx, "accounts"), await count(ctx, "audit_log")
    response = await client.post(
        "/v1/accounts",
        json={"email": unique_email(), "password": PASSWORD, "display_name": "Refused"},
    )
    assert_audit_unavailable(response)
    assert await count(ctx, "accounts") == accounts
    assert await count(ctx, "audit_log") == entries


async def test_the_same_action_is_done_once_the_log_can_be_written(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    """The control: without the trigger the same request succeeds and is recorded."""
    accounts, entries = await count(ctx, "accounts"), await count(ctx, "audit_log")
    response = await client.post(
        "/v1/accounts",
        json={"email": unique_email(), "password": PASSWORD, "display_name": "Recorded"},
    )
    assert response.status_code == 201, response.text
    assert await count(ctx, "accounts") == accounts + 1
    assert await count(ctx, "audit_log") > entries
