"""The resume journal's open file, under :class:`~omniget.engine.journal.Journal`'s reads
and writes (:class:`Handle`, its base class): the connection, locked, with its errors
translated and each call's transaction (``_conn``); a journal file removed or replaced
during a run followed before a write, at most every :data:`CHECK_EVERY` seconds, and at
the close (see :func:`.opening.follow`); one a later call found damaged closed and moved
aside (:meth:`Handle.set_aside`); and this boot's id (:func:`boot_id`), which says whether
the spans and pieces recorded as written but not synced can be trusted. The journal itself
is :mod:`.journal`."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from .opening import Beside, beside, follow, guard, open_or_repair
from .repair import move_if_same
from .texts import Texts

__all__ = ["CHECK_EVERY", "Handle", "boot_id"]

log = logging.getLogger(__name__)

_BOOT: str | None = None
#: Seconds between two looks for a removed journal file before a write (the writes in
#: between go to the removed file, and are copied when it is made again).
CHECK_EVERY = 1.0


def boot_id() -> str:
    """This boot of the machine: Linux's boot id; elsewhere the boot time to the second
    (a sleep may shift it, which only makes a run trust fewer recorded bytes)."""
    global _BOOT
    if _BOOT is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT = f.read().strip()
        except OSError:
            _BOOT = ""
        _BOOT = _BOOT or f"t{round(time.time() - time.monotonic())}"
    return _BOOT


class Handle:
    """The journal file at ``path``, open (see the module's doc); :class:`.Journal` adds
    its reads and writes to it."""

    def __init__(
        self, path: Path, *, now: Callable[[], float] = time.time, boot: str | None = None
    ) -> None:
        self.path = Path(os.path.abspath(path))  # (a chdir later changes nothing)
        self._now = now
        self._boot = boot or boot_id()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        #: (device, inode) of the file opened; None: not watched (see _check_file)
        self._ident: tuple[int, int] | None = None
        self._checked = 0.0  # monotonic time the file was last looked for
        self._closed = "the journal is closed"  # (what a call says once it is)
        #: Closed by :meth:`set_aside`: a run found the file damaged (see :meth:`reopened`).
        self.found_damaged = False
        with guard(self.path, "open"):
            (self._db, self._ident), repaired = open_or_repair(self.path, now)
        #: Its -wal and -shm (see :func:`.opening.follow`)
        self._logs: Beside | None = beside(self.path)
        if repaired:
            log.warning("%s", repaired)

    @contextmanager
    def _conn(
        self, action: str, *, tx: bool = False, write: bool = True
    ) -> Iterator[Texts]:
        """The connection, locked, errors translated, its texts stored as SQLite takes them
        (see :mod:`.texts`); ``tx`` wraps the block in a transaction. Before a write, a
        journal file removed since it was opened is made again."""
        with self._lock, guard(self.path, action):
            if self._db is None:
                raise sqlite3.ProgrammingError(self._closed)
            if write and self._ident is not None:
                now = time.monotonic()
                if now - self._checked >= CHECK_EVERY:
                    self._checked = now
                    self._check_file()
            db = self._db
            if not tx:
                yield Texts(db)
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield Texts(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _check_file(self) -> None:
        """Follow a journal file removed or replaced since it was opened (see
        :func:`.opening.follow`)."""
        assert self._db is not None and self._ident is not None
        followed = follow(self.path, self._db, self._ident, self._logs)
        if followed is not None:
            self._db, self._ident = followed
            self._logs = beside(self.path) if self._ident is not None else None

    @property
    def closed(self) -> bool:
        return self._db is None

    def set_aside(self) -> Path | None:
        """A call found the file damaged (see :func:`.repair.damaged`) after it was opened:
        close the journal and move the file aside, with its -wal and -shm, as a damaged one
        found at the open is (unless another file took its place meanwhile: another run
        moved it aside, or it was removed and made again). The new name, or None; a
        StorageError if it could not be moved."""
        with self._lock:
            db, self._db = self._db, None
            if db is None:
                return None
            self.found_damaged = True
            self._closed = "it was found damaged and closed"
            ident, self._ident = self._ident, None
            try:  # (SQLite writes its log into it and removes it, unless the file moved)
                db.close()
            except sqlite3.Error:
                pass
            if ident is None:
                return None  # (its file was removed: none at the path is it)
            with guard(self.path, "moving aside"):
                aside = move_if_same(self.path, ident, self._now())
            if aside is not None:
                self._closed = "it was found damaged and moved aside"
            return aside

    def close(self) -> None:
        """Close it; what was written since the last look for the journal file (see
        :meth:`_conn`) reaches the one at its path first, if that is another now."""
        with self._lock, guard(self.path, "close"):
            if self._db is not None:
                if self._ident is not None:
                    self._last_look()
                db, self._db = self._db, None
                db.close()

    def _last_look(self) -> None:
        """:meth:`_check_file` at the close (one stat per run)."""
        try:
            self._check_file()
        except (sqlite3.Error, OSError) as exc:
            log.warning("resume journal %s: it was removed or replaced during the run, and"
                        " this run's records could not be copied into the new one (%s); the"
                        " downloads this run left unfinished start over", self.path, exc)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
