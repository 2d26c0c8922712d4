"""A file's fetch and its end: the download (plain or piecewise) and its whole-file
checks (size, digest; a wrong file is fetched again), the atomic finish, and the result
of a file finished, skipped or failed. Functions of a :class:`~.job.FileJob`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    Cancelled,
    IntegrityError,
    NotFound,
    OmnigetError,
    StorageError,
    TransferError,
)
from ..model import Digest
from .checkpoints import ensure_record, record_size, save_spans, sync_lost, syncs_back
from .events import Failed, Finished, Skipped, Warned
from .journal.records import RecordGone
from .report import FileResult
from .spans import length
from .transports.base import http_date
from .verify import UNVERIFIED, DigestMismatch, digest_mismatch, every_digest, file_digests

if TYPE_CHECKING:
    from .job import FileJob
    from .plain import PlainDownload

log = logging.getLogger(__name__)

#: Whole-file downloads again after a digest or size mismatch (capped by --retries too).
WHOLE_FILE_RETRIES = 2
HASH_IN_THREAD = 4 << 20  # a file this large is hashed in a worker thread, off the loop


#: Why a file whose bytes came the same twice and missed the same digest both times
#: is not fetched a third time: the digest the item gives (the source's, --checksum) ...
SAME_BYTES = "the server sends the same bytes each time: is the checksum right?"
#: ... or the server's own
SAME_ANSWER = (
    "the server sends the same bytes and the same digest of them each time: one of the two"
    " is wrong"
)


async def fetch_verified(job: FileJob) -> FileResult:
    tries = 0
    last: DigestMismatch | None = None  # the previous download's, if it missed its digest
    while True:
        tries += 1
        dl: PlainDownload | None = None
        if job.item.pieces:
            from .pieces import PieceDownload  # (these two import job.py, which imports this)

            await PieceDownload(job).run()
        else:
            dl = _plain_download()(job)
            try:
                await dl.run()
            except (TransferError, NotFound) as exc:
                if not _next_mirror_alone(job, None, exc):
                    raise
                tries -= 1  # (one mirror's try: the file's tries are the others')
                continue
        job.ctx.limits.release_file(job.claim)  # the bytes are in: next file's turn
        if job.ctx.lost_syncs:  # (the disk failed a sync of them: they are not checked)
            sync_lost(job)
        try:
            verified = await _verify(job)
            break
        except DigestMismatch as exc:
            # The same bytes as the last time (their digest the same, and the one wanted):
            # the server sends these, and a third download would bring them again. (From
            # mirrors too: from all at once, then from one alone, they agree on them.)
            if exc.again(last):
                why = SAME_BYTES if job.item.digest is not None else SAME_ANSWER
                raise _kept(job, exc.twice(why)) from None
            if dl is not None and _next_mirror_alone(job, dl, exc):
                tries -= 1
                last = exc
                continue
            if tries > min(WHOLE_FILE_RETRIES, job.ctx.settings.retries):
                raise _kept(job, exc) from None
            last = exc
            job.ctx.event(Warned(job.item, job.final, f"{exc}{_whose(job)}; downloading again"))
            job.restart()
        except IntegrityError as exc:
            # (a whole file again: at most twice, and never past --retries)
            if tries > min(WHOLE_FILE_RETRIES, job.ctx.settings.retries):
                _discard(job)  # the bytes are not the file's size: nothing worth resuming
                raise
            job.ctx.event(Warned(job.item, job.final, f"{exc}; downloading again"))
            job.restart()
    if job.ctx.sync_under_way and job in job.ctx.sync_under_way:  # (not back yet: most
        await syncs_back(job)  # files have none, and do not wait)
    if job.ctx.lost_syncs:  # (one that failed while they were checked: not put in place)
        sync_lost(job)
    result = _finish(job, verified)
    return result if result is not None else await _placed(job, verified)


def _next_mirror_alone(
    job: FileJob, dl: PlainDownload | None, exc: OmnigetError
) -> bool:
    """After a file with mirrors missed its digest (``dl``: that download), or the URL it
    was fetched from alone then failed (``dl`` None): whether it is fetched again from
    one URL alone, the next that has not sent it wrong (True: restarted for that). A
    download from several URLs says nothing of which one sent other bytes (of the same
    size: one of another size is left at its answer); one from a single URL does. Each
    URL is tried alone once at most."""
    urls = (job.item.download_url, *job.item.mirrors)
    if len(urls) < 2:
        return False
    alone = job.mirror_alone
    if dl is None and alone is None:
        return False  # (an error of a download from several URLs: not this one's to say)
    bad = job.bad_mirrors
    sent = alone if dl is None else next(iter(dl.used)) if len(dl.used) == 1 else None
    if sent is not None and (dl is None or dl.fresh):
        bad.add(sent)
    left = [u for u in urls if u not in bad]
    if not left:
        if isinstance(exc, DigestMismatch):  # (each sent bytes that miss it)
            raise _kept(job, DigestMismatch(
                f"{exc.message}; each of its {len(urls)} URLs sent bytes that miss it",
                want=exc.want, got=exc.got)) from None
        return False
    job.mirror_alone = left[0]
    job.ctx.event(Warned(job.item, job.final,
                         f"{exc}{_whose(job)}; downloading again from {left[0]} alone"))
    job.restart()
    return True


def _whose(job: FileJob) -> str:
    """Of a file that missed its digest: whose bytes they were, when no byte of them came
    in this run (an earlier run kept them; they were hashed before any request)."""
    if job.fetched or not job.resumed or job.part is None:
        return ""
    return f" (the bytes an earlier run kept as {job.part.path.name})"


def _kept(job: FileJob, exc: DigestMismatch) -> DigestMismatch:
    """``exc``, for a file whose bytes missed their digest: they stay in its part file,
    recorded whole in the journal, and the error says so. A rerun hashes them again
    (with the right checksum it finishes without a request; with the same wrong one it
    downloads once more, and fails so again). The final name never holds them."""
    part = job.part
    if part is not None and not job.item.pieces:  # (pieces: recorded as each was checked)
        save_spans(job, job.done, time.monotonic())
        record_size(job)  # (a size known only at the body's end: all of it is here)
    if part is None or not job.journal_started:  # (no journal: nothing to resume them by)
        _discard(job)
        return exc
    return DigestMismatch(f"{exc}; kept as {part.path.name}", want=exc.want, got=exc.got)


def _discard(job: FileJob) -> None:
    if job.part is not None:
        job.part.discard()
    if job.ctx.journal is not None and job.journal_started:
        try:
            job.ctx.journal.forget(job.key, own=job.owned)
        except StorageError as exc:
            job.ctx.journal_failed(exc)
        job.journal_started = False


def _expected_digests(job: FileJob) -> list[Digest]:
    """Every digest the file must have, each once: the item's (or --checksum) first,
    then the server's, strongest first."""
    return every_digest(job.item.digest, job.digests)


