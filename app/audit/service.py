"""The append-only, hash-chained audit log.

Services call `app.core.audit.record()`; it only queues the entry on the
session. The unit of work (`Context.transaction`) has `AuditLog.commit`
append the queue to the chain, then commit its own transaction.

On PostgreSQL one writer task per process appends: units of work hand it
their entries and wait; it takes whatever has queued up meanwhile and appends
it all in one transaction of its own (its own connection, so it never waits
for the pool the waiting requests hold), under a transaction-scoped advisory
lock that every instance takes, so the lock is held for one short batch
rather than for every request until its commit. Only once that transaction
has committed does the unit of work commit: fail-closed, an action whose
entry could not be written is rolled back and answered with an error (an
action whose own commit then fails leaves an entry for an attempt, never an
action without one). A unit of work's entries stay together and in order.
On SQLite (one process) the unit of work appends in its own transaction,
under SQLite's write lock. Either way two writers never read the same head
and fork the chain; the primary key on `seq` refuses a fork outright should
anything get past that.

Each entry stores `seq`, `prev_hash`, `hash`, the target's slot index (for
the person's access log: `HMAC(target, i)` on the target's i-th entry, so a
dump cannot group one person's entries; `app.core.slots`) and a payload
sealed under the system key
holding when, who, what and on whom. `hash` = SHA-256(prev_hash || canonical
content), where the content covers seq, the target index and the sealed
payload's bytes: verification needs no key, and any edit, deletion or
reordering breaks the chain at the first affected `seq`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from app.core.audit import Entry, Pending, Verification, take_pending
from app.core.clock import Clock
from app.core.db import Budgets, create_engine
from app.core.errors import AuditUnavailable, ConfideError, is_unavailable
from app.core.slots import Slots
from app.core.vault import SYSTEM_KEY_ID, Vault
from app.models import AuditEntry

log = logging.getLogger("confide.audit")

GENESIS = b"\x00" * 32
_PG_LOCK_KEY = 0x636F6E666964  # "confid"
_SLOT_CACHE = 10_000
TARGET_SLOTS = Slots(AuditEntry.target_ix, "audit.target.slot")
#: The most entries the writer appends in one transaction.
_BATCH = 512


def chain_hash(prev_hash: bytes, seq: int, target_ix: bytes | None, payload: bytes) -> bytes:
    content = json.dumps(
        {
            "seq": seq,
            "target_ix": target_ix.hex() if target_ix is not None else None,
            "payload": base64.b64encode(payload).decode(),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return hashlib.sha256(prev_hash + content).digest()


@contextlib.contextmanager
def _fail_closed() -> Iterator[None]:
    """Turn a failure to write audit entries into `AuditUnavailable`, logged once."""
    try:
        yield
    except ConfideError:
        raise
    except Exception as error:
        if is_unavailable(error):
            raise
        log.error(
            "audit entries could not be written (%s): the action is refused",
            type(error).__name__,
            extra={"error": type(error).__name__},
        )
        raise AuditUnavailable() from error


@dataclass
class _Request:
    """One unit of work's entries, and what the writer answers once they are written."""

    pending: list[Pending]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Writer:
    """The task that appends every unit of work's entries, in batches (PostgreSQL)."""

    def __init__(self, log: AuditLog, url: str, budgets: Budgets | None) -> None:
        self._log = log
        self.loop = asyncio.get_running_loop()
        # Its own connection: the units of work waiting for it hold the pool's.
        # Pinged before each batch (a restarted PostgreSQL costs no entry); with
        # the database's budgets, a batch that hangs fails its waiters in time
        # (and their actions: fail closed) instead of holding them all.
        self._engine: AsyncEngine = create_engine(url, budgets=budgets, pool_size=1, max_overflow=0)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False, autoflush=False)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name="audit-writer")

    async def append(self, pending: list[Pending]) -> None:
        request = _Request(pending)
        self._queue.put_nowait(request)
        await request.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].pending)
            while count < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                count += len(batch[-1].pending)
            try:
                await self._write([item for request in batch for item in request.pending])
            except asyncio.CancelledError:
                for request in batch:
                    request.done.cancel()
                raise
            except Exception as error:  # every waiter fails: none of its entries is written
                for request in batch:
                    if not request.done.done():
                        request.done.set_exception(error)
            else:
                for request in batch:
                    if not request.done.done():
                        request.done.set_result(None)

    async def _write(self, pending: list[Pending]) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            await self._log._append(session, pending)
            await session.commit()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        while not self._queue.empty():
            self._queue.get_nowait().done.cancel()
        await self._engine.dispose()


