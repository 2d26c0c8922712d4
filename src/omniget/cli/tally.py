"""The numbers the progress displays show, worked out from the engine's events: each active
file's bytes and speed, the run's files and bytes, its speed and what is left.

Speeds count only bytes fetched in this run: a resumed file's bytes already on disk move
its bar, never its speed or the time left. Bytes fetched again after a retry started a file
over count again (they were fetched); the bar goes back, the total does not count them twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from .._frozen import plain_dataclass
from ..engine.events import Event, Failed, Finished, Listed, Progress, Queued, Skipped, Started

__all__ = ["Rate", "Tally", "Tracked", "clock_time"]

Clock = Callable[[], float]


class Rate:
    """Bytes per second over about the last ``window`` seconds, from what :meth:`add` was
    given; it falls to 0 when nothing comes (a stall), and is None for the first ``least``
    seconds (a first burst says little)."""

    def __init__(self, clock: Clock, *, window: float = 5.0, least: float = 0.5) -> None:
        self.clock, self.window, self.least = clock, window, least
        self.total = 0
        self._marks: deque[tuple[float, int]] = deque([(clock(), 0)])  # (when, total then)
        self._latest = -math.inf  # when bytes last came

    def add(self, n: int) -> None:
        if n <= 0:
            return
        self.total += n
        now = self._latest = self.clock()
        if now - self._marks[-1][0] >= self.least:
            self._marks.append((now, self.total))

    def speed(self) -> float | None:
        now = self.clock()
        marks, start = self._marks, now - self.window
        while len(marks) > 1 and marks[1][0] <= start:
            marks.popleft()  # (the newest mark before the window stays: the base)
        when, then = marks[0]
        elapsed = now - when
        if elapsed < self.least:
            return None
        if self._latest <= start:  # (none in the window: those of a burst too short to mark)
            return 0.0
        return (self.total - then) / elapsed

    def left(self, remaining: int | None) -> float | None:
        """Whole seconds until ``remaining`` more bytes are in at this speed, rounded up
        (``0:00:00`` left is for nothing left); None: unknown."""
        speed = self.speed()
        if remaining is None or not speed:
            return None
        return math.ceil(max(0, remaining) / speed)


def clock_time(seconds: float | None) -> str:
    """``0:01:05``; ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}"


@plain_dataclass
class Tracked:
    """An active file: its name as shown, bytes done (resumed ones included), size if
    known, and its speed."""

    name: str
    done: int
    size: int | None
    rate: Rate


