"""An account's key log: entries, their hash chain, and a verifier for clients.

Pure (no database). Every change of an account's keys appends one entry:
`identity_set` (the first identity key), `identity_reset` (a new identity
key; every device of the old one is revoked first), `device_added` (a device
signing key, vouched for by the identity key in force) and `device_revoked`.
An entry's hash is SHA-256 over

    frame("confide key log v1") || seq (8 bytes, big-endian) || frame(kind)
        || frame(account id) || frame(device id) || frame(identity key)
        || frame(signing key) || frame(public key) || frame(signature)
        || prev hash (32 bytes)

(`frame` as in `app.keys.statements`; an absent value is empty; the first
entry's prev hash is 32 zero bytes). The head of a log is its last entry's
seq and hash. `extend` checks that a range of entries carries a known state
forward: consecutive seqs, each entry chained to the one before and hashed
as above, and every rule of the kinds (a device is added under the identity
key in force and signed by it, only an active device is revoked, ...).
A server that changes, drops or reorders an entry, or shows two people two
different logs, fails this check at the first entry a client had not seen
or at the signed head it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from app.keys.statements import device_statement, frame, load_p256, verify

LOG_CONTEXT = b"confide key log v1"
ZERO_HASH = bytes(32)

IDENTITY_SET = "identity_set"
IDENTITY_RESET = "identity_reset"
DEVICE_ADDED = "device_added"
DEVICE_REVOKED = "device_revoked"
KINDS = (IDENTITY_SET, IDENTITY_RESET, DEVICE_ADDED, DEVICE_REVOKED)


class LogBroken(ValueError):
    """The entries do not extend the known state; `seq` is the first one at fault."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"key log entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    prev_hash: bytes
    hash: bytes
    device_id: str = ""
    identity_key: bytes = b""
    signing_key: bytes = b""
    public_key: bytes = b""
    signature: bytes = b""


def entry_bytes(
    account_id: str,
    seq: int,
    kind: str,
    prev_hash: bytes,
    *,
    device_id: str = "",
    identity_key: bytes = b"",
    signing_key: bytes = b"",
    public_key: bytes = b"",
    signature: bytes = b"",
) -> bytes:
    """The canonical encoding an entry's hash covers."""
    if len(prev_hash) != 32:
        raise ValueError("prev hash must be 32 bytes")
    return b"".join(
        [
            frame(LOG_CONTEXT),
            seq.to_bytes(8, "big"),
            frame(kind.encode("ascii")),
            frame(account_id.encode("ascii")),
            frame(device_id.encode("ascii")),
            frame(identity_key),
            frame(signing_key),
            frame(public_key),
            frame(signature),
            prev_hash,
        ]
    )


def make_entry(
    account_id: str,
    seq: int,
    kind: str,
    prev_hash: bytes,
    *,
    device_id: str = "",
    identity_key: bytes = b"",
    signing_key: bytes = b"",
    public_key: bytes = b"",
    signature: bytes = b"",
) -> Entry:
    """The entry with these contents, its hash computed."""
    encoded = entry_bytes(
        account_id,
        seq,
        kind,
        prev_hash,
        device_id=device_id,
        identity_key=identity_key,
        signing_key=signing_key,
        public_key=public_key,
        signature=signature,
    )
    return Entry(
        seq=seq,
        kind=kind,
        prev_hash=prev_hash,
        hash=hashlib.sha256(encoded).digest(),
        device_id=device_id,
        identity_key=identity_key,
        signing_key=signing_key,
        public_key=public_key,
        signature=signature,
    )


@dataclass(frozen=True)
class LogState:
    """What a reader knows of a log after its first `seq` entries."""

    account_id: str
    seq: int = 0
    head: bytes = ZERO_HASH
    identity_key: bytes | None = None
    #: Active device id -> its signing key.
    devices: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))


def _step(state: LogState, entry: Entry) -> LogState:
    seq = state.seq + 1

    def broken(reason: str) -> LogBroken:
        return LogBroken(seq, reason)

    if entry.seq != seq:
        raise broken(f"expected seq {seq}, got {entry.seq}")
    if entry.prev_hash != state.head:
        raise broken("prev hash is not the hash of the entry before (a fork or a rewrite)")
    expected = make_entry(
        state.account_id,
        entry.seq,
        entry.kind,
        entry.prev_hash,
        device_id=entry.device_id,
        identity_key=entry.identity_key,
        signing_key=entry.signing_key,
        public_key=entry.public_key,
        signature=entry.signature,
    )
    if expected.hash != entry.hash:
        raise broken("hash does not match the entry's contents")
    devices = dict(state.devices)
    identity = state.identity_key
    if entry.kind in (IDENTITY_SET, IDENTITY_RESET):
        if (entry.kind == IDENTITY_SET) != (identity is None):
            raise broken(
                f"{entry.kind} where the identity key is {'unset' if identity is None else 'set'}"
            )
        if entry.device_id or entry.signing_key or entry.public_key or entry.signature:
            raise broken("an identity entry carries only the identity key")
        try:
            load_p256(entry.identity_key)
        except ValueError:
            raise broken("the identity key is not a P-256 point") from None
        identity, devices = entry.identity_key, {}
    elif entry.kind == DEVICE_ADDED:
        if identity is None:
            raise broken("a device added before any identity key")
        if not entry.device_id or entry.device_id in devices or entry.identity_key:
            raise broken("a device added twice, or without an id")
        statement = device_statement(
            state.account_id, entry.device_id, entry.signing_key, entry.public_key
        )
        if not verify(identity, statement, entry.signature):
            raise broken("the device is not signed by the identity key in force")
        devices[entry.device_id] = entry.signing_key
    elif entry.kind == DEVICE_REVOKED:
        if entry.device_id not in devices:
            raise broken("revokes a device that is not active")
        if entry.identity_key or entry.signing_key or entry.public_key or entry.signature:
            raise broken("a revocation carries only the device id")
        del devices[entry.device_id]
    else:
        raise broken(f"unknown kind {entry.kind!r}")
    return LogState(
        account_id=state.account_id,
        seq=seq,
        head=entry.hash,
        identity_key=identity,
        devices=MappingProxyType(devices),
    )


def extend(state: LogState, entries: Iterable[Entry]) -> LogState:
    """The state after `entries`, which must follow `state` directly; else LogBroken."""
    for entry in entries:
        state = _step(state, entry)
    return state


def check_head(state: LogState, seq: int, head: bytes) -> None:
    """A signed head (seq, hash) must be where the entries led; else LogBroken."""
    if seq != state.seq or head != state.head:
        raise LogBroken(state.seq + 1 if seq > state.seq else seq, "the signed head is elsewhere")
