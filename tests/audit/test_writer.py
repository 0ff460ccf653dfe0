"""The audit chain's writer on PostgreSQL: batches from many units of work and several
instances stay one chain, each unit's entries together and in order; an entry that
cannot be written fails its unit of work, whose change is then not made."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.context import build_context
from app.core import audit
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import Context
from app.core.errors import AuditUnavailable

INSTANCES = 3
UNITS = 25


@pytest.fixture
def dialect() -> str:
    return "postgresql"  # SQLite serves one process and appends in the unit of work


async def test_several_instances_appending_at_once_keep_one_chain(
    ctx: Context, settings: Settings, clock: FrozenClock
) -> None:
    others = [build_context(settings, clock) for _ in range(INSTANCES - 1)]
    instances = [ctx, *others]

    async def unit(instance: int, n: int) -> None:
        context = instances[instance]
        async with context.transaction() as session:
            for part in range(1 + n % 3):
                audit.record(
                    session,
                    "test.unit",
                    actor_role="cli",
                    details={"unit": f"{instance}.{n}", "part": part},
                )

    try:
        async with ctx.transaction() as session:  # as the app's start-up does
            await ctx.vault.ensure_system_key(session)
        await asyncio.gather(*(unit(i, n) for n in range(UNITS) for i in range(INSTANCES)))
    finally:
        for other in others:
            await other.close()

    async with ctx.sessionmaker() as session:
        assert (await ctx.audit.verify(session)).ok
        entries = await ctx.audit.entries(session, after=0, limit=10_000)
    ours = [e for e in entries if e.action == "test.unit"]
    assert len(ours) == sum(1 + n % 3 for n in range(UNITS)) * INSTANCES
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    # Each unit's entries are consecutive and in the order recorded.
    where: dict[str, list[tuple[int, int]]] = {}
    for e in ours:
        where.setdefault(e.details["unit"], []).append((e.seq, e.details["part"]))
    for placed in where.values():
        seqs = [seq for seq, _ in placed]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert [part for _, part in placed] == list(range(len(placed)))


async def test_an_entry_that_cannot_be_written_undoes_its_unit_of_work(ctx: Context) -> None:
    async with ctx.transaction() as session:
        await ctx.vault.ensure_system_key(session)
    async with ctx.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE scratch (x integer)"))
        await conn.execute(text("ALTER TABLE audit_log ADD CONSTRAINT refuse CHECK (seq < 0)"))

    async def refused() -> None:
        async with ctx.transaction() as session:
            await session.execute(text("INSERT INTO scratch VALUES (1)"))
            audit.record(session, "test.refused", actor_role="cli")

    with pytest.raises(AuditUnavailable) as raised:
        await refused()
    assert "refuse" in str(raised.value.__cause__)
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM scratch"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one() == 0

    # The writer carries on once entries can be written again.
    async with ctx.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_log DROP CONSTRAINT refuse"))
    async with ctx.transaction() as session:
        await session.execute(text("INSERT INTO scratch VALUES (2)"))
        audit.record(session, "test.written", actor_role="cli")
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(text("SELECT x FROM scratch"))).scalars().all() == [2]
    async with ctx.sessionmaker() as session:
        assert (await ctx.audit.verify(session)).ok
        assert [e.action for e in await ctx.audit.entries(session, after=0, limit=10)] == [
            "test.written"
        ]
