"""The CLI's SIGINT/SIGTERM/SIGHUP handling: a first signal saves state and stops, a
second one quits (see :class:`SaveOnSignal`); ``-O -`` stops at once."""

from __future__ import annotations

import itertools
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

__all__ = ["QUIT_GRACE", "STOPPING", "Handler", "SaveOnSignal", "end_process", "on_signals",
           "stop_at_once"]

Handler = Callable[[int, FrameType | None], None]


#: The signals that stop a run (a second one quits).
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
QUIT_GRACE = 3.0  # a second signal: seconds the run gets to end before the process quits

#: Set by the console script: a run's handlers go as it has said its last lines, and the
#: process ends. SIGINT is ignored from then on (Python's default handler raised a
#: KeyboardInterrupt wherever the interpreter was, a weakref callback's traceback under
#: the last line), and so is SIGHUP (the kernel's, as the shell that lost the terminal
#: ends, comes after the shell's own). Library callers and tests get their handlers back.
last_run = False
QUIET_AFTER = (signal.SIGINT, signal.SIGHUP)


class SaveOnSignal:
    """The SIGINT/SIGTERM/SIGHUP handler of a download: the first one sets ``cancel`` (the
    engine saves state), a second one quits at once. Either ends with exit 130 (design.md's
    one code for an interrupted run).

    SIGHUP (the terminal closed, an ssh connection dropped) stops the run as SIGTERM does,
    as aria2 does, but is never a second signal: a shell that loses its terminal sends its
    jobs a SIGHUP, and the kernel sends the terminal's foreground job one more, none of
    them meant as "quit now"; the run saves all it has.

    The handler runs on the main thread between any two of its steps, maybe while it draws
    the bars or writes a line to stderr: a write of its own there cuts into that one (rich
    left a bar on the screen). So it only queues the signal's number in the order they
    came (``SimpleQueue.put`` is safe in a handler); a thread of its own, started and
    joined by ``with``, says what each means. (Python runs a handler inside another one
    when a signal comes as it runs: the second's may be queued before the first's.)

    The second signal raises nothing on the main thread (an interrupt landing at an
    arbitrary point, in rich's drawing or a C library's callback, left bars on the screen
    or lost the last line). That thread takes the last word instead: ``last(then)`` erases
    the bars and writes the closing lines with the output held, and ``then`` ends the
    process with 130: what was committed to the journal is kept, as after a SIGKILL.

    The run's own end (see :meth:`running`) and that thread race for the last word; the
    loser stays silent. A second signal that lost it (the run was ending) starts a clock
    instead: should the run not end within ``grace`` seconds, the process quits. Once the
    run is over, or after the second, a signal changes nothing."""

    def __init__(
        self,
        cancel: threading.Event,
        *,
        quiet: bool,
        last: Callable[[Callable[[], object]], None] | None = None,
        grace: float = QUIT_GRACE,
        exit: Callable[[int], object] | None = None,
    ) -> None:
        self.cancel, self.quiet, self.grace = cancel, quiet, grace
        self._exit = exit if exit is not None else end_process
        self._last = last
        self.ended = False  # the download returned or raised: nothing left to stop
        self._stopping = False  # a signal came (a SIGHUP after it changes nothing)
        self.took_over = False  # the second signal had the last word (a test's exit returns)
        self._word = threading.Lock()  # who has the last word: this thread or the run
        self._count = itertools.count()  # (next() is one step: no handler runs inside it)
        self._signals: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="omniget-signals", daemon=True)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.ended or (signum == signal.SIGHUP and self._stopping):
            return
        self._stopping = True
        n = next(self._count)
        if n == 0:
            self.cancel.set()
        if n < 2:
            self._signals.put((n, signum))

    @contextmanager
    def running(self) -> Iterator[None]:
        """The download runs under it. At its end the run has the last word, unless a
        second signal took it: the process is ending then (a test's ``exit`` returns once
        the last lines are out), and what the run raised is dropped."""
        try:
            yield
        except BaseException:
            if self._end():
                raise
        else:
            self._end()

    def _end(self) -> bool:
        self.ended = True
        if self._word.acquire(blocking=False):
            return True
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join()
        return False

    def _write(self) -> None:
        deadline: float | None = None
        stopping = False  # (its line is said)
        while True:
            try:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                got = self._signals.get(timeout=wait)
            except queue.Empty:  # the run did not end in time after a second signal
                self._quit_now()
                return
            if got is None:
                return
            n, signum = got
            if not stopping:  # (the first's line, even when the second's came first)
                stopping = True
                self._say_stopping(signum)
            if n == 1:
                if self._word.acquire(blocking=False):
                    self.took_over = True
                    self._quit()
                    return
                # (the run is ending on its own: it gets a while to)
                deadline = time.monotonic() + self.grace

    def _say_stopping(self, signum: int) -> None:
        if self.quiet:  # (-q: nothing but errors)
            return
        if signum == signal.SIGINT:
            _put("omniget: stopping and saving state (Ctrl+C again to quit now)\n")
        elif signum == signal.SIGHUP:  # (most often said to a terminal that is gone)
            _put("omniget: SIGHUP: stopping and saving state (Ctrl+C or SIGTERM quits now)\n")
        else:
            _put("omniget: SIGTERM: stopping and saving state (a second one quits now)\n")

    def _quit(self) -> None:
        """The second signal's last word, then the end of the process."""
        done = False

        def then() -> None:
            nonlocal done
            if not done:
                done = True
                self._exit(130)

        try:
            if self._last is not None:
                self._last(then)
        except Exception:  # (whatever the display did: the process still ends)
            pass
        finally:
            then()

    def _quit_now(self) -> None:
        show_cursor = "\x1b[?25h" if _isatty(sys.stderr) else ""
        _put(f"{show_cursor}\nomniget: error: the run did not stop within {self.grace:g} s of"
             " the second signal; quitting (what was saved is kept: run the same command"
             " again to resume)\n")
        self._exit(130)

    def __enter__(self) -> SaveOnSignal:
        self._writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer.is_alive():
            self._signals.put(None)
            self._writer.join(timeout=5)


def end_process(code: int) -> None:
    """The process ends with ``code`` now (a second signal's end; tests replace it)."""
    os._exit(code)


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
    """``-O -``: nothing to save, so SIGINT/SIGTERM/SIGHUP stop at once."""
    raise KeyboardInterrupt


@contextmanager
def on_signals(handler: Handler) -> Iterator[None]:
    """``handler`` for SIGINT, SIGTERM and SIGHUP while in use (from the main thread only; see
    :data:`last_run` for what comes after). A signal this process was started with
    ignored stays ignored, as Unix programs keep it (``cmd &`` in a script: the
    terminal's Ctrl+C is not for it; ``nohup``: a SIGHUP is not)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {
        s: signal.signal(s, handler)
        for s in STOPPING
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, signal.SIG_IGN if last_run and s in QUIET_AFTER else h)
