"""Finished files whose bytes may not be on the disk yet.

A finished part file is renamed into place without waiting for its bytes to reach the
disk (an fsync per file is too dear: 5,000 small files would pay 5,000 journal commits).
After a power loss the rename may then be there while the bytes are not: a preallocated
file reads as zeros, a file that was not comes back shorter. So before the rename the
part file gets an extended attribute, ``user.omniget.unsynced`` (this boot's id, the
size, the digest it was verified with): the filesystem's own journal writes metadata in
order, so whenever the rename is on the disk the attribute is too. It is removed once a
sync of the filesystem (``syncfs``), begun after the file was written, has returned: in
the background every ``fsync_seconds`` while files finish, and at the end of the run when
what is left to write back is small (see END_SYNC_BYTES). The end of a run waits for
those syncs SYNC_WAIT seconds at most (checkpoints.py): the files a sync not back by then
covers keep their marks, made unconfirmed ones (their boot id with UNCONFIRMED after it;
cleared if the sync returns well later), and a warning names their folders.

A rerun that finds the attribute on a file it would skip trusts the file on the same
boot (the page cache holds its bytes, whatever reached the disk) and clears the mark after
its own sync, unless the mark is an unconfirmed one: then whether the disk took its bytes
is not known (one that did not answer a sync may fail it yet), nothing read on this boot
can tell, and the rerun fetches it again. On another boot it checks the file against its
digest, if one is known; else it keeps a file of the marked size with no hole in it
(blocks that never reached the disk read back as a hole: preallocated extents left
unwritten, allocations never made, which ``SEEK_HOLE`` finds) and fetches any other again.

A file whose part-file sync was still under way when it was put in place (a disk slower
than SYNC_WAIT: checkpoints.py), and then failed so that its bytes may not be on the disk
(EIO, a full disk), fails after its Finished event (exit 7). It stays in place, its mark
made a LOST one (mark_lost): a rerun fetches it again, on this boot too. A digest check
could not tell it: on this boot its bytes read back from memory, whatever the disk holds
(pages whose write-back failed stay cached, marked clean, until evicted), and the disk
that failed once may still be failing. It is neither moved nor deleted (a program may
have it open by then): the rerun puts the file fetched again in its place.

Where a filesystem takes no user attributes (vfat, exfat, NFSv3, some FUSE), a finished
file stays under its part name until a sync of its filesystem, begun after it was written,
has returned; then it is renamed (and only then reported finished). One sync covers a
batch of such files: every ``fsync_seconds`` (at most BATCH_SECONDS), when BATCH_FILES or
BATCH_BYTES wait, or at once when every file of the run under way waits for it (the end
of a run). The sync runs on the run's sync threads; once every file of the run under
way waits for it, the disk may write nothing for SYNC_WAIT seconds at most (a hung disk:
a dead USB stick): then those files fail, each kept under its part name (its bytes may
not be on the disk) for a rerun to finish, and the run's end waits no longer for the
disk. A slow disk still writing (a stick syncing 2 GB at 20 MB/s) is waited for: its
count of sectors written (sectors_written), read every second or so while that wait
lasts, restarts the clock as it grows. Where there is no such count (NFS, FUSE: no block
device), slow and hung look alike, and the sync is waited for as long as it takes (as
``cp`` then ``sync`` would be): failing files whose bytes are fine would be worse. A
folder that refused an attribute once is not asked again. Files in memory (tmpfs) are
left alone: a power loss takes them anyway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import StorageError
from ..model import Digest
from .assemble import UNSYNCED, PartFile, on_memory_fs
from .journal import boot_id

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from .mark import Mark

__all__ = [
    "ATTR", "Durability", "clear_mark", "mark_lost", "read_mark", "sync_filesystems",
    "written_out",
]

log = logging.getLogger(__name__)

ATTR = UNSYNCED
_UNCONFIRMED = "?"  # (mark.UNCONFIRMED: mark.py is loaded only when a mark is read)
#: At the end of a run, files whose bytes may still be in memory are synced (and their
#: marks cleared) when they hold at most this much: a few tenths of a second of writeback.
#: A larger rest (a 1 GiB file fetched faster than the disk writes) keeps its marks: the
#: run does not wait for a writeback it would not have waited for without them, and a
#: rerun after a reboot checks those files again.
END_SYNC_BYTES = 128 << 20
#: A file finished this long ago (seconds) was written back by the kernel (its dirty
#: pages expire after 30 s): syncing it again costs nothing.
WRITTEN_BACK = 60.0
#: Files left under their part names (no user attributes there) are synced and renamed
#: once this many wait, or hold this many bytes, or the first has waited this long
#: (seconds; fsync_seconds if less). Each holds its part file open until then.
BATCH_FILES = 128
BATCH_BYTES = 64 << 20
BATCH_SECONDS = 2.0
#: Seconds between two reads of the disk's count of sectors written while a batch's
#: sync is bounded (SYNC_WAIT / 5 if less).
CHECK_SECONDS = 1.0
#: Of the run's end's wait for the disk (SYNC_WAIT), what is kept for making the marks
#: of files whose sync did not come back unconfirmed ones (a fifth, at most this many
#: seconds): the rest is the sync's.
REMARK_WAIT = 1.0
#: Where a block device's counters are, by MAJOR:MINOR (a partition's too).
SYS_BLOCK = "/sys/dev/block"
#: The "mark" for a folder that takes no attributes: no attribute, a batch sync instead.
UNMARKED = b""

_HAS_XATTR = hasattr(os, "setxattr")
#: A sync of the filesystems the given folders are on; False if one failed.
Sync = Callable[[list[str]], bool]


def sectors_written(dev: int) -> int | None:
    """How many sectors the block device ``dev`` (an ``st_dev``) has written since boot
    (the 7th field of its stat in sysfs); None if that cannot be told (a filesystem with
    no block device, as NFS or FUSE: major 0; no /sys)."""
    try:
        major, minor = os.major(dev), os.minor(dev)
    except (OverflowError, ValueError):
        return None
    if major == 0:
        return None
    try:
        fd = os.open(f"{SYS_BLOCK}/{major}:{minor}/stat", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        return int(os.read(fd, 512).split()[6])
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


def read_mark(path: str) -> Mark | None:
    """The mark on the file at ``path``; None if it has none (or cannot have one)."""
    if not _HAS_XATTR:
        return None
    try:
        raw = os.getxattr(path, ATTR, follow_symlinks=False)
    except OSError:
        return None
    from .mark import Mark

    return Mark.decode(raw)


def clear_mark(path: str) -> None:
    try:  # (not contextlib.suppress: ~3 K instructions more, per finished file)
        os.removexattr(path, ATTR, follow_symlinks=False)
    except OSError:
        pass


def _open_file(path: str) -> int:
    """``path`` opened to read, never through a link; -1 if it cannot be."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                       | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return -1


