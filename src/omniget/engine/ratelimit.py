"""``--limit-rate``: one bytes-per-second budget shared by every transfer of a run.

A token bucket that may go into debt: a transfer asks before it takes a chunk; while the
bucket is not in debt it takes the chunk (whatever its size) and the debt is paid back at
``rate``, so the average over any second or more stays at ``rate`` however many transfers
share it. A transfer told to wait pauses (the HTTP transport pauses its libcurl handle).
The bucket starts empty (a run's first tenth of a second is not free), and a transfer
ends once the debt its reads made is paid (:meth:`RateLimit.owed`): its last read is
paced as the others, so a short run keeps to the rate too (a 3 s run at 100 KiB/s took
2.9 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimit"]

BURST = 0.1  # seconds of unused budget that may be saved up


class RateLimit:
    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = rate
        self.clock = clock
        self.capacity = rate * BURST
        self.tokens = 0.0  # (empty: a run's start is paced as the rest)
        self.stamp = clock()

    def take(self, n: int) -> float:
        """Take ``n`` bytes' worth: 0.0 when granted, else the seconds to wait before
        asking again (nothing is taken then)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 0:
            self.tokens -= n
            return 0.0
        return -self.tokens / self.rate

    def owed(self) -> float:
        """Seconds until the reads taken so far are paid for (0.0: none owed)."""
        tokens = self.tokens + (self.clock() - self.stamp) * self.rate
        return -tokens / self.rate if tokens < 0 else 0.0
