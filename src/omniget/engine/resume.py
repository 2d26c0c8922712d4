"""A file's part file and resume state: opening the part file (or the one created ahead
of the answer), an earlier run's record of its bytes, and finding that record when the
output folder moved or the URL was renewed. Functions of a :class:`~.job.FileJob` (its
methods ``open_part`` and ``load_resume``)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StorageError
from ..model import Digest
from .assemble import NotAPart, PartBusy, PartFile, drop_part, not_a_file, part_busy, part_path
from .context import output_key
from .events import Warned
from .existing import SkipFile, there
from .journal import FileRecord
from .journal.records import RecordGone
from .prints import holds
from .spans import length, merge

if TYPE_CHECKING:
    from .job import FileJob

log = logging.getLogger(__name__)

#: A part file was there with no record of its bytes (another --state-dir, say, or a
#: relative one after a cd: the folder is named, see started_over).
STARTED_OVER = "its part file had no resume record in this state folder; starting over"
#: A part file whose record vouches for none of its bytes: its spans were written on
#: another boot and none was synced, or the record is of another part file (a run with
#: another state folder started it over since).
NOT_KEPT = (
    "its part file holds no bytes its resume record vouches for (another run started it"
    " over since, or none was synced before the machine restarted); starting over"
)
#: The part file does not end its recorded spans with the bytes they ended with: it was
#: overwritten, or replaced by a file that got its inode number (ext4 reuses them at once).
CHANGED = (
    "its part file does not hold the bytes the resume journal recorded for it (changed"
    " since the last run?); starting over"
)


def started_over(state: Path | None) -> str:
    """:data:`STARTED_OVER`, naming the state folder ``state`` (if known)."""
    if state is None:
        return STARTED_OVER
    return f"its part file had no resume record in the state folder {state}; starting over"


def open_part(job: FileJob, final: Path, *, fresh: bool) -> PartFile:
    job.final = final
    fd = -1
    if job.ahead is not None:
        ahead, job.ahead = job.ahead, None
        fd = ahead.fd()
        # (the same Path, as a rule: else compared by key, cheaper than Path ==)
        if ahead.final is not final and output_key(ahead.final) != output_key(final):
            drop_part(ahead.final, fd)
            fd = -1
    _, text, folder = job.place(final)
    began = time.perf_counter()
    decides = job.ctx.settings.on_exists != "overwrite" and not job.replacing
    try:
        job.part = PartFile(
            final, fresh=fresh, made=job.ctx.made_dirs, fd=fd, folder=folder, text=text,
            leftovers=job.ctx.leftovers,
        )
    except PartBusy as exc:  # (another run done with it a moment ago: its file is there)
        if exc.busy or not decides or not there(text):
            raise
        return _taken_since(job, final)
    if fresh and decides and there(text):
        return _taken_since(job, final)
    if job.part.dropped:
        journal = job.ctx.journal
        state = None if journal is None else journal.path.parent
        said = started_over(state) if job.record is None else NOT_KEPT
        job.ctx.event(Warned(job.item, final, said))
    if fd < 0 and fresh:
        job.ctx.timed_create(job.part.where, time.perf_counter() - began, folder)
    return job.part


def _taken_since(job: FileJob, final: Path) -> PartFile:
    """Another run put a file at ``final`` after this one found it free (while its
    answer was on the way; or it finished the part file this one was about to open):
    --on-exists decides again, as for any file there. Raises :class:`SkipFile`."""
    part, job.part = job.part, None
    if part is not None:
        part.discard()  # (this run's, locked: nobody else writes it)
    chosen = job.exists_policy(final)
    if chosen is None:
        raise SkipFile("exists")
    if job.released is not None:
        job.ctx.outputs[output_key(chosen)] = job.released  # (later files see it taken)
    return open_part(job, chosen, fresh=True)


def create_part_ahead(job: FileJob, final: Path) -> None:
    """In a folder where creating a file is slow (some disks, network file systems),
    start creating the part file on another thread while the request goes out, so
    it does not hold up every other transfer of the run."""
    if job.item.pieces:
        return
    _, text, folder = job.place(final)
    if job.ctx.creates_slowly(final, folder):
        job.ahead = job.ctx.create_part_ahead(final, folder, text)


def drop_ahead(job: FileJob) -> None:
    """The part file created ahead went unused (the file failed or was skipped)."""
    if job.ahead is not None:
        ahead, job.ahead = job.ahead, None
        job.ctx.drop_ahead(ahead)


def load_resume(job: FileJob, final: Path) -> None:
    """Take an earlier run's state for ``final`` if its part file is still there."""
    rec = job.record
    journal = job.ctx.journal
    if rec is None or journal is None or rec.done:
        return
    where = str(part_path(final))
    kind = not_a_file(where)  # (never waited on, followed, nor started over)
    if kind is not None:
        raise NotAPart(where, kind)
    try:
        if not part_path(final).exists():
            journal.reset(job.key)
            return
        if part_busy(final):  # (before any request; the open at the answer checks again)
            raise PartBusy(final)
        spans, prints = journal.spans_with_prints(job.key)
    except PartBusy:
        raise
    except StorageError as exc:  # (what is in the part file cannot be told now)
        job.ctx.journal_failed(exc)
        if part_path(final).exists():
            raise not_resumable(final, exc) from exc
        return
    done = merge(spans)
    try:
        on_disk = os.stat(part_path(final)).st_size
    except OSError:
        on_disk = 0
    if prints is not None and done == spans and not holds(
        part_path(final), done, prints, on_disk
    ):
        _start_over(job, final)
        return
    if done and done[-1][1] > on_disk:  # cut short since (by hand, or a full copy)
        job.ctx.event(
            Warned(job.item, final, "its part file is shorter than recorded; resuming there")
        )
        done = [(s, min(e, on_disk)) for s, e in done if s < on_disk]
    job.size = rec.size if rec.size is not None else job.size
    job.etag, job.last_modified = rec.etag, rec.last_modified
    if rec.digest and not job.digests:  # (what the server said last time)
        algo, _, hexv = rec.digest.partition(":")
        with contextlib.suppress(ValueError):
            job.digests = [Digest(algo, hexv)]
    job.done = done
    job.resumed = length(job.done)
    job.journal_started = True
    job.owned = (rec.path, rec.part)
    log.debug("%s: resuming with %d bytes already in", final.name, job.resumed)


