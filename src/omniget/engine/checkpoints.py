"""A file's journal record while its bytes come in: made when first needed, checkpoints of
the spans written (with their fingerprints, prints.py) and of verified pieces, the periodic
sync of the part file that makes them trusted after a power loss, and the record another
run drops or takes meanwhile (the record's key is the download's, not the name's).

A finished file waits for its part-file sync under way (SYNC_WAIT at most) before it is
put in place. If that sync then reports that the data did not reach the disk (EIO, a full
disk), the file fails after its Finished event (a Failed one, ``after_finished``; exit 7),
and stays in place with a mark that has a rerun fetch it again (see _lost_in_place and
durable.py): the same command repairs it, no flag needed."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import StorageError
from .durable import mark_lost
from .events import Failed, Warned
from .journal import Print
from .journal.records import RecordGone, RecordTaken
from .prints import prints
from .spans import Interval

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from .context import RunContext
    from .job import FileJob

__all__ = [
    "NOTHING_SAVED", "SYNC_THREADS", "SYNC_WAIT", "PartSync", "Saved", "end_deadline",
    "end_syncs", "ensure_record", "forget_bytes", "last_sync", "piece_done", "record_anew",
    "record_size", "save_spans", "stop_syncs", "sync_lost", "sync_threads", "syncs_back",
]  # fmt: skip

log = logging.getLogger(__name__)

#: At a run's end, the part-file syncs still under way (a file's last one, as it failed or
#: was stopped: see last_sync) are waited for this long at most (seconds; as long as the
#: default interval between syncs): a disk that takes longer does not hold the run up, and
#: what those syncs make durable is not recorded as synced (a rerun after a reboot fetches
#: it again). A finished file waits as long for its sync under way (see syncs_back).
SYNC_WAIT = 5.0

#: Part-file syncs run on threads of their own (at most this many at once), not in the
#: loop's default executor: a slow disk's syncs do not hold up what runs there (hashing
#: a finished file, the journal's clean-up at close, a name's lookup).
SYNC_THREADS = 2

#: A file's ``last_sync`` once a sync of it failed: none is due again in this run (see
#: _start_sync), and what it wrote stays unsynced in its record.
NO_MORE_SYNCS = math.inf

#: What a failed fdatasync says when the data did not make it to the disk (write-back
#: failed; no room for it): the file's bytes since the last good sync are not trusted
#: even in this boot (on Linux, pages whose write-back failed are marked clean: once
#: evicted, a read gives what is on the disk). The file fails, its record cut back to
#: what was synced. Other errors (EINVAL, EROFS on file systems that do not sync, EBADF)
#: only stop what the file's syncs record.
DATA_LOST = frozenset({errno.EIO, errno.ENOSPC, errno.EDQUOT})

#: A file's record that another run dropped under it (see record_lost) ...
RECORD_GONE = (
    "its resume record went away (another omniget run on the same state folder finished"
    " or dropped the same download meanwhile); a new one is made"
)
#: ... or took
RECORD_TAKEN = (
    "another omniget run on the same state folder took its resume record (it writes the"
    " same download to another name); this file goes on without resume state"
)

#: Spans committed as written, and their fingerprints (see journal.Print).
Saved = tuple[list[Interval], list[Print] | None]
#: None yet (one tuple shared by every job: none is made per file; nothing changes it).
NOTHING_SAVED: Saved = ([], None)


def ensure_record(job: FileJob) -> bool:
    """Start this file's journal record if it has none yet; False: it has none (no
    journal, or it failed: the run goes on without, see RunContext.journal_failed)."""
    if job.journal_started:
        return True
    journal = job.ctx.journal
    if (
        journal is None or job.final is None or job.ctx.journal_error is not None
        or job.lost > 1
    ):
        return False
    path = str(job.final)
    part = job.part.inode() if job.part is not None and job.part.fd >= 0 else None
    try:
        journal.start(
            job.key,
            path=path,
            url=job.item.download_url,
            size=job.size,
            etag=job.etag,
            last_modified=job.last_modified,
            digest=f"{job.digests[0].algo}:{job.digests[0].hex}" if job.digests else None,
            part=part,
        )
    except StorageError as exc:  # (no record of it yet: it goes on without one)
        job.ctx.journal_failed(exc)
        return False
    job.ctx.journal_started(job.key)
    job.journal_started = True
    job.owned = (path, part)
    return True


def record_size(job: FileJob) -> None:
    """Give this file's record the size read off its body's own end (a gzip stream's, the
    last chunk), which it was made without: a rerun then knows its spans hold every
    byte. A size read off a closed connection is not given (it may be a cut one's)."""
    if job.size_from_eof and job.end_proven:
        record_anew(job)


def record_anew(job: FileJob) -> None:
    """Write this file's size, validators and digest into its record again (its spans
    are kept): one read off the body's end (record_size), or a restarted file's, whose
    record named the old file's (a later run's If-Range would have named them: a server
    gone back to that version then sent its bytes after the new one's)."""
    journal = job.ctx.journal
    if journal is None or not job.journal_started:
        return
    digest = f"{job.digests[0].algo}:{job.digests[0].hex}" if job.digests else None
    try:  # (only while the record is this run's: another may have taken it)
        journal.revalidate(job.key, size=job.size, etag=job.etag,
                           last_modified=job.last_modified, digest=digest, own=job.owned)
    except StorageError as exc:
        job.ctx.journal_failed(exc)


def record_lost(job: FileJob, exc: RecordGone) -> bool:
    """Another omniget run on the same state folder dropped this file's record (it
    finished or dropped the same download under another name; the record's key is
    the download's) or took it (it writes that download to another name now). Gone:
    a new record is made, and True says to write again. Taken: it is that run's
    (this run's bytes are not in its part file), and this file goes on without
    resume state. One warning either way; a second loss ends resume state for the
    file without another."""
    job.journal_started = False
    job.owned = None
    job.lost += 1
    if job.lost > 1:
        return False
    if isinstance(exc, RecordTaken):
        job.lost = 2
        job.ctx.event(Warned(job.item, job.final, RECORD_TAKEN))
        return False
    job.ctx.event(Warned(job.item, job.final, RECORD_GONE))
    return ensure_record(job)


def _write(job: FileJob, call: Callable[[], None]) -> bool:
    """Make ``call``, a write of this file's record (given ``job.owned``); False
    when it was not written (see record_lost and RunContext.journal_failed)."""
    while True:
        try:
            call()
            return True
        except RecordGone as exc:
            if not record_lost(job, exc):
                return False
        except StorageError as exc:
            job.ctx.journal_failed(exc)
            return False


def forget_bytes(job: FileJob) -> None:
    """A fresh part file is made while an earlier one's record stays (its part file
    deleted by hand, or not the one it names): the record's bytes go first. The new
    part file may get the old one's inode number (ext4 reuses them at once), and a run
    killed before its first checkpoint would leave them claimed for the new file."""
    rec, journal = job.record, job.ctx.journal
    if rec is None or rec.done or journal is None:
        return
    try:
        journal.reset(job.key)
    except StorageError as exc:
        job.ctx.journal_failed(exc)


def save_spans(job: FileJob, spans: list[Interval], now: float) -> None:
    """Commit finished byte spans (already written to the part file) to the journal."""
    job.last_ckpt = now
    job.set_next_tick()
    journal = job.ctx.journal
    if journal is None or (job.ctx.lost_syncs and job in job.ctx.lost_syncs):
        return  # (its record keeps only what was synced: see _data_lost)
    if not ensure_record(job):
        return
    # (what a rerun reads back: the bytes at both ends of each span, written already)
    part = job.part
    marks = prints(part.fd, spans) if part is not None and part.fd >= 0 else None
    if not _write(job, lambda: journal.save_spans(job.key, spans, marks, own=job.owned)):
        return
    job.saved = (spans, marks)
    _sync_due(job, now)


def piece_done(
    job: FileJob, index: int, size: int, *, in_part: bool = True, fingerprint: Print | None = None
) -> None:
    """Record piece ``index`` as verified; ``in_part``: its bytes are in the part
    file (not a staging file), so a sync of that file makes them durable;
    ``fingerprint``: of those bytes, as written (a sync that marks the piece synced
    starts after that write: the print holds for the bytes it makes durable too)."""
    journal = job.ctx.journal
    if journal is None or (job.ctx.lost_syncs and job in job.ctx.lost_syncs):
        return
    if not ensure_record(job):
        return
    mark = fingerprint if in_part else None
    if not _write(job, 
        lambda: journal.piece_done(job.key, index, size, mark, own=job.owned)
    ):
        return
    if in_part:
        job.unsynced.append(index)
    _sync_due(job, time.monotonic())


class PartSync:
    """One part-file sync: its own descriptor, and what it makes durable (written
    before it starts)."""

    __slots__ = ("fd", "gen", "marks", "pieces", "spans")

    def __init__(self, job: FileJob, fd: int) -> None:
        (self.spans, self.marks), self.pieces, self.gen = job.saved, job.unsynced, job.generation
        self.fd = fd


def _sync_due(job: FileJob, now: float) -> None:
    """Every ``fsync_seconds``: fdatasync the part file on a sync thread, then
    record what was written before it as synced (what a run after a power loss
    trusts; see journal.py). One sync of a file at a time: one due while another is
    under way starts when that one returned (a later sync recorded first would be
    rolled back by the earlier one's smaller record). None after one that failed."""
    part, ctx = job.part, job.ctx
    if part is None or now - job.last_sync < ctx.settings.fsync_seconds:
        return
    if ctx.syncs is None:  # (the run is over: nothing would record it)
        return
    job.last_sync = now
    try:  # (its own descriptor: the part file may be closed before the sync runs)
        fd = os.dup(part.fd)
    except OSError:
        return
    # (the fingerprints are of bytes written before the sync starts: it makes them
    # durable too)
    sync = PartSync(job, fd)
    job.unsynced = []
    if job not in ctx.syncing:
        _start_sync(job, sync)
        return
    waiting = ctx.syncing[job]  # (a newer one takes the place of one still waiting)
    if waiting is not None:
        os.close(waiting.fd)
        sync.pieces = waiting.pieces + sync.pieces
    ctx.syncing[job] = sync


def sync_threads(ctx: RunContext) -> ThreadPoolExecutor:
    """The run's sync threads (part files' syncs, and its filesystems': durable.py),
    made at its first sync: a run of small files makes no part-file sync."""
    pool = ctx.sync_pool
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor  # (here: not at start-up)

        pool = ctx.sync_pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="omniget-sync")
    return pool


