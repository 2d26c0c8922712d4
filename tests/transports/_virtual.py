"""An event loop on a virtual clock, for the pool's timers (stall checks) in tests whose
point is how long they take: a loaded machine must not move the numbers.

Time stands still (sockets are still waited for, in real time: a server thread's bytes
arrive as they come) except while :meth:`VirtualLoop.fly` runs: then, whenever the loop
would wait and no socket is ready, time jumps to the next timer at once. A test flies
only while nothing is to come from a socket (the server went silent, every byte it sent
is in) and lands as soon as what it waits for happened, before the next real I/O; so the
timers fire in order at their exact times, however slowly the machine runs them.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

REAL_LIMIT = 30.0  # seconds of real time a virtual-time test may take


class _Selector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        assert self.loop is not None
        flight = self.loop.flight()
        if flight == "landed":
            timeout = 0  # (the flight's waiter is to run now)
        if flight != "flying" or timeout is None:
            return super().select(timeout)  # (None: no timer at all, so wait for a socket)
        ready = super().select(0)
        if not ready and timeout > 0:
            self.loop.now += timeout  # to the next timer
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0
        self._until: Callable[[], bool] | None = None
        self._landed: asyncio.Future[None] | None = None

    def time(self) -> float:
        return self.now

    def flight(self) -> str:
        """``flying`` (time may jump now: what a flight waits for has not happened),
        ``landed`` (it just did) or ``ground``."""
        if self._until is None or self._landed is None:
            return "ground"
        if not self._until():
            return "flying"
        self._until = None
        if not self._landed.done():
            self._landed.set_result(None)
        return "landed"

    async def fly(self, until: Callable[[], bool]) -> None:
        """Let time go from timer to timer until ``until()`` (checked each time the loop
        would wait, so it lands before anything else happens)."""
        if until():
            return
        self._landed = self.create_future()
        self._until = until
        try:
            await self._landed
        finally:
            self._until = self._landed = None

    async def jump(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, the timers due meanwhile firing in order."""
        there = asyncio.Event()
        self.call_at(self.now + seconds, there.set)
        await self.fly(there.is_set)


async def set_in_thread(event: threading.Event) -> None:
    """Wait (no timer: virtual time stands still) until a server thread sets ``event``."""
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, event.wait, 30), "the server thread never got there"


def run_virtual(fn: Callable[[VirtualLoop], Awaitable[T]]) -> T:
    """Run ``fn(loop)`` on a fresh :class:`VirtualLoop`; anything the loop reports to its
    exception handler fails the test."""
    seen: list[dict[str, object]] = []
    stuck = threading.Event()

    def give_up(task: asyncio.Task[T]) -> None:
        stuck.set()
        task.cancel()

    async def main(loop: VirtualLoop) -> T:
        loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        task: asyncio.Task[T] = asyncio.current_task()  # type: ignore[assignment]
        # (virtual timeouts never fire while time stands still: a test that waits for
        # something that does not come ends here, in real time, not at pytest's timeout)
        guard = threading.Timer(REAL_LIMIT, loop.call_soon_threadsafe, (give_up, task))
        guard.start()
        try:
            return await fn(loop)
        except asyncio.CancelledError:
            if stuck.is_set():
                raise AssertionError(f"still waiting after {REAL_LIMIT} s of real time") from None
            raise
        finally:
            guard.cancel()

    loop = VirtualLoop()
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        result = runner.run(main(loop))
    assert not seen, [(c.get("message"), c.get("exception")) for c in seen]
    return result
