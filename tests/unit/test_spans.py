from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniget.engine.spans import (
    ALIGN,
    Interval,
    add,
    covered,
    gaps,
    length,
    merge,
    plan_spans,
    split_largest,
)

intervals = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(lambda t: (min(t), max(t))),
    max_size=20,
)


def as_set(ivs: list[Interval]) -> set[int]:
    return {b for s, e in ivs for b in range(s, e)}


def is_normal(ivs: list[Interval]) -> bool:
    return all(s < e for s, e in ivs) and all(a[1] < b[0] for a, b in itertools.pairwise(ivs))


# --- examples ---


@given(intervals)
def test_merge_and_length_as_sets_say(ivs: list[Interval]) -> None:
    out = merge(ivs)
    assert is_normal(out) and as_set(out) == as_set(ivs)
    assert out == merge(iv for iv in ivs)  # (any iterable)
    assert length(out) == covered(ivs) == len(as_set(ivs))
    assert length([]) == 0 and length([(3, 9), (20, 21)]) == 7


def test_merge_examples() -> None:
    assert merge([]) == []
    assert merge([(5, 5), (3, 1)]) == []
    assert merge([(10, 20), (0, 5), (5, 10)]) == [(0, 20)]
    assert merge([(0, 5), (6, 8), (2, 3)]) == [(0, 5), (6, 8)]


def test_gaps_examples() -> None:
    assert gaps([], 10) == [(0, 10)]
    assert gaps([(0, 10)], 10) == []
    assert gaps([(2, 4), (6, 20)], 10) == [(0, 2), (4, 6)]
    assert gaps([(0, 3)], 0) == []


def test_add_and_covered() -> None:
    done = add([(0, 4)], (4, 8))
    assert done == [(0, 8)]
    assert covered(add(done, (2, 12))) == 12
    assert covered([(0, 5), (3, 7)]) == 7


def test_plan_spans_examples() -> None:
    assert plan_spans([], 4, 1) == []
    assert plan_spans([(0, 100)], 4, 10) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert plan_spans([(0, 100)], 4, 40) == [(0, 50), (50, 100)]
    assert plan_spans([(0, 5)], 4, 40) == [(0, 5)]
    # The bigger gap gets the extra connections.
    assert plan_spans([(0, 10), (100, 400)], 4, 10) == [(0, 10), (100, 200), (200, 300), (300, 400)]
    # More gaps than connections: one span per gap.
    assert plan_spans([(0, 1), (2, 3), (4, 5)], 2, 1) == [(0, 1), (2, 3), (4, 5)]


def test_split_largest_examples() -> None:
    mib = 1 << 20
    assert split_largest({}, 1) is None
    assert split_largest({"a": (0, 10)}, 6) is None
    assert split_largest({"a": (0, 10), "b": (20, 40)}, 5) == ("b", 30)
    # Aligned down to 64 KiB when both halves stay big enough.
    key, point = split_largest({1: (100, 100 + 10 * mib)}, mib) or (0, 0)
    assert key == 1 and point % ALIGN == 0 and point == 5 * mib
    # No alignment when it would make a half too small.
    assert split_largest({1: (ALIGN - 10, 2 * ALIGN - 10)}, ALIGN // 2) == (
        1,
        ALIGN + ALIGN // 2 - 10,
    )


# --- properties ---


@given(intervals)
def test_merge_idempotent_and_normal(ivs: list[Interval]) -> None:
    m = merge(ivs)
    assert merge(m) == m
    assert is_normal(m)
    assert as_set(m) == as_set(ivs)


@given(intervals, st.randoms(use_true_random=False))
def test_merge_order_independent(ivs: list[Interval], rnd: random.Random) -> None:
    shuffled = ivs[:]
    rnd.shuffle(shuffled)
    assert merge(shuffled) == merge(ivs)


@given(intervals, st.integers(0, 1200))
def test_gaps_complement_done(done: list[Interval], size: int) -> None:
    g = gaps(done, size)
    assert is_normal(g)
    assert as_set(g) | (as_set(done) & set(range(size))) == set(range(size))
    assert not as_set(g) & as_set(done)
    assert all(s >= 0 and e <= size for s, e in g)


@given(intervals, st.tuples(st.integers(0, 1000), st.integers(0, 1000)))
def test_add_is_union(done: list[Interval], iv: Interval) -> None:
    assert as_set(add(done, iv)) == as_set(done) | as_set([iv])
    assert covered(add(done, iv)) == len(as_set(done) | as_set([iv]))


