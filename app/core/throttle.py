"""Failure counting for log-in throttling (per account and per address).

Counts failures inside a sliding window; past the limit a key is refused
until its oldest counted failure leaves the window. Kept in process memory:
each instance throttles on its own, which bounds a guesser by the number of
instances times the limit.
"""

from __future__ import annotations

from collections import deque

from app.core.clock import Clock

_MAX_KEYS = 100_000


class Throttle:
    def __init__(self, clock: Clock, *, window_s: int) -> None:
        self._clock = clock
        self._window = window_s
        self._failures: dict[str, deque[float]] = {}

    def _live(self, key: str) -> deque[float]:
        now = self._clock.time()
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: str, limit: int) -> int:
        """Seconds until `key` may try again, or 0 when it may now."""
        times = self._live(key)
        if len(times) < limit:
            return 0
        return max(1, int(times[0] + self._window - self._clock.time()) + 1)

    def fail(self, key: str) -> None:
        if len(self._failures) >= _MAX_KEYS:
            for stale in list(self._failures)[: _MAX_KEYS // 10]:
                self._live(stale)
            if len(self._failures) >= _MAX_KEYS:
                self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(key, deque()).append(self._clock.time())

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
