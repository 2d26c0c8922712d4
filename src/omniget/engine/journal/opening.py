"""Opening the resume journal's file (made private, with its folder, if missing), and
what is said when that or any later call fails: a damaged file, one SQLite cannot open or
write (and which one: the journal, its -wal or -shm, or their folder, and whose it is), a
state folder that is a file. The journal itself is :mod:`.journal`."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...errors import StorageError
from .schema import setup

__all__ = ["guard", "open_file"]

_BESIDE = ("-wal", "-shm")  # the files SQLite keeps beside the journal in WAL mode
#: SQLite's words for a damaged file, and for one it cannot open or write
_DAMAGED = ("not a database", "malformed")
_CANNOT = ("unable to open", "readonly database", "disk I/O error")


def open_file(path: Path) -> tuple[sqlite3.Connection, tuple[int, int]]:
    """A connection to the journal at ``path`` (made with its folder if missing), and
    the identity of the file it opened."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        # Create it private before SQLite does: URLs may carry tokens. The -wal
        # and -shm files SQLite makes take the same permissions.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(
        path, timeout=10.0, isolation_level=None, check_same_thread=False
    )
    try:
        setup(db)
        st = os.stat(path)
    except BaseException:
        db.close()
        raise
    return db, (st.st_dev, st.st_ino)


@contextmanager
def guard(path: Path, action: str) -> Iterator[None]:
    """A failure of ``action`` on the journal at ``path`` (SQLite's or the file system's)
    raised as a StorageError that says what is wrong."""
    try:
        yield
    except (sqlite3.Error, OSError) as e:
        hint = ""
        if isinstance(e, sqlite3.DatabaseError) and any(w in str(e) for w in _DAMAGED):
            hint = " (the file is damaged: delete it and interrupted downloads restart)"
        elif isinstance(e, sqlite3.OperationalError) and any(w in str(e) for w in _CANNOT):
            hint = _cannot_open(path)
        elif isinstance(e, OSError):
            if e.errno == errno.EEXIST and os.path.exists(e.filename or ""):
                e = OSError(f"{e.filename} is a file, not a folder (see --state-dir)")
            elif e.strerror:
                e = OSError(f"{e.strerror}: {e.filename}" if e.filename else e.strerror)
        raise StorageError(f"resume journal {path}: {action} failed: {e}{hint}") from e


def _cannot_open(journal: Path) -> str:
    """Which file SQLite could not open or write, when that is what it said: the
    journal, or the -wal / -shm beside it (another user's, say), or their folder."""
    # (access(), not open(): closing any descriptor of a file drops the locks this
    # process's SQLite holds on it)
    for path in (journal, *(journal.with_name(journal.name + s) for s in _BESIDE)):
        if not os.path.lexists(path):
            if not os.access(path.parent, os.W_OK | os.X_OK):
                return f" ({path.name} cannot be made: its folder is read-only)"
        elif not os.access(path, os.R_OK | os.W_OK):
            return f" ({path.name}: permission denied{_whose(path)})"
    return ""


def _whose(path: Path) -> str:
    """Whose ``path`` is, when not this user's."""
    try:
        uid = os.lstat(path).st_uid
    except OSError:
        return ""
    if uid == os.geteuid():
        return ""
    try:
        import pwd

        owner = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        owner = f"uid {uid}"
    return f"; it is {owner}'s, not this user's: left by a run as another user, under sudo say"
