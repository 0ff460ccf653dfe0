"""Token buckets by key (a client's address): a rate with a burst, in bounded memory.

Each key holds `burst` tokens, refilled at `rate_per_s`; a request takes one,
or is refused with the seconds until one is there. Kept in process memory, as
`Throttle` is: each instance limits on its own. At most `max_keys` keys are
held: past that, the least recently seen key is forgotten (its bucket starts
full again), so a flood from many addresses costs bounded memory and the
limit still holds for every address seen recently.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from app.core.clock import Clock

DEFAULT_MAX_KEYS = 65_536


class TokenBuckets:
    def __init__(
        self, clock: Clock, *, rate_per_s: float, burst: int, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_keys >= 1 are required")
        self._clock = clock
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        #: key -> (tokens, when they were counted); least recently seen first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take one token for `key`: 0 when taken, else the seconds until one is there."""
        now = self._clock.time()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        # A clock that went back adds nothing (and takes nothing away).
        tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate_per_s)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait

    def retry_after(self, key: str) -> int:
        """`take`'s wait as whole seconds for Retry-After (at least 1), or 0 when taken."""
        wait = self.take(key)
        return max(1, math.ceil(wait)) if wait > 0 else 0
