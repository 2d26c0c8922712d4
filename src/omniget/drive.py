"""Running the async core from sync code: :func:`run` is ``asyncio.run`` whose Ctrl+C
never cuts the loop short (``download``, ``stream``), :func:`drive` gives an async
generator's items on a loop of its own (``extract``, the CLI's URL lists),
:func:`not_in_a_loop` refuses a blocking call inside a running loop, and
:func:`default_transports` are the transports a call makes of its own when it is given
none."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from .settings import Settings

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from .engine.transports.http import CurlTransport

T = TypeVar("T")
R = TypeVar("R")


def default_transports(settings: Settings) -> dict[str, CurlTransport]:
    from .engine.transports.http import CurlTransport

    http = CurlTransport(
        settings.network,
        max_host_connections=settings.connections_per_host,
        max_total_connections=settings.max_connections,
    )
    return {"http": http, "https": http}


def run(main: Coroutine[Any, Any, T]) -> T:
    """``main`` run to its end on a new event loop, closed after it, as ``asyncio.run``
    does, but for Ctrl+C. asyncio's own SIGINT handler raises KeyboardInterrupt at the
    second Ctrl+C wherever the main thread is: between a journal write's statements, in
    a libcurl callback (a SystemError then), in the loop's own bookkeeping; tasks were
    left pending, the clean-up undone, and at times the process never ended. Here a
    SIGINT only counts: the first cancels ``main``'s task (its clean-up, however often
    cancelled, goes to its end: the files' resume state is saved), later ones change
    nothing more; once the loop is closed, KeyboardInterrupt is raised (what ``main``
    raised or returned meanwhile is dropped: a Ctrl+C stops the program). Off the main
    thread, or under a SIGINT handler of the program's own, Ctrl+C is not ours to take."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        task = loop.create_task(main)
        with _ctrl_c(loop, task) as ctrl_c:
            try:
                try:
                    result = loop.run_until_complete(task)
                finally:
                    _close(loop)
            except BaseException as exc:
                if not ctrl_c.count:
                    raise
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                    raise KeyboardInterrupt from None  # (the cancel was the Ctrl+C's)
                raise KeyboardInterrupt from exc
            if ctrl_c.count:  # (it came too late to stop anything: still a Ctrl+C)
                raise KeyboardInterrupt
            return result
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class _CtrlC:
    """The SIGINT handler of :func:`run`: counts, and has the loop cancel ``task``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task = loop, task
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:  # (from a callback of the loop's: the handler may run
            self.loop.call_soon_threadsafe(self._cancel)  # in the middle of one)

    def _cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()


@contextlib.contextmanager
def _ctrl_c(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[_CtrlC]:
    """A :class:`_CtrlC` for SIGINT while inside (when SIGINT is Python's default
    KeyboardInterrupt on this, the main, thread); the default handler back after."""
    handler = _CtrlC(loop, task)
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield handler
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does after its coroutine: the tasks left are cancelled and waited
    for, then the async generators and the default executor are shut down."""
    left = asyncio.all_tasks(loop)
    if left:
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        for task in left:
            if not task.cancelled() and task.exception() is not None:
                loop.call_exception_handler({
                    "message": "an unhandled exception as omniget's loop closed",
                    "exception": task.exception(), "task": task})
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())


def drive(
    agen: AsyncGenerator[T, None], transports: Mapping[str, CurlTransport]
) -> Generator[T, None, None]:
    """``agen``'s items, driven on a loop of its own; ``transports`` (agen's) close
    when it ends."""
    loop = asyncio.new_event_loop()
    helper: ThreadPoolExecutor | None = None

    def run(call: Callable[[], R]) -> R:
        """``call`` (it runs ``loop``) here; on a helper thread when this thread's own
        loop is running (a coroutine that iterates it; ``download(extract(url))`` reads
        it on a thread of its own: :mod:`omniget.engine.pulled`)."""
        nonlocal helper
        if not _loop_running():
            return call()
        if helper is None:
            from concurrent.futures import ThreadPoolExecutor  # (rare: not at start-up)

            helper = ThreadPoolExecutor(1, thread_name_prefix="omniget-extract")
        return helper.submit(call).result()

    def close() -> None:
        # Nothing more of the listing is wanted: the source's own tasks (the next page,
        # asked for ahead) stop, and the transports close before the loop runs again (a
        # request they have queued would leave on its next turn).
        for task in asyncio.all_tasks(loop):
            task.cancel()
        for transport in {id(t): t for t in transports.values()}.values():
            transport.close()
        try:
            loop.run_until_complete(agen.aclose())
        except asyncio.CancelledError:  # (the source awaited one of them as it closed)
            pass
        _settle(loop)
        loop.close()

    try:
        while True:
            try:
                yield run(lambda: loop.run_until_complete(agen.__anext__()))
            except StopAsyncIteration:
                return
    finally:
        try:
            run(close)
        finally:
            if helper is not None:
                helper.shutdown()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


SETTLE_WAIT = 1.0  # seconds a source's leftover tasks get to end when extract is closed


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Let generators left mid-way inside a source (its pages, say) close on this loop:
    each one dropped schedules its own close as a task, which may drop the next one.
    Unsettled, they are torn down on a closed loop ("Task was destroyed but it is
    pending!")."""
    loop.run_until_complete(loop.shutdown_asyncgens())
    for _ in range(16):  # one link of such a chain per round
        loop.run_until_complete(asyncio.sleep(0))  # scheduled closes become tasks
        pending = asyncio.all_tasks(loop)
        if not pending:
            return
        done, left = loop.run_until_complete(asyncio.wait(pending, timeout=SETTLE_WAIT))
        if left:  # a task of the source's own that does not end by itself
            for task in left:
                task.cancel()
            done |= loop.run_until_complete(asyncio.wait(left))[0]
        for task in done:  # (their failures are of no interest now: not logged)
            if not task.cancelled():
                task.exception()
        if left:
            return


def not_in_a_loop(name: str, instead: str) -> None:
    """The blocking forms run their own event loop: not from inside a running one.
    ``instead``: the async form's name, or a call to await (stream() has no async form)."""
    if not _loop_running():
        return
    instead = f"await {instead}" if "(" in instead else f"omniget.{instead}()"
    raise RuntimeError(f"omniget.{name}() blocks; inside an event loop use {instead} instead")
