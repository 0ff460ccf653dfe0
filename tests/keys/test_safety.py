"""Safety numbers: symmetric, deterministic, and changed by either key."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from app.keys.safety import GROUPS, groups, half, safety_number
from app.keys.statements import frame

keys = st.binary(min_size=65, max_size=65)
ids = st.uuids().map(str)
fast = settings(max_examples=25, deadline=None)


@fast
@given(a=keys, a_id=ids, b=keys, b_id=ids)
def test_both_sides_get_the_same_twelve_groups(a: bytes, a_id: str, b: bytes, b_id: str) -> None:
    number = safety_number(a, a_id, b, b_id)
    assert number == safety_number(b, b_id, a, a_id)
    assert number == safety_number(a, a_id, b, b_id)
    shown = groups(number)
    assert len(shown) == GROUPS
    assert all(len(g) == 5 and g.isdigit() for g in shown)


@fast
@given(a=keys, a_id=ids, b=keys, b_id=ids, other=keys)
def test_a_changed_key_changes_the_number(
    a: bytes, a_id: str, b: bytes, b_id: str, other: bytes
) -> None:
    if other in (a, b):
        return
    number = safety_number(a, a_id, b, b_id)
    assert safety_number(other, a_id, b, b_id) != number
    assert safety_number(a, a_id, other, b_id) != number


def test_the_documented_computation() -> None:
    key, account = b"\x04" + bytes(range(64)), "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"
    digest = hashlib.sha512(
        frame(b"confide safety number v1") + frame(key) + frame(account.encode())
    ).digest()
    for _ in range(5200):
        digest = hashlib.sha512(digest + key).digest()
    expected = "".join(
        str(int.from_bytes(digest[i : i + 5], "big") % 100000).zfill(5) for i in range(0, 30, 5)
    )
    assert half(key, account) == expected
    other = half(b"\x04" + bytes(64), account)
    assert safety_number(key, account, b"\x04" + bytes(64), account) == min(expected, other) + max(
        expected, other
    )


def test_a_fixed_vector_for_other_implementations() -> None:
    # Also in docs/PROTOCOL.md: an SDK must print exactly this.
    a = b"\x04" + bytes(range(64))
    b = b"\x04" + bytes(range(64, 128))
    number = safety_number(
        a, "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11", b, "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10"
    )
    assert " ".join(groups(number)) == (
        "16303 91880 36754 24548 25302 13564 75408 11999 90577 79418 65233 38369"
    )
