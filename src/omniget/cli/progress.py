"""Progress display fed by engine events. The engine never imports rich: only this module does.

Events arrive on the engine's threads; every consumer here takes a lock around its state.
Modes: rich bars on a terminal, plain lines elsewhere (or ``TERM=dumb``), nothing with ``-q``.
Lines for each file (started, done, its progress) come only with ``-v``: a run can be
thousands of files.
``--json`` lives in :mod:`omniget.cli.json_events`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Protocol, cast

from .._frozen import plain_dataclass
from ..engine.events import (
    Event,
    Failed,
    Finished,
    Listed,
    Progress,
    Queued,
    Retrying,
    Skipped,
    Started,
    Warned,
)
from ..errors import Cancelled, OmnigetError
from .output import (
    EXISTS_WHY,
    Masker,
    QuietOnError,
    event_path,
    format_size,
    last_words,
    named,
    naming,
    origins,
    say,
    short_urls,
)
from .tally import Tally, clock_time

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "SKIP_LINES",
    "Consumer",
    "PlainProgress",
    "QuietProgress",
    "RetryLines",
    "SkipLines",
    "done_line",
    "failure_line",
    "make_progress",
    "maybe_terminal",
    "name_of",
    "retry_line",
    "safe_consumer",
    "sizes_known",
    "skip_line",
    "warning_line",
]


class Consumer(Protocol):
    """What ``download(on_event=...)`` gets from the CLI: a callable context manager."""

    def __call__(self, event: Event) -> None: ...
    def __enter__(self) -> Consumer: ...
    def __exit__(self, *exc: object) -> None: ...

    def quit_with(self, text: str | Callable[[], str], then: Callable[[], object]) -> None:
        """A second signal, on its own thread: what is drawn goes, ``text`` is written
        on stderr (``text()``: made from the display's counts, as they are then), then
        ``then`` ends the process with the output held (nothing drawn or written
        after)."""


def name_of(event: Event, mask: Masker) -> str:
    """The file an event is about, or the URL when it names none (no source took it)."""
    return event_path(event, mask) or short_urls(mask(event.item.download_url))


def _label(event: Event, mask: Masker) -> str:
    """The event's file as shown (masked), or its URL when it names none."""
    return event_path(event, mask) or mask(event.item.download_url)


def about(event: Event, text: str, mask: Masker) -> str:
    """``NAME: text`` for the file the event is about, its name said once (see
    :func:`naming`), masked, its long URLs shortened."""
    return short_urls(naming(_label(event, mask), mask(text)))


def failure_line(event: Failed, mask: Masker) -> str:
    """``-v``'s ``failed a.bin: gone``; ``failed: sha256 mismatch for a.bin: ...`` when
    the error names the file (its name once, see :func:`named`)."""
    text = mask(str(event.error))
    said = named(_label(event, mask), text)
    if said is None:
        return f"failed {name_of(event, mask)}: {short_urls(text)}"
    return f"failed: {short_urls(said)}"


def retry_line(event: Retrying, mask: Masker) -> str:
    """A retry is a warning that says when the next try is (a wait with no word looks like
    a hang): ``omniget: warning: a.bin: HTTP 503 from URL; retrying in 0.5s (retry 1)``."""
    return (f"omniget: warning: {about(event, str(event.error), mask)}; "
            f"retrying in {event.delay:.1f}s (retry {event.attempt})")


def warning_line(event: Warned, mask: Masker) -> str:
    """``omniget: warning: a.bin: ...``, as the CLI's and the library's other warnings."""
    return f"omniget: warning: {about(event, event.message, mask)}"


def done_line(event: Finished, name: str) -> str:
    """``-v``'s line for a file done: ``done a.bin (3.0 MiB, sha256 ok)``."""
    check = f", {event.verified} ok" if event.verified else ""
    return f"done {name} ({format_size(event.size)}{check})"


def skip_line(event: Skipped, mask: Masker, *, verbose: bool) -> str | None:
    """The line for a skipped file: always, except items left out by --include/--exclude
    (those only with ``-v``); an existing file says how to replace it."""
    name = name_of(event, mask)
    if event.reason == "filtered":
        return f"skipped {name} (filtered)" if verbose else None
    if event.reason in ("exists", "same-name"):
        return f"skipped {name}: {EXISTS_WHY[event.reason]}"
    return f"skipped {name} ({event.reason})"


class QuietProgress:
    """``-q``: shows nothing (errors are printed by the CLI after the run)."""

    def __call__(self, event: Event) -> None:
        pass

    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def quit_with(self, text: str | Callable[[], str], then: Callable[[], object]) -> None:
        last_words(text, then)


#: Lines for skipped files without ``-v``; the summary counts the rest.
SKIP_LINES = 5


class SkipLines:
    """The line for each skipped file with ``-v``; without it the first :data:`SKIP_LINES`,
    then one saying the rest are only counted (a rerun of 1,000 files is not 1,000 lines)."""

    def __init__(self, mask: Masker, *, verbose: bool) -> None:
        self.mask, self.verbose = mask, verbose
        self.count = 0

    def __call__(self, event: Skipped) -> str | None:
        line = skip_line(event, self.mask, verbose=self.verbose)
        if line is None or self.verbose:
            return line
        self.count += 1
        if self.count <= SKIP_LINES:
            return line
        if self.count == SKIP_LINES + 1:
            return "more files skipped: the summary counts them (-v lists each)"
        return None


#: Retry lines for one cause without ``-v``; the rest are counted, said in one line.
RETRY_LINES = 5


def _cause(error: OmnigetError) -> tuple[str, str]:
    """What retries of many files share (a proxy down, a host's 503s, its refused
    connections) and its words: the error's ``shared`` cause, else its message with each
    URL as its origin (``http://host:port``); the key has its numbers left out too (the
    milliseconds a connect took, the status of a 5xx)."""
    if error.shared:
        said = error.shared.removeprefix("failed: ")
        return said, said
    said = origins(str(error))
    return re.sub(r"\d+", "#", said), said


@plain_dataclass
class _Folded:
    """Retries of one cause past :data:`RETRY_LINES`: how many, of which files."""

    said: str  # the cause, in words
    count: int
    files: set[str]


class RetryLines:
    """The line for each retry with ``-v``; without it the first :data:`RETRY_LINES` of a
    cause, the rest counted: :meth:`last_lines` says how many (a dead proxy or host with
    500 files was 1,000 lines)."""

    def __init__(self, mask: Masker, *, verbose: bool) -> None:
        self.mask, self.verbose = mask, verbose
        self._said: dict[str, int] = {}
        self._folded: dict[str, _Folded] = {}

    def __call__(self, event: Retrying) -> str | None:
        if self.verbose:
            return retry_line(event, self.mask)
        key, said = _cause(event.error)
        n = self._said[key] = self._said.get(key, 0) + 1
        if n <= RETRY_LINES:
            return retry_line(event, self.mask)
        folded = self._folded.setdefault(key, _Folded(said, 0, set()))
        folded.count += 1
        folded.files.add(event.item.key)
        return None

    def last_lines(self) -> list[str]:
        """One line per cause whose retries were counted, not said."""
        lines = []
        for f in self._folded.values():
            retries = "retry" if f.count == 1 else "retries"
            files = "file" if len(f.files) == 1 else "files"
            lines.append(f"omniget: warning: {f.count} more {retries} of {len(f.files)} "
                         f"{files} for the same cause (-v shows each): "
                         f"{short_urls(self.mask(f.said))}")
        self._folded.clear()
        return lines


@plain_dataclass
class _Seen:
    """When a file's last progress line was printed, and its bytes then."""

    last: float  # when this file's last line was printed (or it started)
    done: int  # bytes done then


class PlainProgress:
    """Not a terminal (a log): plain lines, no cursor moves or colours. Without ``-v``, a
    line on the whole run at most every ``interval`` s (``[0:00:12] 3/10 files, 30% of
    40.0 MiB, 2.0 MiB/s, 0:00:14 left``); with it, a line when a file starts and ends and
    one on its progress at most every ``interval`` s. Retries, warnings and skips always.
    ``ticks``: the run's line comes when no event does too (a file stalled: its speed
    falls to 0 B/s), from a thread of its own while the display is entered."""

    def __init__(
        self,
        out: IO[str],
        mask: Masker,
        *,
        verbose: bool = False,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        ticks: bool = False,
    ) -> None:
        self.out, self.mask, self.verbose = out, mask, verbose
        self.interval, self.clock = interval, clock
        self.tally = Tally(clock)
        self.skips = SkipLines(mask, verbose=verbose)
        self.retries = RetryLines(mask, verbose=verbose)
        self._began = self._said = clock()  # (when the run's last line was printed)
        self._files: dict[str, _Seen] = {}
        self._lock = threading.Lock()
        self._ticks = ticks and not verbose
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None

    def _line(self, text: str) -> None:
        say(text + "\n", self.out)

    def __call__(self, event: Event) -> None:
        with self._lock:
            key = event.item.key
            name = "" if isinstance(event, Queued | Listed) else name_of(event, self.mask)
            self.tally(event, name)
            match event:
                case Started() if self.verbose:
                    self._files[key] = _Seen(self.clock(), event.resumed)
                    resumed = f", at {format_size(event.resumed)}" if event.resumed else ""
                    self._line(f"start {name} ({format_size(event.size)}{resumed})")
                case Progress() if self.verbose:
                    self._progress(event, key, name)
                case Finished() if self.verbose:
                    self._files.pop(key, None)
                    self._line(done_line(event, name))
                case Failed():
                    self._files.pop(key, None)
                    # the CLI lists every failure at the end; -v shows them as they happen
                    if self.verbose and not isinstance(event.error, Cancelled):
                        self._line(failure_line(event, self.mask))
                case Skipped():
                    self._files.pop(key, None)
                    line = self.skips(event)
                    if line:
                        self._line(line)
                case Retrying():  # always (a cause's first few without -v)
                    line = self.retries(event)
                    if line:
                        self._line(line)
                case Warned():
                    self._line(warning_line(event, self.mask))
            if not self.verbose:
                self._run_line()

    def _run_line(self) -> None:
        """The line on the whole run, when ``interval`` has passed and a file is active."""
        now = self.clock()
        t = self.tally
        if now - self._said < self.interval or not t.files:
            return
        self._said = now
        total, speed = t.total, t.rate.speed()
        if total:
            amount = f"{100 * t.done // total}% of {format_size(total)}"
            left = t.rate.left(total - t.done)
        else:
            amount = format_size(t.done)
            left = None if total is not None else t.files_left()
        until = f", {clock_time(left)} left" if left is not None else ""
        count = f"{t.ended}/{t.seen}{'+' if t.more else ''}"
        # (a speed not known yet, in the first 0.5 s of the run's first file: "?", as on the
        # bars; 0 B/s would say nothing comes)
        rate = "?" if speed is None else f"{format_size(int(speed))}/s"
        self._line(f"[{clock_time(now - self._began)}] {count} files, {amount}, {rate}{until}")

    def _progress(self, event: Progress, key: str, name: str) -> None:
        now = self.clock()
        seen = self._files.setdefault(key, _Seen(now, event.done))
        elapsed = now - seen.last
        if elapsed < self.interval:
            return
        speed = max(0, event.done - seen.done) / elapsed
        if event.size:
            pct = f"{100 * event.done / event.size:.0f}% of {format_size(event.size)}"
        else:
            pct = format_size(event.done)
        self._line(f"  {name}: {pct}, {format_size(int(speed))}/s")
        seen.last, seen.done = now, event.done

    def _tick(self) -> None:
        """The ticker's loop: the run's line when ``interval`` passed without one."""
        while not self._done.wait(self.interval / 4):
            with self._lock:
                self._run_line()

    def __enter__(self) -> PlainProgress:
        if self._ticks and self._ticker is None:
            self._done.clear()
            self._ticker = threading.Thread(target=self._tick, name="omniget-log-line",
                                            daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._done.set()
            self._ticker.join()
            self._ticker = None
        with self._lock:
            for line in self.retries.last_lines():
                self._line(line)
        self.out.flush()

    def quit_with(self, text: str | Callable[[], str], then: Callable[[], object]) -> None:
        last_words(text, then, self._lock)


def is_fancy(console: Console) -> bool:
    """Rich bars only on a real terminal that is not ``TERM=dumb``."""
    return console.is_terminal and not console.is_dumb_terminal


def make_progress(
    mask: Masker,
    *,
    quiet: bool = False,
    as_json: bool = False,
    verbose: bool = False,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    console: Console | None = None,
) -> Consumer:
    """Pick the consumer for the flags and the terminal."""
    if as_json:
        from .json_events import JsonEvents  # (imported where used: start-up time)

        return JsonEvents(stdout or sys.stdout, mask)
    if quiet:
        return QuietProgress()
    err = stderr or sys.stderr
    if console is None:
        if not maybe_terminal(err):  # rich costs ~30 ms to import: only for a terminal
            return PlainProgress(err, mask, verbose=verbose, ticks=True)
        from rich.console import Console

        quiet_on_error = cast("IO[str]", QuietOnError(err))  # (its methods: IO's it uses)
        console = Console(file=quiet_on_error, _environ=sizes_known(os.environ))
    if is_fancy(console):
        from .bars import RichProgress

        return RichProgress(console, mask, verbose=verbose)
    return PlainProgress(err, mask, verbose=verbose, ticks=True)


def sizes_known(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment rich sizes the screen by, without a ``COLUMNS`` or ``LINES`` of 0
    (rich took it for a screen 0 cells wide or high, and drew nothing): the terminal's
    own size is taken then, as shutil takes it."""
    return {k: v for k, v in environ.items()
            if k not in ("COLUMNS", "LINES") or not v.isdigit() or int(v) > 0}


def maybe_terminal(stream: IO[str]) -> bool:
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"):
        return True  # rich decides
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def safe_consumer(consumer: Callable[[Event], None]) -> Callable[[Event], None]:
    """A display problem must never stop a download: swallow the consumer's errors."""

    def on_event(event: Event) -> None:
        try:
            consumer(event)
        except BrokenPipeError:
            raise
        except Exception:
            logging.getLogger("omniget.cli").debug("progress display failed", exc_info=True)

    return on_event
