from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniget.engine.retry import (
    Clock,
    FakeClock,
    RetryPolicy,
    SystemClock,
    gave_up,
    retry_call,
)
from omniget.errors import NotFound, RateLimited, TransientError
from omniget.settings import Settings


class Boom(Exception):
    retryable = True


def transient(retry_after: float | None = None) -> TransientError:
    return TransientError("reset", retry_after=retry_after)


policies = st.builds(
    RetryPolicy,
    retries=st.integers(0, 20),
    backoff=st.floats(0, 10),
    factor=st.floats(1, 4),
    max_wait=st.floats(0, 200),
    max_total=st.floats(0, 1000),
    jitter=st.floats(0, 1),
)


# --- pure policy ---


def test_defaults_match_the_brief() -> None:
    p = RetryPolicy()
    assert (p.retries, p.backoff, p.factor, p.max_wait, p.max_total, p.jitter) == (
        5,
        0.5,
        2.0,
        120.0,
        300.0,
        0.25,
    )


def test_exponential_without_jitter() -> None:
    p = RetryPolicy(jitter=0, retries=10, max_total=10_000)
    delays = [p.next_delay(a, transient(), 0.0) for a in range(1, 11)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 32, 64, 120, 120]


def test_gives_up_after_retries() -> None:
    p = RetryPolicy(retries=2, jitter=0)
    assert p.next_delay(2, transient(), 0) == 1.0
    assert p.next_delay(3, transient(), 0) is None


def test_zero_retries_never_retries() -> None:
    assert RetryPolicy().with_retries(0).next_delay(1, transient(), 0) is None


def test_non_retryable_gives_up() -> None:
    p = RetryPolicy()
    assert p.next_delay(1, NotFound("gone"), 0) is None
    assert p.next_delay(1, ValueError("x"), 0) is None
    assert p.next_delay(1, Boom(), 0) is not None  # duck-typed: only .retryable counts


def test_total_bound() -> None:
    p = RetryPolicy(jitter=0, retries=100, max_total=10)
    assert p.next_delay(3, transient(), 8.0) == 2.0  # exactly reaches the bound
    assert p.next_delay(4, transient(), 8.0) is None


def test_retry_after_is_a_floor() -> None:
    p = RetryPolicy(jitter=0)
    assert p.next_delay(1, transient(retry_after=7), 0) == 7
    assert p.next_delay(1, transient(retry_after=0.1), 0) == 0.5
    assert p.next_delay(1, RateLimited("slow", retry_after=3), 0) == 3


def test_retry_after_above_cap_waits_the_cap() -> None:
    p = RetryPolicy(jitter=0, max_wait=120, max_total=7200)
    assert p.next_delay(1, transient(retry_after=3600), 0) == 120


def test_retry_after_beyond_budget_gives_up() -> None:
    p = RetryPolicy(jitter=0, max_wait=120, max_total=300)
    assert p.next_delay(1, transient(retry_after=3600), 0) is None
    assert p.next_delay(1, transient(retry_after=250), 100) is None
    assert p.next_delay(1, transient(retry_after=200), 100) == 120


def test_a_retry_after_beyond_the_budget_says_why_it_was_given_up() -> None:
    """Before: the error kept the server's words alone, read as a first failure."""
    p = RetryPolicy(jitter=0, max_wait=60, max_total=300)
    err = transient(retry_after=3600)
    assert p.next_delay(1, err, 0) is None
    gave_up(err, 1, p, 0)
    assert str(err) == ("reset: gave up at once: a file waits at most 5 min in all "
                        "(retry-max-time); run again later, or raise retry-max-time and "
                        "retry-max-wait above 1 h")
    later = transient(retry_after=250)  # (after two retries, 100 s of waiting)
    assert p.next_delay(3, later, 100) is None
    gave_up(later, 3, p, 100)
    assert str(later) == ("reset: gave up after 2 retries: a file waits at most 5 min in all "
                          "(retry-max-time), 3 min of it left; run again later, or raise "
                          "retry-max-time and retry-max-wait above 4 min")
    plain = transient()  # (the retries ran out: as before)
    gave_up(plain, 6, p, 100)
    assert str(plain) == "reset (gave up after 5 retries)"
    spent = transient(retry_after=3600)  # (so did they here: the wait was not the cause)
    gave_up(spent, 6, p, 100)
    assert str(spent) == "reset (gave up after 5 retries)"
    capped = transient(retry_after=3600)
    capped.max_retries = 1  # (this error's own cap, as a refused connection's)
    gave_up(capped, 2, p, 1)
    assert str(capped) == "reset (gave up after 1 retry)"