def last_sync(job: FileJob) -> None:
    """A file that failed or was stopped, its part file still open: sync it once more,
    whatever ``fsync_seconds``, if its last checkpoint wrote anything no sync covers
    yet, so that its record calls that synced (a rerun after a power loss does not fetch
    it again). The run's end waits for it as for any sync under way (SYNC_WAIT at most).
    None after a failed sync (see _start_sync), nor once the run is over."""
    if job.last_sync == NO_MORE_SYNCS or not job.journal_started or job.ctx.syncs is None:
        return
    if job.unsynced or (job.saved[0] and job.last_ckpt > job.last_sync):
        job.last_sync = -math.inf  # (due now)
        _sync_due(job, time.monotonic())


def _start_sync(job: FileJob, sync: PartSync) -> None:
    ctx = job.ctx
    assert ctx.syncs is not None
    pool = ctx.sync_pool or sync_threads(ctx)
    synced = asyncio.get_running_loop().run_in_executor(pool, _sync_on_pool, ctx, sync.fd)
    ctx.syncs.add(synced)
    ctx.syncing[job] = None
    ctx.sync_under_way[job] = synced

    def record(fut: asyncio.Future[bool]) -> None:
        waiting = ctx.syncing.pop(job, None)
        ctx.sync_under_way.pop(job, None)
        error = None if fut.cancelled() else fut.exception()  # (taken: none is logged)
        if ctx.syncs is None:  # (the run is over: its journal may be closed by now)
            if waiting is not None:
                os.close(waiting.fd)
            return
        ctx.syncs.discard(fut)
        ok = not fut.cancelled() and error is None and fut.result()
        if ok and sync.gen == job.generation:
            _record_synced(job, sync)
        elif isinstance(error, OSError) and error.errno in DATA_LOST:
            _data_lost(job, error)
        elif not ok:
            # (a failed fdatasync may have dropped dirty pages, marked clean: a later one
            # returns well without them. No sync of this file records anything more.)
            job.last_sync = NO_MORE_SYNCS
        if ctx.placed_unsynced and job in ctx.placed_unsynced and (not ok or waiting is None):
            _placed_synced(job, ok)
        if waiting is None:
            return
        if not ok or waiting.gen != job.generation:  # (see above; its bytes are forgotten)
            os.close(waiting.fd)
            return
        _start_sync(job, waiting)

    synced.add_done_callback(record)