def _start_over(job: FileJob, final: Path) -> None:
    """``final``'s part file is not what its record says (see CHANGED): nothing of it is
    kept, at once (an empty file takes its place, as when a file starts afresh, so that a
    run stopped now leaves none of those bytes), and its record loses its spans."""
    job.ctx.event(Warned(job.item, final, CHANGED))
    journal = job.ctx.journal
    assert journal is not None
    try:
        journal.reset(job.key)
    except StorageError as exc:
        job.ctx.journal_failed(exc)
    _, text, folder = job.place(final)
    PartFile(final, fresh=True, made=job.ctx.made_dirs, folder=folder, text=text,
             leftovers=job.ctx.leftovers).close()


def renamed_unfinished(job: FileJob, rec: FileRecord) -> bool:
    """An earlier run under --on-exists rename left this download unfinished under
    its new name: a rerun in that mode goes on with it (not with yet another name)."""
    return (
        not rec.done
        and job.ctx.settings.on_exists == "rename"
        and part_path(Path(rec.path)).exists()
    )


def own_part(job: FileJob, final: Path) -> bool:
    """``final``'s part file is there, and is the file its record describes (not one
    started over since by a run with another state folder)."""
    ino = _inode(part_path(final))
    rec = job.record
    return ino is not None and rec is not None and rec.part in (None, ino)


def moved_here(job: FileJob, final: Path) -> FileRecord | None:
    """The unfinished record, kept under another key, whose part file is the one at
    ``final``: this download's in an output folder that was renamed or moved, or this
    file's under an earlier URL (a renewed link: a signed URL whose token expired) if
    that record has a validator, so that the first request's If-Range has the server
    say whether it is still the same file (if not, the file starts over). It is this
    file's now."""
    same, earlier = job.ctx.unfinished_records(job)
    journal = job.ctx.journal
    if journal is None:
        return None
    if not (same or earlier) or part_busy(final):  # (busy: that run's record is its own)
        return None
    ino = _inode(part_path(final))
    if ino is None:  # (a fresh part file is made here)
        _forget_gone(job, same)
        _forget_gone(job, earlier)
        return None
    for found, renewed in ((same, False), (earlier, True)):
        for key, part in found:
            if part != ino:
                continue
            try:
                if renewed:
                    rec = journal.get(key)
                    if rec is None or not (rec.last_modified or strong(rec.etag)):
                        continue
                found.remove((key, part))
                journal.move(key, job.key, path=str(final))
                job.ctx.journal_started(job.key)
                why = "an earlier URL" if renewed else key.partition("\0")[0]
                log.debug("%s: its part file is the one of %s", final.name, why)
                return journal.get(job.key)
            except RecordGone:  # (another run finished or dropped it meanwhile)
                log.debug("%s: the record of its part file went away", final.name)
                return None
            except StorageError as exc:
                job.ctx.journal_failed(exc)
                return None
    return None


def _forget_gone(job: FileJob, found: list[tuple[str, int]]) -> None:
    """Records that :func:`moved_here` could take over (this file's in another output
    folder, or an earlier URL's here) whose part file is gone lose their bytes: the
    fresh part file made here may get that file's inode number (ext4 reuses them at
    once), by which a later run would take one over and resume over holes."""
    journal = job.ctx.journal
    assert journal is not None
    for key, part in list(found):
        try:
            rec = journal.get(key)
            if rec is not None and not part_path(Path(rec.path)).exists():
                journal.reset(key)
                found.remove((key, part))
        except StorageError as exc:
            job.ctx.journal_failed(exc)
            return


def not_resumable(final: Path, why: StorageError) -> StorageError:
    """``final`` has an earlier run's part file, and no journal to resume it by: it is
    kept as it is (the journal may be usable again later), and the file fails. A part
    file another run holds is that run's (which may hold the journal too, stopped in a
    transaction): said as such, never with a hint to delete it."""
    if part_busy(final):
        return PartBusy(final)
    return StorageError(
        f"its part file is kept, not resumed: {why} (fix that, or delete"
        f" {part_path(final).name} to start over)"
    )


def _inode(path: Path) -> int | None:
    """The inode number of the regular file at ``path`` (a link is not followed); None if
    there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino if stat.S_ISREG(st.st_mode) else None


def strong(etag: str | None) -> bool:
    """Whether ``etag`` can be an If-Range validator (a weak one cannot)."""
    return etag is not None and etag != "" and not etag.startswith("W/")