class Tally:
    """The run so far: ``files`` active (in start order), ``seen`` (the files the run knows
    of: those its list announced, and any other that had an event) and ``ended`` counts,
    ``done`` bytes and the ``size`` of the files that count (active and finished; failed
    and skipped ones drop out), the run's speed, and its speed in files (``ending``).
    ``more``: the list may hold files not counted yet (a source finding them as it
    goes); ``ahead``: entries of the list counted (in ``seen``) but not announced yet.
    ``resumed``: bytes that files begun in this run had on disk from an earlier one;
    ``fetched``: bytes this run fetched, as the events told them (a second signal's counts
    line, which has no report), since ``began``.
    ``ok``, ``skipped``, ``failed`` and ``cut`` (interrupted) count the files ended so.
    ``total`` (bytes) is None before any file, while one of unknown size is active or
    waits, while entries are not announced and while the list may grow. The sums are
    kept up as events come, so an event costs the same in a run of many files."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.began = clock()
        self.files: dict[str, Tracked] = {}
        self.listed = self.unlisted = self.ended = 0
        self.more = False
        self.ahead = 0  # entries of the list counted, not announced yet
        self.done = self.size = 0
        self.unsized = 0  # active and waiting files of unknown size
        self.resumed = self.fetched = 0
        self.ok = self.skipped = self.failed = self.cut = 0
        self._resumed: dict[str, int] = {}  # (files begun at a resumed byte: how far)
        self.rate = Rate(clock)
        self.ending = Rate(clock)  # files ended, per second
        self._waiting: dict[str, list[int | None]] = {}  # announced, not begun: their sizes
        self._begun = False  # (a file has begun)

    @property
    def seen(self) -> int:
        return self.listed + self.unlisted + self.ahead

    @property
    def total(self) -> int | None:
        if self.unsized or self.more or self.ahead or not (
            self.files or self.ended or self._waiting
        ):
            return None
        return self.size

    def files_left(self) -> float | None:
        """Seconds until the rest of the files are in, at the rate files end (None: the
        list may grow, or too early to say)."""
        return None if self.more else self.ending.left(self.seen - self.ended)

    def __call__(self, event: Event, name: str) -> Tracked | None:
        """Count ``event`` (its file shown as ``name``); returns the file if still active."""
        key = event.item.key
        match event:
            case Queued():
                self.listed += 1
                self.more, self.ahead = event.more, event.ahead
                size = event.item.size_bytes
                self._waiting.setdefault(key, []).append(size)
                self._count_size(size, +1)
            case Listed():
                self.more, self.ahead = event.more, event.ahead
            case Started():
                if not self._drop(key):  # (else: a file started over)
                    self._begin(key)
                if event.resumed or key in self._resumed:  # (a start over: its latest)
                    self.resumed += event.resumed - self._resumed.get(key, 0)
                    self._resumed[key] = event.resumed
                return self._add(key, name, event.resumed, event.size)
            case Progress():
                # (no Started seen: its bytes so far are not this run's)
                file = self.files.get(key)
                if file is None:
                    self._begin(key)
                    file = self._add(key, name, event.done, event.size)
                self._move(file, event.done, event.size)
                return file
            case Finished():
                if event.resumed is not None and key in self._resumed:
                    # (fewer than at its start, if an answer sent some of them again)
                    self.resumed += event.resumed - self._resumed.pop(key)
                file = self.files.pop(key, None)
                if file is None:
                    self._begin(key)
                    file = self._add(key, name, 0, None, keep=False)
                self._move(file, event.size, event.size)  # (it stays counted)
                self._end()
                self.ok += 1
            case Failed() if event.after_finished:  # (ended at its Finished: it failed)
                self.ok -= 1
                self.failed += 1
            case Failed() | Skipped():
                if not self._drop(key):
                    self._begin(key)
                self._end()
                if isinstance(event, Skipped):
                    self.skipped += 1
                elif event.error.exit_code == 130:  # (Cancelled: a rerun resumes it)
                    self.cut += 1
                else:
                    self.failed += 1
        return None

    def _begin(self, key: str) -> None:
        """A file's first event (but Queued): it stops waiting, or is one the list did not
        announce."""
        sizes = self._waiting.get(key)
        if sizes is None:
            self.unlisted += 1
            return
        self._count_size(sizes.pop(0), -1)
        if not sizes:
            del self._waiting[key]

    def _end(self) -> None:
        self.ended += 1
        self.ending.add(1)

    def _add(
        self, key: str, name: str, done: int, size: int | None, *, keep: bool = True
    ) -> Tracked:
        if not self._begun:  # the run's speeds count from its first file, not before it
            self._begun = True
            self.rate, self.ending = Rate(self.clock), Rate(self.clock)
        file = Tracked(name, done, size, Rate(self.clock))
        if keep:
            self.files[key] = file
        self._count(file, +1)
        return file

    def _count_size(self, size: int | None, sign: int) -> None:
        if size is None:
            self.unsized += sign
        else:
            self.size += sign * size

    def _count(self, file: Tracked, sign: int) -> None:
        self.done += sign * file.done
        self._count_size(file.size, sign)

    def _move(self, file: Tracked, done: int, size: int | None) -> None:
        """The file is at ``done`` of ``size`` now; bytes past its last mark were fetched."""
        fetched = done - file.done
        if fetched > 0:
            file.rate.add(fetched)
            self.rate.add(fetched)
            self.fetched += fetched
        self._count(file, -1)
        file.done, file.size = done, size
        self._count(file, +1)

    def _drop(self, key: str) -> bool:
        """The active file ``key`` stops counting; False if it was not active."""
        file = self.files.pop(key, None)
        if file is None:
            return False
        self._count(file, -1)
        return True
