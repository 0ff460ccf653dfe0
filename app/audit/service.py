"""The append-only, hash-chained audit log.

Services call `app.core.audit.record()`; it only queues the entry on the
session. The unit of work (`Context.transaction`) has `AuditLog.commit`
append the queue to the chain in the same transaction as the change it
records, then commit. Appending is serialized: on PostgreSQL by a
transaction-scoped advisory lock (every instance), on SQLite by a process
lock (SQLite serves one process), so two requests never read the same head
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

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.audit import Entry, Pending, Verification, take_pending
from app.core.clock import Clock
from app.core.slots import Slots
from app.core.vault import SYSTEM_KEY_ID, Vault
from app.models import AuditEntry

GENESIS = b"\x00" * 32
_PG_LOCK_KEY = 0x636F6E666964  # "confid"
_SLOT_CACHE = 10_000
TARGET_SLOTS = Slots(AuditEntry.target_ix, "audit.target.slot")


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


class AuditLog:
    """The chain of `AuditEntry` rows (an `app.core.audit.AuditTrail`)."""

    def __init__(self, vault: Vault, clock: Clock, *, sqlite: bool) -> None:
        self._vault = vault
        self._clock = clock
        self._sqlite = sqlite
        # The next slot of recent targets: appends run under the chain's lock,
        # and `Slots.count` checks a hint with one look-up before trusting it.
        self._next_slot: dict[str, int] = {}

    async def commit(self, session: AsyncSession) -> None:
        """Append the queued entries to the chain, then commit the transaction."""
        pending = take_pending(session)
        if not pending:
            await session.commit()
            return
        if self._sqlite:
            # SQLite's write lock first (a write that changes nothing takes it, and
            # waits for it), then the head: one writer at a time in every process.
            # No lock of this process: a unit of work that already wrote holds
            # SQLite's lock, and waiting here for another task that waits for it
            # would hold both until the busy timeout.
            await session.execute(text("UPDATE audit_log SET seq = seq WHERE 1 = 0"))
            await self._append(session, pending)
            await session.commit()
        else:
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            await self._append(session, pending)
            await session.commit()

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
