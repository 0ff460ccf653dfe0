"""Key logs in the database: append under the account's slot lock, read, forget.

Entry seq s of an account sits in the account's slot s - 1 of
`key_log_entries` (`app.core.slots`); the entry is sealed under the
account's data key (decision note 0007), so a dump shows neither whose log
a row belongs to nor its order. The log is append-only: rows are only ever
added, and all of them deleted when the account is erased.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.core.codec import b64url_decode, b64url_encode, new_id
from app.core.errors import ConfideError, Conflict
from app.core.slots import Slots
from app.core.tokens import TokenService
from app.core.vault import Vault
from app.keys.log import ZERO_HASH, Entry, make_entry
from app.keys.schemas import KeyChangeOut, KeyLogEntryOut, KeyLogOut, SignedHead
from app.models import Account, KeyLogEntry

SLOTS = Slots(KeyLogEntry.slot_ix, "key_log.slot")
_CHUNK = 500


class BadDeviceSignature(ConfideError):
    status, code, title = 422, "bad_device_signature", "The identity key did not sign this device"


class IdentityKeyRequired(ConfideError):
    status, code, title = 422, "identity_key_required", "The first device brings the identity key"


class IdentityKeyExists(Conflict):
    code, title = "identity_key_exists", "The account has an identity key already"


class IdentityKeyMissing(Conflict):
    code, title = "identity_key_missing", "The account has no identity key yet"


@dataclass(frozen=True)
class Stored:
    """An entry as the server keeps it."""

    entry: Entry
    #: The identity key in force after the entry.
    identity: bytes | None
    at: datetime


def _b(value: str) -> bytes:
    return b64url_decode(value) if value else b""


async def _open(session: AsyncSession, vault: Vault, account: Account, row: KeyLogEntry) -> Stored:
    assert account.data_key_id is not None
    data = await vault.open_json(session, account.data_key_id, KeyLogEntry.entry, row.id, row.entry)
    entry = Entry(
        seq=data["seq"],
        kind=data["kind"],
        prev_hash=bytes.fromhex(data["prev_hash"]),
        hash=bytes.fromhex(data["hash"]),
        device_id=data["device_id"],
        identity_key=_b(data["identity_key"]),
        signing_key=_b(data["signing_key"]),
        public_key=_b(data["public_key"]),
        signature=_b(data["signature"]),
    )
    identity = data["identity"]
    return Stored(
        entry=entry,
        identity=_b(identity) if identity else None,
        at=datetime.fromisoformat(data["at"]),
    )


async def _seal(
    session: AsyncSession, vault: Vault, account: Account, row_id: str, stored: Stored
) -> bytes:
    assert account.data_key_id is not None
    e = stored.entry
    value: dict[str, Any] = {
        "seq": e.seq,
        "kind": e.kind,
        "prev_hash": e.prev_hash.hex(),
        "hash": e.hash.hex(),
        "device_id": e.device_id,
        "identity_key": b64url_encode(e.identity_key),
        "signing_key": b64url_encode(e.signing_key),
        "public_key": b64url_encode(e.public_key),
        "signature": b64url_encode(e.signature),
        "identity": b64url_encode(stored.identity) if stored.identity else None,
        "at": stored.at.isoformat(),
    }
    return await vault.seal_json(session, account.data_key_id, KeyLogEntry.entry, row_id, value)


async def _at_slots(session: AsyncSession, ixs: list[bytes]) -> list[KeyLogEntry]:
    rows: list[KeyLogEntry] = []
    for start in range(0, len(ixs), _CHUNK):
        chunk = ixs[start : start + _CHUNK]
        rows.extend(
            (await session.execute(select(KeyLogEntry).where(KeyLogEntry.slot_ix.in_(chunk))))
            .scalars()
            .all()
        )
    return rows


@dataclass(frozen=True)
class Head:
    seq: int
    hash: bytes
    identity: bytes | None


async def head(session: AsyncSession, vault: Vault, account: Account) -> Head:
    """The log's last seq and hash, and the identity key in force (seq 0: an empty log)."""
    n = await SLOTS.count(session, vault, account.id)
    if not n:
        return Head(0, ZERO_HASH, None)
    (row,) = await _at_slots(session, [SLOTS.ix(vault, account.id, n - 1)])
    last = await _open(session, vault, account, row)
    return Head(last.entry.seq, last.entry.hash, last.identity)