def _placed_synced(job: FileJob, ok: bool) -> None:
    """A file put in place while its part-file sync was under way: that sync (and the one
    due after it) returned. Well, its mark is the durability's to clear after a sync of
    its filesystem, as any finished file's; else it keeps its mark (a LOST one if the
    disk lost its bytes: _lost_in_place)."""
    ctx = job.ctx
    text, st = ctx.placed_unsynced.pop(job)
    if ok and ctx.durability is not None:
        ctx.durability.finished(text, st)


def _record_synced(job: FileJob, sync: PartSync) -> None:
    journal = job.ctx.journal
    if journal is None or not (sync.spans or sync.pieces) or job.owned is None:
        return
    try:
        journal.save_synced(job.key, sync.spans, sync.pieces, sync.marks, own=job.owned)
    except StorageError as exc:
        job.ctx.journal_failed(exc)


def _data_lost(job: FileJob, error: OSError) -> None:
    """A sync of this file met an error that says its data did not reach the disk: no
    later sync records anything, its record is cut back to what earlier syncs made
    durable (written spans, prints, pieces; no later checkpoint adds to it), and the file
    fails, at its end if not before (see sync_lost). One put in place already (its sync
    slower than SYNC_WAIT) fails now, after its Finished event (see _lost_in_place)."""
    job.last_sync = NO_MORE_SYNCS
    ctx = job.ctx
    if job in ctx.lost_syncs:
        return
    why = "disk full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror
    if ctx.placed_unsynced and job in ctx.placed_unsynced:  # (in place, reported finished)
        _lost_in_place(job, why)
        return
    name = job.final if job.final is not None else job.item.filename
    ctx.lost_syncs[job] = StorageError(
        f"the disk reported an error writing {name} ({why}); only what was synced before"
        " is kept, run again to fetch the rest"
    )
    journal = ctx.journal
    if journal is None or job.owned is None:
        return
    try:
        journal.keep_synced(job.key, own=job.owned)
    except StorageError as exc:
        ctx.journal_failed(exc)


