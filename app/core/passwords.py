"""Password hashing: argon2id, its cost a setting (OWASP's by default).

Production refuses a cost below one of OWASP's argon2id rows (Password
Storage Cheat Sheet); tests and development may lower it. A stored hash
names its own parameters, so hashes made under an older cost still verify.

Hashing is bounded: argon2id takes `memory_kib` KiB per hash, so a flood of
log-ins must not run an unbounded number at once. Hashes run on an executor
of their own (`concurrency` threads, so they cannot starve the default pool
that other code's `asyncio.to_thread` uses), at most `queue` more wait for a
thread, and anything beyond is refused at once with 503 `busy` and
Retry-After: a quick answer the client can retry, instead of a slow one that
holds memory. When a burst ends, freed memory is given back to the system
(`release_memory`): glibc otherwise keeps the arenas' freed pages, and RSS
stays at the burst's peak.

A log-in does not hash a password again at a new cost: writing the account's
row in the log-in's transaction would tie the account to its new log-in
through the row's transaction id (xmin) in a stolen database. A new cost
reaches a password when it is next set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TypeVar

from argon2 import PasswordHasher as Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.core.errors import ServiceUnavailable

T = TypeVar("T")

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
#: How much less the hashing threads get of a busy CPU than the event loop
#: (their nice value on Linux): a flood of hashes must not slow every other
#: request, which the event loop serves.
HASHING_NICENESS = 10
#: The hasher and the task holding a place taken by `reserve`, while it holds
#: it (a task started meanwhile copies the variable, but is another task).
_reserved: ContextVar[tuple[object, object] | None] = ContextVar(
    "confide_password_reserved", default=None
)

#: Seconds a refused client is told to wait: a hash takes tens of milliseconds,
#: so the queue has drained long before.
BUSY_RETRY_AFTER_S = 1


def default_concurrency() -> int:
    """Two hashes per core: argon2id keeps a core busy, and a second hides a wait."""
    return 2 * (os.cpu_count() or 1)


class PasswordsBusy(ServiceUnavailable):
    """Every password-hashing slot and queue place is taken: retry after `Retry-After`."""

    code, title = "busy", "Too busy to check a password"

    def __init__(self) -> None:
        super().__init__(
            "Too many passwords are being checked right now; try again shortly.",
            retry_after=BUSY_RETRY_AFTER_S,
        )


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only: musl and others have none
    except (OSError, AttributeError, TypeError):
        return None
    return libc


_LIBC = _load_libc()


def _lower_priority() -> None:
    """Run this hashing thread at a lower priority (Linux: nice is per thread)."""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def release_memory() -> None:
    """Give freed heap pages back to the system (glibc's `malloc_trim`); elsewhere nothing.

    argon2's blocks are freed after each hash, but glibc keeps freed memory in
    its per-thread arenas for reuse, and after a burst RSS would stay at its peak.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def meets_owasp(memory_kib: int, time_cost: int) -> bool:
    return any(memory_kib >= m and time_cost >= t for m, t in OWASP_MINIMUMS)


class PasswordHasher:
    def __init__(
        self,
        memory_kib: int = DEFAULT_MEMORY_KIB,
        time_cost: int = DEFAULT_TIME_COST,
        parallelism: int = 1,
        *,
        concurrency: int | None = None,
        queue: int | None = None,
    ) -> None:
        self.concurrency = concurrency or default_concurrency()
        #: Hashes that may wait for a thread; beyond them, `PasswordsBusy`.
        self.queue = self.concurrency if queue is None else queue
        self._executor = ThreadPoolExecutor(
            self.concurrency, thread_name_prefix="argon2", initializer=_lower_priority
        )
        #: Hashes running or waiting (one event loop's count: a process runs one).
        self._admitted = 0
        self.argon2 = Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        # A real hash of a random password, at the same cost: verifying against
        # it when the email is unknown costs what a real check costs.
        self._dummy = self.argon2.hash("confide-dummy-password-for-timing")

    @property
    def admitted(self) -> int:
        """Hashes running or waiting for a thread now."""
        return self._admitted

    @property
    def full(self) -> bool:
        """Whether a new hash would be refused now (every place taken)."""
        return self._admitted >= self.concurrency + self.queue

    @contextlib.contextmanager
    def reserve(self) -> Iterator[None]:
        """Take a place for the hash a request will make, before its other work.

        A log-in asks the database for the account before it hashes: taking the
        place first refuses the excess (`PasswordsBusy`) before it holds a
        database connection, instead of after. A hash inside the block uses
        the place; without a block, `hash` and `verify` take one themselves.
        """
        holder = (self, asyncio.current_task())
        if _reserved.get() == holder:
            yield
            return
        self._admit()
        token = _reserved.set(holder)
        try:
            yield
        finally:
            _reserved.reset(token)
            self._release()

    def _admit(self) -> None:
        if self.full:
            raise PasswordsBusy()
        self._admitted += 1

    def _release(self) -> None:
        self._admitted -= 1
        if self._admitted == 0:
            # The burst is over: its arenas' pages go back, on a hashing
            # thread (a trim walks every arena), not on the event loop.
            with contextlib.suppress(RuntimeError):  # closed: the process is ending
                self._executor.submit(release_memory)

    async def _run(self, work: Callable[[], T]) -> T:
        with self.reserve():
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def close(self) -> None:
        """Stop the hashing threads (the process is ending)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self.argon2.hash(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; with no hash, the same work and False."""

        def check() -> bool:
            try:
                return self.argon2.verify(password_hash or self._dummy, password) and bool(
                    password_hash
                )
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await self._run(check)
