"""The resume journal's open file, under :class:`~omniget.engine.journal.Journal`'s reads
and writes (:class:`Handle`, its base class): the connection, locked, with its errors
translated and each call's transaction (``_conn``); a journal file removed or replaced
during a run followed before a write, at most every :data:`CHECK_EVERY` seconds, and at
the close (see :func:`.opening.follow`); one a later call found damaged closed and moved
aside (:meth:`Handle.set_aside`); and this boot's id (:func:`boot_id`), which says whether
the spans and pieces recorded as written but not synced can be trusted. The journal itself
is :mod:`.journal`.

A write never waits long for another program's lock on the file (an sqlite3 shell left
in a write transaction; the engine writes on its event loop, where a wait stalls every
transfer): one that meets the lock for :data:`QUICK_WAIT` (another omniget run's writes
hold it for a few ms) waits in memory, with every write after it, and a thread of the
journal's writes them, in order and in one transaction, once the lock is let go
(:data:`PENDING_MAX` writes at most: then a write fails). Meanwhile a read of a record
with writes waiting reads it as they will leave it (a copy of its rows in memory, with
those writes made on it: they read as none, and a piece recorded then was fetched
again), and the close
waits for the lock (BUSY_WAIT at most) to write what waits; a lock still held then is
said. Reads do not meet a writer's lock (WAL mode); one that meets another lock (a
recovery under way) waits for it, as before."""

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
from typing import Any, Self

from ...errors import StorageError
from . import schema
from .opening import Beside, beside, follow, guard, open_or_repair
from .records import RecordGone
from .repair import move_if_same
from .texts import Texts, stored

__all__ = ["CHECK_EVERY", "PENDING_MAX", "Handle", "boot_id"]

log = logging.getLogger(__name__)

_BOOT: str | None = None
#: Seconds between two looks for a removed journal file before a write (the writes in
#: between go to the removed file, and are copied when it is made again).
CHECK_EVERY = 1.0
#: Writes that wait in memory for another program's lock at most (then one fails).
PENDING_MAX = 50_000
#: Seconds between two tries for the lock, at most, while writes wait for it.
POLL_MAX = 0.25
#: Seconds a write on the caller's thread waits for the lock before it waits in memory:
#: another omniget run sharing the state folder holds it for a few ms at a time (its
#: writes are as short as these), long enough to be waited out where it is met.
QUICK_WAIT = 0.1

#: A write: what it does on the connection, in its transaction.
Write = Callable[[Texts], None]


def _busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection's lock)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or (
        "database is locked" in str(exc))


def _quick(db: sqlite3.Connection, wait: float | None = None) -> sqlite3.Connection:
    """``db`` set to wait ``wait`` seconds (QUICK_WAIT) at most for a lock (see the
    module)."""
    db.execute(f"PRAGMA busy_timeout = {round((QUICK_WAIT if wait is None else wait) * 1000)}")
    return db


