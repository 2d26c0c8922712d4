"""The numbers the progress displays show, worked out from the engine's events: each active
file's bytes and speed, the run's files and bytes, its speed and what is left.

Speeds count only bytes fetched in this run: a resumed file's bytes already on disk move
its bar, never its speed or the time left. Bytes fetched again after a retry started a file
over count again (they were fetched); the bar goes back, the total does not count them twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.events import Event, Failed, Finished, Progress, Skipped, Started

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

    def add(self, n: int) -> None:
        if n <= 0:
            return
        self.total += n
        now = self.clock()
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
        return (self.total - then) / elapsed

    def left(self, remaining: int | None) -> float | None:
        """Seconds until ``remaining`` more bytes are in at this speed (None: unknown)."""
        speed = self.speed()
        if remaining is None or not speed:
            return None
        return max(0, remaining) / speed


def clock_time(seconds: float | None) -> str:
    """``0:01:05``; ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}"


@dataclass
class Tracked:
    """An active file: its name as shown, bytes done (resumed ones included), size if
    known, and its speed."""

    name: str
    done: int
    size: int | None
    rate: Rate


class Tally:
    """The run so far: ``files`` active (in start order), ``seen`` and ``ended`` counts,
    ``done`` bytes and the ``size`` of the files that count (active and finished; failed
    and skipped ones drop out), the run's speed. ``total`` is None before any file and
    while one of unknown size is active. The sums are kept up as events come, so an event
    costs the same in a run of many files."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.files: dict[str, Tracked] = {}
        self.seen = self.ended = 0
        self.done = self.size = 0
        self.unsized = 0  # active files of unknown size
        self.rate = Rate(clock)
        self._keys: set[str] = set()

    @property
    def total(self) -> int | None:
        return None if self.unsized or not (self.files or self.ended) else self.size

    def __call__(self, event: Event, name: str) -> Tracked | None:
        """Count ``event`` (its file shown as ``name``); returns the file if still active."""
        key = event.item.key
        if key not in self._keys:
            self._keys.add(key)
            self.seen += 1
        match event:
            case Started():
                self._drop(key)
                return self._add(key, name, event.resumed, event.size)
            case Progress():
                # (no Started seen: its bytes so far are not this run's)
                file = self.files.get(key) or self._add(key, name, event.done, event.size)
                self._move(file, event.done, event.size)
                return file
            case Finished():
                file = self.files.pop(key) if key in self.files else self._add(
                    key, name, 0, None, keep=False)
                self._move(file, event.size, event.size)  # (it stays counted)
                self.ended += 1
            case Failed() | Skipped():
                self._drop(key)
                self.ended += 1
        return None

    def _add(
        self, key: str, name: str, done: int, size: int | None, *, keep: bool = True
    ) -> Tracked:
        file = Tracked(name, done, size, Rate(self.clock))
        if keep:
            self.files[key] = file
        self._count(file, +1)
        return file

    def _count(self, file: Tracked, sign: int) -> None:
        self.done += sign * file.done
        if file.size is None:
            self.unsized += sign
        else:
            self.size += sign * file.size

    def _move(self, file: Tracked, done: int, size: int | None) -> None:
        """The file is at ``done`` of ``size`` now; bytes past its last mark were fetched."""
        fetched = done - file.done
        if fetched > 0:
            file.rate.add(fetched)
            self.rate.add(fetched)
        self._count(file, -1)
        file.done, file.size = done, size
        self._count(file, +1)

    def _drop(self, key: str) -> None:
        file = self.files.pop(key, None)
        if file is not None:
            self._count(file, -1)
