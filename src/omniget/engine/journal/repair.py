"""A damaged journal file moved aside, so that a new one can be made in its place.

Damage is what SQLite calls a corrupt file or not a database at all (a file cut short,
overwritten, a disk error's garbage), and a schema version no omniget ever wrote (see
:class:`.schema.Damaged`). Nothing else is: a newer omniget's journal (its state would be
lost), a file or folder this user may not read or write, another user's file, a locked
database: those are left where they are, and the run goes without resume state.

The move is made under an exclusive lock of the state folder; every open of the journal
takes it shared (:func:`folder_lock`). So two runs that find the same damaged file move it
once: the second finds the first one's new journal when it has the lock, and opens it. A
run never opens the journal between the moves of its three files (a new journal beside
the damaged one's -wal would take that log's pages for its own). A run that finds the
file damaged later, by a call (it was overwritten or cut short while the run had it
open), closes it and moves it aside under the same lock, if it is still the file that
run opened (:func:`move_if_same`). Of the damaged journals moved aside, the newest
:data:`KEEP_ASIDE` are kept (for whoever wants to look into them); older ones are deleted
when another is moved aside, under the same lock.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from .schema import BUSY_WAIT, Damaged, Newer

try:
    import fcntl
except ImportError:  # (no flock: two runs repairing at once is then on the user)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BESIDE", "KEEP_ASIDE", "LOCKED", "damaged", "folder_lock", "move_aside", "move_if_same",
    "still_the_file",
]

BESIDE = ("-wal", "-shm")  # the files SQLite keeps beside the journal in WAL mode
#: Damaged journals kept moved aside, the newest (each with its -wal and -shm): the
#: older ones are deleted when another is moved aside.
KEEP_ASIDE = 3
#: What follows the journal's name in the name of one moved aside (see move_aside; a
#: pattern compiled when first used, not at every start)
_ASIDE = r"\.corrupt-(\d{8}T\d{6}Z)(?:-(\d+))?(?:-wal|-shm)?"
#: SQLite's (primary) result codes for a damaged file
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_DAMAGE_WORDS = ("not a database", "malformed")  # (where no code is given)
#: Why a damaged journal was not moved aside when its folder's lock was not had in time
LOCKED = "another omniget run kept its folder locked"


def damaged(exc: BaseException) -> bool:
    """Whether ``exc`` says the journal file is damaged (see the module's docstring)."""
    if isinstance(exc, Damaged):
        return True
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, Newer):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _DAMAGE_CODES
    return any(w in str(exc) for w in _DAMAGE_WORDS)


@contextlib.contextmanager
def folder_lock(folder: Path, *, exclusive: bool) -> Iterator[bool]:
    """Hold ``folder``'s lock, shared or exclusive, waiting up to :data:`BUSY_WAIT` for
    it. Yields False when it was not had in time; True when held, or when the folder or
    its filesystem takes no lock (then nothing is held: as before there was one)."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except OSError:
        yield True  # (the open that follows says what is wrong, if anything)
        return
    try:
        yield _take(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    finally:
        os.close(fd)  # (the lock goes with it)


def _take(fd: int, how: int) -> bool:
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
        except OSError:
            return True  # a filesystem without locks: go on unlocked
        time.sleep(0.005)


def move_aside(path: Path, now: float) -> Path:
    """Move the damaged journal at ``path`` and its -wal and -shm (the log first: a new
    journal must never meet the old log) to ``NAME.corrupt-YYYYmmddTHHMMSSZ`` beside it,
    the time UTC; the new name. OSError when they are not this user's to move. Only the
    newest :data:`KEEP_ASIDE` moved aside are kept. (Called under the folder's exclusive
    lock.)"""
    for name in ("", *BESIDE):
        _check_own(Path(f"{path}{name}"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(os.path.lexists(f"{aside}{s}") for s in ("", *BESIDE)):
        n += 1  # (damaged again within the second)
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for name in (*BESIDE, ""):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{name}", f"{aside}{name}")
    _drop_old(path, aside)
    return aside


def _drop_old(path: Path, aside: Path) -> None:
    """Delete the damaged journals moved aside beside ``path`` but the newest
    :data:`KEEP_ASIDE` (by the time in their names, then their number), ``aside``, the one
    just moved, among them whatever its time says (the clock may have been set back)."""
    try:
        found = os.listdir(path.parent)
    except OSError:
        return
    sets: dict[tuple[str, int], list[str]] = {}
    for name in found:
        m = re.fullmatch(_ASIDE, name[len(path.name):]) if name.startswith(path.name) else None
        if m is not None:
            sets.setdefault((m[1], int(m[2] or 1)), []).append(name)
    this = re.fullmatch(_ASIDE, aside.name[len(path.name):])
    if this is not None:
        sets.pop((this[1], int(this[2] or 1)), None)
    for key in sorted(sets)[: max(0, len(sets) - (KEEP_ASIDE - 1))]:
        for name in sets[key]:
            try:
                os.unlink(path.parent / name)
            except OSError:  # (gone already, a folder, not this user's to delete)
                pass


def move_if_same(path: Path, ident: tuple[int, int], now: float) -> Path | None:
    """Move aside the damaged journal at ``path`` that a run found damaged after opening
    it (and has closed since): under the folder's exclusive lock, and only if it is still
    the file that run opened, ``ident`` (device, inode): not one another run made in its
    place meanwhile. The new name; None if it was not there. OSError if it could not be
    moved."""
    with still_the_file(path, ident) as same:
        return move_aside(path, now) if same else None


@contextlib.contextmanager
def still_the_file(path: Path, ident: tuple[int, int]) -> Iterator[bool]:
    """The folder's exclusive lock held (TimeoutError if another run keeps it): whether
    the file at ``path`` is still ``ident`` (device, inode), not gone nor another."""
    with folder_lock(path.parent, exclusive=True) as held:
        if not held:
            raise TimeoutError(LOCKED)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            yield False
            return
        yield (st.st_dev, st.st_ino) == ident


def _check_own(path: Path) -> None:
    """OSError unless ``path`` (if there) is this user's and readable and writable."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path.name} is another user's (uid {st.st_uid})")
    if not os.access(path, os.R_OK | os.W_OK):
        raise PermissionError(f"{path.name} cannot be read and written by this user")