async def _verify(job: FileJob) -> str | None:
    part = job.part
    assert part is not None and job.final is not None
    actual = job.resumed + job.written if job.size is None else job.size
    verified: str | None = None
    if job.size is not None:
        have = length(job.done)
        if have != job.size:
            raise IntegrityError(
                f"size mismatch for {job.final.name}: expected {job.size} bytes, got {have}"
            )
        verified = None if job.size_from_eof and not job.end_proven else "size"
    expected = _expected_digests(job)
    if expected:
        # every one must hold (a server may contradict itself, or the item): the first
        # was hashed as the bytes came, most often; the file is read once for the others
        got: dict[str, str] = {}
        streamed = _stream_digest(job, expected[0], actual)
        if streamed is not None:
            got[expected[0].algo] = streamed
        algos = list(dict.fromkeys(d.algo for d in expected if d.algo not in got))
        hexes: list[str] = []
        if algos and actual >= HASH_IN_THREAD:  # (the loop keeps the other transfers)
            try:
                hexes = await asyncio.to_thread(file_digests, part.path, algos, 0, actual)
            except asyncio.CancelledError:  # (stopped as it hashes: every byte is in, and
                if not job.item.pieces:  # recorded so, not only up to its last checkpoint)
                    save_spans(job, job.done, time.monotonic())
                    record_size(job)
                raise
        elif algos:
            hexes = file_digests(part.path, algos, 0, actual)
        got.update(zip(algos, hexes, strict=True))
        for want in expected:
            if got[want.algo] != want.hex:
                raise digest_mismatch(job.final.name, want, got[want.algo])
        verified = expected[0].algo
    elif verified is None and job.size_from_eof:
        job.ctx.event(Warned(job.item, job.final, UNVERIFIED))
    return verified


def _stream_digest(job: FileJob, want: Digest, size: int) -> str | None:
    """The digest hashed while the bytes came in, if that covered the whole file (a
    split file's first connection hashes only its own span)."""
    h = job.stream_hash
    if h is None or h.algo != want.algo or h.length != size:
        return None
    return h.hexdigest()


#: The latest (and, negated, the earliest) time set on a file: past it (a source's date
#: parsed wrong) the file keeps the time it was written at. (Python's limit is time_t's,
#: ~9.2e18 s; file systems keep far less, and clamp what they cannot keep.)
MTIME_BOUND = 1e18


