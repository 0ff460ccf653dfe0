"""Password hashing: argon2id, its cost a setting (OWASP's by default).

Production refuses a cost below one of OWASP's argon2id rows (Password
Storage Cheat Sheet); tests and development may lower it. A stored hash
names its own parameters, so hashes made under an older cost still verify.

A log-in does not hash a password again at a new cost: writing the account's
row in the log-in's transaction would tie the account to its new log-in
through the row's transaction id (xmin) in a stolen database. A new cost
reaches a password when it is next set.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher as Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: OWASP's equivalent argon2id configurations as (memory in KiB, iterations), p=1.
OWASP_MINIMUMS: tuple[tuple[int, int], ...] = (
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
)
DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST = OWASP_MINIMUMS[1]
#: The longest password Confide takes (NIST SP 800-63B asks for at least 64):
#: registration refuses a longer one, log-in refuses it before hashing.
MAX_LENGTH = 256


def meets_owasp(memory_kib: int, time_cost: int) -> bool:
    return any(memory_kib >= m and time_cost >= t for m, t in OWASP_MINIMUMS)


class PasswordHasher:
    def __init__(
        self,
        memory_kib: int = DEFAULT_MEMORY_KIB,
        time_cost: int = DEFAULT_TIME_COST,
        parallelism: int = 1,
    ) -> None:
        self.argon2 = Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        # A real hash of a random password, at the same cost: verifying against
        # it when the email is unknown costs what a real check costs.
        self._dummy = self.argon2.hash("confide-dummy-password-for-timing")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.argon2.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; with no hash, the same work and False."""

        def check() -> bool:
            try:
                return self.argon2.verify(password_hash or self._dummy, password) and bool(
                    password_hash
                )
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)