def mark_lost(path: str, st: os.stat_result) -> bool:
    """Mark the file at ``path`` (``st``: its stat as it was put there) as one whose bytes
    the disk lost (mark.LOST: a rerun fetches it again, on this boot too); False if that
    could not be done (another file is there now, or none, or it takes no attribute)."""
    if not _HAS_XATTR:
        return False
    from .mark import LOST, Mark

    fd = _open_file(path)
    if fd < 0:
        return False
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.setxattr(fd, ATTR, Mark(LOST, st.st_size).encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def written_out(path: str, size: int) -> bool:
    """Whether the file at ``path``, read on a boot after the one that wrote it, has
    ``size`` bytes all in written blocks (no hole before its end)."""
    fd = _open_file(path)
    if fd < 0:
        return False
    try:
        return os.fstat(fd).st_size == size and (
            size == 0 or os.lseek(fd, 0, os.SEEK_HOLE) >= size
        )
    except (OSError, AttributeError):  # (no SEEK_HOLE here: nothing to tell by)
        return False
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs (Linux); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # (here: a run that syncs nothing does not load it)

    try:
        func = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def sync_filesystems(folders: list[str]) -> bool:
    """Write back every filesystem one of ``folders`` is on (``os.sync`` where there is no
    syncfs); False if one of them failed."""
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return True
    ok = True
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            ok = False
            continue
        try:
            ok = syncfs(fd) == 0 and ok
        finally:
            os.close(fd)
    return ok


#: A file waiting for a sync: (path, device, inode).
Pending = tuple[str, int, int]
#: A file left under its part name until a sync, and its job's wait for the rename.
Waiting = tuple[PartFile, "asyncio.Future[None]"]


def _one_per_device(files: Iterable[tuple[int, str]]) -> list[str]:
    """The folders of ``files`` ((device, path) pairs), one per filesystem: a sync of one
    covers the others (a dirname per file would cost ~3 K instructions each)."""
    folders: dict[int, str] = {}
    for dev, path in files:
        if dev not in folders:
            folders[dev] = os.path.dirname(path)
    return list(folders.values())


def _device(fd: int) -> int:
    """The device of the open file ``fd`` (-1: it cannot be told)."""
    try:
        return os.fstat(fd).st_dev
    except OSError:
        return -1


def _sync_and_clear(files: list[Pending], sync: Sync) -> None:
    """Sync the filesystems of ``files``, then clear their marks (those still the same
    files: another may have taken a name since)."""
    if not sync(_one_per_device((dev, path) for path, dev, _ in files)):
        log.debug("a sync failed: %d finished files keep their marks", len(files))
        return
    for path, dev, ino in files:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dev, ino):
            clear_mark(path)


