"""One item, from output path to finished file: its state, the progress events and
checkpoints while its bytes come in, the refresh of expiring URLs, and the whole life of
the file (:meth:`FileJob.run`). The rest of the job is in functions of their own modules:
the file already at the output path (--on-exists) in existing.py, the part file and resume
state in resume.py, its journal record and checkpoints in checkpoints.py, the fetch,
verification, the atomic finish and the result in finish.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AuthRequired, OmnigetError, RemoteNotFound, StorageError, UsageError
from ..layout import layout_problem
from ..model import Digest, Item
from .assemble import PartFile, part_path
from .checkpoints import NOTHING_SAVED, Saved, forget_bytes, last_sync
from .context import Ahead, RunContext, SetupSlot, output_key
from .events import Progress, Started
from .existing import (
    SkipFile,
    check_existing,
    exists_policy,
    intact,
    off_state,
    replace,
    take_server_name,
    there,
)
from .finish import failed, fetch_verified, skipped
from .journal import FileRecord, Owner
from .names import contain, unique_path
from .others import make_other
from .report import FileResult
from .resume import (
    create_part_ahead,
    drop_ahead,
    load_resume,
    moved_here,
    not_resumable,
    open_part,
    own_part,
    renamed_unfinished,
    strong,
)
from .scheduler import FileClaim
from .spans import Interval
from .verify import StreamHasher

if TYPE_CHECKING:
    from .mark import Mark

log = logging.getLogger(__name__)

__all__ = ["FileJob", "SkipFile"]

PROGRESS_EVERY = 0.25  # seconds between Progress events per file
HANDLER_SHARE = 10  # a Progress handler's time, times this: no Progress until it passed
REFRESH_MARGIN = 60.0  # refresh expiring URLs this long before they expire
MAX_REFRESHES = 3  # refreshes of a file's URLs in a row that bring no byte


class FileJob:
    """State of one file while it downloads; ``plain`` and ``pieces`` fill it in."""

    # (more attributes than an instance dict shares keys for (30): without slots each
    # job built a dict of its own, ~5 K instructions; mypy checks the list)
    __slots__ = (
        "_last_progress", "_planned_text", "_where", "after", "ahead", "bad_mirrors", "claim",
        "connections", "ctx", "digests", "done", "end_proven", "etag", "fetched", "final",
        "found", "generation", "item", "journal_started", "key", "last_ckpt", "last_modified",
        "last_sync", "lost", "mirror_alone", "next_tick", "owned", "part", "planned", "record",
        "refreshed_at", "refreshes",
        "released", "remembered", "replacing", "resumed", "saved", "server_path", "size",
        "size_from_eof", "slot", "started", "stream_hash", "suspect", "unsynced", "written"
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
        #: What this file's record names while it is this run's (see records.Owner).
        self.owned: Owner | None = None
        #: Records of this file lost to another run: 1, one made again; 2, no more.
        self.lost = 0
        self._last_progress = 0.0
        self.last_ckpt = time.monotonic()
        self.next_tick = 0.0  # monotonic time of the next progress event or checkpoint
        self.last_sync = time.monotonic()  # (inf once a sync failed: see checkpoints.py)
        self.saved: Saved = NOTHING_SAVED  # the spans last committed as written
        self.unsynced: list[int] = []  # pieces in the part file done since the last sync
        self.generation = 0  # bumped when every byte is forgotten (a late sync is stale)
        self.started = False
        self.refreshed_at = -math.inf  # (the run's clock: a test's fake one starts at 0)
        #: refreshes after a failure with no byte fetched since, and the bytes fetched then
        self.refreshes = (0, 0)
        #: URLs (the item's and its mirrors') that sent the file wrong, fetched alone;
        #: the one URL the file is fetched from alone now (see finish._next_mirror_alone).
        self.bad_mirrors: set[str] = set()
        self.mirror_alone: str | None = None
        #: The part file being created ahead of the answer.
        self.ahead: Ahead | None = None
        # (a final path, it as a string, its folder: worked out once per path)
        self._where: tuple[Path, str, str] | None = None

    # ----- paths and skip rules -------------------------------------------------

    def resolve_final(self, rel: str) -> Path:
        return contain(self.ctx.dest, rel)

    def place(self, final: Path) -> tuple[Path, str, str]:
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

    # (the functions of existing.py, resume.py and finish.py that callers, here and in
    # plain.py and pieces.py, call as methods: bound here, at no extra call per file)
    exists_policy = exists_policy
    _replace = replace
    _intact = intact
    take_server_name = take_server_name
    _check_existing = check_existing
    open_part = open_part
    _create_part_ahead = create_part_ahead
    _drop_ahead = drop_ahead
    load_resume = load_resume
    _renamed_unfinished = renamed_unfinished
    _own_part = own_part
    _moved_here = moved_here
    _not_resumable = staticmethod(not_resumable)
    _fetch_verified = fetch_verified
    _skipped = skipped
    _failed = failed
    _make_other = make_other

    # ----- progress, checkpoints ------------------------------------------------

    def validator(self) -> str | None:
        """What to send as If-Range: a strong ETag, else Last-Modified."""
        if strong(self.etag):
            return self.etag
        return self.last_modified

    def started_event(self, again: bool = False) -> None:
        """Say the file started (once; ``again``: once more, if it did, as it starts over
        from fewer bytes than it said: an answer sent its resumed ones again)."""
        if self.started and not again:
            return
        if again and not self.started:
            return
        self.started = True
        # the checkpoint clock starts with the bytes (not while the file waited its turn)
        self.last_ckpt = time.monotonic()
        if not self.ctx.listened:
            # no Progress events to pace: the next tick is the checkpoint's
            self.next_tick = self.last_ckpt + self.ctx.settings.checkpoint_seconds
            return
        self.ctx.event(
            Started(self.item, self.final, self.size, self.resumed, connections=self.connections)
        )

    def set_next_tick(self) -> None:
        ckpt = self.last_ckpt + self.ctx.settings.checkpoint_seconds
        # (nobody listens: no Progress event is due, only the checkpoint)
        listened = self.ctx.listened
        self.next_tick = min(self._last_progress + PROGRESS_EVERY, ckpt) if listened else ckpt

    def progress(self, now: float) -> None:
        if now - self._last_progress >= PROGRESS_EVERY:
            ctx = self.ctx
            if now < ctx.quiet_until:  # (the handler was slow: this one waits)
                self._last_progress = ctx.quiet_until - PROGRESS_EVERY
                self.set_next_tick()
                return
            self._last_progress = now
            self.set_next_tick()
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
        return now - self.last_ckpt >= self.ctx.settings.checkpoint_seconds

    def restart(self) -> None:
        """The remote file changed, cannot be resumed or came wrong: forget every byte
        we have, its validators, and any size the item does not give (one read off the end
        of a body, here or by an earlier run: the next body may be longer; the next
        answer gives its own)."""
        self.done = []
        self.saved, self.unsynced = NOTHING_SAVED, []
        self.generation += 1
        self.etag = self.last_modified = None  # (learnt again from the next answer)
        self.resumed = 0
        self.written = 0
        self.stream_hash = None
        self.digests = []  # (the old file's: the next answer gives the new one's)
        self.size, self.size_from_eof, self.end_proven = self.item.size_bytes, False, False
        if self.ctx.journal is not None and self.journal_started:
            try:
                self.ctx.journal.reset(self.key, own=self.owned)
            except StorageError as exc:
                self.ctx.journal_failed(exc)
        if self.ctx.chunks:  # (chunks copied from its part file: not there any more)
            self.ctx.drop_chunks(self)
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
        now = self.ctx.clock.monotonic()
        if reason is not None:
            if now - self.refreshed_at < 1.0:
                return False  # refreshed a moment ago and it still fails: give up
            if self.fetched != self.refreshes[1]:  # (bytes came since: a new count)
                self.refreshes = (0, self.fetched)
            if self.refreshes[0] >= MAX_REFRESHES:
                return False  # fresh URLs that fail as the old ones did, each time
            self.refreshes = (self.refreshes[0] + 1, self.fetched)
        self.refreshed_at = now
        fresh = await self.ctx.refresh(self.item)
        if fresh == self.item:
            return False  # the source had nothing new: retrying would fail the same way
        self.item = fresh
        return True

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
            if item.pieces:
                refuse_layout(item)
            self.record = self.ctx.journal_record(self.key)
            rec = self.record
            remembered = False  # the name an earlier run chose, not the planned one
            if rec is not None and (item.name_from_server or self._renamed_unfinished(rec)):
                final = off_state(self, Path(rec.path))
                planned = self.planned or self.resolve_final(item.output_path)
                remembered = output_key(final) != output_key(planned)
                self.remembered = final
            else:
                final = off_state(self, self.planned or self.resolve_final(item.output_path))
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
            if why is not None and not resuming and there(part_path(final)):
                raise self._not_resumable(final, why)
            if resuming:
                self.load_resume(final)
            else:
                forget_bytes(self)
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
            if self.ahead is not None:
                self._drop_ahead()
            if self.part is not None and self.part.fd >= 0:  # (closed at the commit)
                if self.journal_started and not wrote:  # (failed or stopped: see last_sync)
                    last_sync(self)
                if (self.ctx.journal_error is not None or self.lost > 1) and not (
                    wrote or self.journal_started
                ):
                    # (no record of its bytes: a part file nothing could resume)
                    with contextlib.suppress(StorageError):
                        self.part.discard()
                self.part.close()
            # wake LocalSlice readers and the next writer of the planned path
            if self.released is not None and not self.released.done():
                self.released.set_result(wrote or shadowed)  # the run's file is there

    def __repr__(self) -> str:
        return f"<FileJob {self.item.output_path!r} size={self.size} written={self.written}>"



def refuse_layout(item: Item) -> None:
    """UsageError when ``item``'s pieces cannot make one file (before any request)."""
    problem = layout_problem(item)
    if problem is not None:
        raise UsageError(f"{item.filename}: its pieces cannot make one file: {problem}")
