"""Slot indexes: an owner's rows found by computed indexes that group nothing."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.core.codec import new_id
from app.core.context import Context
from app.core.slots import CountSearch, Slots
from app.models import Notice

SLOTS = Slots(Notice.recipient_ix, "test.slot")


def run_search(n: int) -> tuple[int, int]:
    """(the count found, rounds taken) against dense slots 0..n-1."""
    search = CountSearch()
    rounds = 0
    while not search.done:
        points = search.points()
        assert points, "a search that is not done asks for something"
        assert len(points) <= 64 or rounds == 0
        search.answer({p for p in points if p < n})
        rounds += 1
    return search.result, rounds


@settings(max_examples=300, deadline=None)
@given(n=st.one_of(st.integers(0, 200), st.integers(0, 10_000_000)))
def test_the_search_finds_every_count_in_few_rounds(n: int) -> None:
    found, rounds = run_search(n)
    assert found == n
    assert rounds <= (1 if n == 0 else 2 if n < 64 else 6)


def test_an_unfinished_search_has_no_result() -> None:
    with pytest.raises(RuntimeError):
        _ = CountSearch().result


def notice() -> Notice:
    return Notice(id=new_id(), details=b"x")


async def test_rows_stay_dense_through_removals(ctx: Context) -> None:
    async with ctx.transaction() as session:
        rows = [notice() for _ in range(7)]
        for row in rows:
            await SLOTS.add(session, ctx.vault, "owner-a", row)
        await SLOTS.add(session, ctx.vault, "owner-b", notice())
    async with ctx.transaction() as session:
        listed = await SLOTS.rows(session, ctx.vault, "owner-a")
        assert [r.id for r in listed] == [r.id for r in rows]
        await SLOTS.remove(session, ctx.vault, "owner-a", listed[1])
        await SLOTS.remove(session, ctx.vault, "owner-a", listed[6])  # the last one
    async with ctx.transaction() as session:
        left = await SLOTS.rows(session, ctx.vault, "owner-a")
        assert {r.id for r in left} == {r.id for r in rows} - {rows[1].id, rows[6].id}
        assert await SLOTS.count(session, ctx.vault, "owner-a") == 5
        # The last row moved into the freed slot: slots are 0..4.
        assert {r.recipient_ix for r in left} == {
            SLOTS.ix(ctx.vault, "owner-a", i) for i in range(5)
        }
        assert await SLOTS.count(session, ctx.vault, "owner-b") == 1
        assert await SLOTS.remove_all(session, ctx.vault, "owner-a") == 5
    async with ctx.transaction() as session:
        assert await SLOTS.rows(session, ctx.vault, "owner-a") == []
        assert await session.scalar(select(func.count()).select_from(Notice)) == 1


async def test_no_value_repeats_across_an_owners_rows(ctx: Context) -> None:
    async with ctx.transaction() as session:
        for _ in range(20):
            await SLOTS.add(session, ctx.vault, "owner-a", notice())
    async with ctx.sessionmaker() as session:
        values = list((await session.execute(select(Notice.recipient_ix))).scalars())
    assert len(set(values)) == len(values) == 20
    assert len({v[:4] for v in values}) == 20  # no shared prefix either


async def test_a_count_hint_is_checked_before_it_is_trusted(ctx: Context) -> None:
    async with ctx.transaction() as session:
        for _ in range(3):
            await SLOTS.add(session, ctx.vault, "owner-a", notice())
    async with ctx.sessionmaker() as session:
        for hint in (0, 1, 2, 3, 4, 10):
            assert await SLOTS.count(session, ctx.vault, "owner-a", hint=hint) == 3


async def test_concurrent_writers_of_one_owner_take_distinct_slots(ctx: Context) -> None:
    async def add_one() -> None:
        async with ctx.transaction() as session:
            await SLOTS.add(session, ctx.vault, "owner-a", notice())

    await asyncio.gather(*(add_one() for _ in range(8)))
    async with ctx.sessionmaker() as session:
        assert await SLOTS.count(session, ctx.vault, "owner-a") == 8
        assert len(await SLOTS.rows(session, ctx.vault, "owner-a")) == 8


async def test_a_row_moved_by_another_removal_is_removed_from_where_it_now_is(
    ctx: Context,
) -> None:
    """Two removals of one owner's rows, the second holding a row loaded before the first.

    The first moves the owner's last row into the slot it frees; the second's
    copy of that row still names the old slot. Removing it must take the slot
    the row holds now and keep the slots dense.
    """
    async with ctx.transaction() as session:
        rows = [notice() for _ in range(3)]
        for row in rows:
            await SLOTS.add(session, ctx.vault, "owner-a", row)
    async with ctx.sessionmaker() as later:
        stale = await SLOTS.rows(later, ctx.vault, "owner-a")  # loaded first
        async with ctx.transaction() as first:
            await SLOTS.remove(first, ctx.vault, "owner-a", (await first.get(Notice, rows[0].id)))
        # The last row now sits in slot 0; `later` still holds it at slot 2.
        await SLOTS.remove(later, ctx.vault, "owner-a", stale[2])
        await later.commit()
    async with ctx.sessionmaker() as session:
        left = await SLOTS.rows(session, ctx.vault, "owner-a")
        assert [r.id for r in left] == [rows[1].id]
        assert await SLOTS.count(session, ctx.vault, "owner-a") == 1
        assert left[0].recipient_ix == SLOTS.ix(ctx.vault, "owner-a", 0)
