"""Progress display fed by engine events. The engine never imports rich: only this module does.

Events arrive on the engine's threads; every consumer here takes a lock around its state.
Modes: rich bars on a terminal, plain lines elsewhere (or ``TERM=dumb``), nothing with ``-q``.
``--json`` lives in :mod:`omniget.cli.output`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichBars

from ..engine.events import Event, Failed, Finished, Progress, Retrying, Skipped, Started, Warned
from ..errors import Cancelled
from .output import JsonEvents, Masker, display_path, format_size

__all__ = ["Consumer", "PlainProgress", "QuietProgress", "RichProgress", "make_progress"]


class Consumer(Protocol):
    """What ``download(on_event=...)`` gets from the CLI: a callable context manager."""

    def __call__(self, event: Event) -> None: ...
    def __enter__(self) -> Consumer: ...
    def __exit__(self, *exc: object) -> None: ...


def _name(event: Event, mask: Masker) -> str:
    return mask(display_path(event.path) if event.path else event.item.output_path)


def _failure(event: Failed, mask: Masker) -> str:
    return f"failed {_name(event, mask)}: {mask(str(event.error))}"


class QuietProgress:
    """``-q``: shows nothing (errors are printed by the CLI after the run)."""

    def __call__(self, event: Event) -> None:
        pass

    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@dataclass
class _Seen:
    last: float  # when this file's last line was printed (or it started)
    done: int  # bytes done then


class PlainProgress:
    """Not a terminal: a line per file at most every ``interval`` s, one per finished file."""

    def __init__(
        self,
        out: IO[str],
        mask: Masker,
        *,
        verbose: bool = False,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.mask, self.verbose = out, mask, verbose
        self.interval, self.clock = interval, clock
        self._files: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, event: Event) -> None:
        with self._lock:
            key, name = event.item.key, _name(event, self.mask)
            match event:
                case Started():
                    self._files[key] = _Seen(self.clock(), event.resumed)
                    if self.verbose:
                        resumed = f", at {format_size(event.resumed)}" if event.resumed else ""
                        self._line(f"start {name} ({format_size(event.size)}{resumed})")
                case Progress():
                    self._progress(event, key, name)
                case Finished():
                    self._files.pop(key, None)
                    check = f", {event.verified} ok" if event.verified else ""
                    self._line(f"done {name} ({format_size(event.size)}{check})")
                case Failed():
                    self._files.pop(key, None)
                    # the CLI lists every failure at the end; -v shows them as they happen
                    if self.verbose and not isinstance(event.error, Cancelled):
                        self._line(_failure(event, self.mask))
                case Skipped():
                    self._files.pop(key, None)
                    if self.verbose:
                        self._line(f"skipped {name} ({event.reason})")
                case Retrying():
                    if self.verbose:
                        self._line(f"retry {name} (attempt {event.attempt} in {event.delay:.1f}s): "
                                   f"{self.mask(str(event.error))}")
                case Warned():
                    self._line(f"warning: {name}: {self.mask(event.message)}")

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

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.flush()


class RichProgress:
    """A terminal: one overall bar plus a bar per active file; lines above them."""

    def __init__(self, console: Console, mask: Masker, *, verbose: bool = False) -> None:
        self.console, self.mask, self.verbose = console, mask, verbose
        self.bars = RichBars(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            expand=True,
            refresh_per_second=5,
        )
        self._overall = self.bars.add_task(self._overall_text(0, 0), total=None)
        self._tasks: dict[str, TaskID] = {}
        # The overall bar counts files of known size only; failed and skipped ones drop out.
        self._sizes: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._seen: set[str] = set()
        self._files_done = 0
        self._lock = threading.Lock()

    @staticmethod
    def _overall_text(done: int, seen: int) -> str:
        return f"total [{done}/{seen} files]"

    @staticmethod
    def _short(name: str, width: int = 40) -> str:
        return name if len(name) <= width else "…" + name[-(width - 1) :]

    def _print(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, markup=False, highlight=False)

    def __call__(self, event: Event) -> None:
        with self._lock:
            key, name = event.item.key, _name(event, self.mask)
            self._seen.add(key)
            match event:
                case Started():
                    self._track(key, event.size, event.resumed)
                    old = self._tasks.pop(key, None)
                    if old is not None:
                        self.bars.remove_task(old)
                    self._tasks[key] = self.bars.add_task(
                        self._short(name), total=event.size, completed=event.resumed
                    )
                case Progress():
                    self._track(key, event.size, event.done)
                    task = self._tasks.get(key)
                    if task is not None:
                        self.bars.update(task, completed=event.done, total=event.size)
                case Finished():
                    self._track(key, event.size, event.size)
                    self._end(key)
                    if self.verbose:
                        self._print(f"done {name} ({format_size(event.size)})")
                case Failed():
                    self._untrack(key)
                    self._end(key)
                    if self.verbose and not isinstance(event.error, Cancelled):
                        self._print(_failure(event, self.mask), "red")
                case Skipped():
                    self._untrack(key)
                    self._end(key)
                    if self.verbose:
                        self._print(f"skipped {name} ({event.reason})")
                case Retrying():
                    if self.verbose:
                        self._print(f"retry {name} (attempt {event.attempt}): "
                                    f"{self.mask(str(event.error))}", "yellow")
                case Warned():
                    self._print(f"warning: {name}: {self.mask(event.message)}", "yellow")
            self._update_overall()

    def _track(self, key: str, size: int | None, done: int) -> None:
        if size is not None:
            self._sizes[key] = size
            self._done[key] = done

    def _untrack(self, key: str) -> None:
        self._sizes.pop(key, None)
        self._done.pop(key, None)

    def _end(self, key: str) -> None:
        self._files_done += 1
        task = self._tasks.pop(key, None)
        if task is not None:
            self.bars.remove_task(task)

    def _update_overall(self) -> None:
        total = sum(self._sizes.values())
        self.bars.update(
            self._overall,
            description=self._overall_text(self._files_done, len(self._seen)),
            completed=sum(self._done.values()),
            total=total or None,
        )

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()


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
        return JsonEvents(stdout or sys.stdout, mask)
    if quiet:
        return QuietProgress()
    err = stderr or sys.stderr
    console = console or Console(file=err)
    if is_fancy(console):
        return RichProgress(console, mask, verbose=verbose)
    return PlainProgress(err, mask, verbose=verbose)
