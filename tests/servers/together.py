"""Calls of a function made in four processes at the same moment (tests of runs that open
one file at once). Forkserver, not fork: the test process has threads, which Python 3.12+
warns of."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_barrier: Any = None  # (the one the pool's processes share)


def _share(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def wait() -> None:
    """In a worker: wait until the other three reach this point too."""
    _barrier.wait(10)


def in_four(fn: Callable[[str], T], args: Iterable[str]) -> list[T]:
    """``fn`` (a module-level function that calls :func:`wait`) over ``args`` in four
    processes, one call at a time each."""
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(4, initializer=_share, initargs=(ctx.Barrier(4),)) as pool:
        return pool.map(fn, args, chunksize=1)
