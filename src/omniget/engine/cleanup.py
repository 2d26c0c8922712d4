"""Clean-up that a cancel cannot cut short: :func:`to_the_end`.

A task cancelled once goes through its clean-up (the files' last checkpoints, closing
the transports and the journal); a second cancel landing in that clean-up (a program
cancelling again and again, a timeout around a cancel) would stop it half-way, leaving
tasks pending and a journal closed under files still recording. The clean-up runs in a
task of its own, shielded; a cancel that comes meanwhile is raised once it is done."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["to_the_end"]

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """``work``'s result, awaited to its end even if this task is cancelled meanwhile;
    such a cancel is raised then (CancelledError), in place of the result."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # (work itself was cancelled, or raised CancelledError)
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result