def _lost_in_place(job: FileJob, why: str | None) -> None:
    """The disk lost the bytes of a file put in place and reported finished: it fails
    (the run's report takes its result back: see core.py), and a Failed event that says
    so follows its Finished one. It stays where it is, its mark made a LOST one, so that
    a rerun fetches it again (durable.py); its journal record, dropped as it finished
    (or kept done, for a name the server chose), is left so."""
    ctx = job.ctx
    text, st = ctx.placed_unsynced[job]
    again = (
        "run the same command again to download it anew" if mark_lost(text, st)
        else "--on-exists overwrite fetches it again"
    )
    error = ctx.lost_syncs[job] = StorageError(
        f"the disk reported an error writing {job.final} after it was put in place ({why}):"
        f" its bytes may not be on the disk; check the disk, then {again}"
    )
    ctx.event(Failed(job.item, job.final, error, after_finished=True))


def sync_lost(job: FileJob) -> None:
    """Raise the StorageError of a file a sync of which the disk failed (_data_lost),
    if this one is such a file: before it is checked and put in place."""
    lost = job.ctx.lost_syncs
    if lost and job in lost:
        raise lost[job]


async def syncs_back(job: FileJob) -> None:
    """A file that passed its checks, before it is put in place: wait for its part-file
    syncs under way (the one due after it too), SYNC_WAIT seconds at most. One that
    fails so (the disk lost its bytes: _data_lost) fails the file there (see sync_lost),
    rather than after it was reported finished: the file system's own sync at the run's
    end does not report a file's failed write-back. A file with none under way (most:
    a sync is due every ``fsync_seconds``, and none at a file's end) does not wait."""
    ctx = job.ctx
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SYNC_WAIT
    while (synced := ctx.sync_under_way.get(job)) is not None:
        left = deadline - loop.time()
        if left <= 0:  # (a disk this slow: the file goes in place, marked, as before)
            log.debug("%s: its part-file sync is not back after %g s", job.final, SYNC_WAIT)
            return
        # (its record callback, added first, has run when this returns)
        await asyncio.wait([synced], timeout=left)


