"""Stored answers of writes sent with an `Idempotency-Key` (decision note 0013).

The claim is a row inserted first in the request's own transaction, before the
write it guards: the unique `key_hash` makes a concurrent duplicate wait for
that transaction (PostgreSQL: for the conflicting insert to commit or roll
back; SQLite: for the write lock), then find the answer, or, if the first
failed and rolled back, claim the key itself. The answer is written into the
row in the same transaction as the resource, so a committed row always holds
an answer, a failure (an error answer, a 5xx, a lost connection) leaves no
row behind, and the key can be used again. Only success answers are stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.codec import new_id
from app.core.context import Context
from app.core.encryption import DecryptionError
from app.core.idempotency import IdempotencyKeyReused
from app.core.vault import SYSTEM_KEY_ID, DataKeyDestroyed
from app.models import IdempotencyKey

# A row found expired, or unreadable, is deleted and the key claimed again; a
# third miss in a row means something else keeps deleting it: give up loudly.
_ATTEMPTS = 3


@dataclass(frozen=True)
class Answer:
    """A stored success answer: its status and JSON body."""

    status: int
    body: Any


@dataclass(frozen=True)
class Claimed:
    """The key is this request's: write the resource, then `complete`."""

    row_id: str
    key_hash: bytes


async def _insert(
    session: AsyncSession, ctx: Context, key_hash: bytes, fingerprint: bytes
) -> str | None:
    """Insert the claim; None if a row with this hash exists (after waiting for its writer)."""
    row_id = new_id()
    expires_at = int(ctx.clock.time()) + ctx.settings.idempotency_ttl_s
    expiry = await ctx.vault.seal_json(
        session, SYSTEM_KEY_ID, IdempotencyKey.expiry, row_id, {"expires_at": expires_at}
    )
    values = {"id": row_id, "key_hash": key_hash, "fingerprint": fingerprint, "expiry": expiry}
    insert = postgresql.insert if ctx.engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(IdempotencyKey).values(values).on_conflict_do_nothing()
    result = await session.execute(statement)
    return row_id if getattr(result, "rowcount", 0) == 1 else None


async def _expired(session: AsyncSession, ctx: Context, row: IdempotencyKey) -> bool:
    data = await ctx.vault.open_json(
        session, SYSTEM_KEY_ID, IdempotencyKey.expiry, row.id, row.expiry
    )
    return int(data["expires_at"]) <= ctx.clock.time()


async def claim(
    session: AsyncSession,
    ctx: Context,
    data_key_id: str,
    key_hash: bytes,
    fingerprint: bytes,
) -> Claimed | Answer:
    """This request's claim on the key, or the answer already given to it.

    IdempotencyKeyReused if the key was used for another request (another body,
    another target) that is still remembered.
    """
    for _ in range(_ATTEMPTS):
        row_id = await _insert(session, ctx, key_hash, fingerprint)
        if row_id is not None:
            return Claimed(row_id, key_hash)
        found = await session.execute(
            select(IdempotencyKey).where(IdempotencyKey.key_hash == key_hash)
        )
        row = found.scalar_one_or_none()
        if row is None:  # purged between the two statements
            continue
        if await _expired(session, ctx, row):
            await _forget(session, row.id)
            continue
        if row.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for another request; use a new key."
            )
        answer = await _open(session, ctx, data_key_id, row)
        if answer is None:  # never committed so; unreadable: start again
            await _forget(session, row.id)
            continue
        return answer
    raise RuntimeError("an idempotency key kept disappearing while it was claimed")


async def _open(
    session: AsyncSession, ctx: Context, data_key_id: str, row: IdempotencyKey
) -> Answer | None:
    if row.answer is None:
        return None
    try:
        data = await ctx.vault.open_json(
            session, data_key_id, IdempotencyKey.answer, row.id, row.answer
        )
    except (DecryptionError, DataKeyDestroyed):
        return None
    return Answer(int(data["status"]), data["body"])


async def _forget(session: AsyncSession, row_id: str) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))


async def complete(
    session: AsyncSession, ctx: Context, data_key_id: str, claimed: Claimed, answer: Answer
) -> None:
    """Store the answer in the claimed row, in the transaction that wrote the resource."""
    sealed = await ctx.vault.seal(
        session,
        data_key_id,
        IdempotencyKey.answer,
        claimed.row_id,
        json.dumps(
            {"status": answer.status, "body": answer.body},
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=False,
        ),
    )
    await session.execute(
        update(IdempotencyKey).where(IdempotencyKey.id == claimed.row_id).values(answer=sealed)
    )


async def release(session: AsyncSession, claimed: Claimed) -> None:
    """Give the key up (an error that still commits its unit of work, such as an audit entry)."""
    await _forget(session, claimed.row_id)


async def purge_expired(session: AsyncSession, ctx: Context) -> int:
    """Retention: delete the rows whose time is up. How many were deleted.

    One decryption (under the system key) per live row: the expiry is sealed,
    as every time is (decision note 0007).
    """
    rows = await session.execute(select(IdempotencyKey.id, IdempotencyKey.expiry))
    now = ctx.clock.time()
    expired = []
    for row_id, blob in rows.all():
        data = await ctx.vault.open_json(
            session, SYSTEM_KEY_ID, IdempotencyKey.expiry, row_id, blob
        )
        if int(data["expires_at"]) <= now:
            expired.append(row_id)
    for start in range(0, len(expired), 500):
        chunk = expired[start : start + 500]
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(chunk)))
    return len(expired)
