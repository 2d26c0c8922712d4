"""The file being written: ``NAME.omniget-part`` beside the final name, positional writes,
preallocation, the free-space check, and the atomic rename at the end.

OS errors are translated here into :class:`StorageError` with the path named.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path
from typing import Literal

from ..errors import StorageError

try:
    import fcntl
except ImportError:  # (no flock: one run per folder is then on the user)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "PART_SUFFIX", "Leftovers", "NotAPart", "PartBusy", "PartFile", "find_leftovers",
    "folder_blocked", "in_the_way", "not_a_file", "on_memory_fs", "part_busy", "part_path",
    "storage_error", "temp_stem",
]  # fmt: skip

PART_SUFFIX = ".omniget-part"
#: The attribute a finished file keeps while its bytes may not be on the disk (durable.py).
UNSYNCED = "user.omniget.unsynced"
_UTIME_FD = os.utime in os.supports_fd
#: Filesystems kept in memory: preallocating there only zero-fills RAM ahead of the
#: writes (about 0.2 s per GiB here), with nothing to gain against fragmentation.
MEMORY_FS = frozenset({"tmpfs", "ramfs"})
_mounts: list[tuple[str, str]] | None = None  # (mount point, type), longest first
_in_memory: dict[str, bool] = {}


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """Mount points and filesystem types from ``/proc/self/mounts``, longest first."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            # spaces, tabs and backslashes in mount points are octal escapes there
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
            out.append((point, fields[2]))
    out.sort(key=lambda m: len(m[0]), reverse=True)
    return out


def fs_type(folder: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the filesystem ``folder`` (an absolute, resolved path) is on."""
    for point, kind in mounts:
        if folder == point or folder.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def on_memory_fs(folder: str) -> bool:
    """Whether ``folder`` is on tmpfs or ramfs (False when that cannot be told)."""
    global _mounts
    known = _in_memory.get(folder)
    if known is not None:
        return known
    if _mounts is None:
        try:
            with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
                _mounts = parse_mounts(f.read())
        except OSError:
            _mounts = []
    kind = fs_type(os.path.realpath(folder), _mounts)
    _in_memory[folder] = answer = kind in MEMORY_FS
    return answer


def part_path(final: Path) -> Path:
    return Path(f"{final}{PART_SUFFIX}")


class PartBusy(StorageError):
    """Another process holds the part file: another omniget run writes the same file."""

    def __init__(self, final: Path, what: str = "is being downloaded") -> None:
        #: Still held by that run (else it was finished, or removed, a moment ago)
        self.busy = what == "is being downloaded"
        super().__init__(
            f"{final.name} {what} by another omniget run in the same folder;"
            " run again once it is done"
        )


class NotAPart(StorageError):
    """What is at a part file's name is no regular file (a symbolic link, a FIFO, a
    folder): omniget never makes one there, so it is someone else's, left as it is."""

    def __init__(self, where: str, kind: str) -> None:
        name = os.path.basename(where).removesuffix(PART_SUFFIX)
        super().__init__(f"{where} is {kind}, not a part file omniget made; left as it is"
                         f" (move it away to download {name})")


def _kind(mode: int) -> str | None:
    """What a file of ``mode`` (a stat's) is, in words, when it is no regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def not_a_file(where: str) -> str | None:
    """What is at ``where`` when it is there and no regular file ("a FIFO", ...), never
    following a link; None for a regular file or nothing."""
    try:
        return _kind(os.lstat(where).st_mode)
    except OSError:
        return None


def _lock(fd: int) -> bool:
    """Take the part file's lock (held until the descriptor closes); False: taken."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        pass  # a filesystem without locks: go on unlocked
    return True


