"""The key-log verifier: a valid log verifies in any split; a rewritten one does not."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.keys.log import (
    DEVICE_ADDED,
    DEVICE_REVOKED,
    IDENTITY_RESET,
    IDENTITY_SET,
    ZERO_HASH,
    Entry,
    LogBroken,
    LogState,
    check_head,
    entry_bytes,
    extend,
    make_entry,
)
from app.keys.statements import device_statement
from tests.fixtures.identity import point, sign

_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _key(seed: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(seed % (_ORDER - 1) + 1, ec.SECP256R1())


def build(account_id: str, ops: list[tuple[str, int]]) -> list[Entry]:
    """A valid log: identity_set, then `ops` (add / revoke / reset), each with a seed."""
    identity = _key(1)
    entries = [make_entry(account_id, 1, IDENTITY_SET, ZERO_HASH, identity_key=point(identity))]
    state = extend(LogState(account_id), entries)
    for op, seed in ops:
        seq, prev = state.seq + 1, state.head
        if op == "revoke" and state.devices:
            device_id = sorted(state.devices)[seed % len(state.devices)]
            entry = make_entry(account_id, seq, DEVICE_REVOKED, prev, device_id=device_id)
        elif op == "reset":
            identity = _key(seed + 2)
            entry = make_entry(account_id, seq, IDENTITY_RESET, prev, identity_key=point(identity))
        else:
            device_id = str(uuid.UUID(bytes=hashlib.sha256(f"{seed}:{seq}".encode()).digest()[:16]))
            signing_key = point(_key(seed + 10_000))
            public_key = hashlib.sha256(str(seed).encode()).digest()
            statement = device_statement(account_id, device_id, signing_key, public_key)
            entry = make_entry(
                account_id,
                seq,
                DEVICE_ADDED,
                prev,
                device_id=device_id,
                signing_key=signing_key,
                public_key=public_key,
                signature=sign(identity, statement),
            )
        entries.append(entry)
        state = extend(state, [entry])
    return entries


ACCOUNT = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"
ops = st.lists(
    st.tuples(st.sampled_from(["add", "add", "revoke", "reset"]), st.integers(0, 2**32)),
    max_size=8,
)


def served(state: LogState, entries: list[Entry], head: Entry) -> None:
    """What a client does with a fetched range and the signed head."""
    check_head(extend(state, entries), head.seq, head.hash)


slow = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_entry_encoding_is_the_documented_one() -> None:
    encoded = entry_bytes(ACCOUNT, 2, DEVICE_REVOKED, b"\x11" * 32, device_id=ACCOUNT)
    assert encoded == (
        b"\x00\x00\x00\x12confide key log v1"
        + (2).to_bytes(8, "big")
        + b"\x00\x00\x00\x0edevice_revoked"
        + b"\x00\x00\x00\x24" + ACCOUNT.encode()
        + b"\x00\x00\x00\x24" + ACCOUNT.encode()
        + b"\x00\x00\x00\x00" * 4
        + b"\x11" * 32
    )  # fmt: skip
    assert make_entry(ACCOUNT, 2, DEVICE_REVOKED, b"\x11" * 32, device_id=ACCOUNT).hash == (
        hashlib.sha256(encoded).digest()
    )


@slow
@given(ops=ops, data=st.data())
def test_a_log_verifies_whole_and_from_any_point(
    ops: list[tuple[str, int]], data: st.DataObject
) -> None:
    entries = build(ACCOUNT, ops)
    whole = extend(LogState(ACCOUNT), entries)
    check_head(whole, len(entries), entries[-1].hash)
    k = data.draw(st.integers(0, len(entries)))
    known = extend(LogState(ACCOUNT), entries[:k])
    assert extend(known, entries[k:]) == whole


@slow
@given(ops=ops, data=st.data())
def test_a_changed_entry_fails(ops: list[tuple[str, int]], data: st.DataObject) -> None:
    entries = build(ACCOUNT, ops)
    i = data.draw(st.integers(0, len(entries) - 1))
    name = data.draw(
        st.sampled_from(
            ["kind", "device_id", "identity_key", "signing_key", "public_key", "signature"]
        )
    )
    old = entries[i]
    value = getattr(old, name)
    new_value: object
    if name == "kind":
        new_value = DEVICE_REVOKED if old.kind != DEVICE_REVOKED else DEVICE_ADDED
    elif isinstance(value, str):
        new_value = str(uuid.uuid4())
    else:
        new_value = value + b"\x00" if value else b"\x01"
    changes: dict[str, Any] = {name: new_value}
    changed = dataclasses.replace(old, **changes)
    # As served (its hash left as it was), the entry's hash no longer matches.
    with pytest.raises(LogBroken):
        extend(LogState(ACCOUNT), [*entries[:i], changed, *entries[i + 1 :]])
    # Re-hashed: the next entry, or the signed head, no longer follows.
    rehashed = make_entry(
        ACCOUNT,
        changed.seq,
        changed.kind,
        changed.prev_hash,
        device_id=changed.device_id,
        identity_key=changed.identity_key,
        signing_key=changed.signing_key,
        public_key=changed.public_key,
        signature=changed.signature,
    )
    with pytest.raises(LogBroken):
        served(LogState(ACCOUNT), [*entries[:i], rehashed, *entries[i + 1 :]], entries[-1])


@slow
@given(ops=ops.filter(lambda o: len(o) >= 1), data=st.data())
def test_a_dropped_entry_fails(ops: list[tuple[str, int]], data: st.DataObject) -> None:
    entries = build(ACCOUNT, ops)
    i = data.draw(st.integers(0, len(entries) - 1))
    dropped = entries[:i] + entries[i + 1 :]
    with pytest.raises(LogBroken):
        served(LogState(ACCOUNT), dropped, entries[-1])
    # Dropping the tail leaves a valid prefix, which the signed head exposes.
    with pytest.raises(LogBroken):
        served(LogState(ACCOUNT), entries[:-1], entries[-1])


@slow
@given(common=ops, left=ops.filter(bool), right=ops.filter(bool), data=st.data())
def test_a_fork_fails_for_whoever_saw_the_other_branch(
    common: list[tuple[str, int]],
    left: list[tuple[str, int]],
    right: list[tuple[str, int]],
    data: st.DataObject,
) -> None:
    a = build(ACCOUNT, common + left)
    b = build(ACCOUNT, common + [(op, seed + 1) for op, seed in right])
    shared = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if shared is None:
        return  # one branch is a prefix of the other: no fork
    seen_a = extend(LogState(ACCOUNT), a[: data.draw(st.integers(shared + 1, len(a)))])
    with pytest.raises(LogBroken):
        served(seen_a, b[seen_a.seq :], b[-1])


def test_rules_of_the_kinds() -> None:
    entries = build(ACCOUNT, [("add", 1), ("add", 2)])
    state = extend(LogState(ACCOUNT), entries)
    device = next(iter(state.devices))
    # Revoking an unknown device; adding a device signed by another key; a second set.
    revoke_unknown = make_entry(ACCOUNT, 4, DEVICE_REVOKED, state.head, device_id=str(uuid.uuid4()))
    stranger = _key(99)
    signing_key = point(_key(100))
    device_id = str(uuid.uuid4())
    forged = make_entry(
        ACCOUNT,
        4,
        DEVICE_ADDED,
        state.head,
        device_id=device_id,
        signing_key=signing_key,
        public_key=b"k",
        signature=sign(stranger, device_statement(ACCOUNT, device_id, signing_key, b"k")),
    )
    second_set = make_entry(ACCOUNT, 4, IDENTITY_SET, state.head, identity_key=point(stranger))
    wrong_seq = make_entry(ACCOUNT, 5, DEVICE_REVOKED, state.head, device_id=device)
    for bad in (revoke_unknown, forged, second_set, wrong_seq):
        with pytest.raises(LogBroken) as caught:
            extend(state, [bad])
        assert caught.value.seq == 4
    # Another account's log does not verify as this one's.
    with pytest.raises(LogBroken):
        extend(LogState(str(uuid.uuid4())), entries)