async def end_syncs(ctx: RunContext, deadline: float | None = None) -> None:
    """At the run's end: wait for the part-file syncs under way, those started as others
    return too, until ``deadline`` (loop time: the run's end, which the sync of its
    finished files' filesystems shares) at most, SYNC_WAIT seconds from now if none; each
    is recorded as it returns, one that returns later records nothing."""
    syncs = ctx.syncs
    try:
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + SYNC_WAIT
        late: set[asyncio.Future[bool]] = set()
        while syncs and not late:
            _, late = await asyncio.wait(list(syncs), timeout=max(0.0, deadline - loop.time()))
        if late:
            log.debug("%d part-file syncs not back by the run's end: not recorded as synced",
                      len(late))
    finally:
        ctx.syncs = None


def end_deadline(ctx: RunContext) -> float:
    """The loop time by which the run's end stops waiting for the disk: SYNC_WAIT from
    now, or sooner if its files' wait for a batch's sync began earlier and was not
    answered (Durability.deadline). One deadline for all its syncs (that wait's,
    Durability.settle's and end_syncs'): a hung disk holds the end SYNC_WAIT at most,
    not once per kind of sync."""
    end = asyncio.get_running_loop().time() + SYNC_WAIT
    durability = ctx.durability
    if durability is not None and durability.deadline is not None:
        end = min(end, durability.deadline)
    return end


def stop_syncs(ctx: RunContext) -> None:
    """The run is over: a sync that returns later records nothing; those not started
    yet close their descriptors unsynced. The run does not wait for the sync threads
    (end_syncs did, SYNC_WAIT at most)."""
    ctx.syncs = None
    pool, ctx.sync_pool = ctx.sync_pool, None
    if pool is not None:
        pool.shutdown(wait=False)


def _sync_on_pool(ctx: RunContext, fd: int) -> bool:
    if ctx.syncs is None:  # (queued past the run's end: nothing would record it)
        os.close(fd)
        return False
    return _sync_and_close(fd)


def _sync_and_close(fd: int) -> bool:
    """fdatasync ``fd`` and close it; False if the sync failed (then nothing more is
    recorded as synced: a failed sync may have dropped the data it held). An error of
    DATA_LOST is raised: the data did not make it (see _data_lost)."""
    try:
        os.fdatasync(fd)
        return True
    except OSError as exc:
        if exc.errno in DATA_LOST:
            raise
        return False
    finally:
        os.close(fd)
