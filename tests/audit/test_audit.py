from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from sqlalchemy import text

from app.core import audit
from app.core.context import Context
from tests.fixtures.accounts import PASSWORD, User, register_client, unique_email


async def verify(client: httpx.AsyncClient, admin: User) -> dict[str, object]:
    response = await client.get("/v1/admin/audit/verify", headers=admin.auth)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_actions_are_recorded_with_actor_and_target(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await register_client(client)
    await client.get("/v1/me", headers=user.auth)
    entries = (await client.get("/v1/admin/audit?limit=1000", headers=admin.auth)).json()
    about_user = [e for e in entries if e["target"] == user.id]
    actions = [e["action"] for e in about_user]
    assert actions == ["account.create", "auth.login", "account.read"]
    assert all(e["actor"] == user.id and e["actor_role"] == "client" for e in about_user)
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["hash"]


async def test_audit_list_pages_with_after_and_limit(
    client: httpx.AsyncClient, admin: User
) -> None:
    await register_client(client)
    page = (await client.get("/v1/admin/audit?after=1&limit=2", headers=admin.auth)).json()
    assert [e["seq"] for e in page] == [2, 3]


async def test_a_failed_login_is_recorded(client: httpx.AsyncClient, admin: User) -> None:
    user = await register_client(client)
    await client.post("/v1/auth/token", data={"username": user.email, "password": "wrong one!!"})
    entries = (await client.get("/v1/admin/audit?limit=1000", headers=admin.auth)).json()
    failed = [e for e in entries if e["action"] == "auth.login_failed"]
    assert [e["target"] for e in failed] == [user.id]


async def test_only_admins_read_the_audit_log(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    for user in (counselor, client_user):
        for path in ("/v1/admin/audit", "/v1/admin/audit/verify"):
            response = await client.get(path, headers=user.auth)
            assert response.status_code == 403
            assert response.json()["code"] == "forbidden"


async def test_intact_chain_verifies(client: httpx.AsyncClient, admin: User) -> None:
    await register_client(client)
    result = await verify(client, admin)
    assert result["ok"] is True
    assert isinstance(result["entries"], int)
    assert result["entries"] >= 4
    assert result["broken_seq"] is None


TAMPERING = {
    "edit": [
        "UPDATE audit_log SET payload = (SELECT payload FROM audit_log WHERE seq = 3) WHERE seq = 2"
    ],
    "delete": ["DELETE FROM audit_log WHERE seq = 2"],
    "reorder": [
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    ],
    "rehash_one": ["UPDATE audit_log SET target_ix = NULL WHERE seq = 2"],
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
async def test_tampering_breaks_the_chain_at_that_seq(
    client: httpx.AsyncClient, admin: User, ctx: Context, how: str
) -> None:
    for _ in range(2):
        await register_client(client)
    assert (await verify(client, admin))["ok"] is True
    async with ctx.engine.begin() as conn:
        for statement in TAMPERING[how]:
            await conn.execute(text(statement))
    result = await verify(client, admin)
    assert result["ok"] is False
    assert result["broken_seq"] == 2
    assert result["entries"] == 1


async def test_concurrent_requests_never_fork_the_chain(
    client: httpx.AsyncClient, admin: User, ctx: Context
) -> None:
    async def register() -> int:
        body = {"email": unique_email(), "password": PASSWORD, "display_name": "Many"}
        while True:
            response = await client.post("/v1/accounts", json=body)
            # Past the hashing bound a client is told to come back: it does, as apps do.
            if response.status_code != 503 or response.json()["code"] != "busy":
                return response.status_code
            await asyncio.sleep(0.01)

    codes = await asyncio.gather(*(register() for _ in range(12)))
    assert codes == [201] * 12
    result = await verify(client, admin)
    assert result["ok"] is True
    async with ctx.engine.connect() as conn:
        seqs = [
            row[0] for row in await conn.execute(text("SELECT seq FROM audit_log ORDER BY seq"))
        ]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_audit_rows_hold_no_plain_ids(
    client: httpx.AsyncClient, admin: User, ctx: Context
) -> None:
    user = await register_client(client)
    await client.get("/v1/me", headers=user.auth)
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM audit_log"))).all()
    dump = b"".join(
        bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        for row in rows
        for value in row
    )
    assert user.id.encode() not in dump
    assert admin.id.encode() not in dump
    assert b"account.read" not in dump


async def test_a_unit_of_work_that_wrote_before_its_commit_does_not_lock_out_another(
    client: httpx.AsyncClient, admin: User, ctx: Context
) -> None:
    """Two units of work with audit entries, one of which wrote before its commit (it
    holds SQLite's write lock from then on), the other committing meanwhile: both
    commit, at once, and the chain stays whole. A lock of the process taken at commit
    would be waited for by the first while the second, holding it, waits for SQLite's
    write lock: each waiting on the other until the busy timeout failed one."""
    wrote = asyncio.Event()
    release = asyncio.Event()

    async def wrote_first() -> None:
        async with ctx.transaction() as session:
            # Any write takes SQLite's lock until the commit (a no-op on PostgreSQL).
            await session.execute(text("UPDATE accounts SET id = id WHERE 1 = 0"))
            audit.record(session, "test.first", actor_id=None, actor_role="cli")
            wrote.set()
            await release.wait()

    async def commits_meanwhile() -> None:
        await wrote.wait()
        async with ctx.transaction() as session:
            audit.record(session, "test.second", actor_id=None, actor_role="cli")

    first = asyncio.create_task(wrote_first())
    second = asyncio.create_task(commits_meanwhile())
    await wrote.wait()
    # Let the second reach its commit and wait there (in SQLite's busy handler).
    await asyncio.sleep(0.3)
    release.set()
    async with asyncio.timeout(4):  # under SQLite's 5 s busy timeout
        await asyncio.gather(first, second)
    assert (await verify(client, admin))["ok"] is True
