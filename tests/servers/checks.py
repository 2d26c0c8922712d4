"""Small checks the tests share: waiting for a condition, and what a resume journal
claims for the files it has not seen finish."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from omniget.engine.journal import FILENAME, Journal

__all__ = ["recorded", "wait_for"]


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``cond`` until it holds; AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def recorded(state: Path) -> int:
    """Bytes the journal in ``state`` has recorded as written, for unfinished files (0
    when there is no journal yet)."""
    if not (state / FILENAME).exists():
        return 0
    with Journal.in_dir(state) as journal:
        return sum(end - begin for key, _ in journal.unfinished()
                   for begin, end in journal.spans(key))
