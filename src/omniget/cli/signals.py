"""The CLI's SIGINT/SIGTERM handling: a first signal saves state and stops, a second one
quits (see :class:`SaveOnSignal`); ``-O -`` stops at once."""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TextIO

__all__ = ["QUIT_GRACE", "Handler", "SaveOnSignal", "on_signals", "stop_at_once"]

Handler = Callable[[int, FrameType | None], None]


QUIT_GRACE = 3.0  # a second signal: seconds the run gets to end before the process quits
_QUIT = "quit"  # (queued by a second signal: the writer's cue to start that clock)


class SaveOnSignal:
    """The SIGINT/SIGTERM handler of a download: the first one sets ``cancel`` (the engine
    saves state), a second one interrupts. Either ends with exit 130 (design.md's one code
    for an interrupted run).

    The handler runs on the main thread between any two of its steps, maybe while it draws
    the bars or writes a line to stderr: a write of its own there cuts into that one (rich
    left a bar on the screen). So it only queues its line (``SimpleQueue.put`` is safe in a
    handler); a thread of its own, started and joined by ``with``, writes it.

    The second signal's KeyboardInterrupt lands wherever the loop is (inside a C library's
    callback it may come out as another exception: ``quitting`` tells); should the run then
    not end within ``grace`` seconds (a wait it broke may never be answered), that thread
    ends the process with 130: what was committed to the journal is kept, as after a
    SIGKILL.

    Once the run is over (``ended``: the download returned or raised) or quitting, a signal
    changes nothing: the bars' erasing and the last lines go on (a third Ctrl+C, or one
    as the run ended, raised a KeyboardInterrupt there, which left the bars on the
    screen); the grace clock of a second signal still ends a process stuck there."""

    def __init__(
        self,
        cancel: threading.Event,
        *,
        quiet: bool,
        grace: float = QUIT_GRACE,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.cancel, self.quiet, self.grace, self._exit = cancel, quiet, grace, exit
        self.quitting = False  # a second signal came
        self.ended = False  # the download returned or raised: nothing left to stop
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="omniget-signals", daemon=True)
        self._unraisable = sys.unraisablehook

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.quitting or self.ended:
            return
        if self.cancel.is_set():
            self.quitting = True
            self._lines.put(_QUIT)
            raise KeyboardInterrupt
        self.cancel.set()
        if self.quiet:  # (-q: nothing but errors)
            return
        if signum == signal.SIGINT:
            line = "stopping and saving state (Ctrl+C again to quit now)"
        else:
            line = "SIGTERM: stopping and saving state (a second one quits now)"
        self._lines.put(f"omniget: {line}\n")

    def _write(self) -> None:
        deadline: float | None = None
        while True:
            try:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                line = self._lines.get(timeout=wait)
            except queue.Empty:  # the run did not end in time after a second signal
                self._quit_now()
                return
            if line is None:
                return
            if line is _QUIT:
                deadline = deadline or time.monotonic() + self.grace
                continue
            _put(line)

    def _quit_now(self) -> None:
        show_cursor = "\x1b[?25h" if _isatty(sys.stderr) else ""
        _put(f"{show_cursor}\nomniget: error: the run did not stop within {self.grace:g} s of"
             " the second signal; quitting (what was saved is kept: run the same command"
             " again to resume)\n")
        self._exit(130)

    def _drop_interrupt(self, unraisable: sys.UnraisableHookArgs) -> None:
        """Python ignores an exception raised in a finalizer or weakref callback, and
        prints it: the second signal's KeyboardInterrupt, raised there, is not news (the
        run is stopping; the grace clock ends it if it does not)."""
        if not (self.quitting and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            self._unraisable(unraisable)

    def __enter__(self) -> SaveOnSignal:
        self._unraisable = sys.unraisablehook
        sys.unraisablehook = self._drop_interrupt
        self._writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        sys.unraisablehook = self._unraisable
        if self._writer.is_alive():
            self._lines.put(None)
            self._writer.join(timeout=5)


def _put(line: str) -> None:
    """Write ``line`` to stderr as it is now (rich's proxy while bars are drawn)."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def stop_at_once(signum: int, frame: FrameType | None) -> None:
    """``-O -``: nothing to save, so SIGINT/SIGTERM stop at once."""
    raise KeyboardInterrupt


@contextmanager
def on_signals(handler: Handler) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while in use (from the main thread only). A
    signal this process was started with ignored stays ignored, as Unix programs keep it
    (``cmd &`` in a script: the terminal's Ctrl+C is not for it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {
        s: signal.signal(s, handler)
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
