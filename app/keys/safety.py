"""Safety numbers: what two people compare, in person or on a call, to know
that each holds the other's real identity key.

Pure. For each account, a 30-digit half:

    d = SHA-512(frame("confide safety number v1") || frame(identity key) || frame(account id))
    5200 times: d = SHA-512(d || identity key)
    the first 30 bytes of d, in six chunks of 5 bytes; each chunk, read as a
    big-endian unsigned integer modulo 100000, written as 5 decimal digits
    (leading zeros kept)

(`frame` as in `app.keys.statements`: a 4-byte big-endian length, then the
bytes; the identity key is its 65-byte SEC1 point, the account id its
36-character lower-case UUID in ASCII). The safety number is the two halves
in ascending order (as digit strings) one after the other: 60 digits, shown
as 12 groups of 5. Both people compute the same number; a change of either
identity key changes it.
"""

from __future__ import annotations

import hashlib

from app.keys.statements import frame

VERSION = b"confide safety number v1"
ITERATIONS = 5200
GROUPS = 12


def half(identity_key: bytes, account_id: str) -> str:
    """The 30 digits of one account's identity key."""
    digest = hashlib.sha512(
        frame(VERSION) + frame(identity_key) + frame(account_id.encode("ascii"))
    ).digest()
    for _ in range(ITERATIONS):
        digest = hashlib.sha512(digest + identity_key).digest()
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def safety_number(
    identity_key: bytes, account_id: str, other_identity_key: bytes, other_account_id: str
) -> str:
    """The 60-digit safety number of two accounts, the same from either side."""
    return "".join(
        sorted([half(identity_key, account_id), half(other_identity_key, other_account_id)])
    )


def groups(number: str) -> list[str]:
    """The safety number as 12 groups of 5 digits, as people read it."""
    return [number[i : i + 5] for i in range(0, len(number), 5)]