async def entries_after(
    session: AsyncSession, vault: Vault, account: Account, after: int, upto: int | None = None
) -> list[Stored]:
    """The entries with seq > `after` (and at most `upto`), in seq order."""
    if account.data_key_id is None:
        return []
    n = await SLOTS.count(session, vault, account.id) if upto is None else upto
    ixs = [SLOTS.ix(vault, account.id, slot) for slot in range(max(after, 0), n)]
    stored = [await _open(session, vault, account, row) for row in await _at_slots(session, ixs)]
    return sorted(stored, key=lambda s: s.entry.seq)


class Writer:
    """Appends to one account's log; made by `writer`, which holds the account's lock."""

    def __init__(
        self,
        session: AsyncSession,
        vault: Vault,
        clock: Clock,
        account: Account,
        head: Head,
        spare: KeyLogEntry,
    ) -> None:
        self._session = session
        self._vault = vault
        self._clock = clock
        self._account = account
        self.head = head
        self._spare: KeyLogEntry | None = spare

    @property
    def identity(self) -> bytes | None:
        return self.head.identity

    async def append(self, kind: str, **fields: Any) -> Entry:
        seq = self.head.seq + 1
        entry = make_entry(self._account.id, seq, kind, self.head.hash, **fields)
        identity = fields.get("identity_key") or self.head.identity
        row, self._spare = self._spare, None
        if row is None:
            row = KeyLogEntry(id=new_id())
            self._session.add(row)
        stored = Stored(entry=entry, identity=identity, at=self._clock.now())
        row.slot_ix = SLOTS.ix(self._vault, self._account.id, seq - 1)
        row.entry = await _seal(self._session, self._vault, self._account, row.id, stored)
        await self._session.flush()
        self.head = Head(seq, entry.hash, identity)
        return entry

    async def finish(self) -> None:
        if self._spare is not None:
            await self._session.delete(self._spare)
            await self._session.flush()
            self._spare = None


async def writer(session: AsyncSession, vault: Vault, clock: Clock, account: Account) -> Writer:
    """A writer of the account's log, holding the account's turn until the transaction ends."""
    # Write first (a spare row under a random index): on SQLite the transaction
    # then holds the one write lock, so the head read next stays the head.
    spare = KeyLogEntry(id=new_id(), slot_ix=os.urandom(32), entry=b"")
    session.add(spare)
    await session.flush()
    await SLOTS.lock(session, vault, account.id)
    return Writer(session, vault, clock, account, await head(session, vault, account), spare)


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete the account's whole log (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)


def entry_out(entry: Entry) -> KeyLogEntryOut:
    def b(value: bytes) -> str | None:
        return b64url_encode(value) if value else None

    return KeyLogEntryOut(
        seq=entry.seq,
        kind=entry.kind,
        device_id=entry.device_id or None,
        identity_key=b(entry.identity_key),
        signing_key=b(entry.signing_key),
        public_key=b(entry.public_key),
        signature=b(entry.signature),
        prev_hash=entry.prev_hash.hex(),
        hash=entry.hash.hex(),
    )


async def view(
    session: AsyncSession, vault: Vault, tokens: TokenService, account: Account, after: int
) -> KeyLogOut:
    """The entries after `after` and the log's head, signed by the server."""
    if account.data_key_id is None:
        return KeyLogOut(account_id=account.id, entries=[], head=None)
    now = await head(session, vault, account)
    stored = await entries_after(session, vault, account, after, upto=now.seq)
    signed = None
    if now.seq:
        signed = SignedHead(
            seq=now.seq,
            hash=now.hash.hex(),
            jws=tokens.sign_key_log_head(account_id=account.id, seq=now.seq, head=now.hash.hex()),
        )
    return KeyLogOut(
        account_id=account.id, entries=[entry_out(s.entry) for s in stored], head=signed
    )


async def changes_of(
    session: AsyncSession, vault: Vault, owners: list[Account], since: datetime | None
) -> list[KeyChangeOut]:
    """The key-log entries of `owners` written at or after `since` (all when None),
    oldest first. Reads every owner's log in a few queries."""
    live = [a for a in owners if a.data_key_id is not None]
    rows = await SLOTS.rows_many(session, vault, [a.id for a in live])
    out = []
    for account in live:
        for row in rows[account.id]:
            stored = await _open(session, vault, account, row)
            if since is None or stored.at >= since:
                out.append(
                    KeyChangeOut(
                        account_id=account.id,
                        seq=stored.entry.seq,
                        kind=stored.entry.kind,
                        device_id=stored.entry.device_id or None,
                        at=stored.at,
                    )
                )
    out.sort(key=lambda c: (c.at, c.account_id, c.seq))
    return out
