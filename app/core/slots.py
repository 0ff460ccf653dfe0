"""Per-owner look-ups that group nothing in a dump: slot indexes.

A blind index of a person repeated on every row of theirs (`HMAC(person)`)
hides the person's id, but it still groups their rows: every notice of one
person carries the same value, and the audit log, written in one total order
beside every other table, lets an attacker match such a group to the account
created at that moment, then follow it everywhere (decision note 0007).

So a table that must answer "the rows of owner O" stores, on its i-th row of
O, `HMAC(index key, purpose | O | i)`: a value that occurs once in the whole
database and says nothing about its neighbours. The rows of one owner are
kept dense (slots 0..n-1): the server finds n with a few indexed look-ups
(doubling, then narrowing 64 points at a time), and reads the rows by
computing their indexes. Removing a row moves the owner's last row into its
slot, so the rows stay dense without renumbering.

Writers of one owner's slots take turns: on PostgreSQL through a
transaction-level advisory lock whose number is itself keyed (it names no
one); SQLite has a single writer, and a caller writes a row of its own before
it claims a slot, so it already holds the database's write lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.vault import Vault

_NARROW = 64
_CHUNK = 500
_MAX_EXPONENT = 40


class CountSearch:
    """Finds n, the number of an owner's slots (0..n-1), from answers about points.

    Pure: `points()` says which slots to look up next, `answer()` takes the
    ones found. Slots are dense, so slot p exists exactly when p < n. The
    first round asks for 0, 1, 3, 7, ..., 2**39 - 1; each later round asks for
    up to 64 evenly spread points in the range left. Fewer than 64 rows take
    two rounds; ten million take six.
    """

    def __init__(self) -> None:
        self.low = 0  # n >= low
        self.high: int | None = None  # n <= high
        self._asked: list[int] = []
        self._first = True

    @property
    def done(self) -> bool:
        return not self._first and self.high is not None and self.low >= self.high

    @property
    def result(self) -> int:
        if not self.done:
            raise RuntimeError("the search has not finished")
        return self.low

    def points(self) -> list[int]:
        if self._first:
            self._asked = [2**k - 1 for k in range(_MAX_EXPONENT)]
        elif self.done or self.high is None:
            self._asked = []
        else:
            step = max(1, (self.high - self.low + _NARROW - 1) // _NARROW)
            self._asked = list(range(self.low, self.high, step))
        return list(self._asked)

    def answer(self, present: set[int]) -> None:
        hits = [p for p in self._asked if p in present]
        absent = next((p for p in self._asked if p not in present), None)
        if hits:
            self.low = max(hits) + 1
        if absent is not None:
            self.high = absent
        elif self._first:
            self.high = self.low  # every probe present: as far as slots go
        self._first = False


class Slots:
    """The slot index column `column` of one table, for owners of one kind."""

    def __init__(self, column: InstrumentedAttribute[Any], purpose: str) -> None:
        self.column = column
        self.model: Any = column.class_
        self.purpose = purpose

    def ix(self, vault: Vault, owner: str, slot: int) -> bytes:
        return vault.index(f"{owner}:{slot}", purpose=self.purpose)

    async def lock(self, session: AsyncSession, vault: Vault, owner: str) -> None:
        if session.get_bind().dialect.name != "postgresql":
            return
        digest = vault.index(owner, purpose=f"{self.purpose}/lock")
        key = int.from_bytes(digest[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    async def _where_in(self, session: AsyncSession, what: Any, ixs: Iterable[bytes]) -> list[Any]:
        """`what` (the column or the model) of the rows at `ixs`, in chunks of IN lists."""
        wanted = list(ixs)
        found: list[Any] = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            found.extend(
                (await session.execute(select(what).where(self.column.in_(chunk)))).scalars()
            )
        return found

    async def _present(self, session: AsyncSession, ixs: Iterable[bytes]) -> set[bytes]:
        return set(await self._where_in(session, self.column, ixs))

    async def count_many(
        self, session: AsyncSession, vault: Vault, owners: Sequence[str]
    ) -> dict[str, int]:
        """How many rows each owner has, in a few queries whatever the number of owners."""
        searches = {owner: CountSearch() for owner in owners}
        while True:
            asked: dict[bytes, tuple[str, int]] = {}
            for owner, search in searches.items():
                for point in search.points():
                    asked[self.ix(vault, owner, point)] = (owner, point)
            if not asked:
                return {owner: search.result for owner, search in searches.items()}
            present: dict[str, set[int]] = {owner: set() for owner in searches}
            for ix in await self._present(session, asked):
                owner, point = asked[ix]
                present[owner].add(point)
            for owner, search in searches.items():
                if not search.done:
                    search.answer(present[owner])

    async def count(
        self, session: AsyncSession, vault: Vault, owner: str, *, hint: int | None = None
    ) -> int:
        """How many rows `owner` has (their slots are 0..n-1)."""
        if hint is not None and hint >= 0:
            points = [hint - 1, hint] if hint else [0]
            asked = {self.ix(vault, owner, p): p for p in points}
            present = {asked[ix] for ix in await self._present(session, asked)}
            if hint not in present and (hint == 0 or hint - 1 in present):
                return hint
        return (await self.count_many(session, vault, [owner]))[owner]

    async def rows_many(
        self, session: AsyncSession, vault: Vault, owners: Sequence[str]
    ) -> dict[str, list[Any]]:
        """Every row of each owner, in slot order."""
        counts = await self.count_many(session, vault, owners)
        order = {
            self.ix(vault, owner, slot): (owner, slot)
            for owner, n in counts.items()
            for slot in range(n)
        }
        out: dict[str, list[Any]] = {owner: [] for owner in owners}
        for row in await self._where_in(session, self.model, order):
            out[order[getattr(row, self.column.key)][0]].append(row)
        for rows in out.values():
            rows.sort(key=lambda row: order[getattr(row, self.column.key)][1])
        return out

    async def rows(self, session: AsyncSession, vault: Vault, owner: str) -> list[Any]:
        """Every row of `owner`, in slot order."""
        return (await self.rows_many(session, vault, [owner]))[owner]

    async def claim(
        self, session: AsyncSession, vault: Vault, owner: str, *, hint: int | None = None
    ) -> tuple[bytes, int]:
        """The index of `owner`'s next free slot and its number (call under `lock`)."""
        n = await self.count(session, vault, owner, hint=hint)
        return self.ix(vault, owner, n), n

    async def add(self, session: AsyncSession, vault: Vault, owner: str, row: Any) -> None:
        """Add `row` to the session in the owner's next slot."""
        # Write first, under a random index: on SQLite the transaction then
        # holds the one write lock, so no other writer can claim the same slot.
        setattr(row, self.column.key, os.urandom(32))
        session.add(row)
        await session.flush()
        await self.place(session, vault, owner, row)

    async def place(self, session: AsyncSession, vault: Vault, owner: str, row: Any) -> None:
        """Move `row`, already written, into the owner's next slot."""
        await self.lock(session, vault, owner)
        ix, _slot = await self.claim(session, vault, owner)
        setattr(row, self.column.key, ix)
        await session.flush()

    async def remove(self, session: AsyncSession, vault: Vault, owner: str, row: Any) -> None:
        """Delete `row` (one of `owner`'s) and move the owner's last row into its slot."""
        await self.lock(session, vault, owner)
        # Where the row is now: a removal that held the lock before us may have
        # moved it (the owner's last row fills the slot a removal frees).
        mapper = sa_inspect(self.model)
        identity = sa_inspect(row).identity or ()
        mine = await session.scalar(
            select(self.column).where(
                *(
                    column == value
                    for column, value in zip(mapper.primary_key, identity, strict=True)
                )
            )
        )
        if mine is None:
            return  # removed already
        n = await self.count(session, vault, owner)
        ixs = [self.ix(vault, owner, slot) for slot in range(n)]
        await session.delete(row)
        await session.flush()
        if mine not in ixs or mine == ixs[-1]:
            return
        last = (
            await session.execute(select(self.model).where(self.column == ixs[-1]))
        ).scalar_one()
        setattr(last, self.column.key, mine)
        await session.flush()

    async def remove_all(self, session: AsyncSession, vault: Vault, owner: str) -> int:
        """Delete every row of `owner`."""
        await self.lock(session, vault, owner)
        n = await self.count(session, vault, owner)
        ixs = [self.ix(vault, owner, slot) for slot in range(n)]
        for start in range(0, n, _CHUNK):
            await session.execute(
                delete(self.model).where(self.column.in_(ixs[start : start + _CHUNK]))
            )
        return n