@given(intervals, st.integers(1, 20), st.integers(1, 300))
def test_plan_spans_tiles_gaps(todo: list[Interval], n: int, min_size: int) -> None:
    spans = plan_spans(todo, n, min_size)
    merged = merge(todo)
    # Exact tiling: sorted, adjacent or separated by holes, no overlap, same bytes.
    assert all(s < e for s, e in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert merge(spans) == merged
    assert sum(e - s for s, e in spans) == sum(e - s for s, e in merged)
    assert len(spans) <= max(n, len(merged))
    for s, e in spans:
        gap = next(g for g in merged if g[0] <= s and e <= g[1])
        assert e - s >= min_size or (s, e) == gap
    # Roughly equal within a gap.
    for g in merged:
        sizes = [e - s for s, e in spans if g[0] <= s and e <= g[1]]
        assert max(sizes) - min(sizes) <= 1


@given(st.integers(1, 10**9), st.integers(1, 64), st.integers(1, 10**6))
def test_plan_spans_uses_the_connections(size: int, n: int, min_size: int) -> None:
    spans = plan_spans([(0, size)], n, min_size)
    assert len(spans) == max(1, min(n, size // min_size))


@given(
    st.dictionaries(
        st.integers(0, 10),
        st.tuples(st.integers(0, 10**8), st.integers(0, 10**8)).map(lambda t: (min(t), max(t))),
        max_size=8,
    ),
    st.integers(0, 10**7),
)
def test_split_point_leaves_both_halves_big(remaining: dict[int, Interval], min_size: int) -> None:
    choice = split_largest(remaining, min_size)
    longest = max((e - s for s, e in remaining.values()), default=0)
    if choice is None:
        assert longest < 2 * max(1, min_size)
        return
    key, point = choice
    pos, end = remaining[key]
    assert end - pos == longest
    assert point - pos >= max(1, min_size) and end - point >= max(1, min_size)
    assert abs(point - (pos + end) // 2) < ALIGN


# --- crash and resume, modelled purely ---


@st.composite
def crash_runs(draw: st.DrawFn) -> tuple[bytes, int, int, int, int, int]:
    size = draw(st.integers(1, 4000))
    source = draw(st.binary(min_size=size, max_size=size))
    n = draw(st.integers(1, 6))
    chunk = draw(st.integers(1, 300))
    every = draw(st.integers(1, 5))  # checkpoint after this many chunks of a span
    seed = draw(st.integers(0, 2**32))
    return source, n, chunk, every, seed, draw(st.integers(0, 10**6))


def download(
    source: bytes,
    out: bytearray,
    journal: list[Interval],
    n: int,
    chunk: int,
    every: int,
    rnd: random.Random,
    crash_at: int | None,
) -> bool:
    """Fetch the gaps of ``journal`` into ``out`` in random order; False when it crashed.

    Spans advance chunk by chunk, interleaved at random; a span's progress reaches the
    journal (the list, replaced in place) only at checkpoints, like the engine's.
    """
    spans = [[s, s, e, 0] for s, e in plan_spans(gaps(journal, len(source)), n, 16)]
    steps = 0
    while True:
        live = [sp for sp in spans if sp[1] < sp[2]]
        if not live:
            break
        sp = rnd.choice(live)
        if crash_at is not None and steps == crash_at:
            return False
        start, pos, end, count = sp
        nxt = min(end, pos + chunk)
        out[pos:nxt] = source[pos:nxt]
        sp[1], sp[3] = nxt, count + 1
        steps += 1
        if sp[3] % every == 0 or nxt == end:
            journal[:] = merge([*journal, (start, nxt)])
    return True


@given(crash_runs())
def test_crash_then_resume_equals_a_clean_run(run: tuple[bytes, int, int, int, int, int]) -> None:
    source, n, chunk, every, seed, crash_at = run
    rnd = random.Random(seed)
    out = bytearray(len(source))
    journal: list[Interval] = []
    crashed = not download(source, out, journal, n, chunk, every, rnd, crash_at % 200)
    if crashed:
        # Whatever was written past the last checkpoint may be garbage after a crash.
        for s, e in gaps(journal, len(source)):
            for i in range(s, e):
                out[i] = rnd.randrange(256)
        before = covered(journal)
        assert download(source, out, journal, n, chunk, every, rnd, None)
        assert covered(journal) >= before
    assert journal == [(0, len(source))]
    assert bytes(out) == source


def test_resume_refetches_at_most_one_interval_per_span() -> None:
    rnd = random.Random(7)
    source = bytes(rnd.randrange(256) for _ in range(10_000))
    out = bytearray(len(source))
    journal: list[Interval] = []
    assert not download(source, out, journal, 4, 100, 3, rnd, 50)
    # 50 chunks written, checkpoints every 3 chunks per span: at most 2 chunks per span lost.
    assert covered(journal) >= 50 * 100 - 4 * 2 * 100


@pytest.mark.parametrize("size", [1, 2, 17, 1 << 20])
def test_plan_spans_single_connection_is_the_gap(size: int) -> None:
    assert plan_spans([(0, size)], 1, 1) == [(0, size)]
