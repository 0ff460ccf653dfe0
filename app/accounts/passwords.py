"""Password rules and hashing: argon2id with OWASP's parameters, and a guessability check.

NIST SP 800-63B: at least 12 characters here, at most 256, and refuse
passwords found in lists of common or breached passwords. zxcvbn ships those
frequency lists and scores guessability offline; a password it finds in its
password list, or scores 0–1 ("too guessable"), is refused.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from app.core.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 256
#: The most zxcvbn scores (its `max_length`).
ZXCVBN_MAX = 72

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])
# A real hash of a random password: verifying against it when the email is
# unknown costs the same time as a real check.
_DUMMY_HASH = _hasher.hash("confide-dummy-password-for-timing")


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


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
