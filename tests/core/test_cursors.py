"""Sealed cursors: they open only in their own scope, under their own key, and show nothing."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import cursors
from app.core.cursors import InvalidCursor

KEY = cursors.cursor_key(b"k" * 32)
parts = st.one_of(st.text(max_size=40), st.integers(min_value=-(2**62), max_value=2**62))
positions = st.lists(parts, min_size=1, max_size=4).map(tuple)
scopes = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=3)


def _sealable(position: tuple[str | int, ...]) -> bool:
    try:
        cursors.seal(KEY, ["rooms"], position)
    except ValueError:
        return False
    return True


#: Positions a cursor can carry (the test below holds that only these are sealed).
sealable = positions.filter(_sealable)


@given(scopes, positions)
def test_a_cursor_opens_to_its_position(scope: list[str], position: tuple[str | int, ...]) -> None:
    try:
        cursor = cursors.seal(KEY, scope, position)
    except ValueError:
        # Only a position too long for any cursor `open_` accepts is refused, up front.
        plain = json.dumps(list(position), separators=(",", ":"), ensure_ascii=True)
        assert len(plain) > cursors.MAX_CURSOR_CHARS * 3 // 4 - 1 - 12 - 16 - 32
        return
    assert cursors.open_(KEY, scope, cursor) == position
    assert cursor.isascii()
    assert "=" not in cursor
    assert "+" not in cursor
    assert "/" not in cursor


@given(scopes, scopes, sealable)
def test_a_cursor_does_not_open_in_another_scope(
    scope: list[str], other: list[str], position: tuple[str | int, ...]
) -> None:
    cursor = cursors.seal(KEY, scope, position)
    if other != scope:
        with pytest.raises(InvalidCursor):
            cursors.open_(KEY, other, cursor)


@given(sealable)
def test_a_cursor_does_not_open_under_another_key(position: tuple[str | int, ...]) -> None:
    cursor = cursors.seal(KEY, ["rooms"], position)
    with pytest.raises(InvalidCursor):
        cursors.open_(cursors.cursor_key(b"x" * 32), ["rooms"], cursor)


@given(sealable, st.data())
def test_a_changed_cursor_is_refused(position: tuple[str | int, ...], data: st.DataObject) -> None:
    cursor = cursors.seal(KEY, ["rooms"], position)
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    changed = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor):
        cursors.open_(KEY, ["rooms"], changed)


@given(st.text(max_size=600))
def test_any_text_is_refused_without_raising_anything_else(text: str) -> None:
    with pytest.raises(InvalidCursor):
        cursors.open_(KEY, ["rooms"], text)


def test_a_cursor_shows_nothing_of_its_position() -> None:
    room_id = "7d2c9a4e-6b1f-4e8a-9c3d-1f5e7a9b2c40"
    micros = 1795550000000000
    one = cursors.seal(KEY, ["rooms", "me"], (0, micros, room_id))
    two = cursors.seal(KEY, ["rooms", "me"], (0, micros, room_id))
    assert one != two  # a fresh nonce each time: equal positions do not show as equal
    raw = base64.urlsafe_b64decode(one + "=" * (-len(one) % 4))
    for clear in (room_id.encode(), str(micros).encode(), room_id.replace("-", "").encode()):
        assert clear not in raw
        assert clear.decode() not in one
    # Lengths come in 32-byte steps: a short and a longer id look alike.
    short = cursors.seal(KEY, ["rooms"], ("a",))
    longer = cursors.seal(KEY, ["rooms"], ("a" * 20,))
    assert len(short) == len(longer)


def test_a_random_blob_of_the_right_shape_is_refused() -> None:
    blob = bytes([cursors.VERSION]) + os.urandom(60)
    with pytest.raises(InvalidCursor):
        cursors.open_(KEY, ["rooms"], base64.urlsafe_b64encode(blob).decode())


@given(st.lists(st.uuids().map(str), min_size=1, max_size=2), st.integers(0, 2**62))
def test_the_positions_lists_use_always_fit(ids: list[str], micros: int) -> None:
    """What the lists sort by (ids and times in microseconds) always makes a cursor."""
    position: tuple[str | int, ...] = (micros, *ids, micros)
    assert cursors.open_(KEY, ["rooms", ids[0]], cursors.seal(KEY, ["rooms", ids[0]], position))