class AuditLog:
    """The chain of `AuditEntry` rows (an `app.core.audit.AuditTrail`)."""

    def __init__(
        self, vault: Vault, clock: Clock, *, sqlite: bool, budgets: Budgets | None = None
    ) -> None:
        self._vault = vault
        self._clock = clock
        self._sqlite = sqlite
        self._budgets = budgets
        # The next slot of recent targets: appends run under the chain's lock,
        # and `Slots.count` checks a hint with one look-up before trusting it.
        self._next_slot: dict[str, int] = {}
        self._writer: _Writer | None = None

    async def commit(self, session: AsyncSession) -> None:
        """Append the queued entries to the chain, then commit the transaction.

        Raises `AuditUnavailable` (the caller rolls back) when the entries cannot
        be written for any reason but an unreachable database (which stays the
        error it is: 503 `unavailable`): a refused INSERT, a trigger, a full
        disk. The action is then not done, and its answer says why.
        """
        pending = take_pending(session)
        if not pending:
            await session.commit()
            return
        with _fail_closed():
            if self._sqlite:
                # SQLite's write lock first (a write that changes nothing takes it,
                # and waits for it), then the head: one writer at a time in every
                # process. No lock of this process: a unit of work that already
                # wrote holds SQLite's lock, and waiting here for another task that
                # waits for it would hold both until the busy timeout. (A statement
                # of SQLite only: PostgreSQL's server role may not UPDATE the log.)
                await session.execute(text("UPDATE audit_log SET seq = seq WHERE 1 = 0"))
                await self._append(session, pending)
            else:
                # Written (and committed) first: if it cannot be, this raises and
                # the unit of work rolls back, so the action is not done either.
                await self._writer_for(session).append(pending)
        await session.commit()

    def _writer_for(self, session: AsyncSession) -> _Writer:
        writer = self._writer
        loop = asyncio.get_running_loop()
        if writer is None or writer.loop is not loop or writer.task.done():
            engine = session.bind
            assert isinstance(engine, AsyncEngine)
            writer = self._writer = _Writer(
                self, engine.url.render_as_string(hide_password=False), self._budgets
            )
        return writer

    async def close(self) -> None:
        """Stop the writer task (entries still queued are not written: their units fail)."""
        writer, self._writer = self._writer, None
        if writer is not None and writer.loop is asyncio.get_running_loop():
            await writer.close()

    async def _append(self, session: AsyncSession, pending: list[Pending]) -> None:
        head = (
            await session.execute(
                select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
            )
        ).one_or_none()
        seq, prev = (head[0], head[1]) if head is not None else (0, GENESIS)
        at = self._clock.now().isoformat()
        claimed: dict[str, int] = {}
        for item in pending:
            seq += 1
            target_ix = None
            if item.target is not None:
                if item.target in claimed:
                    slot = claimed[item.target]
                    target_ix = TARGET_SLOTS.ix(self._vault, item.target, slot)
                else:
                    target_ix, slot = await TARGET_SLOTS.claim(
                        session, self._vault, item.target, hint=self._next_slot.get(item.target)
                    )
                claimed[item.target] = slot + 1
            payload = await self._vault.seal_json(
                session,
                SYSTEM_KEY_ID,
                AuditEntry.payload,
                str(seq),
                {
                    "at": at,
                    "action": item.action,
                    "actor": item.actor_id,
                    "actor_role": item.actor_role,
                    "target": item.target,
                    "details": item.details,
                },
            )
            digest = chain_hash(prev, seq, target_ix, payload)
            session.add(
                AuditEntry(
                    seq=seq, target_ix=target_ix, payload=payload, prev_hash=prev, hash=digest
                )
            )
            prev = digest
        await session.flush()
        if len(self._next_slot) > _SLOT_CACHE:
            self._next_slot.clear()
        self._next_slot.update(claimed)

    async def _decode(self, session: AsyncSession, row: AuditEntry) -> Entry:
        data = await self._vault.open_json(
            session, SYSTEM_KEY_ID, AuditEntry.payload, str(row.seq), row.payload
        )
        return Entry(
            seq=row.seq,
            at=datetime.fromisoformat(data["at"]),
            action=data["action"],
            actor_id=data["actor"],
            actor_role=data["actor_role"],
            target=data["target"],
            details=data["details"],
            hash=row.hash.hex(),
            prev_hash=row.prev_hash.hex(),
        )

    async def entries(self, session: AsyncSession, *, after: int, limit: int) -> list[Entry]:
        rows = (
            await session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(limit)
            )
        ).scalars()
        return [await self._decode(session, row) for row in rows]

    async def entries_about(self, session: AsyncSession, target: str) -> list[Entry]:
        rows = await TARGET_SLOTS.rows(session, self._vault, target)
        return [await self._decode(session, row) for row in sorted(rows, key=lambda r: r.seq)]

    async def verify(self, session: AsyncSession, batch: int = 1000) -> Verification:
        return await verify_chain(_batches(session, batch))


async def _batches(session: AsyncSession, size: int) -> AsyncIterator[list[AuditEntry]]:
    after = -1
    while True:
        rows = list(
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.seq > after)
                    .order_by(AuditEntry.seq)
                    .limit(size)
                )
            ).scalars()
        )
        if not rows:
            return
        yield rows
        after = rows[-1].seq


async def verify_chain(batches: AsyncIterator[list[AuditEntry]]) -> Verification:
    """Walk the chain; report the first `seq` whose link does not hold."""
    prev, expected, count = GENESIS, 1, 0
    async for rows in batches:
        for row in rows:
            if (
                row.seq != expected
                or row.prev_hash != prev
                or row.hash != chain_hash(prev, row.seq, row.target_ix, row.payload)
            ):
                return Verification(False, count, prev.hex() if count else None, expected)
            prev, expected, count = row.hash, expected + 1, count + 1
    return Verification(True, count, prev.hex() if count else None)
