"""Opening the resume journal's file (made private, with its folder, if missing; a
damaged one moved aside and made again, see :mod:`.repair`), and what is said when that
or any later call fails: a damaged file, one SQLite cannot open or write (and which one:
the journal, its -wal or -shm, or their folder, and whose it is), a state folder that is
a file. The journal itself is :mod:`.journal`."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ...errors import StorageError
from ...settings import named_setting
from . import schema
from .repair import BESIDE, LOCKED, damaged, folder_lock, move_aside, still_the_file
from .schema import Damaged, copy_records, setup

__all__ = [
    "Beside", "Unmoved", "beside", "follow", "guard", "open_file", "open_or_repair", "unmoved",
]

log = logging.getLogger(__name__)

#: SQLite's words for a file it cannot open or write
_CANNOT = ("unable to open", "readonly database", "disk I/O error")
#: Free space below which the journal's folder is said to be full (SQLite's index, the
#: -shm, takes 32 KiB at once).
_ROOM = 64 << 10
#: What is left of a damaged journal that could not be moved aside (see unmoved)
_LEFT = ("(it is left there: each run tries again, or delete it; the downloads it could"
         " have resumed start over)")


class Unmoved(Damaged):
    """A damaged journal that could not be moved aside at the open: its message says why,
    and what is left to do (:func:`unmoved`)."""


def unmoved(exc: BaseException) -> str:
    """What to say of a damaged journal that ``exc`` kept from being moved aside. Not
    "delete it" when another run kept its folder locked: that run is moving it aside, as
    a rule, and the file there may be its new journal by the time this is read."""
    if isinstance(exc, TimeoutError):
        return f"it could not be moved aside: {exc} (the next run tries again)"
    why = _said(exc) if isinstance(exc, OSError) else str(exc)
    return f"it could not be moved aside: {why} {_LEFT}"

Opened = tuple[sqlite3.Connection, tuple[int, int]]


def open_file(path: Path, private: bool = True) -> Opened:
    """A connection to the journal at ``path`` (made with its folder if missing: a
    private one, unless not ``private``, when it is the output folder too), and the
    identity of the file it opened."""
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    with folder_lock(path.parent, exclusive=False):  # (not while a run moves it aside)
        return _open(path)


#: (device, inode) of the journal's -wal and -shm (see beside)
Beside = tuple[tuple[int, int], tuple[int, int]]


def beside(path: Path) -> Beside | None:
    """The identities of the -wal and -shm of the journal at ``path`` (None: either is
    not there, or not to be told). SQLite keeps both while a connection has the journal
    open, as the same files: ones removed then (by hand) are followed (see follow)."""
    found = []
    for name in BESIDE:
        try:
            st = os.stat(f"{path}{name}")
        except OSError:
            return None
        found.append((st.st_dev, st.st_ino))
    return found[0], found[1]


def follow(
    path: Path, old: sqlite3.Connection, ident: tuple[int, int], logs: Beside | None = None
) -> tuple[sqlite3.Connection, tuple[int, int] | None] | None:
    """The journal file at ``path``, opened as ``old`` (its (device, inode) ``ident``),
    was removed (its state folder deleted, say) or another run replaced it (it found it
    damaged, moved it aside and made a new one): SQLite would go on writing to the file
    it has open, and a rerun would find nothing. It is made again (or the new one
    opened), with every record of ``old`` it has none of, and ``old`` closed: the new
    connection and ident. None: the file is still the one opened (or cannot be told);
    ``old`` with no ident: it cannot be made again (the run goes on with ``old``).

    So is a journal whose -wal or -shm is not ``logs`` (the ones opened with it) any
    more: removed by hand, SQLite would go on with the removed ones, and another run
    would find none of this run's records in the log, or make a log or an index of its
    own beside them (their writes lost to each other). It is made again in its place
    (see _remake_for_its_log; another run that has it open follows as from a replaced
    file); if that fails, the file is left as it was."""
    replaced = False
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None  # (not to be told: the write says what is wrong, if anything)
    else:
        if (st.st_dev, st.st_ino) == ident:
            if logs is None or beside(path) == logs:
                return None
            try:
                remade = _remake_for_its_log(path, old, ident)
            except TimeoutError:
                return None  # (another run holds its folder: the next look tries again)
            except (sqlite3.Error, OSError) as exc:
                log.warning("resume journal %s: its -wal or -shm was removed during the run,"
                            " and it cannot be made again (%s); this run's resume state is"
                            " lost if it stops", path,
                            _said(exc) if isinstance(exc, OSError) else exc)
                return old, None
            if remade is not None:
                old.close()  # (SQLite leaves a moved file's log alone)
                log.warning("resume journal %s: its -wal or -shm was removed during the run;"
                            " made again with this run's records", path)
                return remade
        replaced = os.path.exists(path)  # (else removed since the look above)
    try:
        db, new = open_file(path)  # (or the one another run made again meanwhile)
    except (sqlite3.Error, OSError) as exc:
        log.warning("resume journal %s: it was removed during the run and cannot be"
                    " made again (%s); this run's resume state is lost if it stops",
                    path, exc)
        return old, None
    try:
        copy_records(old, db)
    except BaseException:
        db.close()
        raise
    old.close()  # (SQLite leaves a moved file's log alone: the new one's has its name)
    if replaced:
        log.warning("resume journal %s: another omniget run replaced it during this run"
                    " (it found it damaged, or its -wal or -shm removed, say); this run's"
                    " records are copied into the new one", path)
    else:
        log.warning("resume journal %s: it was removed during the run; made again with"
                    " this run's records", path)
    return db, new


def _remake_for_its_log(
    path: Path, old: sqlite3.Connection, ident: tuple[int, int]
) -> Opened | None:
    """Make again the journal at ``path``, still the file ``ident`` (open as ``old``),
    whose -wal or -shm was removed: a new file with ``old``'s records, in its place. What
    is at their names now goes first: another run made them, for the old file, and a
    new journal must never meet them (see repair). All under the state folder's lock
    (not while another run opens it). None: another file took its place meanwhile (a
    run did this first). The old file is kept aside until the new one has its records,
    and put back if that fails (a full disk, say): it keeps the records in it."""
    with still_the_file(path, ident) as same:
        if not same:
            return None
        kept = path.with_name(f"{path.name}.kept-{os.getpid()}")
        os.rename(path, kept)
        db = None
        try:
            _remove_beside(path)
            db, new = _open(path)
            copy_records(old, db)
        except BaseException:
            if db is not None:
                db.close()
            _remove_beside(path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.rename(kept, path)
            raise
        os.unlink(kept)
    return db, new


def _remove_beside(path: Path) -> None:
    """Remove the -wal and -shm at the names of the journal at ``path``."""
    for name in BESIDE:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{name}")


def open_or_repair(
    path: Path, now: Callable[[], float], private: bool = True
) -> tuple[Opened, str | None]:
    """:func:`open_file`; a damaged journal is moved aside first and a new one made
    (``now()``: the time in its new name). With the connection, the warning to give then."""
    try:
        return open_file(path, private), None
    except sqlite3.DatabaseError as exc:
        if not damaged(exc):
            raise
    with folder_lock(path.parent, exclusive=True) as held:
        try:  # (another run may have moved it aside meanwhile, and made a new one)
            return _open(path), None
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            why = exc
        try:
            if not held:
                raise TimeoutError(LOCKED)
            aside = move_aside(path, now())
        except OSError as exc:
            raise Unmoved(f"{why}; {unmoved(exc)}") from why
        opened = _open(path)
    return opened, (
        f"resume journal {path}: the file was damaged ({why}); moved aside to {aside}"
        " and a new one made (downloads its records could have resumed start over)"
    )


def _open(path: Path) -> Opened:
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
def guard(path: Path, action: str, state_from: str = "--state-dir") -> Iterator[None]:
    """A failure of ``action`` on the journal at ``path`` (SQLite's or the file system's)
    raised as a StorageError that says what is wrong (``state_from``: where its folder was
    set, as ``Settings.state_dir_from``)."""
    see = f"see {named_setting('state-dir', state_from)}"
    try:
        yield
    except (sqlite3.Error, OSError) as e:
        hint = ""
        if isinstance(e, Unmoved):
            pass  # (it says what is left to do)
        elif damaged(e):
            hint = " (the file is damaged: delete it and interrupted downloads restart)"
        elif isinstance(e, sqlite3.OperationalError) and any(w in str(e) for w in _CANNOT):
            hint = _not_a_file(path) or _cannot_open(path)
        elif isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            wait = schema.OPEN_WAIT if action == "open" else schema.BUSY_WAIT
            hint = f" (another program kept it locked for over {wait:g} s)"
        elif isinstance(e, OSError):
            if e.errno == errno.EEXIST and os.path.exists(e.filename or ""):
                e = OSError(f"{e.filename} is {_kind(e.filename)}, not a folder ({see})")
            elif e.errno == errno.EEXIST and os.path.islink(e.filename or ""):
                e = OSError(f"{e.filename} is {_broken_link(e.filename)} ({see})")
            elif e.errno == errno.ENOTDIR and (way := _in_the_way(path.parent)):
                e = OSError(f"{way} is {_kind(way)}, not a folder ({see})")
            elif (e.errno == errno.ENOENT and e.filename
                  and os.path.isdir(os.path.dirname(e.filename))
                  and not os.path.lexists(e.filename)):  # (mkdir refused in a folder there)
                e = OSError(f"{e.filename} cannot be made: {_no_folders(e.filename)} ({see})")
            else:
                hint = _not_a_file(path)
                if e.strerror:
                    e = OSError(_said(e))
        raise StorageError(f"resume journal {path}: {action} failed: {e}{hint}") from e


def _no_folders(path: str) -> str:
    """Why no folder can be made at ``path``, whose folder is there (a virtual file
    system's, as /proc: mkdir says only "No such file or directory")."""
    parent = os.path.dirname(path)
    kind, best = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and (parent == fields[1] or parent.startswith(
                        fields[1].rstrip("/") + "/")) and len(fields[1]) >= len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    what = f"a {kind} file system" if kind else "a file system"
    return f"{parent} is on {what}, which makes no folders asked for"


def _broken_link(path: str, to: str = "folder") -> str:
    """What the symbolic link ``path``, which leads to no ``to``, is, in words."""
    try:
        target = os.readlink(path)
    except OSError:
        return "a symbolic link"
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"a loop of symbolic links, leading to no {to}"
        return f"a symbolic link to {target}, which is not there"
    return f"a symbolic link to {target}"


def _in_the_way(folder: Path) -> Path | None:
    """The nearest part of ``folder`` that is there and no folder (mkdir says only "Not a
    directory", of the folder it was to make)."""
    for part in (folder, *folder.parents):
        if os.path.lexists(part):
            return None if os.path.isdir(part) else part
    return None


def _not_a_file(journal: Path) -> str:
    """What is at the name of the journal, its -wal or its -shm when that is no file: a
    folder, a FIFO, a link to nowhere, ... (SQLite says "disk I/O error" or "unable to
    open database file" of them); "" when each is a file, or not there."""
    for path in (journal, *(journal.with_name(journal.name + s) for s in BESIDE)):
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.islink(path):
                return f" ({path.name} is {_broken_link(str(path), 'file')})"
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                return f" ({path.name} is {_broken_link(str(path), 'file')})"
            continue
        if not stat.S_ISREG(mode):
            return f" ({path.name} is {_kind(path)}, not a file)"
    return ""


def _kind(path: str | Path) -> str:
    """What is at ``path`` (links followed), in words: "a file", "a FIFO", ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a file"  # (gone meanwhile: as it was said before)
    return ("a file" if stat.S_ISREG(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device")


def _said(e: OSError) -> str:
    if not e.strerror:
        return str(e)
    return f"{e.strerror}: {e.filename}" if e.filename else e.strerror


def _cannot_open(journal: Path) -> str:
    """Which file SQLite could not open or write, when that is what it said: the
    journal, or the -wal / -shm beside it (another user's, say), or their folder."""
    # (access(), not open(): closing any descriptor of a file drops the locks this
    # process's SQLite holds on it)
    for path in (journal, *(journal.with_name(journal.name + s) for s in BESIDE)):
        if not os.path.lexists(path):
            if not os.access(path.parent, os.W_OK | os.X_OK):
                return f" ({path.name} cannot be made: its folder is read-only)"
        elif not os.access(path, os.R_OK | os.W_OK):
            return f" ({path.name}: permission denied{_whose(path)})"
    try:  # (SQLite says "disk I/O error" when its -shm cannot be given room)
        st = os.statvfs(journal.parent)
    except OSError:
        return ""
    return " (the disk it is on is full)" if st.f_bavail * st.f_frsize < _ROOM else ""


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
