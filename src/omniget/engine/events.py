"""Typed events the engine emits. Consumers (progress bars, JSON lines, the report) observe
them; the engine never imports a UI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import OmnigetError
from ..model import Item

__all__ = [
    "Event",
    "EventHandler",
    "Failed",
    "Finished",
    "PieceDone",
    "Progress",
    "Queued",
    "Retrying",
    "Skipped",
    "Started",
    "Warned",
]


@dataclass(frozen=True)
class Event:
    """Base of every event: the item it is about and its output path."""

    item: Item
    path: Path | None  # final output path, once known


@dataclass(frozen=True)
class Queued(Event):
    """The run's list holds the item; it starts when a slot is free. A list in memory (URLs
    given, a list read) is announced whole before any file starts; items a source finds
    as it goes (or a list read as it goes), one by one as they come."""

    more: bool  # items not announced yet may follow (False: the run's list is complete)


@dataclass(frozen=True)
class Started(Event):
    """A file's transfer began (``resumed`` bytes were already on disk)."""

    size: int | None  # total bytes if known
    resumed: int  # bytes already on disk from an earlier run
    connections: int = 1


@dataclass(frozen=True)
class Progress(Event):
    """Bytes written so far; at most every 0.25 s per file (``job.PROGRESS_EVERY``)."""

    done: int  # bytes of output written so far (resumed bytes included)
    size: int | None
    connections: int = 1


@dataclass(frozen=True)
class PieceDone(Event):
    """One piece of the item was fetched and verified."""

    index: int
    size: int


@dataclass(frozen=True)
class Retrying(Event):
    """A transient error; the engine tries again after ``delay`` seconds."""

    error: OmnigetError
    attempt: int
    delay: float


@dataclass(frozen=True)
class Skipped(Event):
    """The item was not downloaded (``reason`` says why)."""

    reason: str  # "exists", "same-name" (an earlier item of the run wrote it), "filtered", ...


@dataclass(frozen=True)
class Finished(Event):
    """The file is complete, verified and in place."""

    size: int
    verified: str | None  # e.g. "sha256", "size", or None when nothing could be checked
    fetched: int  # bytes fetched in this run


@dataclass(frozen=True)
class Failed(Event):
    """The item could not be downloaded."""

    error: OmnigetError


@dataclass(frozen=True)
class Warned(Event):
    """Something the user should know that does not stop the item."""

    message: str


EventHandler = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The handler of a run nobody listens to: its per-file events are not even built."""
