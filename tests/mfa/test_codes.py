"""Property tests of the pure rules: the TOTP step window and replay, recovery code forms."""

from __future__ import annotations

import pyotp
from hypothesis import given
from hypothesis import strategies as st

from app.mfa import codes

SECRET = pyotp.random_base32(32)
times = st.integers(min_value=10**9, max_value=4 * 10**9)


@given(times, st.integers(min_value=-5, max_value=5), st.none() | st.integers(-6, 6))
def test_a_code_is_accepted_within_one_step_and_never_at_or_before_the_last(
    now: int, offset: int, last_offset: int | None
) -> None:
    current = codes.step_at(now)
    step = current + offset
    last = None if last_offset is None else current + last_offset
    code = codes.code_at_step(SECRET, step)
    accepted = codes.accepted_step(SECRET, code, now, last)
    # Another step of the window may share the code by chance (1 in a million).
    collides = any(
        codes.code_at_step(SECRET, s) == code for s in range(current - 1, current + 2) if s != step
    )
    if abs(offset) <= 1 and (last is None or step > last):
        assert accepted is not None
        assert accepted == step or collides
    elif not collides:
        assert accepted is None
    if accepted is not None:
        assert last is None or accepted > last
        assert abs(accepted - current) <= 1


@given(times, st.text(max_size=10))
def test_anything_but_six_digits_is_refused(now: int, code: str) -> None:
    if len(code) == 6 and code.isascii() and code.isdigit():
        return
    assert codes.accepted_step(SECRET, code, now, None) is None


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16))
def test_recovery_codes_round_trip_through_format_and_typing(raw: str) -> None:
    shown = codes.format_recovery(raw)
    assert len(shown) == 19
    assert shown.count("-") == 3
    for typed in (shown, shown.upper(), raw, " ".join(shown.split("-")), f" {shown} "):
        assert codes.normalise_recovery(typed) == raw
        assert codes.hash_recovery(typed) == codes.hash_recovery(shown)


@given(st.text(max_size=30))
def test_what_is_not_a_recovery_code_normalises_to_nothing(text: str) -> None:
    raw = codes.normalise_recovery(text)
    if raw is not None:
        assert len(raw) == 16
        assert codes.format_recovery(raw).replace("-", "") == raw


def test_new_recovery_codes_are_ten_distinct_formatted_codes() -> None:
    fresh = codes.new_recovery_codes()
    assert len(set(fresh)) == 10
    assert all(codes.normalise_recovery(code) is not None for code in fresh)