def _mtime(job: FileJob) -> float | None:
    if job.item.modified is not None:
        when = job.item.modified
        return when if -MTIME_BOUND < when < MTIME_BOUND else None  # (nan: None too)
    return http_date(job.last_modified) if job.last_modified else None


def _done_size(job: FileJob) -> int:
    """The finished file's size: the known one, else what was resumed and written."""
    return job.size if job.size is not None else job.resumed + job.written


def _finish(job: FileJob, verified: str | None) -> FileResult | None:
    """Put the finished file in place; its result. None: it waits under its part name
    for a sync of its filesystem first (no user attributes there: see durable.py)."""
    part, final = job.part, job.final
    assert part is not None and final is not None
    size = _done_size(job)
    durability = job.ctx.durability
    if durability is not None:
        _, text, folder = job.place(final)
        digest = None
        if verified is not None and verified != "size":
            digest = _expected_digests(job)[0]
        mark = durability.mark(folder, size, digest)
        st = part.commit(size, mtime=_mtime(job), executable=job.item.executable, mark=mark)
        if st is False:
            return None
        if st is not None:
            if job.ctx.sync_under_way and job in job.ctx.sync_under_way:  # (see syncs_back)
                job.ctx.placed_unsynced[job] = (text, st)
            else:
                durability.finished(text, st)
    else:
        part.commit(size, mtime=_mtime(job), executable=job.item.executable)
    return _finished(job, final, size, verified)


async def _placed(job: FileJob, verified: str | None) -> FileResult:
    """The result of a file :func:`_finish` left for a sync, once it is in place."""
    part, final, durability = job.part, job.final, job.ctx.durability
    assert part is not None and final is not None and durability is not None
    size = _done_size(job)
    # (the wait holds up no other file's set-up, unless a full batch waits already:
    # then the run stops setting files up until its sync, which may be slow)
    if job.slot is not None and not durability.full():
        job.slot.release()
    await durability.place(part, job.place(final)[2], size)
    return _finished(job, final, size, verified)


def _finished(job: FileJob, final: Path, size: int, verified: str | None) -> FileResult:
    """The file is in place: its journal record, events and result."""
    # A server-chosen name is remembered (as the server gave it, before --on-exists),
    # so a rerun knows it without asking; other finished files need no record.
    journal = job.ctx.journal
    try:
        if journal is not None and job.server_path is not None:
            if ensure_record(job):
                journal.finish(job.key, size=size, digest=None, path=str(job.server_path),
                               own=job.owned)
        elif journal is not None and job.journal_started:
            journal.forget(job.key, own=job.owned)
            job.journal_started = False
    except RecordGone:
        # Another omniget run on the same folder dropped the record meanwhile (it finished
        # the same file under another name, or found its own copy wrong): this file is in
        # place, whole and checked all the same; only its server name is not remembered
        # (a rerun asks the server again). Two runs writing this very file at once meet
        # at its part file's lock instead: one of them fails there, exit 7, as before.
        log.debug("%s: its resume record went away before it was marked done", final.name)
    except StorageError as exc:  # (the file is in place all the same)
        job.ctx.journal_failed(exc)
    if not job.started:
        job.started_event()
    if job.ctx.listened:
        job.ctx.event(Finished(job.item, final, size, verified, job.fetched, job.resumed))
    return FileResult(
        job.item, final, "ok", size=size, fetched=job.fetched, verified=verified
    )


def skipped(job: FileJob, final: Path | None, reason: str) -> FileResult:
    job.ctx.event(Skipped(job.item, final, reason))
    size = job.found if reason == "exists" else 0
    return FileResult(job.item, final, "skipped", size=size, reason=reason)


def failed(job: FileJob, exc: OmnigetError) -> FileResult:
    # the part file and the journal stay: a later run resumes from them
    lost = job.ctx.lost_syncs
    if lost and job in lost and not isinstance(exc, Cancelled):
        exc = lost[job]  # (the disk failed a sync of it: what a rerun needs to know)
    if isinstance(exc, TransferError) and exc.item is None:
        exc.item = job.item  # (the transports raise it knowing only the request)
    job.ctx.event(Failed(job.item, job.final, exc))
    return FileResult(job.item, job.final, "failed", fetched=job.fetched, error=exc)


@functools.cache
def _plain_download() -> type[PlainDownload]:
    """plain.PlainDownload, imported on first use (an import statement in the function
    that runs once per file costs ~8 K instructions each time, even when done)."""
    from .plain import PlainDownload  # (it imports job.py, which imports this)

    return PlainDownload
