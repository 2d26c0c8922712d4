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
    "Retrying",
    "Skipped",
    "Started",
    "Warned",
]


@dataclass(frozen=True)
class Event:
    item: Item
    path: Path | None  # final output path, once known


@dataclass(frozen=True)
class Started(Event):
    size: int | None  # total bytes if known
    resumed: int  # bytes already on disk from an earlier run
    connections: int = 1


@dataclass(frozen=True)
class Progress(Event):
    done: int  # bytes of output written so far (resumed bytes included)
    size: int | None
    connections: int = 1


@dataclass(frozen=True)
class PieceDone(Event):
    index: int
    size: int


@dataclass(frozen=True)
class Retrying(Event):
    error: OmnigetError
    attempt: int
    delay: float


@dataclass(frozen=True)
class Skipped(Event):
    reason: str  # "exists", "archived", "filtered", ...


@dataclass(frozen=True)
class Finished(Event):
    size: int
    verified: str | None  # e.g. "sha256", "size", or None when nothing could be checked
    fetched: int  # bytes fetched in this run


@dataclass(frozen=True)
class Failed(Event):
    error: OmnigetError


@dataclass(frozen=True)
class Warned(Event):
    message: str


EventHandler = Callable[[Event], None]
