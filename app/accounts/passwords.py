"""Password rules: length and a guessability check (hashing is `app.core.passwords`).

NIST SP 800-63B: at least 12 characters here, at most MAX_LENGTH (256), and refuse
passwords found in lists of common or breached passwords. zxcvbn ships those
frequency lists and scores guessability offline; a password it finds in its
password list, or scores 0–1 ("too guessable"), is refused.
"""

from __future__ import annotations

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from app.core.errors import WeakPassword
from app.core.passwords import MAX_LENGTH

MIN_LENGTH = 12
#: The most zxcvbn scores (its `max_length`).
ZXCVBN_MAX = 72

_COMMON = frozenset(FREQUENCY_LISTS["passwords"])


def check_strength(password: str, *, personal: list[str]) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"Passwords are {MIN_LENGTH} to {MAX_LENGTH} characters long.")
    if password.lower() in _COMMON:
        raise WeakPassword("This password is on a list of common passwords.")
    # zxcvbn refuses (ValueError) anything past its 72 characters, and its cost
    # grows with the length: score the first 72. A long password is not weak
    # for being long; one whose first 72 characters are weak is weak.
    score = zxcvbn(password[:ZXCVBN_MAX], user_inputs=[p for p in personal if p])["score"]
    if score < 2:
        raise WeakPassword("This password is too easy to guess.")
