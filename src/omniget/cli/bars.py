"""Rich progress bars for a terminal (imported only when one is drawn).

A line for the whole run, then one per active file, as many as the terminal's height has
room for (at most :data:`SHOWN`), then how many more are active; lines printed go above
them. rich's ``Live`` redraws them five times a second from a thread of its own (never once
per event: thousands of small files would be thousands of frames). Every frame is laid out
for the terminal's width as it is then: names are cut to the cells left (by their width on
screen, so wide characters count twice), columns that do not fit are left out, and no cell
ever wraps onto a second line. The numbers come from :class:`~omniget.cli.tally.Tally`.
Without colours (``NO_COLOR``) a bar is ``#`` for done and ``-`` for what is left.

A terminal made narrower wraps the rows already on it again (most terminals do): the next
frame erases as many rows as the last one takes at the new width, not its height, else the
old frame's rows stay above the new one. Those that cut their rows instead (xterm, rxvt,
st, the Linux console: :func:`rewraps`) keep the frame's height, else the lines above
the bars would go. (One of those not known by its environment loses a few such lines.)
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import IO, NamedTuple

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.control import Control
from rich.live import Live
from rich.live_render import LiveRender
from rich.progress_bar import ProgressBar
from rich.segment import ControlType, Segment
from rich.table import Table
from rich.text import Text

from ..engine.events import (
    Event,
    Failed,
    Finished,
    Listed,
    Queued,
    Retrying,
    Skipped,
    Started,
    Warned,
)
from ..errors import Cancelled
from .output import Masker, format_size, visible
from .progress import RetryLines, SkipLines, done_line, failure_line, name_of, warning_line
from .tally import Rate, Tally, clock_time

__all__ = ["SHOWN", "RichProgress", "fit", "rewraps"]

SHOWN = 8  # file bars on screen at most (-j can run many more files than a screen holds)
NAME = 40  # cells for a name at most
BAR = 10  # cells a bar has (while a name has 16)
# The columns after the bar and their cells (each with the space before it), in the order
# a narrow terminal gives them up; the bytes give way to their short form (``25%``), kept.
# Each has room for its longest text: ``99:59:59`` (then ``999d 23h``), ``1023.9 KiB/s``,
# ``1023.9/1023.9 MiB``.
AFTER = {"left": 9, "speed": 13, "bytes": 18}
LEAST_NAME, LEAST_BAR = 8, 5  # cells below which a bar goes (its percent stays)


def fit(text: str, cells: int, *, keep_end: bool = True, dots: str = "…") -> str:
    """``text`` in at most ``cells`` terminal cells: its end kept behind a ``…`` (a file
    name's end says most), or with ``keep_end=False`` its start; ``dots``: what stands
    for the rest (``...`` where the terminal has no ``…``)."""
    if cell_len(text) <= cells:
        return text
    if cells <= len(dots):
        return dots[:cells]
    chars = reversed(text) if keep_end else iter(text)
    kept: list[str] = []
    room = cells - len(dots)
    for ch in chars:
        room -= cell_len(ch)
        if room < 0:
            break
        kept.append(ch)
    if keep_end:  # (no accent without its letter: a combining character has no cell)
        while kept and not cell_len(kept[-1]):
            kept.pop()
    return dots + "".join(reversed(kept)) if keep_end else "".join(kept) + dots


def dots_for(console: Console) -> str:
    """``…``, or ``...`` when the terminal's encoding has no such character (latin-1:
    it was drawn as ``\\u2026``)."""
    try:
        "…".encode(console.encoding)
    except (UnicodeError, LookupError):
        return "..."
    return "…"


def _pair(done: int, size: int | None) -> str:
    """``1.5/19.1 MiB`` (both in the size's unit); ``1.5 MiB`` when the size is unknown."""
    if size is None:
        return format_size(done)
    unit, scale = "B", 1
    for name in ("KiB", "MiB", "GiB", "TiB"):
        if size < scale * 1024:
            break
        unit, scale = name, scale * 1024
    if unit == "B":
        return f"{done}/{size} B"
    return f"{done / scale:.1f}/{size / scale:.1f} {unit}"


def _brief(done: int, size: int | None) -> str:
    """How far a file or the run is in a few cells: ``25%``; ``1.5 MiB`` when its size is
    unknown."""
    if size is None:
        return format_size(done)
    return f"{min(100, 100 * done // size) if size else 100}%"


def _speed(rate: Rate) -> str:
    """Binary units, like the sizes beside it, the summary and --limit-rate (2.5 MB/s
    under --limit-rate 2M looks like a bug)."""
    speed = rate.speed()
    return "?" if speed is None else f"{format_size(int(speed))}/s"


def _left(seconds: float | None) -> str:
    """The time left in at most 8 cells: ``0:01:05`` up to 100 hours, then days and hours
    (``12d 02h``), past 999 days ``>999d``."""
    if seconds is None or seconds < 100 * 3600:
        return clock_time(seconds)
    hours = int(seconds) // 3600
    return ">999d" if hours >= 1000 * 24 else f"{hours // 24}d {hours % 24:02}h"


def rewraps(environ: Mapping[str, str]) -> bool:
    """Whether the terminal wraps its rows again when made narrower: all but a few that
    cut them, known by their environment (tmux, inside any of them, rewraps)."""
    if environ.get("TMUX"):
        return True
    term = environ.get("TERM", "")
    return not (environ.get("XTERM_VERSION") or term == "linux" or term == "st"
                or term.startswith(("st-", "rxvt")))


class _Region(LiveRender):
    """rich's live region, which moves up over the rows the last frame takes on the
    terminal as wide as it is now (see the module's notes), not over its lines.

    The cursor waits at the start of the frame's last line, not past its end: the
    terminal echoes a key typed there (Ctrl+C as ^C, Ctrl+Z as ^Z), which past a row as
    wide as the terminal went onto a new row, one the next erase did not know of (the
    run's bar stayed on the screen above the lines after it). At its start, a few dozen
    echoes stay on its row, and the erase begins with a carriage return."""

    def __init__(self, renderable: RenderableType, console: Console) -> None:
        super().__init__(renderable, vertical_overflow="visible")
        self.console = console
        self.rewraps = rewraps(os.environ)
        self.widths: list[int] = []  # cells of each line of the last frame

    def rows(self) -> int:
        if not self.rewraps:
            return len(self.widths)
        width = max(1, self.console.width)
        return sum(max(1, math.ceil(w / width)) for w in self.widths)

    def _below(self) -> int:
        """Rows of the last line below the cursor's (a narrower terminal wrapped it)."""
        if not self.rewraps or not self.widths:
            return 0
        return max(1, math.ceil(self.widths[-1] / max(1, self.console.width))) - 1

    def position_cursor(self) -> Control:
        """From the start of the last line: its rows erased, then those above it."""
        if not self.widths:
            return Control()
        below = self._below()
        return Control(ControlType.CARRIAGE_RETURN, (ControlType.ERASE_IN_LINE, 2),
                       *_erase_down(below), *_erase_up(self.rows() - 1 - below))

    def restore_cursor(self) -> Control:
        """The same, from the row under the last line's first (rich's end of the bars
        moves down a line first)."""
        if not self.widths:
            return Control()
        below = self._below()
        here = ((ControlType.ERASE_IN_LINE, 2), *_erase_down(below - 1)) if below else ()
        return Control(ControlType.CARRIAGE_RETURN, *here, *_erase_up(self.rows() - below))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        lines = lines[: options.size.height]  # (rows above the top cannot be erased)
        self._shape = Segment.get_shape(lines)
        self.widths = [Segment.get_line_length(line) for line in lines]
        for i, line in enumerate(lines):
            if i:
                yield Segment.line()
            yield from line
        yield Control(ControlType.CARRIAGE_RETURN).segment  # (see the class's notes)


def _erase_down(rows: int) -> tuple[tuple[ControlType, int], ...]:
    """``rows`` rows under the cursor erased; the cursor back where it was."""
    if rows <= 0:
        return ()
    down = ((ControlType.CURSOR_DOWN, 1), (ControlType.ERASE_IN_LINE, 2)) * rows
    return (*down, (ControlType.CURSOR_UP, rows))


def _erase_up(rows: int) -> tuple[tuple[ControlType, int], ...]:
    """``rows`` rows above the cursor erased, the cursor on the top one."""
    return ((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)) * max(0, rows)


class _Bar(ProgressBar):
    """rich's bar; without colours (``NO_COLOR``, a terminal of none) rich draws the part
    done alone, so a bar at 0% is blank: there, ``#`` for done and ``-`` for what is left
    (a size not known: a block that moves along the ``-``)."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not (console.no_color or console.color_system is None):
            yield from super().__rich_console__(console, options)
            return
        width = min(self.width or options.max_width, options.max_width)
        if self.total is None:
            at = int((self.animation_time or 0.0) * 15) % width
            cells = ["-"] * width
            for i in range(at, at + min(3, width)):
                cells[i % width] = "#"
            yield Segment("".join(cells))
            return
        done = min(self.total, max(0, self.completed))
        full = width if not self.total else int(width * done / self.total)
        yield Segment("#" * full + "-" * (width - full))


class RichProgress:
    """A terminal: the run's bar, a bar per active file (those that fit), lines above."""

    def __init__(
        self,
        console: Console,
        mask: Masker,
        *,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console, self.mask, self.verbose, self.clock = console, mask, verbose, clock
        self.tally = Tally(clock)
        self.dots = dots_for(console)
        self.shown: list[str] = []  # keys of the files with a bar, in start order
        self.skips = SkipLines(mask, verbose=verbose)
        self.retries = RetryLines(mask, verbose=verbose)
        self._lock = threading.Lock()
        self.live = Live(console=console, get_renderable=self.frame, refresh_per_second=5,
                         transient=True)
        # (rich's own region, replaced: a rich without one where it is now keeps its own)
        own = getattr(self.live, "_live_render", None)
        self.region = _Region(own.renderable if isinstance(own, LiveRender) else "", console)
        if isinstance(own, LiveRender):
            self.live._live_render = self.region
        self.stop_process = _stop_process  # (Ctrl+Z: returns once the process goes on)
        self.quit_process = _quit_process  # (Ctrl+\: never returns)
        self._handled: list[int] = []  # the signals handled here while the bars are on

    def _print(self, text: str, style: str = "") -> None:
        # (as it is: no markup, no emoji for a name's ``:cd:``; its controls shown)
        self.console.print(visible(text), style=style or None, markup=False,
                           highlight=False, emoji=False)

    def __call__(self, event: Event) -> None:
        # (a list's entries: not named, 50,000 of them before the first file)
        name = "" if isinstance(event, Queued | Listed) else name_of(event, self.mask)
        line, style = None, ""
        with self._lock:
            self.tally(event, name)
            match event:
                case Started():
                    key = event.item.key
                    if key not in self.shown and len(self.shown) < self._room():
                        self.shown.append(key)
                case Finished():
                    self._end(event.item.key)
                    if self.verbose:
                        line = done_line(event, name)
                case Failed():
                    self._end(event.item.key)
                    if self.verbose and not isinstance(event.error, Cancelled):
                        line, style = failure_line(event, self.mask), "red"
                case Skipped():
                    self._end(event.item.key)
                    line = self.skips(event)
                case Retrying():  # always (a cause's first few without -v)
                    line, style = self.retries(event), "yellow"
                case Warned():
                    line, style = warning_line(event, self.mask), "yellow"
        if line:  # (not under the lock: a frame being drawn takes it)
            self._print(line, style)

    def _room(self) -> int:
        """File bars the terminal has lines for (besides the run's and the "more" line)."""
        return max(1, min(SHOWN, self.console.height - 2))

    def _end(self, key: str) -> None:
        """The file's bar goes; files without one take the free places."""
        if key in self.shown:
            self.shown.remove(key)
        self._fill()

    def _fill(self) -> None:
        """As many bars as the terminal has room for now (it may have been resized):
        the last ones go, or active files without a bar take the free places."""
        room = self._room()
        del self.shown[room:]
        for other in self.tally.files:
            if len(self.shown) >= room:
                break
            if other not in self.shown:
                self.shown.append(other)

    def frame(self) -> RenderableType:
        """What the terminal shows now (called by rich's refresh thread)."""
        width = self.console.width
        with self._lock:
            t = self.tally
            if not t.seen:  # (nothing to count yet: no "0/0 files")
                return Text(f"starting{self.dots}")
            self._fill()
            files = [t.files[k] for k in self.shown if k in t.files]
            more = len(t.files) - len(files)
            now = self.clock()
            lines = [_run_line(t)]
            lines += [
                _Line(f.name, f.done, f.size, _pair(f.done, f.size), _brief(f.done, f.size),
                      _speed(f.rate),
                      _left(f.rate.left(None if f.size is None else f.size - f.done)),
                      True)
                for f in files
            ]
        return _table(lines, more, width, now, self.dots)

    def suspend(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl+Z (SIGTSTP): the bars are erased and the cursor shown before the process
        stops (the shell's lines come where the bars were); once it goes on (fg), the
        cursor is hidden again and the next frame is drawn below what the shell wrote."""
        self._off_screen(self.stop_process)

    def quit(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl+\\ (SIGQUIT): the process ends at once, as its default does (what the
        journal has is kept, as after a SIGKILL), but with the bars erased and the cursor
        shown first (the shell's prompt came without one). (SIGHUP stops a run as SIGTERM
        does: see signals.py.)"""
        self._off_screen(lambda: self.quit_process(signum))

    def quit_with(self, text: str | Callable[[], str], then: Callable[[], object]) -> None:
        """A second Ctrl+C or SIGTERM (on the signal thread): as :meth:`quit`, with
        ``text`` written where the bars were (``text()``: made with the counts' lock
        held, before rich's is taken, as a frame takes them the other way round)."""
        if not isinstance(text, str):
            got = self._lock.acquire(timeout=0.5)  # (its holder may be stuck drawing)
            try:
                text = text()
            finally:
                if got:
                    self._lock.release()
        self._off_screen(then, text, back=False)

    def _off_screen(self, then: Callable[[], object], text: str = "", back: bool = True) -> None:
        """The bars erased and the cursor shown while ``then`` runs, and ``text`` written
        first; ``back``: the cursor hidden again after. (The lock waited for a little only:
        a frame being drawn may wait for this thread.)"""
        lock = getattr(self.live, "_lock", None)  # (rich's, held while it draws a frame)
        got = lock is not None and lock.acquire(timeout=0.5)
        try:
            out = self.console.file
            erase = self.region.position_cursor().segment.text if got else ""
            if got:
                self.region.widths = []  # (nothing of ours on the screen to move up over)
            _write(out, erase + "\x1b[?25h" + text)
            then()
            if back:
                _write(out, "\x1b[?25l")
        finally:
            if got and lock is not None:
                lock.release()

    def __enter__(self) -> RichProgress:
        self.live.start(refresh=True)
        # (from the main thread only; a handler or SIG_IGN set before is left alone)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTSTP, signal.SIGQUIT):
                if signal.getsignal(signum) is signal.SIG_DFL:
                    signal.signal(signum, self.suspend if signum == signal.SIGTSTP else self.quit)
                    self._handled.append(signum)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum in self._handled:  # (first: a Ctrl+Z from now on must not erase lines)
            signal.signal(signum, signal.SIG_DFL)
        self._handled = []
        self.live.stop()
        with self._lock:
            lines = self.retries.last_lines()
        for line in lines:  # (the retries not said: below where the bars were)
            self._print(line, "yellow")


def _write(out: IO[str], text: str) -> None:
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError):
        pass


def _quit_process(signum: int) -> None:
    """End as ``signum``'s default does."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _stop_process() -> None:
    """Stop as SIGTSTP's default does; returns when the process is continued."""
    handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    try:
        os.kill(os.getpid(), signal.SIGTSTP)
    finally:
        signal.signal(signal.SIGTSTP, handler)


def _run_line(t: Tally) -> _Line:
    """The run's line: its files (``3/7+``: more may come), bytes, speed, time left. The
    bar and the time left go by bytes when the run's are known, else by files when their
    number is (a list of URLs: no file's size is known before it starts)."""
    total = t.total
    count = f"{t.ended}/{t.seen}{'+' if t.more else ''}"
    if total is not None:
        done, size, left = t.done, total, t.rate.left(total - t.done)
    elif t.more or not t.seen:
        done, size, left = 0, None, None
    else:
        done, size, left = t.ended, t.seen, t.files_left()
    return _Line(f"total [{count} files]", done, size, _pair(t.done, total),
                 _brief(t.done, total), _speed(t.rate), _left(left), False,
                 shorts=(f"{count} files", count))


class _Line(NamedTuple):
    """One bar's line, its numbers as text."""

    name: str
    done: int
    size: int | None
    bytes: str
    brief: str  # the bytes where they do not fit
    speed: str
    left: str
    is_file: bool  # (else the run's line)
    shorts: tuple[str, ...] = ()  # the names where it does not fit (the run's count, whole)


def _table(lines: list[_Line], more: int, width: int, now: float, dots: str = "…") -> Table:
    """The lines laid out for ``width``: name, bar, bytes, speed, time left; a narrower
    terminal drops the time left, then the speed, then has the bytes in short (``25%``)
    before a name gets under 16 cells; narrower still, the bar gets shorter, then goes."""
    kept = dict(AFTER)
    for column in AFTER:
        if width - sum(kept.values()) - 1 >= BAR + 16:
            break
        del kept[column]
    if "bytes" not in kept:
        kept["brief"] = 1 + max(cell_len(line.brief) for line in lines)
    room = width - sum(kept.values()) - 1  # for the name and the bar
    if room >= BAR + 16:
        name_cells = min(NAME, room - max(BAR, room // 3))
    elif room >= LEAST_NAME + LEAST_BAR:
        name_cells = room - min(BAR, room - LEAST_NAME)
    else:  # (no bar: its cells and the space after it are the name's)
        name_cells = max(1, room + 1)
    bar = room >= LEAST_NAME + LEAST_BAR
    columns = [c for c in ("bytes", "brief", "speed", "left") if c in kept]
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(width=name_cells, no_wrap=True)
    if bar:
        table.add_column(ratio=1, no_wrap=True)
    for c in columns:
        table.add_column(width=kept[c] - 1, no_wrap=True,
                         justify="left" if c == "left" else "right")
    for line in lines:
        cells = {"bytes": Text(line.bytes, style="progress.download"),
                 "brief": Text(line.brief, style="progress.percentage"),
                 "speed": Text(line.speed, style="progress.data.speed"),
                 "left": Text(line.left, style="progress.remaining")}
        names = (line.name, *line.shorts)
        name = next((n for n in names if cell_len(n) <= name_cells), names[-1])
        shown: list[RenderableType] = [Text(fit(name, name_cells, keep_end=line.is_file,
                                                dots=dots))]
        if bar:
            shown.append(_Bar(total=line.size, completed=line.done, animation_time=now))
        table.add_row(*shown, *(cells[c] for c in columns))
    if more:
        table.add_row(Text(fit(f"(+{more} more active)", name_cells, keep_end=False,
                               dots=dots)))
    return table
