"""Typed events the engine emits. Consumers (progress bars, JSON lines, the report) observe
them; the engine never imports a UI.

An event is one occurrence: events compare (and hash) by identity. Every consumer sees
the same object, so none may change it; the classes are not frozen all the same, nor
have generated ``__eq__``/``__hash__``: each such method is compiled at every start
(frozen ones cost ~1 M instructions per class)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .._frozen import plain_dataclass
from ..errors import OmnigetError
from ..masks import mask_secrets
from ..model import Item

__all__ = [
    "Event",
    "EventHandler",
    "Failed",
    "Finished",
    "Listed",
    "PieceDone",
    "Progress",
    "Queued",
    "Retrying",
    "Skipped",
    "Started",
    "Warned",
]


@plain_dataclass
class Event:
    """Base of every event: the item it is about and its output path."""

    item: Item
    path: Path | None  # final output path, once known


@plain_dataclass
class Queued(Event):
    """The run's list holds the item; it starts when a slot is free. A list in memory (URLs
    given, a list read) is announced ahead as far as that is quick, and counted whole from
    its first Queued: ``ahead`` of its entries are not announced yet, each is as its turn
    comes (one may give several items, or none). Items a source finds as it goes (or a
    list read as it goes) are announced one by one as they come. Each ends with one
    Finished, Failed or Skipped, but one a stopped run never began: that has no end (and
    no result in the report, whose ``stopped`` says the list was cut)."""

    more: bool  # items beyond those announced and ``ahead`` may follow (a source finding them)
    ahead: int = 0  # entries of the list counted but not announced yet


@plain_dataclass
class Listed(Event):
    """The run's list changed without a Queued: ``more`` and ``ahead`` as there. Sent when
    a source has found all its items (``item``: its URL), when an entry counted ahead
    gave no item (its failure or its filter said so), and when a run was stopped before it
    took the first entry of its list (``item``: that entry; ``ahead``: them all)."""

    more: bool
    ahead: int = 0


@plain_dataclass
class Started(Event):
    """A file's transfer began (``resumed`` bytes were already on disk): at its first
    answer, or, resumed, before its first request (its bytes shown from then on)."""

    size: int | None  # total bytes if known
    resumed: int  # bytes already on disk from an earlier run
    connections: int = 1


@plain_dataclass
class Progress(Event):
    """Bytes written so far; at most every 0.25 s per file (``job.PROGRESS_EVERY``), less
    often after a slow handler (``job.HANDLER_SHARE``)."""

    done: int  # bytes of output written so far (resumed bytes included)
    size: int | None
    connections: int = 1


@plain_dataclass
class PieceDone(Event):
    """One piece of the item was fetched and verified."""

    index: int
    size: int


@plain_dataclass
class Retrying(Event):
    """A transient error; the engine tries again after ``delay`` seconds."""

    error: OmnigetError
    attempt: int
    delay: float


@plain_dataclass
class Skipped(Event):
    """The item was not downloaded (``reason`` says why)."""

    reason: str  # "exists", "same-name" (an earlier item of the run wrote it), "filtered", ...


@plain_dataclass
class Finished(Event):
    """The file is complete, verified and in place."""

    size: int
    verified: str | None  # e.g. "sha256", "size", or None when nothing could be checked
    fetched: int  # bytes fetched in this run
    #: bytes of it an earlier run wrote and this one did not fetch again: Started's
    #: ``resumed``, less those a later answer sent again (a server that stopped
    #: honouring Range); None: not said (Started's stands)
    resumed: int | None = None


@plain_dataclass
class Failed(Event):
    """The item could not be downloaded. ``after_finished``: the file was reported
    Finished before, and this takes that back (the disk reported an error writing it
    once it was in place: its bytes may not be on the disk); it is one file, ended once,
    that failed."""

    error: OmnigetError
    after_finished: bool = False


@plain_dataclass
class Warned(Event):
    """Something the user should know that does not stop the item (the secrets of a URL
    it names masked, as an error's are)."""

    message: str

    def __post_init__(self) -> None:
        self.message = mask_secrets(self.message)


EventHandler = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The handler of a run nobody listens to: its per-file events are not even built."""