def _end_left_open(db: sqlite3.Connection) -> None:
    """Roll back a transaction left open on ``db`` (an exception, a Ctrl+C's
    KeyboardInterrupt, cut a write or its rollback): else every later write fails with
    "cannot start a transaction within a transaction"."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error as exc:  # (a later write says what is wrong)
            log.debug("rolling back a write cut short failed: %s", exc)


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
        self, path: Path, *, now: Callable[[], float] = time.time, boot: str | None = None,
        private: bool = True, state_from: str = "--state-dir",
    ) -> None:
        self.path = Path(os.path.abspath(path))  # (a chdir later changes nothing)
        self._state_from = state_from  # (where its folder was set, for an error)
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
        #: Writes waiting for another program's lock (see the module), each with the
        #: keys it writes, and all their keys.
        self._pending: list[tuple[str, Write, tuple[str, ...]]] = []
        self._pending_keys: set[str] = set()
        #: Each key's last write waiting, if it replaces its like (see _write).
        self._last: dict[str, int] = {}
        self._locked_since = 0.0  # (monotonic: when the first of them met the lock)
        self._writer: threading.Thread | None = None  # (the thread that writes them)
        self._stop = threading.Event()
        self._failed: StorageError | None = None  # (why writing them failed)
        with guard(self.path, "open", state_from):
            (db, self._ident), repaired = open_or_repair(self.path, now, private)
            self._db = _quick(db)
        #: Its -wal and -shm (see :func:`.opening.follow`)
        self._logs: Beside | None = beside(self.path)
        if repaired:
            log.warning("%s", repaired)

    @contextmanager
    def _conn(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, locked, errors translated."""
        with self._lock, guard(self.path, action):
            if self._db is None:
                raise sqlite3.ProgrammingError(self._closed)
            yield self._db

    def _read(self, action: str, read: Callable[[Texts], Any], key: str | None = None,
              none: Any = None) -> Any:
        """``read`` made on the connection (its texts stored as SQLite takes them and
        read back, see :mod:`.texts`); ``none`` if ``key`` has writes waiting (see the
        module). A lock met (not a writer's, in WAL mode: a recovery under way) is waited
        for, BUSY_WAIT at most."""
        with self._conn(action) as db:
            if key is not None and key in self._pending_keys:
                return self._as_pending(db, key, read, none)
            try:
                return read(Texts(db))
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
            db.execute(f"PRAGMA busy_timeout = {round(schema.BUSY_WAIT * 1000)}")
            try:
                return read(Texts(db))
            finally:
                _quick(db)

    def _as_pending(self, db: sqlite3.Connection, key: str, read: Callable[[Texts], Any],
                    none: Any) -> Any:
        """``read`` of ``key``'s record as the writes waiting will leave it: made on a
        copy in memory of the rows of ``key`` (and of the keys written with it), with
        those writes made on the copy, in order. ``none`` if that fails."""
        keys = {key}
        grown = True
        while grown:  # (a move writes two keys: the rows of both)
            grown = False
            for _, _, written in self._pending:
                if not keys.isdisjoint(written) and not keys.issuperset(written):
                    keys.update(written)
                    grown = True
        mem = sqlite3.connect(":memory:", isolation_level=None)
        try:
            made = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                              " AND name IN ('files', 'pieces')").fetchall()
            held = tuple(stored(k) for k in keys)
            marks = ", ".join("?" * len(held))
            for table, sql in made:
                mem.execute(sql)
                rows = db.execute(f"SELECT * FROM {table} WHERE key IN ({marks})",
                                  held).fetchall()
                if rows:
                    places = ", ".join("?" * len(rows[0]))
                    mem.executemany(f"INSERT INTO {table} VALUES ({places})", rows)
            for _, write, written in self._pending:
                if keys.isdisjoint(written):
                    continue
                mem.execute("SAVEPOINT w")
                try:
                    write(Texts(mem))
                except RecordGone:  # (as when it is written: let be)
                    mem.execute("ROLLBACK TO w")
                mem.execute("RELEASE w")
            return read(Texts(mem))
        except (sqlite3.Error, StorageError) as exc:
            log.debug("reading %s as the writes waiting leave it failed: %s", key, exc)
            return none
        finally:
            mem.close()

    def _write(self, action: str, write: Write, *keys: str, replaces: bool = False) -> None:
        """``write`` made in a transaction of its own, or, if another program holds the
        journal's lock (or writes wait for it already), made to wait for it (see the
        module): then the errors it raises are not the caller's (a record gone is let
        be, any other failure is raised by a later call), and, if it ``replaces`` its like
        (a checkpoint's spans: the last one is what counts), it takes the place of its
        key's last write waiting if that is its like. Before a write, a journal file
        removed since it was opened is made again."""
        with self._conn(action) as db:
            if self._failed is not None:
                raise self._failed
            if self._ident is not None:
                now = time.monotonic()
                if now - self._checked >= CHECK_EVERY:
                    self._checked = now
                    self._check_file()
                    assert self._db is not None
                    db = self._db
            if not self._pending:
                _end_left_open(db)
                try:
                    try:
                        db.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        if not _busy(exc):
                            raise
                        self._locked_since = time.monotonic()
                    else:
                        write(Texts(db))
                        db.execute("COMMIT")
                        return
                except BaseException:
                    # (a Ctrl+C lands between any two steps: none leaves it open)
                    _end_left_open(db)
                    raise
            if replaces and len(keys) == 1 and (at := self._last.get(keys[0])) is not None:
                self._pending[at] = (action, write, self._pending[at][2])
                return
            if len(self._pending) >= PENDING_MAX:
                raise sqlite3.OperationalError(
                    "database is locked (another program has kept it locked while this run"
                    f" made {len(self._pending)} writes)")
            for key in keys:
                if replaces:
                    self._last[key] = len(self._pending)
                else:
                    self._last.pop(key, None)
            self._pending.append((action, write, keys))
            self._pending_keys.update(keys)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_when_free, name="omniget-journal", daemon=True)
                self._writer.start()

    def _write_when_free(self) -> None:
        """On the journal's thread: write what waits for the lock once it is let go
        (tried every few milliseconds at first, POLL_MAX seconds at most)."""
        delay = 0.002
        while not self._stop.wait(delay):
            delay = min(delay * 2, POLL_MAX)
            with self._lock:
                db = self._db
                if db is None:
                    self._writer = None
                    return
                _quick(db, 0.0)  # (a try that holds the caller's calls up for nothing)
                try:
                    if self._flush(db):
                        self._writer = None
                        return
                finally:
                    _quick(db)

    def _flush(self, db: sqlite3.Connection) -> bool:
        """Under the lock: write what waits in one transaction; False if another
        program's lock is still held. A write whose record went away meanwhile is let be
        (a later one finds out); any other failure drops them all, and the next call
        raises it."""
        if not self._pending:
            return True
        _end_left_open(db)
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                return False
            self._fail(exc, self._pending[0][0])
            return True
        action = self._pending[0][0]
        try:
            for each, write, _ in self._pending:
                action = each
                db.execute("SAVEPOINT w")
                try:
                    write(Texts(db))
                except RecordGone:
                    db.execute("ROLLBACK TO w")
                db.execute("RELEASE w")
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._fail(exc, action)
            return True
        self._pending.clear()
        self._pending_keys.clear()
        self._last.clear()
        return True

    def _fail(self, exc: BaseException, action: str) -> None:
        """Writing what waited failed with ``exc``: they are dropped, and the next call
        raises it."""
        self._pending.clear()
        self._pending_keys.clear()
        self._last.clear()
        try:
            with guard(self.path, action):
                raise exc
        except StorageError as said:
            self._failed = said

    def _flush_at_close(self, db: sqlite3.Connection) -> None:
        """At the close: write what waits, the lock waited for BUSY_WAIT at most; a lock
        still held then is said (those writes are lost)."""
        if not self._pending:
            return
        wait = schema.BUSY_WAIT
        db.execute(f"PRAGMA busy_timeout = {round(wait * 1000)}")
        count = len(self._pending)
        if self._flush(db):
            if self._failed is not None:
                log.warning("%s; this run's last writes are lost (the downloads it left"
                            " unfinished resume from an earlier state)", self._failed)
            return
        log.warning("resume journal %s: another program kept it locked for over %g s at the"
                    " close: this run's last %d write%s lost (the downloads it left"
                    " unfinished resume from an earlier state)", self.path, wait, count,
                    " is" if count == 1 else "s are")

    def _check_file(self) -> None:
        """Follow a journal file removed or replaced since it was opened (see
        :func:`.opening.follow`)."""
        assert self._db is not None and self._ident is not None
        followed = follow(self.path, self._db, self._ident, self._logs)
        if followed is not None:
            db, self._ident = followed
            self._db = db if db is self._db else _quick(db)
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
        self._stop.set()
        writer = self._writer
        if writer is not None:
            writer.join()
        with self._lock, guard(self.path, "close"):
            if self._db is not None:
                if self._ident is not None:
                    self._last_look()
                db, self._db = self._db, None
                try:
                    self._flush_at_close(db)
                finally:
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
