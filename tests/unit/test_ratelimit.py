"""The shared --limit-rate budget, on a fake clock."""

from __future__ import annotations

import pytest

from omniget.engine.ratelimit import BURST, RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_takes_while_not_in_debt_then_waits_for_the_debt() -> None:
    clock = Clock()
    rate = RateLimit(1000, clock)
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
