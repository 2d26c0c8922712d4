"""One item, from output path to finished file: skip rules, resume state, the fetch (plain
or piecewise), verification, the atomic finish, and the events around it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    AuthRequired,
    IntegrityError,
    OmnigetError,
    RemoteNotFound,
    StorageError,
    TransferError,
)
from ..model import Digest, Item
from .assemble import PartBusy, PartFile, drop_part, part_busy, part_path, storage_error
from .context import Ahead, RunContext, SetupSlot, output_key
from .durable import Mark, clear_mark, written_out
from .events import Failed, Finished, Progress, Skipped, Started, Warned
from .journal import FileRecord
from .names import contain, unique_path
from .report import FileResult
from .scheduler import FileClaim
from .spans import Interval, length, merge
from .transports.base import http_date
from .verify import UNVERIFIED, StreamHasher, digest_mismatch, file_digest

if TYPE_CHECKING:
    from .plain import PlainDownload

log = logging.getLogger(__name__)

__all__ = ["FileJob", "SkipFile"]

PROGRESS_EVERY = 0.25  # seconds between Progress events per file
HANDLER_SHARE = 10  # a Progress handler's time, times this: no Progress until it passed
#: A file there may have lost its bytes (see durable.py).
UNSYNCED_WHY = (
    "it was finished on an earlier boot before its bytes were known to be on the disk"
)
#: A part file was there with no record of its bytes (another --state-dir, say).
STARTED_OVER = "its part file had no resume record in this state folder; starting over"
REFRESH_MARGIN = 60.0  # refresh expiring URLs this long before they expire
#: Whole-file downloads again after a digest or size mismatch (capped by --retries too).
WHOLE_FILE_RETRIES = 2
HASH_IN_THREAD = 4 << 20  # a file this large is hashed in a worker thread, off the loop
#: ``os.access`` can tell, as ``lstat`` does, whether a name is there (not on Windows).
_ACCESS_TELLS = os.access in os.supports_follow_symlinks and os.access in os.supports_effective_ids


class SkipFile(Exception):
    """The file turned out to exist already (a server-chosen name): stop and skip it;
    ``reason`` as in :class:`~.events.Skipped` ("exists", or "same-name": another file of
    this run writes that name)."""

    def __init__(self, reason: str = "exists") -> None:
        super().__init__(reason)
        self.reason = reason


class FileJob:
    """State of one file while it downloads; ``plain`` and ``pieces`` fill it in."""

    # (more attributes than an instance dict shares keys for (30): without slots each
    # job built a dict of its own, ~5 K instructions; mypy checks the list)
    __slots__ = (
        "_ahead", "_generation", "_last_ckpt", "_last_progress", "_last_sync", "_planned_text",
        "_saved", "_unsynced", "_where", "after", "claim", "connections", "ctx", "digests",
        "done", "end_proven", "etag", "fetched", "final", "found", "item", "journal_started",
        "key",
        "last_modified", "next_tick", "part", "planned", "record", "refreshed_at", "released",
        "remembered", "replacing", "resumed", "server_path", "size", "size_from_eof", "slot",
        "started", "stream_hash", "suspect", "written"
    )

    def __init__(
        self,
        ctx: RunContext,
        item: Item,
        path: Path | None = None,
        *,
        after: asyncio.Future[bool] | None = None,
        released: asyncio.Future[bool] | None = None,
        slot: SetupSlot | None = None,
        text: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.item = item
        self.planned = path  # the output path the engine resolved (None: resolve here)
        # ... and it as a string (``text``, if given: a str() of the Path made there costs
        # an exception inside pathlib the first time)
        self._planned_text = text if path is not None else None
        self.after = after  # an earlier item of the run writing the same path
        # set when this job is done with its path: True if this run's file is there
        self.released = released
        self.slot = slot  # the run's set-up slot this job holds
        # (two items may share a URL: a chunk in two files of a game, say)
        self.key = f"{ctx.key_prefix}{item.key}\0{item.output_path}"
        self.final: Path | None = None
        self.part: PartFile | None = None
        self.record: FileRecord | None = None
        self.size: int | None = item.size_bytes
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.done: list[Interval] = []  # output bytes finished by earlier runs
        self.resumed = 0
        self.fetched = 0  # bytes received in this run
        self.found = 0  # size of the file already there that --on-exists skip leaves
        # the mark of a file there that may have lost its bytes in a power loss (durable.py)
        self.suspect: Mark | None = None
        self.replacing = False  # ... which this job fetches again, in its place
        self.written = 0  # output bytes written in this run
        self.digests: list[Digest] = []  # expected whole-file digests
        self.server_path: Path | None = None  # the name the server chose, if any
        self.remembered: Path | None = None  # that name as an earlier run recorded it
        self.stream_hash: StreamHasher | None = None  # set by plain when it hashes in order
        self.connections = 1
        self.claim = FileClaim()  # this file's turn among the files transferring at once
        self.size_from_eof = False  # size learned where the body ended (none up front)
        # ... and that end was the body's own (chunked, HTTP/2, a checked encoding), not
        # just the connection closing, which a cut connection looks the same as
        self.end_proven = False
        self.journal_started = False
        self._last_progress = 0.0
        self._last_ckpt = time.monotonic()
        self.next_tick = 0.0  # monotonic time of the next progress event or checkpoint
        self._last_sync = time.monotonic()
        self._saved: list[Interval] = []  # the spans last committed as written
        self._unsynced: list[int] = []  # pieces in the part file done since the last sync
        self._generation = 0  # bumped when every byte is forgotten (a late sync is stale)
        self.started = False
        self.refreshed_at = 0.0
        #: The part file being created ahead of the answer.
        self._ahead: Ahead | None = None
        # (a final path, it as a string, its folder: worked out once per path)
        self._where: tuple[Path, str, str] | None = None

    # ----- paths and skip rules -------------------------------------------------

    def resolve_final(self, rel: str) -> Path:
        return contain(self.ctx.dest, rel)

    def _place(self, final: Path) -> tuple[Path, str, str]:
        """``final``, it as a string (the planned path's is known from the start) and
        its folder, worked out once per path (exists? slow create? made yet? timed)."""
        known = self._where
        if known is None or known[0] is not final:
            if final is self.planned and self._planned_text is not None:
                text = self._planned_text
            else:
                text = os.fspath(final)
            known = self._where = (final, text, os.path.dirname(text))
        return known

    def exists_policy(self, final: Path) -> Path | None:
        """Apply --on-exists to ``final``; None means skip."""
        if _ACCESS_TELLS and not os.access(
            self._place(final)[1], os.F_OK, follow_symlinks=False, effective_ids=True
        ):
            return final  # (as lstat's failure below, without its exception: ~4x the cost)
        try:
            st = os.lstat(final)
        except OSError:
            return final  # missing (or unreadable: the open reports that)
        mode = self.ctx.settings.on_exists
        if stat.S_ISDIR(st.st_mode) and mode != "rename":  # (no file can take its place)
            self.final = final
            raise StorageError(f"{final} is a folder (--on-exists rename saves beside it)")
        if mode == "skip":
            if stat.S_ISREG(st.st_mode):
                self.found = st.st_size
                durability = self.ctx.durability
                if durability is not None:
                    where = self._place(final)[1]
                    self.suspect = durability.check(where, st)
                    if self.suspect is not None and not self._checkable(st):
                        if not written_out(where, self.suspect.size):
                            return self._replace(final, "downloading it again")
                        clear_mark(where)  # (its bytes are all the disk's)
                        self.suspect = None
            return None
        if mode == "rename":
            return unique_path(final, self.ctx.busy_paths())
        return final

    def _checkable(self, st: os.stat_result) -> bool:
        """Whether the suspect file there (``st``) can be checked by a digest."""
        mark = self.suspect
        assert mark is not None
        return st.st_size == mark.size and (mark.digest or self.item.digest) is not None

    def _replace(self, final: Path, doing: str) -> Path:
        """Fetch the suspect file at ``final`` again, into its place."""
        self.found = 0
        self.replacing = True
        self.ctx.event(Warned(self.item, final, f"{UNSYNCED_WHY}; {doing}"))
        return final

    async def _intact(self, final: Path) -> bool:
        """Whether the suspect file at ``final`` has the bytes its digest says (read now,
        on a later boot, they are the disk's: its mark goes)."""
        mark = self.suspect
        assert mark is not None
        want = self.item.digest or mark.digest
        assert want is not None
        got = await asyncio.to_thread(file_digest, final, want.algo)
        if got != want.hex:
            return False
        clear_mark(self._place(final)[1])
        self.suspect = None
        return True

    def take_server_name(self, path: Path) -> Path:
        """The path to write for a name the server chose: --on-exists as for any name,
        counting files of this run that are writing it now (which would share its part
        file: another name for this one, or a skip). Raises :class:`SkipFile`."""
        busy = self.ctx.writing(path, self.released)
        if not busy:
            chosen = self.exists_policy(path)
            if chosen is None and self.suspect is not None:  # (no digest check here)
                chosen = self._replace(path, "downloading it again")
        elif self.ctx.settings.on_exists == "skip":
            chosen = None
        else:  # rename, and overwrite too: the other file is not done yet
            chosen = unique_path(path, self.ctx.busy_paths())
        if chosen is None:
            self.final = path
            raise SkipFile("same-name" if busy else "exists")
        if self.released is not None:
            self.ctx.outputs[output_key(chosen)] = self.released  # later writers wait for this
        return chosen

    def open_part(self, final: Path, *, fresh: bool) -> PartFile:
        self.final = final
        fd = -1
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            fd = ahead.fd()
            # (the same Path, as a rule: else compared by key, cheaper than Path ==)
            if ahead.final is not final and output_key(ahead.final) != output_key(final):
                drop_part(ahead.final, fd)
                fd = -1
        _, text, folder = self._place(final)
        began = time.perf_counter()
        self.part = PartFile(
            final, fresh=fresh, made=self.ctx.made_dirs, fd=fd, folder=folder, text=text,
            leftovers=self.ctx.leftovers,
        )
        if (
            fresh and self.ctx.settings.on_exists != "overwrite" and not self.replacing
            and _there(text)
        ):
            return self._taken_since(final)
        if self.part.dropped:
            self.ctx.event(Warned(self.item, final, STARTED_OVER))
        if fd < 0 and fresh:
            self.ctx.timed_create(self.part.where, time.perf_counter() - began, folder)
        return self.part

    def _taken_since(self, final: Path) -> PartFile:
        """Another run put a file at ``final`` after this one found it free (while its
        answer was on the way): --on-exists decides again, as for any file there. Raises
        :class:`SkipFile`."""
        part, self.part = self.part, None
        assert part is not None
        part.discard()  # (this run's, locked: nobody else writes it)
        chosen = self.exists_policy(final)
        if chosen is None:
            raise SkipFile("exists")
        if self.released is not None:
            self.ctx.outputs[output_key(chosen)] = self.released  # (later files see it taken)
        return self.open_part(chosen, fresh=True)

    def _create_part_ahead(self, final: Path) -> None:
        """In a folder where creating a file is slow (some disks, network file systems),
        start creating the part file on another thread while the request goes out, so
        it does not hold up every other transfer of the run."""
        if self.item.pieces:
            return
        _, text, folder = self._place(final)
        if self.ctx.creates_slowly(final, folder):
            self._ahead = self.ctx.create_part_ahead(final, folder, text)

    def _drop_ahead(self) -> None:
        """The part file created ahead went unused (the file failed or was skipped)."""
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            self.ctx.drop_ahead(ahead)

    def load_resume(self, final: Path) -> None:
        """Take an earlier run's state for ``final`` if its part file is still there."""
        rec = self.record
        journal = self.ctx.journal
        if rec is None or journal is None or rec.done:
            return
        if not part_path(final).exists():
            journal.reset(self.key)
            return
        if part_busy(final):  # (before any request; the open at the answer checks again)
            raise PartBusy(final)
        done = merge(journal.spans(self.key))
        try:
            on_disk = os.stat(part_path(final)).st_size
        except OSError:
            on_disk = 0
        if done and done[-1][1] > on_disk:  # cut short since (by hand, or a full copy)
            self.ctx.event(
                Warned(self.item, final, "its part file is shorter than recorded; resuming there")
            )
            done = [(s, min(e, on_disk)) for s, e in done if s < on_disk]
        self.size = rec.size if rec.size is not None else self.size
        self.etag, self.last_modified = rec.etag, rec.last_modified
        if rec.digest and not self.digests:  # (what the server said last time)
            algo, _, hexv = rec.digest.partition(":")
            with contextlib.suppress(ValueError):
                self.digests = [Digest(algo, hexv)]
        self.done = done
        self.resumed = length(self.done)
        self.journal_started = True
        log.debug("%s: resuming with %d bytes already in", final.name, self.resumed)

    # ----- progress, checkpoints ------------------------------------------------

    def validator(self) -> str | None:
        """What to send as If-Range: a strong ETag, else Last-Modified."""
        if _strong(self.etag):
            return self.etag
        return self.last_modified

    def started_event(self) -> None:
        if self.started:
            return
        self.started = True
        # the checkpoint clock starts with the bytes (not while the file waited its turn)
        self._last_ckpt = time.monotonic()
        if not self.ctx.listened:
            # no Progress events to pace: the next tick is the checkpoint's
            self.next_tick = self._last_ckpt + self.ctx.settings.checkpoint_seconds
            return
        self.ctx.event(
            Started(self.item, self.final, self.size, self.resumed, connections=self.connections)
        )

    def _set_next_tick(self) -> None:
        ckpt = self._last_ckpt + self.ctx.settings.checkpoint_seconds
        # (nobody listens: no Progress event is due, only the checkpoint)
        listened = self.ctx.listened
        self.next_tick = min(self._last_progress + PROGRESS_EVERY, ckpt) if listened else ckpt

    def progress(self, now: float) -> None:
        if now - self._last_progress >= PROGRESS_EVERY:
            ctx = self.ctx
            if now < ctx.quiet_until:  # (the handler was slow: this one waits)
                self._last_progress = ctx.quiet_until - PROGRESS_EVERY
                self._set_next_tick()
                return
            self._last_progress = now
            self._set_next_tick()
            if not ctx.listened:
                return
            began = time.monotonic()
            ctx.event(
                Progress(
                    self.item,
                    self.final,
                    self.resumed + self.written,
                    self.size,
                    connections=self.connections,
                )
            )
            # the handler runs on the loop that moves the bytes: 0.3 s per event made a
            # 2 s download take 38 s (every chunk after it was due one)
            # (the handler's own time: ``now`` may be older, a loaded machine's stall)
            ctx.quiet_until = now + HANDLER_SHARE * (time.monotonic() - began)

    def due_checkpoint(self, now: float) -> bool:
        return now - self._last_ckpt >= self.ctx.settings.checkpoint_seconds

    def _ensure_record(self) -> bool:
        """Start this file's journal record if it has none yet; False: it has none (no
        journal, or one that takes no new record: it failed to, a full disk say)."""
        if self.journal_started:
            return True
        journal = self.ctx.journal
        if journal is None or self.final is None or self.ctx.journal_error is not None:
            return False
        try:
            journal.start(
                self.key,
                path=str(self.final),
                url=self.item.download_url,
                size=self.size,
                etag=self.etag,
                last_modified=self.last_modified,
                digest=f"{self.digests[0].algo}:{self.digests[0].hex}" if self.digests else None,
                part=self.part.inode() if self.part is not None and self.part.fd >= 0 else None,
            )
        except StorageError as exc:  # (no record of it yet: it goes on without one)
            self.ctx.journal_failed(exc)
            return False
        self.ctx.journal_started(self.key)
        self.journal_started = True
        return True

    def save_spans(self, spans: list[Interval], now: float) -> None:
        """Commit finished byte spans (already written to the part file) to the journal."""
        self._last_ckpt = now
        self._set_next_tick()
        journal = self.ctx.journal
        if journal is None or not self._ensure_record():
            return
        journal.save_spans(self.key, spans)
        self._saved = spans
        self._sync_due(now)

    def piece_done(self, index: int, size: int, *, in_part: bool = True) -> None:
        """Record piece ``index`` as verified; ``in_part``: its bytes are in the part
        file (not a staging file), so a sync of that file makes them durable."""
        journal = self.ctx.journal
        if journal is None or not self._ensure_record():
            return
        journal.piece_done(self.key, index, size)
        if in_part:
            self._unsynced.append(index)
        self._sync_due(time.monotonic())

    def _sync_due(self, now: float) -> None:
        """Every ``fsync_seconds``: fdatasync the part file on a worker thread, then
        record what was written before it as synced (what a run after a power loss
        trusts; see journal.py)."""
        part = self.part
        if part is None or now - self._last_sync < self.ctx.settings.fsync_seconds:
            return
        self._last_sync = now
        spans, pieces, gen = self._saved, self._unsynced, self._generation
        self._unsynced = []
        try:  # (its own descriptor: the part file may be closed before the sync runs)
            fd = os.dup(part.fd)
        except OSError:
            return
        synced = asyncio.get_running_loop().run_in_executor(None, _sync_and_close, fd)

        def record(fut: asyncio.Future[bool]) -> None:
            journal = self.ctx.journal
            if fut.cancelled() or not fut.result() or gen != self._generation:
                return
            if journal is None or not (spans or pieces):
                return
            try:
                journal.save_synced(self.key, spans, pieces)
            except StorageError as exc:  # (the next checkpoint reports a broken journal)
                log.debug("%s: recording a sync failed: %s", self.item.filename, exc)

        synced.add_done_callback(record)

    def restart(self) -> None:
        """The remote file changed, cannot be resumed or came wrong: forget every byte
        we have, its validators, and a size read off the end of a body (the next body may
        be longer)."""
        self.done = []
        self._saved, self._unsynced = [], []
        self._generation += 1
        self.etag = self.last_modified = None  # (learnt again from the next answer)
        self.resumed = 0
        self.written = 0
        self.stream_hash = None
        if self.size_from_eof:
            self.size, self.size_from_eof = self.item.size_bytes, False
            self.end_proven = False
        if self.ctx.journal is not None and self.journal_started:
            self.ctx.journal.reset(self.key)
        if self.part is not None:
            self.part.truncate(0)

    # ----- refresh hook ---------------------------------------------------------

    def needs_refresh(self) -> bool:
        exp = self.item.expires
        return (
            self.ctx.refresh is not None
            and exp is not None
            and self.ctx.clock.time() >= exp - REFRESH_MARGIN
        )

    async def refresh(self, reason: OmnigetError | None = None) -> bool:
        """Re-resolve the item's URLs through its source; False if not possible."""
        if self.ctx.refresh is None:
            return False
        now = time.monotonic()
        if reason is not None and now - self.refreshed_at < 1.0:
            return False  # refreshed a moment ago and it still fails: give up
        self.refreshed_at = now
        fresh = await self.ctx.refresh(self.item)
        if fresh == self.item:
            return False  # the source had nothing new: retrying would fail the same way
        self.item = fresh
        return True

    def _renamed_unfinished(self, rec: FileRecord) -> bool:
        """An earlier run under --on-exists rename left this download unfinished under
        its new name: a rerun in that mode goes on with it (not with yet another name)."""
        return (
            not rec.done
            and self.ctx.settings.on_exists == "rename"
            and part_path(Path(rec.path)).exists()
        )

    def _own_part(self, final: Path) -> bool:
        """``final``'s part file is there, and is the file its record describes (not one
        started over since by a run with another state folder)."""
        ino = _inode(part_path(final))
        rec = self.record
        return ino is not None and rec is not None and rec.part in (None, ino)

    def _moved_here(self, final: Path) -> FileRecord | None:
        """The unfinished record, kept under another key, whose part file is the one at
        ``final``: this download's in an output folder that was renamed or moved, or this
        file's under an earlier URL (a renewed link: a signed URL whose token expired) if
        that record has a validator, so that the first request's If-Range has the server
        say whether it is still the same file (if not, the file starts over). It is this
        file's now."""
        moved, here = self.ctx.unfinished_records()
        journal = self.ctx.journal
        if not (moved or here) or journal is None:
            return None
        same = moved.get(self.key[len(self.ctx.key_prefix) :], [])
        earlier = here.get(self.item.output_path, [])
        if not (same or earlier) or part_busy(final):  # (busy: that run's record is its own)
            return None
        ino = _inode(part_path(final))
        for found, renewed in ((same, False), (earlier, True)):
            for key, part in found:
                if part != ino:
                    continue
                if renewed:
                    rec = journal.get(key)
                    if rec is None or not (rec.last_modified or _strong(rec.etag)):
                        continue
                found.remove((key, part))
                journal.move(key, self.key, path=str(final))
                self.ctx.journal_started(self.key)
                why = "an earlier URL" if renewed else key.partition("\0")[0]
                log.debug("%s: its part file is the one of %s", final.name, why)
                return journal.get(self.key)
        return None

    @staticmethod
    def _not_resumable(final: Path, why: StorageError) -> StorageError:
        """``final`` has an earlier run's part file, and no journal to resume it by: it is
        kept as it is (the journal may be usable again later), and the file fails."""
        return StorageError(
            f"its part file is kept, not resumed: {why} (fix that, or delete"
            f" {part_path(final).name} to start over)"
        )

    @staticmethod
    def refreshable(error: OmnigetError) -> bool:
        return isinstance(error, AuthRequired) or (
            isinstance(error, RemoteNotFound) and error.status == 410
        )

    # ----- the whole life of the file -------------------------------------------

    async def run(self) -> FileResult:
        item = self.item
        wrote = False  # this job put its file in place
        # an earlier item of the run wrote the same path: --on-exists decides, as on a rerun
        shadowed = self.after is not None and await asyncio.shield(self.after)
        try:
            if item.kind != "file":
                return self._make_other()
            self.record = self.ctx.journal_record(self.key)
            rec = self.record
            remembered = False  # the name an earlier run chose, not the planned one
            if rec is not None and (item.name_from_server or self._renamed_unfinished(rec)):
                final = Path(rec.path)
                planned = self.planned or self.resolve_final(item.output_path)
                remembered = output_key(final) != output_key(planned)
                self.remembered = final
            else:
                final = self.planned or self.resolve_final(item.output_path)
                if rec is None and self.ctx.journal is not None:
                    self.record = self._moved_here(final)
            resuming = (
                self.record is not None and not self.record.done and self._own_part(final)
                # (a file put there since is --on-exists's to decide on, as any other)
                and (self.ctx.settings.on_exists == "overwrite" or not os.path.lexists(final))
            )
            if resuming and self.released is not None and not self.ctx.writing(final, None):
                # the name an earlier run chose (the server's, or a rename) is this file's
                # again: a later file of the run given it sees it taken, as in that run
                self.ctx.outputs[output_key(final)] = self.released
            if not resuming:
                # a remembered name that another file of this run writes: as when the
                # server gives it (see take_server_name)
                taken = remembered and self.ctx.writing(final, self.released)
                if not taken:
                    chosen = self.exists_policy(final)
                elif self.ctx.settings.on_exists == "skip":
                    chosen = None
                else:
                    chosen = unique_path(final, self.ctx.busy_paths())
                if chosen is not None:
                    final = chosen
                elif (
                    self.suspect is not None and not (shadowed or taken)
                    and not await self._intact(final)
                ):
                    final = self._replace(final, "its digest does not match; downloading it again")
                else:
                    if not (shadowed or taken):
                        await self._check_existing(final)
                    return self._skipped(final, "same-name" if shadowed or taken else "exists")
                if remembered and self.released is not None:  # (later files see it taken)
                    self.ctx.outputs[output_key(final)] = self.released
            self.final = final
            why = self.ctx.journal_error
            if why is not None and not resuming and _there(part_path(final)):
                raise self._not_resumable(final, why)
            if resuming:
                self.load_resume(final)
            else:
                self._create_part_ahead(final)
            if item.expires is not None and self.needs_refresh():
                await self.refresh()
            result = await self._fetch_verified()
            wrote = result.status == "ok"
            return result
        except SkipFile as skip:
            return self._skipped(self.final, skip.reason)
        except OmnigetError as exc:
            return self._failed(exc)
        finally:  # (each step only when it has something to do: no call per file else)
            if self.claim.held:  # (given back already when the bytes were in, as a rule)
                self.ctx.limits.release_file(self.claim)
            if self._ahead is not None:
                self._drop_ahead()
            if self.part is not None and self.part.fd >= 0:  # (closed at the commit)
                if self.ctx.journal_error is not None and not (wrote or self.journal_started):
                    # (no record of its bytes: a part file nothing could resume)
                    with contextlib.suppress(StorageError):
                        self.part.discard()
                self.part.close()
            # wake LocalSlice readers and the next writer of the planned path
            if self.released is not None and not self.released.done():
                self.released.set_result(wrote or shadowed)  # the run's file is there

    async def _fetch_verified(self) -> FileResult:
        tries = 0
        while True:
            tries += 1
            if self.item.pieces:
                from .pieces import PieceDownload  # (these two import this module)

                await PieceDownload(self).run()
            else:
                await _plain_download()(self).run()
            self.ctx.limits.release_file(self.claim)  # the bytes are in: next file's turn
            try:
                verified = await self._verify()
                break
            except IntegrityError as exc:
                # (a whole file again: at most twice, and never past --retries)
                if tries > min(WHOLE_FILE_RETRIES, self.ctx.settings.retries):
                    self._discard()  # the bytes are wrong: nothing worth resuming
                    raise
                self.ctx.event(Warned(self.item, self.final, f"{exc}; downloading again"))
                self.restart()
        result = self._finish(verified)
        return result if result is not None else await self._placed(verified)

    def _discard(self) -> None:
        if self.part is not None:
            self.part.discard()
        if self.ctx.journal is not None and self.journal_started:
            self.ctx.journal.forget(self.key)
            self.journal_started = False

    def _expected_digests(self) -> list[Digest]:
        out: list[Digest] = []
        if self.item.digest is not None:
            out.append(self.item.digest)
        out.extend(self.digests)
        return out

    async def _verify(self) -> str | None:
        part = self.part
        assert part is not None and self.final is not None
        actual = self.resumed + self.written if self.size is None else self.size
        verified: str | None = None
        if self.size is not None:
            have = length(self.done)
            if have != self.size:
                raise IntegrityError(
                    f"size mismatch for {self.final.name}: expected {self.size} bytes, got {have}"
                )
            verified = None if self.size_from_eof and not self.end_proven else "size"
        expected = self.digests if self.item.digest is None else self._expected_digests()
        if expected:
            want = expected[0]
            got = self._stream_digest(want, actual)
            if got is None and actual >= HASH_IN_THREAD:  # (the loop keeps the other transfers)
                got = await asyncio.to_thread(file_digest, part.path, want.algo, 0, actual)
            elif got is None:
                got = file_digest(part.path, want.algo, 0, actual)
            if got != want.hex:
                raise digest_mismatch(self.final.name, want, got)
            verified = want.algo
        elif verified is None and self.size_from_eof:
            self.ctx.event(Warned(self.item, self.final, UNVERIFIED))
        return verified

    def _stream_digest(self, want: Digest, size: int) -> str | None:
        """The digest hashed while the bytes came in, if that covered the whole file (a
        split file's first connection hashes only its own span)."""
        h = self.stream_hash
        if h is None or h.algo != want.algo or h.length != size:
            return None
        return h.hexdigest()

    def _mtime(self) -> float | None:
        if self.item.modified is not None:
            return self.item.modified
        return http_date(self.last_modified) if self.last_modified else None

    def _done_size(self) -> int:
        """The finished file's size: the known one, else what was resumed and written."""
        return self.size if self.size is not None else self.resumed + self.written

    def _finish(self, verified: str | None) -> FileResult | None:
        """Put the finished file in place; its result. None: it waits under its part name
        for a sync of its filesystem first (no user attributes there: see durable.py)."""
        part, final = self.part, self.final
        assert part is not None and final is not None
        size = self._done_size()
        durability = self.ctx.durability
        if durability is not None:
            _, text, folder = self._place(final)
            digest = None
            if verified is not None and verified != "size":
                digest = self._expected_digests()[0]
            mark = durability.mark(folder, size, digest)
            st = part.commit(size, mtime=self._mtime(), executable=self.item.executable, mark=mark)
            if st is False:
                return None
            if st is not None:
                durability.finished(text, st)
        else:
            part.commit(size, mtime=self._mtime(), executable=self.item.executable)
        return self._finished(final, size, verified)

    async def _placed(self, verified: str | None) -> FileResult:
        """The result of a file :meth:`_finish` left for a sync, once it is in place."""
        part, final, durability = self.part, self.final, self.ctx.durability
        assert part is not None and final is not None and durability is not None
        size = self._done_size()
        # (the wait holds up no other file's set-up, unless a full batch waits already:
        # then the run stops setting files up until its sync, which may be slow)
        if self.slot is not None and not durability.full():
            self.slot.release()
        await durability.place(part, self._place(final)[2], size)
        return self._finished(final, size, verified)

    def _finished(self, final: Path, size: int, verified: str | None) -> FileResult:
        """The file is in place: its journal record, events and result."""
        # A server-chosen name is remembered (as the server gave it, before --on-exists),
        # so a rerun knows it without asking; other finished files need no record.
        journal = self.ctx.journal
        if journal is not None and self.server_path is not None:
            if self._ensure_record():
                journal.finish(self.key, size=size, digest=None, path=str(self.server_path))
        elif journal is not None and self.journal_started:
            journal.forget(self.key)
            self.journal_started = False
        if not self.started:
            self.started_event()
        if self.ctx.listened:
            self.ctx.event(Finished(self.item, final, size, verified, self.fetched))
        return FileResult(
            self.item, final, "ok", size=size, fetched=self.fetched, verified=verified
        )

    async def _check_existing(self, final: Path) -> None:
        """A file already at ``final`` is skipped as complete only if it has the size the
        item gives, and the hash ``--checksum`` gives (IntegrityError otherwise): it may be
        another file of that name, or a cut copy from another tool."""
        size, want = self.item.size_bytes, self.ctx.settings.checksum
        if (size is None and want is None) or not final.is_file():
            return
        self.final = final  # (the failure names it)
        advice = "--on-exists overwrite replaces it, rename keeps both"
        have = final.stat().st_size
        if size is not None and have != size:
            raise IntegrityError(f"it already exists with {have} bytes, not {size} ({advice})")
        if want is not None:
            got = await asyncio.to_thread(file_digest, final, want.algo)
            if got != want.hex:
                raise IntegrityError(
                    f"it already exists and its {want.algo} does not match ({advice})"
                )

    def _skipped(self, final: Path | None, reason: str) -> FileResult:
        self.ctx.event(Skipped(self.item, final, reason))
        size = self.found if reason == "exists" else 0
        return FileResult(self.item, final, "skipped", size=size, reason=reason)

    def _failed(self, exc: OmnigetError) -> FileResult:
        # the part file and the journal stay: a later run resumes from them
        if isinstance(exc, TransferError) and exc.item is None:
            exc.item = self.item  # (the transports raise it knowing only the request)
        self.ctx.event(Failed(self.item, self.final, exc))
        return FileResult(self.item, self.final, "failed", fetched=self.fetched, error=exc)

    def _make_other(self) -> FileResult:
        """Directories and links: nothing to fetch."""
        item = self.item
        final = self.resolve_final(item.output_path)
        self.final = final
        try:
            if item.kind == "dir":
                final.mkdir(parents=True, exist_ok=True)
            else:
                target = item.link_target or ""
                resolved = (final.parent / target).resolve()
                dest = self.ctx.dest.resolve()
                if os.path.isabs(target) or not resolved.is_relative_to(dest):
                    from ..errors import Refused

                    raise Refused(f"link {final.name} -> {target} points outside the output folder")
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.is_symlink() or final.exists():
                    final.unlink()
                final.symlink_to(target)
        except OSError as exc:
            raise storage_error(exc, final, "creating", kept=False) from exc
        self.ctx.event(Finished(item, final, 0, None, 0))
        return FileResult(item, final, "ok")

    def __repr__(self) -> str:
        return f"<FileJob {self.item.output_path!r} size={self.size} written={self.written}>"


@functools.cache
def _plain_download() -> type[PlainDownload]:
    """plain.PlainDownload, imported on first use (an import statement in the function
    that runs once per file costs ~8 K instructions each time, even when done)."""
    from .plain import PlainDownload  # (it imports this module)

    return PlainDownload


def _inode(path: Path) -> int | None:
    """The inode number of the file at ``path``; None if there is none."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _strong(etag: str | None) -> bool:
    """Whether ``etag`` can be an If-Range validator (a weak one cannot)."""
    return etag is not None and etag != "" and not etag.startswith("W/")


def _there(path: str | Path) -> bool:
    """Whether a file (or anything) is at ``path`` (``os.access`` where it tells, as in
    :meth:`FileJob.exists_policy`: no exception per missing file)."""
    if _ACCESS_TELLS:
        return os.access(path, os.F_OK, follow_symlinks=False, effective_ids=True)
    return os.path.lexists(path)


def _sync_and_close(fd: int) -> bool:
    """fdatasync ``fd`` and close it; False if the sync failed (then nothing more is
    recorded as synced: a failed sync may have dropped the data it held)."""
    try:
        os.fdatasync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
