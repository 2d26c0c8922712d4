"""The shared --limit-rate budget, on a fake clock: it starts empty (no free burst at a
run's start), lets a read through while not in debt, and says what is owed."""

from __future__ import annotations

import pytest

from omniget.engine.ratelimit import BURST, RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)  # (a wait of a rounding error: not forever)


def test_takes_while_not_in_debt_then_waits_for_the_debt() -> None:
    clock = Clock()
    rate = RateLimit(1000, clock)
    clock.now += 1  # (it starts empty: a burst is saved up while idle)
    assert rate.take(int(1000 * BURST)) == 0.0  # the saved-up burst
    assert rate.take(500) == 0.0  # not in debt yet: granted, now 500 in debt
    assert rate.take(10) == pytest.approx(0.5)  # wait until the debt is paid
    clock.now += 0.25
    assert rate.take(10) == pytest.approx(0.25)
    clock.now += 0.25
    assert rate.take(10) == 0.0


def test_average_rate_holds_over_many_takers() -> None:
    clock = Clock()
    rate = RateLimit(10_000, clock)
    got = 0
    for step in range(10_000):  # three transfers ask in turn every millisecond
        clock.now += 0.001 if step % 3 == 0 else 0.0
        if rate.take(16_384) == 0.0:
            got += 16_384
    elapsed = 10_000 // 3 * 0.001
    assert 0.8 * 10_000 * elapsed <= got <= 10_000 * elapsed + 10_000 * BURST + 16_384 * 3


def test_idle_time_saves_at_most_the_burst() -> None:
    clock = Clock()
    rate = RateLimit(1000, clock)
    clock.now += 60
    rate.take(0)
    assert rate.tokens == pytest.approx(1000 * BURST)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimit(0)


def test_reads_keep_to_the_rate_from_the_first_and_the_debt_is_said() -> None:
    clock = Clock()
    rate = RateLimit(1024, clock)
    start, got = clock.now, 0
    while got < 3 * 1024:  # 3 s' worth, in reads of 128 bytes (1/8 s)
        wait = rate.take(128)
        if wait:
            clock.sleep(wait)
        else:
            got += 128
    # the last read was taken at 2.875 s; the transfer ends once it is paid for, at 3 s
    assert clock.now - start == pytest.approx(2.875, abs=1e-3)
    assert rate.owed() == pytest.approx(0.125, abs=1e-3)
    clock.sleep(rate.owed())
    assert rate.owed() == 0.0


def test_nothing_is_owed_while_the_budget_is_unspent() -> None:
    clock = Clock()
    rate = RateLimit(1000, clock)
    assert rate.owed() == 0.0
    clock.now += 5.0
    assert rate.take(50) == 0.0 and rate.owed() == 0.0  # (saved up: 0.1 s' worth at most)
    assert rate.take(100) == 0.0 and rate.owed() == pytest.approx(0.05)
