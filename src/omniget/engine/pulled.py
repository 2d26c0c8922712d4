"""A plain (sync) list of entries whose next one may take long to come, taken off the event
loop: a generator that fetches its next page (``extract(url)``'s) would stop the loop
while it waits, every file in flight with it, and no stop (Ctrl+C, ``cancel``, a
cancelled task) could be seen until the page came."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["OffLoop", "may_block"]

T = TypeVar("T")

#: Containers in memory and their iterators: the next entry is there already.
_CONTAINERS: tuple[Iterable[object], ...] = ([], (), range(0), "", b"", {}, set(), {}.values(),
                                             {}.items())
_IN_MEMORY: tuple[type, ...] = (Collection, *{type(iter(c)) for c in _CONTAINERS})


def may_block(entries: Iterable[object]) -> bool:
    """Whether taking the next entry may wait (anything but a container in memory, or
    an iterator of one): those are taken with :class:`OffLoop`."""
    return not isinstance(entries, _IN_MEMORY)


class OffLoop(Generic[T]):
    """``entries`` as an async iterator: each ``next()`` on a thread of its own, only when
    the next entry is asked for (as lazy as the plain loop), the loop free meanwhile; a
    cancel ends the wait at once. A ``next()`` still running then ends on that thread,
    which lets go of the entries after it (it is a daemon: it holds up no exit).
    :meth:`close` when done (the thread ends)."""

    def __init__(self, entries: Iterable[T]) -> None:
        self._entries: Iterator[T] | None = iter(entries)
        self._asks: queue.SimpleQueue[asyncio.Future[T] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ended = False  # (the entries ended, or raised: the thread is gone)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._ended:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, args=(loop,),
                                            name="omniget-list", daemon=True)
            self._thread.start()
        asked: asyncio.Future[T] = loop.create_future()
        self._asks.put(asked)
        try:
            return await asked
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._ended = True
            raise

    def close(self) -> None:
        self._asks.put(None)

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        entries = self._entries
        self._entries = None  # (this thread's alone: let go of at its end)
        assert entries is not None
        while (asked := self._asks.get()) is not None:
            try:
                got: T | BaseException = next(entries)
            except StopIteration:
                got = StopAsyncIteration()
            except BaseException as exc:  # (given to the one who asked)
                got = exc
            try:
                loop.call_soon_threadsafe(_answer, asked, got)
            except RuntimeError:  # the loop is closed: no one waits any more
                return
            if isinstance(got, BaseException):
                return


def _answer(asked: asyncio.Future[T], got: T | BaseException) -> None:
    if asked.done():  # (cancelled: its entry is not wanted now)
        return
    if isinstance(got, BaseException):
        asked.set_exception(got)
    else:
        asked.set_result(got)
