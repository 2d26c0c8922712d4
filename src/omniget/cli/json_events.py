"""``--json``: each engine event of a run as one JSON line (:class:`JsonEvents`), its
fields as :func:`event_to_dict` makes them, secrets masked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from ..engine.events import (
    Event,
    Failed,
    Finished,
    Listed,
    PieceDone,
    Progress,
    Queued,
    Retrying,
    Skipped,
    Started,
    Warned,
)
from ..errors import OmnigetError, StorageError, write_error
from .output import Masker, event_path, flush, json_line, last_words, stream_name
from .tally import Tally

__all__ = ["JsonEvents", "event_to_dict"]


def _error_dict(error: OmnigetError, mask: Masker) -> dict[str, Any]:
    return {"error": mask(str(error)), "error_type": type(error).__name__,
            "exit_code": error.exit_code}


def event_to_dict(event: Event, mask: Masker, folder: Path | None = None) -> dict[str, Any]:
    """One engine event as a flat JSON-safe dict: ``{"event": "finished", "path": ...}``
    (a file with no path yet: its own under ``folder``, the run's output folder)."""
    d: dict[str, Any] = {
        "event": type(event).__name__.lower(),
        "path": event_path(event, mask, folder),
        "url": mask(event.item.download_url),
    }
    match event:
        case Started():
            d.update(size=event.size, resumed=event.resumed, connections=event.connections)
        case Progress():
            d.update(done=event.done, size=event.size, connections=event.connections)
        case PieceDone():
            d.update(index=event.index, size=event.size)
        case Retrying():
            d.update(attempt=event.attempt, delay=event.delay, **_error_dict(event.error, mask))
        case Skipped():
            d.update(reason=event.reason)
        case Finished():
            d.update(size=event.size, verified=event.verified, fetched=event.fetched)
        case Failed():
            d.update(_error_dict(event.error, mask))
            if event.after_finished:  # (only then: it takes back the file's finished event)
                d["after_finished"] = True
        case Warned():
            d.update(message=mask(event.message))
    return d


class JsonEvents:
    """``--json``: one JSON line per event on ``out``; Progress at most every ``interval`` s.

    A write error (disk full) does not stop the download: it is kept in ``error``, and
    nothing more is written (the CLI reports it at the end, exit 7); nor after the
    ``summary`` line, the run's last. ``tally()`` counts what the events told, for a
    summary when the run had no report (a second Ctrl+C); the files never begun and the
    bytes resumed come from the events alone (as the human summary's)."""

    def __init__(
        self,
        out: IO[str],
        mask: Masker,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.mask, self.interval, self.clock = out, mask, interval, clock
        #: The run's output folder: a file stopped before it had a path is said under it.
        self.folder: Path | None = None
        self.error: StorageError | None = None
        self._ended_run = False  # (the summary is written)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ended = {"ok": 0, "skipped": 0, "failed": 0, "interrupted": 0}
        self._running: set[str] = set()  # started, not ended
        self._seen = Tally(clock)  # (the list's length, the bytes fetched and resumed)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._seen(event, "")
            if isinstance(event, Queued | Listed):  # (a line per URL before any file: no)
                return
            key = event.item.key
            if isinstance(event, Progress):
                now = self.clock()
                if now - self._last.get(key, -self.interval) < self.interval:
                    return
                self._last[key] = now
            elif isinstance(event, Started):
                self._running.add(key)
            elif isinstance(event, Finished | Failed | Skipped):
                self._last.pop(key, None)
                self._running.discard(key)
                self._count(event)
            self._write(event_to_dict(event, self.mask, self.folder))

    def _count(self, event: Finished | Failed | Skipped) -> None:
        ended = self._ended
        if isinstance(event, Finished):
            ended["ok"] += 1
        elif isinstance(event, Skipped):
            ended["skipped"] += 1
        elif event.after_finished:  # (counted ok at its Finished: failed instead)
            ended["ok"] -= 1
            ended["failed"] += 1
        else:
            ended["interrupted" if event.error.exit_code == 130 else "failed"] += 1

    def tally(self) -> dict[str, float]:
        """The summary's counts as the events told them (files started and not ended
        count as interrupted; bytes fetched, as the progress events told them, of the
        files cut too; the files of the list never begun, 0 while the list's length is
        not known)."""
        with self._lock:
            return self._counts()

    def _counts(self) -> dict[str, float]:
        seen = self._seen
        counts: dict[str, float] = dict(self._ended)
        counts["fetched"] = seen.fetched
        counts["interrupted"] += len(self._running)
        left = seen.seen - seen.ended - len(seen.files)
        counts["not_started"] = 0 if seen.more else max(0, left)
        counts["resumed"] = seen.resumed
        counts["elapsed"] = round(self.clock() - seen.began, 3)
        return counts

    def line(self, record: Mapping[str, Any]) -> None:
        """One more JSON line (the summary), unless writing failed before."""
        with self._lock:
            self._write(record)

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.error is None and not self._ended_run:
            self._ended_run = record.get("event") == "summary"
            try:
                json_line(self.out, record)
            except StorageError as e:
                self.error = e
            except BrokenPipeError as e:  # (its reader went away: the download goes on)
                self.error = write_error(e, stream_name(self.out), what=None)

    def __enter__(self) -> JsonEvents:
        return self

    def quit_with(
        self,
        text: str | Callable[[], str],
        then: Callable[[], object],
        summary: Callable[[dict[str, float]], Mapping[str, Any]] | None = None,
    ) -> None:
        """As the others', with ``summary(counts)`` (the counts of :meth:`tally`) as the
        last JSON line first."""
        before = None if summary is None else lambda: self._write(summary(self._counts()))
        last_words(text, then, self._lock, before)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self.error is None:
                try:
                    flush(self.out)
                except StorageError as e:
                    self.error = e
                except BrokenPipeError as e:
                    self.error = write_error(e, stream_name(self.out), what=None)
