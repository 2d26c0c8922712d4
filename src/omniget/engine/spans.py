"""Byte-interval bookkeeping: which bytes are done, which are missing, how to split them.

An :data:`Interval` is a half-open ``(start, end)`` pair. Lists of intervals returned
here are *normal*: sorted, non-empty, non-overlapping and non-touching.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

__all__ = [
    "ALIGN",
    "Interval",
    "add",
    "covered",
    "gaps",
    "length",
    "merge",
    "plan_spans",
    "split_largest",
]

Interval = tuple[int, int]
K = TypeVar("K", bound=Hashable)

#: Split points chosen by work stealing are aligned down to this when possible.
ALIGN = 64 * 1024


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort and coalesce overlapping or touching intervals; drop empty ones."""
    out: list[Interval] = []
    for start, end in sorted(intervals):  # (empty ones skipped here: no generator)
        if start >= end:
            continue
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def add(done: Iterable[Interval], interval: Interval) -> list[Interval]:
    """``done`` with ``interval`` added."""
    return merge([*done, interval])


def length(done: Iterable[Interval]) -> int:
    """How many bytes the normal list ``done`` holds (see :func:`covered` for any list)."""
    n = 0
    for start, end in done:  # (a loop: sum() over a generator costs twice as much)
        n += end - start
    return n


def within(done: Iterable[Interval], start: int, end: int) -> int:
    """How many bytes of ``done`` lie in ``[start, end)``."""
    return sum(max(0, min(e, end) - max(s, start)) for s, e in done)


def covered(done: Iterable[Interval]) -> int:
    """How many distinct bytes ``done`` covers."""
    return sum(end - start for start, end in merge(done))


def gaps(done: Iterable[Interval], size: int) -> list[Interval]:
    """The parts of ``[0, size)`` that ``done`` does not cover."""
    out: list[Interval] = []
    pos = 0
    for start, end in merge(done):
        if start >= size:
            break
        if start > pos:
            out.append((pos, start))
        pos = max(pos, end)
    if pos < size:
        out.append((pos, size))
    return out


def plan_spans(gaps: Iterable[Interval], n: int, min_size: int) -> list[Interval]:
    """Cut the missing bytes into about ``n`` spans of roughly equal size.

    The spans tile ``gaps`` exactly. No span is smaller than ``min_size`` unless its
    whole gap is. A span never crosses a hole, so when there are more gaps than ``n``
    every gap becomes one span (the scheduler runs ``n`` at a time and steals work):
    the count is at most ``max(n, len(merge(gaps)))``.
    """
    todo = merge(gaps)
    min_size = max(1, min_size)
    # Start with one span per gap, then keep splitting the gap whose spans are the
    # largest while the split keeps every span >= min_size.
    counts = [1] * len(todo)
    budget = max(1, n) - len(todo)
    heap: list[tuple[float, int]] = [
        (-(e - s), i) for i, (s, e) in enumerate(todo) if (e - s) >= 2 * min_size
    ]
    heapq.heapify(heap)
    while budget > 0 and heap:
        _, i = heapq.heappop(heap)
        counts[i] += 1
        budget -= 1
        length = todo[i][1] - todo[i][0]
        if length // (counts[i] + 1) >= min_size:
            heapq.heappush(heap, (-(length / counts[i]), i))
    out: list[Interval] = []
    for (start, end), c in zip(todo, counts, strict=True):
        length = end - start
        cuts = [start + length * k // c for k in range(c + 1)]
        out.extend(itertools.pairwise(cuts))
    return out


def split_largest(remaining: Mapping[K, Interval], min_size: int) -> tuple[K, int] | None:
    """Work stealing: pick the span with the most bytes left and a point to split it at.

    ``remaining`` maps each active span to what it still has to fetch, ``(pos, end)``.
    Returns ``(key, point)``: the owner keeps ``[pos, point)`` and a new connection takes
    ``[point, end)``. The point is the middle, aligned down to :data:`ALIGN` when both
    halves stay ``>= min_size``. None when no span has ``2 * min_size`` bytes left.
    """
    min_size = max(1, min_size)
    best: tuple[K, Interval] | None = None
    for key, (pos, end) in remaining.items():
        if best is None or end - pos > best[1][1] - best[1][0]:
            best = (key, (pos, end))
    if best is None:
        return None
    key, (pos, end) = best
    if end - pos < 2 * min_size:
        return None
    mid = pos + (end - pos) // 2
    aligned = mid - mid % ALIGN
    if aligned - pos >= min_size and end - aligned >= min_size:
        mid = aligned
    return key, mid