class Durability:
    """The run's finished files whose bytes may not be on the disk yet, and their syncs.
    ``every``: seconds between background syncs; ``boot``: this boot's id (tests give
    one to play a reboot); ``sync``: what writes the filesystems back (default:
    :func:`sync_filesystems`, looked up at each sync); ``progress``: what counts a
    device's writes (default: :func:`sectors_written`, looked up at each read)."""

    def __init__(
        self,
        every: float,
        *,
        boot: str | None = None,
        sync: Sync | None = None,
        progress: Callable[[int], int | None] | None = None,
    ) -> None:
        self.boot = boot or boot_id()
        self._head = f"{self.boot} "
        self._every = every
        self._sync = sync
        self._progress = progress
        self._pending: list[Pending] = []
        self._bytes = 0  # what the pending files may still have to write back
        self._since = time.monotonic()  # the last sync's start (or the run's)
        self._task: asyncio.Future[None] | None = None
        self._files: list[Pending] = []  # ... and the files that sync covers
        self._bare: set[str] = set()  # folders that took no attribute
        self.batch: list[Waiting] = []  # files waiting for a sync to be renamed
        self._batch_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._syncing = False  # a batch's sync is under way
        self._in_sync: list[Waiting] = []  # ... and the files it covers
        self._due = False  # ... and the next batch's time came meanwhile
        self._give_up: asyncio.TimerHandle | None = None  # (see _bound)
        self._devices: list[int] = []  # the devices of the batch's sync under way
        self._written: tuple[int, ...] | None = None  # ... their counts last read
        #: The loop time by which the disk must answer the files that wait for a batch's
        #: sync, once the run waits for nothing else (None: no such wait; later as the
        #: disk writes); the run's end shares it (checkpoints.end_deadline).
        self.deadline: float | None = None
        #: How many files of the run are under way (the run sets it): when all of them
        #: wait for the batch, nothing else will join it soon.
        self.running: Callable[[], int] = lambda: 0
        #: Where the syncs of ``finished`` files run (the run sets it: its sync threads;
        #: None, the loop's default executor).
        self.threads: Callable[[], Executor | None] = lambda: None

    def mark(self, folder: str, size: int, digest: Digest | None) -> bytes | None:
        """The mark for a file of ``size`` bytes finishing in ``folder``; None: none
        needed (a filesystem in memory); UNMARKED: the folder takes none."""
        if on_memory_fs(folder):
            return None
        if folder in self._bare:
            return UNMARKED
        if digest is None:  # (as Mark.encode, without a Mark: ~4 K instructions less)
            return f"{self._head}{size}".encode("ascii", "replace")
        from .mark import Mark

        return Mark(self.boot, size, digest).encode()

    async def place(self, part: PartFile, folder: str, size: int) -> None:
        """Rename ``part`` (of ``size`` bytes, in ``folder``), which could not be marked,
        once a sync of its filesystem begun after now has returned. StorageError if that
        sync or the rename failed (the part file is kept); cancelled, the file stays under
        its part name."""
        self._bare.add(folder)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.batch.append((part, fut))
        self._batch_bytes += size
        self.poke()
        await fut  # (a cancel cancels fut: the batch then leaves the file as it is)

    def full(self) -> bool:
        """Whether a whole batch waits already (for its sync, or for one under way)."""
        return len(self.batch) >= BATCH_FILES

    def waits(self) -> bool:
        """Whether files wait for a batch's sync (its run pokes as files end)."""
        return bool(self.batch or self._in_sync)

    def poke(self) -> None:
        """Start the waiting batch's sync if its time has come, else time it; bound the
        wait of a sync under way once nothing else of the run is (see _bound)."""
        if self._syncing:
            if self._give_up is None and self.running() <= len(self.batch) + len(self._in_sync):
                if self.deadline is None:
                    self._bound()
                else:  # (its time ran out already: files that came since do not wait again)
                    self._late()
            return
        if not self.batch:
            return
        if (
            self._due or len(self.batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES
            or self.running() <= len(self.batch)
        ):
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                min(self._every, BATCH_SECONDS), self._time_up
            )

    def _time_up(self) -> None:
        self._timer = None
        self._due = True
        self.poke()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = False
        batch = [w for w in self.batch if not w[1].done()]
        self.batch, self._batch_bytes = [], 0
        if not batch:
            return
        self._syncing, self._in_sync = True, batch
        where: dict[int, str] = {}
        for part, _ in batch:
            dev = _device(part.fd)
            if dev not in where:
                where[dev] = os.path.dirname(part.where)
        folders, self._devices = list(where.values()), list(where)
        task = asyncio.get_running_loop().run_in_executor(
            self.threads(), self._sync or sync_filesystems, folders
        )
        task.add_done_callback(functools.partial(self._synced, batch))
        self.poke()  # (its wait is bounded at once if nothing else of the run is under way)

    def _bound(self) -> None:
        """Every file of the run under way waits for a batch's sync: the disk may write
        nothing for SYNC_WAIT seconds, then those files fail (see _late). Its count of
        sectors written is read every CHECK_SECONDS meanwhile; where there is none, the
        sync is waited for as long as it takes (a slow disk and a hung one look alike)."""
        loop = asyncio.get_running_loop()
        self._written = self._count()
        if self._written is None:
            return
        self.deadline = loop.time() + _no_writes()
        self._give_up = loop.call_at(min(self.deadline, loop.time() + self._step()), self._check)

    def _count(self) -> tuple[int, ...] | None:
        """The counts of sectors written of the devices the batch's sync is writing
        back; None if one of them has none."""
        read = self._progress or sectors_written
        counts = []
        for dev in self._devices:
            count = read(dev)
            if count is None:
                return None
            counts.append(count)
        return tuple(counts)

    def _step(self) -> float:
        return min(CHECK_SECONDS, _no_writes() / 5)

    def _check(self) -> None:
        """Read the disk's counts again: grown, the clock restarts; else the files fail
        once SYNC_WAIT has passed since they last grew."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        written = self._count()
        if written is not None and written != self._written:
            self._written = written
            self.deadline = now + _no_writes()
        assert self.deadline is not None  # (set by _bound; cleared with this timer)
        if now >= self.deadline:
            self._late()
            return
        self._give_up = loop.call_at(min(self.deadline, now + self._step()), self._check)

    def _late(self) -> None:
        """The sync under way is not back by the deadline (a hung disk): its files, and
        those waiting for the next sync, fail, each left under its part name (its bytes
        may not be on the disk; its record, if it has one, stays: a rerun finishes it).
        The sync is not given up: it keeps its thread, and the next batch waits for it
        (another would only hang beside it)."""
        self._give_up = None
        why = f"a sync of its filesystem has written nothing for {_no_writes():g} s"
        waiting, self._in_sync = self._in_sync + self.batch, []
        self.batch, self._batch_bytes = [], 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for part, fut in waiting:
            if not fut.done():
                kept = os.path.basename(part.where)
                fut.set_exception(StorageError(
                    f"the disk did not confirm writing {part.final} ({why}); it is kept as"
                    f" {kept}: run omniget again once the disk answers to finish it"
                ))

    def _synced(self, batch: list[Waiting], task: asyncio.Future[bool]) -> None:
        """Rename the batch's files if their sync returned well; else fail them."""
        self._syncing, self._in_sync = False, []
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        self.deadline = None
        ok = not task.cancelled() and task.exception() is None and task.result()
        for part, fut in batch:
            if fut.done():  # (its job was cancelled: it stays a part file)
                continue
            if not ok:
                fut.set_exception(StorageError(
                    f"the disk did not confirm writing {part.final} (a sync failed);"
                    " its part file is kept, run again to resume"
                ))
                continue
            try:
                part.place()
            except StorageError as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(None)
        self.poke()

    def finished(self, path: str, st: os.stat_result) -> None:
        """The file now at ``path`` (``st``: its stat) was marked and renamed into place."""
        self._pending.append((path, st.st_dev, st.st_ino))
        self._bytes += st.st_size
        if self._task is None and time.monotonic() - self._since >= self._every:
            self._start()

    def check(self, path: str, st: os.stat_result) -> Mark | None:
        """A file at ``path`` (``st``: its lstat) that --on-exists skip would keep: None if
        it can be trusted, else its mark (written on another boot: its bytes may have
        been lost)."""
        mark = read_mark(path)
        if mark is None:
            return None
        if mark.boot != self.boot:
            return mark  # (of another boot, lost, or unconfirmed: see unconfirmed())
        # this boot's: good now, and good for ever after a sync
        self._pending.append((path, st.st_dev, st.st_ino))
        if time.time() - st.st_ctime < WRITTEN_BACK:
            self._bytes += st.st_size
        return None

    def _start(self) -> asyncio.Future[None]:
        files, self._pending, self._bytes = self._pending, [], 0
        self._since = time.monotonic()
        task = asyncio.get_running_loop().run_in_executor(
            self.threads(), _sync_and_clear, files, self._sync or sync_filesystems
        )
        self._task, self._files = task, files

        def done(fut: asyncio.Future[None]) -> None:
            self._task = None
            if not fut.cancelled() and fut.exception() is not None:
                log.debug("a sync failed: %s", fut.exception())

        task.add_done_callback(done)
        return task

    def unconfirmed(self, mark: Mark) -> bool:
        """Whether ``mark`` was left on this boot by a run whose end gave up on the sync of
        its file (see :meth:`settle`): whether the disk has its bytes is not known, and
        they read back from memory (a rerun fetches it again)."""
        return mark.boot == f"{self.boot}{_UNCONFIRMED}"

    async def settle(self, deadline: float | None = None) -> None:
        """At the end of the run: wait for a sync under way, and sync what is left if that
        is cheap (see END_SYNC_BYTES); until ``deadline`` (loop time: the run's end, which
        its part-file syncs share) at most, SYNC_WAIT seconds from now if none. Files that
        a sync not back by then covers, or that wait for one, keep their marks (a rerun on
        another boot checks them), and a warning names their folders: their bytes may be
        in memory only, as long as the disk does not answer."""
        from .checkpoints import SYNC_WAIT as wait  # (read now: tests change it)

        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + wait
        end, deadline = deadline, deadline - min(REMARK_WAIT, wait / 5)  # (see below)
        if self._task is not None:
            _, late = await asyncio.wait(
                [self._task], timeout=max(0.0, deadline - loop.time())
            )
            if late:  # (no other sync: it would wait behind this one)
                _unconfirmed(self._files + self._pending, wait)
                await self._left_unconfirmed(self._files + self._pending, end)
                return
        if not self._pending:
            return
        if self._bytes > END_SYNC_BYTES:
            log.debug(
                "%d finished files keep their marks (%d bytes may be in memory only)",
                len(self._pending), self._bytes,
            )
            return
        files = self._pending
        _, late = await asyncio.wait([self._start()], timeout=max(0.0, deadline - loop.time()))
        if late:
            _unconfirmed(files, wait)
            await self._left_unconfirmed(files, end)

    async def _left_unconfirmed(self, files: list[Pending], end: float) -> None:
        """Make the marks of ``files`` (this boot's, still theirs) unconfirmed ones, on a
        thread of its own, waited for until ``end`` (loop time) at most: the disk that
        hangs a sync may hang this too (the marks stay this boot's then, or change once
        it answers, if the process is still there). The sync that comes back later clears
        them, as any."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def work() -> None:
            try:
                _mark_unconfirmed(files, self.boot)
            finally:
                done.set_result(None)

        threading.Thread(target=work, name="omniget-unconfirmed", daemon=True).start()
        loop = asyncio.get_running_loop()
        await asyncio.wait([asyncio.wrap_future(done)], timeout=max(0.0, end - loop.time()))


def _mark_unconfirmed(files: list[Pending], boot: str) -> None:
    from .mark import UNCONFIRMED, Mark

    for path, dev, ino in files:
        fd = _open_file(path)
        if fd < 0:
            continue
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):
                continue  # (another file took the name since)
            mark = Mark.decode(os.getxattr(fd, ATTR))
            if mark.boot == boot:  # (not cleared by the sync, come back meanwhile)
                mark.boot += UNCONFIRMED
                os.setxattr(fd, ATTR, mark.encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def _no_writes() -> float:
    """Seconds a batch's sync may go without its disk writing (checkpoints.SYNC_WAIT,
    read when used: tests change it)."""
    from .checkpoints import SYNC_WAIT

    return SYNC_WAIT


def _unconfirmed(files: list[Pending], wait: float) -> None:
    """Warn of ``files`` whose sync did not return in ``wait`` seconds, by folder."""
    folders: dict[str, None] = {}
    for path, _, _ in files:
        folders.setdefault(os.path.dirname(path))
    names = list(folders)
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more folders" if len(names) > 3 else "")
    count = f"{len(files)} finished file{'s' if len(files) != 1 else ''}"
    log.warning(
        "the disk did not confirm writing %s in %s (a sync of it not back after %g s);"
        " they keep their marks: a rerun after a reboot checks them, or fetches them again",
        count, where, wait,
    )
