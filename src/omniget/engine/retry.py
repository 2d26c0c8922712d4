"""When to try again, and how long to wait first.

:class:`RetryPolicy` is a pure value object: given how many tries failed, the error and
the time already spent waiting, :meth:`RetryPolicy.next_delay` says how long to wait
before the next try, or ``None`` to give up. It asks the error nothing but
``retryable`` and ``retry_after``. Time comes from an injected :class:`Clock`, so tests
use :class:`FakeClock` and never sleep.

Jitter is *proportional* ("equal jitter" family): the wait is the exponential delay
times a uniform factor in ``[1 - jitter, 1 + jitter]``, never close to zero, so the
growth stays visible and a herd of clients still spreads out. At the cap the factor
only goes down (``[max_wait * (1 - jitter), max_wait]``).

Retry-After: the wait is ``max(backoff delay, retry_after)``, capped at ``max_wait``.
A server asking for more than ``max_wait`` gets the cap and another try (servers often
ask for far more than they need). A server asking for more than the whole remaining
budget (``max_total - waited``) is believed: we give up at once instead of knocking
again while it said it would not be ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from .._frozen import frozen_dataclass
from ..errors import LONGEST_RETRY_AFTER, OmnigetError

if TYPE_CHECKING:
    import random

    from ..settings import Settings

__all__ = [
    "Clock",
    "FakeClock",
    "FileWaits",
    "RetryPolicy",
    "SystemClock",
    "gave_up",
    "retry_call",
]

T = TypeVar("T")


class Clock(Protocol):
    """Where time comes from: a monotonic clock, the wall clock, and sleeping."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told: by :meth:`advance` or by awaiting :meth:`sleep`.

    ``sleep`` advances time at once and yields to the event loop once, so other tasks
    run but nothing really waits. Every sleep is recorded in ``sleeps``.
    """

    def __init__(self, start: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self._mono = start
        self._wall = wall
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._mono += seconds
        self._wall += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


@frozen_dataclass
class RetryPolicy:
    """Bounded exponential backoff with jitter and Retry-After.

    ``retries`` tries after the first; the n-th wait is ``backoff * factor**(n-1)``
    (jittered, capped at ``max_wait``); we give up when the next wait would take the
    total time spent waiting past ``max_total``.
    """

    retries: int = 5
    backoff: float = 0.5
    factor: float = 2.0
    max_wait: float = 120.0
    max_total: float = 300.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not (self.backoff >= 0 and self.max_wait >= 0 and self.max_total >= 0):
            raise ValueError("backoff, max_wait and max_total must be >= 0")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the user's settings ask for (other fields keep their defaults)."""
        return cls(
            retries=settings.retries,
            max_wait=settings.retry_max_wait,
            max_total=settings.retry_max_time,
        )

    def with_retries(self, n: int) -> RetryPolicy:
        return dataclasses.replace(self, retries=n)

    def backoff_delay(self, attempt: int) -> float:
        """The un-jittered wait after ``attempt`` failed tries, capped at ``max_wait``."""
        try:
            base = self.backoff * self.factor ** (attempt - 1)
        except OverflowError:
            base = math.inf
        return min(base, self.max_wait)

    def next_delay(
        self,
        attempt: int,
        error: BaseException,
        waited: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next try, or None to give up.

        ``attempt`` is how many tries failed so far (1 after the first failure);
        ``waited`` is the time already spent waiting for this unit of work.
        """
        if attempt < 1:
            raise ValueError(f"attempt counts failed tries and starts at 1, got {attempt}")
        if not getattr(error, "retryable", False) or attempt > self.retries:
            return None
        cap = getattr(error, "max_retries", None)
        if isinstance(cap, int) and attempt > cap:
            return None
        remaining = self.max_total - waited
        if rng is None:  # (the random module's own generator)
            import random  # (imported where used: start-up time)

            u = random.uniform(-1.0, 1.0)
        else:
            u = rng.uniform(-1.0, 1.0)
        delay = min(self.backoff_delay(attempt) * (1.0 + self.jitter * u), self.max_wait)
        asked = _retry_after(error)
        if asked is not None:
            if asked > remaining:
                return None  # the server says it will not be ready within our budget
            delay = min(max(delay, asked), self.max_wait)
        delay = max(0.0, delay)
        if delay > remaining:
            return None
        return delay


class FileWaits:
    """A file's time spent waiting to try again, for its retry-max-time: the waits of
    its spans (a split file's) at the same time count once, one after another each.
    Each wait is counted whole when it begins (``until``: when the last one ends)."""

    __slots__ = ("total", "until")

    def __init__(self) -> None:
        self.total = 0.0
        self.until = -math.inf

    def spent(self, now: float) -> float:
        """What a wait beginning at ``now`` finds spent (of those under way, the part
        before ``now``: the rest it shares)."""
        return self.total - max(0.0, self.until - now)

    def add(self, now: float, delay: float) -> None:
        """A wait from ``now`` for ``delay`` seconds."""
        end = now + delay
        self.total += max(0.0, end - max(now, self.until))
        self.until = max(self.until, end)


def gave_up(
    error: BaseException, attempt: int, policy: RetryPolicy | None = None, waited: float = 0.0
) -> None:
    """Say in the message of a retryable error given up on after ``attempt`` failed
    tries how many retries came before (its text alone reads as a first failure); when
    ``policy``'s budget (``waited`` spent of it) was too short for the server's
    Retry-After, say that, and what to do."""
    retries = attempt - 1
    if not isinstance(error, OmnigetError) or not error.retryable:
        return
    tries = f"after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else "at once"
    asked = _retry_after(error)
    cap = error.max_retries if error.max_retries is not None else attempt
    if (policy is not None and asked is not None and attempt <= min(policy.retries, cap)
            and asked > policy.max_total - waited):
        # (the setting names are the config file's: retry_max_time in Settings)
        from .transports.base import duration  # (where used: start-up loads no asyncio)

        left = f", {duration(policy.max_total - waited)} of it left" if waited else ""
        error.message += (f": gave up {tries}: a file waits at most "
                          f"{duration(policy.max_total)} in all (retry-max-time){left}; run "
                          "again later, or raise retry-max-time and retry-max-wait above "
                          f"{duration(asked)}")
    elif retries:
        error.message += f" (gave up {tries})"


def _retry_after(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return min(max(0.0, float(value)), LONGEST_RETRY_AFTER)


OnRetry = Callable[[int, BaseException, float], Awaitable[None] | None]


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    clock: Clock,
    on_retry: OnRetry | None = None,
    *,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` until it succeeds or ``policy`` gives up (the last error is raised).

    Before each wait ``on_retry(attempt, error, delay)`` is called (and awaited when it
    returns an awaitable). Only ``Exception``s are retried: cancellation goes through.
    """
    attempt = 0
    waited = 0.0
    while True:
        try:
            return await fn()
        except Exception as error:
            attempt += 1
            delay = policy.next_delay(attempt, error, waited, rng)
            if delay is None:
                gave_up(error, attempt, policy, waited)
                raise
            if on_retry is not None:
                result = on_retry(attempt, error, delay)
                if inspect.isawaitable(result):
                    await result
            await clock.sleep(delay)
            waited += delay