def test_an_endless_retry_after_gives_up_at_once_and_says_so() -> None:
    """A source's RateLimited(retry_after=inf) (the HTTP transport takes no more than
    100 years) was an OverflowError as the wait was said."""
    p = RetryPolicy(jitter=0, max_wait=60, max_total=300)
    err = RateLimited("slow down", retry_after=float("inf"))
    assert p.next_delay(1, err, 0) is None
    gave_up(err, 1, p, 0)
    assert str(err).startswith("slow down: gave up at once: a file waits at most 5 min"), err
    assert str(err).endswith(" above 100 years"), err


def test_odd_retry_after_values_are_ignored() -> None:
    p = RetryPolicy(jitter=0)
    for odd in (float("nan"), "12", True, -5):
        err = transient()
        err.retry_after = odd  # type: ignore[assignment]
        assert p.next_delay(1, err, 0) == 0.5


def test_attempt_must_count_failures() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().next_delay(0, transient(), 0)


@pytest.mark.parametrize(
    "kw",
    [{"retries": -1}, {"factor": 0.5}, {"jitter": 1.5}, {"backoff": -1}, {"max_total": -1}],
)
def test_invalid_policies(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kw)  # type: ignore[arg-type]


def test_huge_attempt_does_not_overflow() -> None:
    p = RetryPolicy(factor=10, retries=100_000, jitter=0, max_total=1e9)
    assert p.next_delay(5000, transient(), 0) == 120


def test_from_settings_and_with_retries() -> None:
    s = Settings(retries=9, retry_max_wait=30, retry_max_time=60)
    p = RetryPolicy.from_settings(s)
    assert (p.retries, p.max_wait, p.max_total) == (9, 30, 60)
    q = p.with_retries(2)
    assert q.retries == 2 and p.retries == 9 and q.max_wait == 30


@given(policies, st.integers(1, 30), st.floats(0, 1000), st.integers(0, 2**32))
def test_delay_bounds(p: RetryPolicy, attempt: int, waited: float, seed: int) -> None:
    d = p.next_delay(attempt, transient(), waited, random.Random(seed))
    if attempt > p.retries:
        assert d is None
    if d is not None:
        assert 0 <= d <= p.max_wait
        assert waited + d <= p.max_total
        base = p.backoff_delay(attempt)
        assert base * (1 - p.jitter) - 1e-9 <= d <= base * (1 + p.jitter) + 1e-9


@given(policies, st.integers(1, 30), st.floats(0, 500), st.floats(0, 1000), st.integers())
def test_retry_after_bounds(
    p: RetryPolicy, attempt: int, asked: float, waited: float, seed: int
) -> None:
    d = p.next_delay(attempt, transient(retry_after=asked), waited, random.Random(seed))
    if d is not None:
        assert d <= p.max_wait
        assert d >= min(asked, p.max_wait)
        assert waited + d <= p.max_total
    elif attempt <= p.retries and asked <= p.max_wait and waited + asked <= p.max_total:
        # Then only a (jittered) backoff delay longer than the budget can make it give up.
        longest = min(p.backoff_delay(attempt) * (1 + p.jitter), p.max_wait)
        assert waited + longest > p.max_total - 1e-9
        assert longest > asked - 1e-9


@given(policies, st.integers(1, 29))
def test_backoff_grows(p: RetryPolicy, attempt: int) -> None:
    assert p.backoff_delay(attempt + 1) >= p.backoff_delay(attempt)


@given(policies, st.integers(1, 30), st.floats(0, 100))
def test_non_retryable_always_none(p: RetryPolicy, attempt: int, waited: float) -> None:
    assert p.next_delay(attempt, NotFound("x", retry_after=1), waited) is None


@given(policies, st.integers(0, 2**32))
def test_a_whole_run_is_bounded(p: RetryPolicy, seed: int) -> None:
    rng = random.Random(seed)
    waited, attempt = 0.0, 0
    while True:
        attempt += 1
        d = p.next_delay(attempt, transient(), waited, rng)
        if d is None:
            break
        waited += d
    assert attempt <= p.retries + 1
    assert waited <= p.max_total + 1e-9


# --- clocks ---


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=10.0, wall=1000.0)
    assert (clock.monotonic(), clock.time()) == (10.0, 1000.0)
    clock.advance(5)
    asyncio.run(clock.sleep(2.5))
    asyncio.run(clock.sleep(-1))
    assert (clock.monotonic(), clock.time()) == (17.5, 1007.5)
    assert clock.sleeps == [2.5, 0.0]
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_fake_clock_sleep_lets_others_run() -> None:
    clock = FakeClock()
    seen: list[str] = []

    async def other() -> None:
        seen.append("other")

    async def main() -> None:
        task = asyncio.create_task(other())
        await clock.sleep(100)
        seen.append("after sleep")
        await task

    asyncio.run(main())
    assert seen == ["other", "after sleep"]


