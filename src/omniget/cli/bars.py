"""Rich progress bars for a terminal (imported only when one is drawn)."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBars
from rich.text import Text

from ..engine.events import Event, Failed, Finished, Progress, Retrying, Skipped, Started, Warned
from ..errors import Cancelled
from .output import Masker, format_size
from .progress import failure_line, name_of, skip_line

__all__ = ["RichProgress"]

SHOWN = 8  # file bars on screen at once (-j can run many more files than a screen holds)


class _Speed(ProgressColumn):
    """Speed in binary units, like the sizes beside it, the summary and --limit-rate
    (rich's own column says MB/s: 2.5 MB/s under --limit-rate 2M looks like a bug)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        return Text(f"{format_size(int(speed))}/s", style="progress.data.speed")


class RichProgress:
    """A terminal: one overall bar plus a bar per active file (the first :data:`SHOWN`
    of them; the overall line counts the rest); lines above them."""

    def __init__(self, console: Console, mask: Masker, *, verbose: bool = False) -> None:
        self.console, self.mask, self.verbose = console, mask, verbose
        self.bars = RichBars(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            _Speed(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            expand=True,
            refresh_per_second=5,
        )
        self._overall = self.bars.add_task(self._overall_text(0, 0), total=None)
        self._tasks: dict[str, TaskID] = {}  # active files, in start order
        self._shown: set[TaskID] = set()
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
            key, name = event.item.key, name_of(event, self.mask)
            self._seen.add(key)
            match event:
                case Started():
                    self._track(key, event.size, event.resumed)
                    self._drop(key)
                    show = len(self._shown) < SHOWN
                    new = self._tasks[key] = self.bars.add_task(
                        self._short(name),
                        total=event.size,
                        completed=event.resumed,
                        visible=show,
                    )
                    if show:
                        self._shown.add(new)
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
                        self._print(failure_line(event, self.mask), "red")
                case Skipped():
                    self._untrack(key)
                    self._end(key)
                    line = skip_line(event, self.mask, verbose=self.verbose)
                    if line:
                        self._print(line)
                case Retrying():  # always: a wait with no word looks like a hang
                    self._print(f"retry {name} (attempt {event.attempt} in {event.delay:.1f}s): "
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
        self._drop(key)

    def _drop(self, key: str) -> None:
        """Remove the file's bar; a hidden one takes its place on screen."""
        task = self._tasks.pop(key, None)
        if task is None:
            return
        self.bars.remove_task(task)
        if task in self._shown:
            self._shown.discard(task)
            nxt = next((t for t in self._tasks.values() if t not in self._shown), None)
            if nxt is not None:
                self._shown.add(nxt)
                self.bars.update(nxt, visible=True)

    def _update_overall(self) -> None:
        total = sum(self._sizes.values())
        text = self._overall_text(self._files_done, len(self._seen))
        if hidden := len(self._tasks) - len(self._shown):
            text += f" (+{hidden} more active)"
        self.bars.update(
            self._overall,
            description=text,
            completed=sum(self._done.values()),
            total=total or None,
        )

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()