#: Opening a name that may hold what a user put there: never through a link, never
#: waiting for a FIFO's writer (a regular file opens as ever).
_NO_WAIT = (getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_NONBLOCK", 0))
#: A part file opened to be written (never through a link).
_OPEN_PART = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def part_busy(final: Path) -> bool:
    """Whether another process holds ``final``'s part file now."""
    try:
        fd = os.open(f"{final}{PART_SUFFIX}", os.O_RDONLY | _NO_WAIT)
    except OSError:
        return False
    try:
        return not _lock(fd)
    finally:
        os.close(fd)


#: A part file's temporary name (see :meth:`PartFile._replace`): ``NAME.omniget-part-PID``.
_LEFTOVER = r"(.+\.omniget-part)-([1-9][0-9]{0,9})"  # (compiled by re when first used)
#: Per folder: part file name -> the PIDs of the temporaries found beside it.
Leftovers = dict[str, dict[str, list[int]]]


#: The longest final name whose part file's temporary (``-PID``: up to 10 digits) fits
#: the name limit of file systems (255 bytes) after it.
_TEMP_ROOM = 255 - len(PART_SUFFIX) - 11


def temp_stem(where: str) -> str:
    """What a part file's temporaries are named after (``STEM-PID``): the part file's
    path, or for a name too long to take ``-PID`` after it (names are kept to 240 bytes,
    their part file's to 253), the name cut to fit, in whole characters."""
    folder, name = os.path.split(where)
    final = os.fsencode(name.removesuffix(PART_SUFFIX))
    if len(final) <= _TEMP_ROOM:
        return where
    return os.path.join(folder, final[:_TEMP_ROOM].decode("utf-8", "ignore") + PART_SUFFIX)


def find_leftovers(folder: str) -> dict[str, list[int]]:
    """The part files' temporaries in ``folder``, by the part file name they are named
    after (:func:`temp_stem`'s; a run killed between their create and rename leaves one
    behind)."""
    found: dict[str, list[int]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if "omniget-part-" not in entry.name:
                    continue
                m = re.fullmatch(_LEFTOVER, entry.name)
                if m is not None and entry.is_file(follow_symlinks=False):
                    found.setdefault(m[1], []).append(int(m[2]))
    except OSError:
        pass
    return found


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (this one counts: it may be writing the name)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # (someone else's process; no such number here)
        return True
    return True


def storage_error(exc: OSError, path: Path, doing: str, *, kept: bool = True) -> StorageError:
    """One clear line for an OS error while ``doing`` something to ``path``; ``kept``:
    there may be partial data a rerun resumes from (not so when nothing was written)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "disk full"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        what = "permission denied"
    elif exc.errno == errno.EROFS:
        what = "read-only file system"
    else:
        what = exc.strerror or str(exc)
    tail = "partial data kept, run again to resume" if kept else "nothing was written"
    return StorageError(f"{what} while {doing} {path}; {tail}")


def _make_folder(folder: str, made: set[str] | None, final: Path | None = None) -> None:
    """Make ``folder`` (``final``'s, named if a file is in the way) and its parents."""
    if made is None or folder not in made:  # (a string: no Path hashing per file)
        try:
            _makedirs(folder)
        except (FileExistsError, NotADirectoryError) as exc:
            err = folder_blocked(folder, "" if final is None else final.name)
            if err is None:
                raise
            raise err from exc
        if made is not None:
            made.add(folder)


def _makedirs(folder: str) -> None:
    """``os.makedirs(folder, exist_ok=True)`` without its recursion, one call per folder
    to make: an item's path of thousands of folders raised RecursionError."""
    missing: list[str] = []
    path = folder
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    else:
        if not missing and not os.path.isdir(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), folder)
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:  # (made meanwhile, by another file of the run)
            if not os.path.isdir(path):
                raise


def in_the_way(folder: str) -> tuple[str, str] | None:
    """The nearest part of ``folder`` that is there and no folder, and what it is in words
    ("a file", "a FIFO", ...); None when the nearest part there is a folder."""
    path = folder
    while path and path != os.path.dirname(path):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            path = os.path.dirname(path)
            continue
        return None if stat.S_ISDIR(mode) else (path, _kind(mode) or "a file")
    return None


def folder_blocked(folder: str, name: str) -> StorageError | None:
    """What keeps ``folder`` from being made: the nearest part of it that is there and
    no folder (a file an earlier item of the run wrote as ``d``, for ``d/f``). (--dry-run
    says it too.)"""
    found = in_the_way(folder)
    if found is None:
        return None
    path, kind = found
    which = "it" if path == folder else path
    return StorageError(f"cannot make the folder {folder}{' for ' + name if name else ''}"
                        f": {which} is {kind}, not a folder")


def create_part(
    final: Path, made: set[str] | None = None, folder: str | None = None, text: str | None = None
) -> int:
    """Create ``final``'s part file, which must not exist yet, and lock it; its descriptor,
    or -1 when that fails (the usual open then meets the same problem and reports it).
    ``folder``: ``final``'s, and ``text``: ``final`` as a string, when the caller knows them."""
    where = f"{final if text is None else text}{PART_SUFFIX}"
    try:
        _make_folder(os.path.dirname(where) if folder is None else folder, made)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(where, flags, 0o644)
    except (OSError, StorageError):  # (the open at the answer says it)
        return -1
    # Locked at once: unlocked until its answer came, another run took it, finished and
    # renamed it, and this one then wrote into that finished file.
    if not _lock(fd) or not _named(fd, where):  # (another run opened it first, and may
        os.close(fd)  # have started it over as a new file: it is that run's now)
        return -1
    return fd


def _named(fd: int, where: str) -> bool:
    """Whether ``where`` still names the file open as ``fd`` (a file created, then
    found by another run before it was locked, may have been put aside for a new one)."""
    try:
        st, now = os.fstat(fd), os.lstat(where)
    except FileNotFoundError:
        return False
    return (st.st_ino, st.st_dev) == (now.st_ino, now.st_dev)


def drop_part(final: Path, fd: int) -> None:
    """Undo :func:`create_part` (the file is still empty): its name unlinked while its
    lock is held, and only while it names this file. Closed first, another run could
    lock it and start writing, and the unlink then took that run's part file away."""
    if fd >= 0:
        try:
            with contextlib.suppress(OSError):
                _unlink_if(str(final.parent), f"{final.name}{PART_SUFFIX}", os.fstat(fd))
        finally:
            os.close(fd)


def _unlink_if(folder: str, name: str, st: os.stat_result) -> bool:
    """Unlink ``name`` in ``folder`` if it is the file ``st`` describes (not a link to it,
    not another file); False if it is not there. Looked at and unlinked through one
    descriptor of the folder: a folder renamed or replaced meanwhile is not followed
    (POSIX has no unlink-if-this-file: another file put there between the look and the
    unlink, a moment, would go)."""
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            return False
        os.unlink(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)


class PartFile:
    """An open ``.omniget-part`` file. Writes go to absolute offsets (``pwrite``)."""

    def __init__(
        self,
        final: Path,
        *,
        fresh: bool,
        made: set[str] | None = None,
        fd: int = -1,
        folder: str | None = None,
        text: str | None = None,
        leftovers: Leftovers | None = None,
    ) -> None:
        """Open (or create) ``final``'s part file; ``fd``: one :func:`create_part` made
        (locked, and its name still held it: neither is done again);
        ``folder``: ``final``'s, and ``text``: ``final`` as a string, when the caller
        knows them; ``leftovers``: the run's :func:`find_leftovers` answers so far."""
        self.final = final
        # (strings: no str() of a Path on the hot path)
        self._final: Path | str = final if text is None else text
        self.where = f"{self._final}{PART_SUFFIX}"  # the part file's path
        given = new = fd >= 0  # (create_part made it: O_EXCL, locked, found at its name)
        self.dropped = 0  # bytes of an earlier part file a fresh start threw away
        if fd < 0:
            # (created only when starting afresh: a resumed part that went away was
            # finished or removed by someone else, and its kept spans with it)
            flags = _OPEN_PART
            try:
                _make_folder(os.path.dirname(self.where) if folder is None else folder, made,
                             final)
                if fresh:
                    try:
                        fd = os.open(self.where, flags | os.O_CREAT | os.O_EXCL, 0o644)
                        new = True
                    except FileExistsError:
                        try:
                            fd = self._open_there(flags)
                        except FileNotFoundError as exc:  # (another run's a moment ago)
                            raise PartBusy(final, "was finished or removed") from exc
                else:
                    fd = self._open_there(flags)
            except FileNotFoundError as exc:
                if fresh:
                    raise storage_error(exc, self.path, "creating", kept=False) from exc
                raise PartBusy(final, "was finished or removed") from exc
            except OSError as exc:
                raise storage_error(exc, self.path, "creating", kept=not fresh) from exc
        # Locked before any byte changes: a second run on the same folder stops here. A
        # file there before may have been renamed by its finished run before our lock: a
        # lock on it is no lock.
        try:
            if not given and not _lock(fd):
                raise PartBusy(final)
            if new and not given and not _named(fd, self.where):  # (taken before the lock)
                raise PartBusy(final)
            if not new:
                st = os.fstat(fd)
                kind = _kind(st.st_mode)
                if kind is not None:  # (put there since the look before the open)
                    raise NotAPart(self.where, kind)
                now = os.stat(self.where)
                if (st.st_ino, st.st_dev) != (now.st_ino, now.st_dev):
                    raise PartBusy(final, "was finished")
                self._clear_leftovers(folder, leftovers)
                if fresh:  # an earlier run's, started over: a new file takes its place
                    fd = self._replace(fd)
                    self.dropped = st.st_size
        except FileNotFoundError as exc:
            os.close(fd)
            raise PartBusy(final, "was finished") from exc
        except OSError as exc:
            os.close(fd)
            raise storage_error(exc, self.path, "creating", kept=not fresh) from exc
        except (PartBusy, NotAPart):
            os.close(fd)
            raise
        self.fd = fd
        self.written = 0  # bytes written through this object (for fsync pacing)
        self.length: int | None = 0 if fresh else None  # the file's size, while known
        self.splice_ok = True  # this filesystem takes splice() writes (see write_from_pipe)

    def _open_there(self, flags: int) -> int:
        """Open the part file found at its name: only a regular file (NotAPart else: a
        link is never followed out of the folder, a FIFO never waited on)."""
        kind = not_a_file(self.where)
        if kind is not None:
            raise NotAPart(self.where, kind)
        return os.open(self.where, flags)

    def _clear_leftovers(self, folder: str | None, seen: Leftovers | None) -> None:
        """Remove this part file's temporaries left by dead runs. Safe with its lock held:
        a live run makes one only while it holds that lock (see :meth:`_replace`), and on a
        filesystem without locks the PID of a live one is running."""
        if folder is None:
            folder = os.path.dirname(self.where)
        folder = folder or "."
        known = None if seen is None else seen.get(folder)
        found = known if known is not None else find_leftovers(folder)
        if seen is not None:
            seen[folder] = found  # (one look at a folder per run)
        stem = temp_stem(self.where)
        pids = found.get(os.path.basename(stem))
        if not pids:
            return
        for pid in list(pids):
            if not _running(pid):
                with contextlib.suppress(OSError):
                    os.unlink(f"{stem}-{pid}")
                pids.remove(pid)

    def _replace(self, old: int) -> int:
        """Put a new, empty, locked file in the place of the part file open as ``old``
        (closed then); its descriptor. Not the same file emptied: a resume record of
        another state folder describes that one, and would take this run's bytes for
        its own (the record knows the file by its inode number)."""
        tmp = f"{temp_stem(self.where)}-{os.getpid()}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            _lock(fd)  # (nobody else knows its name yet)
            os.replace(tmp, self.where)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(old)
        return fd

    def inode(self) -> int:
        """The part file's inode number: what a resume record knows it by."""
        return os.fstat(self.fd).st_ino

    def prepare(self, size: int | None, have: int = 0) -> None:
        """Check free space for the bytes still to come and reserve them."""
        if size is None or size < 1 << 20:
            return  # small files: a full disk still shows up as ENOSPC on write
        need = size - have
        try:
            st = os.statvfs(self.path.parent)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        if free is not None and need > free:
            raise StorageError(
                f"not enough space for {self.final}: need {need} more bytes, {free} free"
            )
        folder = os.path.dirname(self.where)
        if hasattr(os, "posix_fallocate") and not on_memory_fs(folder):
            try:
                os.posix_fallocate(self.fd, 0, size)
                if self.length is not None:
                    self.length = max(self.length, size)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise storage_error(exc, self.path, "reserving space for") from exc
                # filesystems without fallocate: fine, the file grows as written

    def write_at(self, data: bytes | memoryview, offset: int) -> None:
        try:
            n = os.pwrite(self.fd, data, offset)
            while n < len(data):  # short writes are rare but legal
                n += os.pwrite(self.fd, memoryview(data)[n:], offset + n)
        except OSError as exc:
            raise storage_error(exc, self.path, "writing") from exc
        self.written += len(data)
        if self.length is not None and offset + len(data) > self.length:
            self.length = offset + len(data)

    def write_from_pipe(self, pipe: int, count: int, offset: int) -> None:
        """Move ``count`` bytes waiting in ``pipe`` to ``offset`` without a copy through
        user space (``splice``); filesystems that refuse it get read-and-write instead."""
        done = 0
        try:
            while done < count:
                if self.splice_ok:
                    try:
                        n = os.splice(pipe, self.fd, count - done, offset_dst=offset + done)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                            raise
                        self.splice_ok = False
                        continue
                else:
                    data = os.read(pipe, count - done)
                    n = os.pwrite(self.fd, data, offset + done)
                    while n < len(data):
                        n += os.pwrite(self.fd, memoryview(data)[n:], offset + done + n)
                if n <= 0:  # (a pipe holding fewer bytes than it was said to hold)
                    raise OSError(errno.EIO, "short read from the transfer pipe")
                done += n
        except OSError as exc:
            raise storage_error(exc, self.path, "writing") from exc
        finally:
            self.written += done
            if self.length is not None and offset + done > self.length:
                self.length = offset + done

    @property
    def path(self) -> Path:
        return Path(self.where)

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise storage_error(exc, self.path, "truncating") from exc
        self.length = size

    def sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise storage_error(exc, self.path, "syncing") from exc

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def commit(
        self,
        size: int,
        *,
        mtime: float | None,
        executable: bool = False,
        mark: bytes | None = None,
    ) -> os.stat_result | Literal[False] | None:
        """Cut the file to ``size``, close it and rename it onto the final name. ``mark``:
        set as the file's UNSYNCED attribute before the rename (see durable.py); its stat
        is returned then. Where that cannot be (a filesystem without user attributes, or
        ``mark`` empty: one known to be such), the file stays open under its part name and
        False is returned: it is renamed by :meth:`place` once its bytes are on the disk."""
        marked = None
        try:
            if (self.length if self.length is not None else self.size()) != size:
                os.ftruncate(self.fd, size)
            if executable:
                os.fchmod(self.fd, 0o755)
            if mtime is not None:
                os.utime(self.fd if _UTIME_FD else self.where, (mtime, mtime))
            if mark is not None:
                if not mark:
                    return False
                try:
                    os.setxattr(self.fd, UNSYNCED, mark)
                    marked = os.fstat(self.fd)
                except (OSError, AttributeError):  # (no user attributes here, or no xattrs)
                    return False
        except OSError as exc:
            raise storage_error(exc, self.final, "finishing") from exc
        self.place(marked)
        return marked

    def place(self, st: os.stat_result | None = None) -> None:
        """Rename the file onto the final name and close it (:meth:`commit` does, or
        leaves it under its part name for a later call). ``st``: its fstat just taken."""
        try:
            self._still_there(st)
            os.replace(self.where, self._final)  # (still locked: see __init__)
            self.close()
        except OSError as exc:
            raise storage_error(exc, self.final, "finishing") from exc

    def _still_there(self, st: os.stat_result | None) -> None:
        """StorageError unless the part file's name still holds this file: removed or
        replaced since (by a link out of the folder, another file) that name is renamed
        onto the final name by no one; moved (its folder renamed), where it is now is
        said, with every byte in it. ``st``: the file's (fstat) if known."""
        if st is None:
            st = os.fstat(self.fd)
        try:
            now: os.stat_result | None = os.lstat(self.where)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
            return
        moved = None
        if st.st_nlink > 0:  # (still linked somewhere: where, Linux tells)
            with contextlib.suppress(OSError):
                moved = os.readlink(f"/proc/self/fd/{self.fd}")
        if moved is not None and moved.startswith("/") and moved != self.where:
            raise StorageError(f"{self.where} was moved while it was written (its folder "
                               f"renamed?): the file is kept whole as {moved}")
        raise StorageError(f"{self.where} was removed or replaced while it was written: "
                           "its bytes are gone, what is there now is left as it is (run "
                           "again to download it)")

    def discard(self) -> None:
        """Remove the part file: the very file this object opened, by its name in the
        folder it is in (moved with its folder, it is found there). What its name holds
        otherwise (another file put there, a link) is someone else's, left as it is; so
        is a file closed already (there is nothing to tell it by)."""
        try:
            if self.fd >= 0:
                self._remove_own(os.fstat(self.fd))
        except OSError as exc:
            raise storage_error(exc, self.path, "removing") from exc
        finally:
            self.close()

    def _remove_own(self, st: os.stat_result) -> None:
        if st.st_nlink == 0:  # (removed already)
            return
        folder, _, name = self.where.rpartition("/")
        if _unlink_if(folder or ("/" if self.where.startswith("/") else "."), name, st):
            return
        with contextlib.suppress(OSError):  # (Linux: where the file is now)
            now = os.readlink(f"/proc/self/fd/{self.fd}")
            there, _, now_name = now.rpartition("/")
            if now.startswith("/") and now_name == name and there != folder:
                _unlink_if(there or "/", name, st)

    def __repr__(self) -> str:
        return f"<PartFile {self.path.name} fd={self.fd}>"