def test_system_clock_is_a_clock() -> None:
    clock: Clock = SystemClock()
    a = clock.monotonic()
    asyncio.run(clock.sleep(0))
    assert clock.monotonic() >= a
    assert clock.time() > 1_600_000_000


# --- retry_call ---


def test_retry_call_succeeds_after_failures() -> None:
    clock = FakeClock()
    calls: list[int] = []
    seen: list[tuple[int, str, float]] = []

    async def fn() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise transient()
        return "ok"

    def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        seen.append((attempt, type(error).__name__, delay))

    policy = RetryPolicy(jitter=0)
    assert asyncio.run(retry_call(fn, policy, clock, on_retry)) == "ok"
    assert len(calls) == 3
    assert clock.sleeps == [0.5, 1.0]
    assert seen == [(1, "TransientError", 0.5), (2, "TransientError", 1.0)]
    assert clock.monotonic() == 1.5


def test_retry_call_raises_last_error_when_exhausted() -> None:
    clock = FakeClock()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise TransientError(f"fail {calls}")

    with pytest.raises(TransientError, match="fail 3"):
        asyncio.run(retry_call(fn, RetryPolicy(retries=2, jitter=0), clock))
    assert calls == 3 and clock.sleeps == [0.5, 1.0]


def test_retry_call_does_not_retry_permanent_errors() -> None:
    clock = FakeClock()

    async def fn() -> None:
        raise NotFound("gone")

    with pytest.raises(NotFound):
        asyncio.run(retry_call(fn, RetryPolicy(), clock))
    assert clock.sleeps == []


def test_retry_call_awaits_async_callback_and_honours_retry_after() -> None:
    clock = FakeClock()
    log: list[float] = []
    n = 0

    async def fn() -> int:
        nonlocal n
        n += 1
        if n == 1:
            raise RateLimited("429", retry_after=30)
        return n

    async def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        await asyncio.sleep(0)
        log.append(delay)

    assert asyncio.run(retry_call(fn, RetryPolicy(jitter=0), clock, on_retry)) == 2
    assert log == [30] and clock.sleeps == [30]


def test_retry_call_lets_cancellation_through() -> None:
    clock = FakeClock()

    async def fn() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry_call(fn, RetryPolicy(), clock))
    assert clock.sleeps == []


def test_an_error_can_cap_its_own_retries() -> None:
    p = RetryPolicy(retries=5, jitter=0.0)
    err = TransientError("could not connect")
    err.max_retries = 2
    assert [p.next_delay(n, err, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, None]
    err.max_retries = 9  # the policy's own bound still holds
    assert p.next_delay(6, err, 0.0) is None


# ----- HTTP dates (Retry-After, Last-Modified) ------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        "sun, 06 nov 1994 08:49:37 gmt",
    ],
)
def test_http_date_takes_the_three_forms(value: str) -> None:
    from omniget.engine.transports.base import http_date

    assert http_date(value) == 784111777.0


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "Sun, 06 Nov 1994 08:49 GMT", "Sun, 31 Feb 1994 08:49:37 GMT",
     "Sun, 06 Nox 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 PST", "1994-11-06"],
)
def test_http_date_refuses_what_is_not_one(value: str) -> None:
    from omniget.engine.transports.base import http_date

    assert http_date(value) is None


@given(st.integers(min_value=0, max_value=2**33))
def test_http_date_reads_what_the_stdlib_writes(ts: int) -> None:
    import email.utils

    from omniget.engine.transports.base import http_date

    assert http_date(email.utils.formatdate(ts, usegmt=True)) == float(ts)


def test_a_file_s_waits_are_counted_once_however_many_spans_wait() -> None:
    """retry-max-time is a file's (README: "a file may spend 5 minutes waiting in all"),
    but each span of a split file had a budget of its own: 8 spans, 8 times as long.
    Waits of its spans at the same time count once; one after another, each."""
    from omniget.engine.retry import FileWaits

    waits = FileWaits()
    assert waits.spent(0.0) == 0.0
    waits.add(0.0, 10.0)  # span 1 waits from 0 to 10
    assert waits.spent(0.0) == 0.0  # (a span waiting from 0 too: none of it spent yet)
    assert waits.spent(4.0) == 4.0  # (one from 4: 4 s spent, 6 more shared with span 1)
    waits.add(4.0, 10.0)  # span 2 from 4 to 14: 4 s more
    assert waits.spent(14.0) == 14.0
    waits.add(20.0, 5.0)  # span 1 again, alone, from 20 to 25
    assert waits.spent(30.0) == 19.0
    policy = RetryPolicy(retries=9, max_total=20.0, jitter=0.0)
    later = transient(retry_after=2.0)
    assert policy.next_delay(1, later, waits.spent(30.0)) is None  # (19 + 2 > 20)
    assert policy.next_delay(1, later, waits.spent(24.0)) == 2.0  # (within span 1's wait)
