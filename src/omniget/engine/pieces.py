"""Files made of several pieces: ranged pieces, zlib chunks, segments of unknown size
appended in order, slices of local files, and chunks shared between files (fetched once
per run, by their content address).

Each piece is fetched on one connection, checked (size, digest before and after the
transform) and recorded in the journal, with a fingerprint of its bytes in the part file
(journal.Print); a resumed file fetches only the pieces not yet recorded, and those whose
bytes the part file no longer holds (overwritten, or replaced by a file that got its inode
number). Pieces whose offset cannot be known in advance (unknown sizes before them) are
staged in ``NAME.omniget-part.d/`` and appended in order at the end.

A piece's bytes as they come (where they go, the sink that writes them, the checks once it
is whole) are :mod:`.piecesink`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Cancelled, OmnigetError, RemoteError, StorageError, TransferError
from ..model import Piece
from .assemble import PartFile, part_path, storage_error
from .checkpoints import piece_done, sync_lost
from .context import ChunkKey, output_key
from .events import PieceDone, Retrying, Warned
from .job import FileJob
from .journal import Print
from .names import contain, is_part_name
from .piecesink import Out, PieceSink, check
from .prints import Ends, changed
from .resume import not_resumable
from .retry import FileWaits, gave_up
from .scheduler import Ticket
from .transports.base import Request, fetch_when_granted
from .verify import StreamHasher

__all__ = ["ChunkSource", "PieceDownload"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ChunkSource:
    """Where a finished piece's output lives, for de-duplication within a run (made here,
    loaded with pieces only: not at every start)."""

    path_getter: Callable[[], Path]
    offset: int
    size: int
    job: FileJob  # (whose part file holds it: forgotten when that file starts over)


COPY_BLOCK = 1 << 20
#: A resumed file's pieces checked against its part file on a worker thread when more
#: (two reads each: from the disk, after a reboot), on the loop when fewer.
CHECK_IN_THREAD = 64
#: Some of a resumed file's pieces are not in its part file as they were recorded.
CHANGED = (
    "its part file does not hold the bytes the resume journal recorded for some of its"
    " pieces (changed since the last run?); fetching those again"
)


class PieceDownload:
    def __init__(self, job: FileJob) -> None:
        self.job = job
        self.ctx = job.ctx
        self.pieces = job.item.pieces
        self.offsets = _offsets(self.pieces)
        self.staged = any(o is None for o in self.offsets)
        self.sizes: dict[int, int] = {}
        self.stage_dir: Path | None = None
        self.waits = FileWaits()  # its pieces' waits to try again (retry-max-time)
        self.gave_up_on_host = False  # (a piece gave up: the file's strike, see downhosts)
        #: each network piece's connection slot, kept through its retries (parked while
        #: it waits: see Ticket.park), as a span keeps its own
        self.tickets: dict[int, Ticket] = {}

    async def run(self) -> None:
        job = self.job
        assert job.final is not None
        journal = self.ctx.journal
        try:
            known = (
                journal.pieces_with_prints(job.key)
                if journal is not None and job.journal_started else {}
            )
        except StorageError as exc:  # (which pieces the part file has cannot be told now)
            self.ctx.journal_failed(exc)
            raise not_resumable(job.final, exc) from exc
        part = job.part or job.open_part(job.final, fresh=not known)
        done = await self._still_there(known, part) if known else {}
        self.sizes.update(done)
        if self.staged:
            self.stage_dir = part.path.with_name(part.path.name + ".d")
            self.stage_dir.mkdir(exist_ok=True)
        elif job.size is None:
            last = max(range(len(self.pieces)), key=lambda i: self.offsets[i] or 0)
            sz = self.pieces[last].size
            off = self.offsets[last]
            job.size = None if sz is None or off is None else off + sz
        part.prepare(job.size, have=sum(done.values()))
        job.resumed = sum(done.values())
        job.started_event()
        limit = asyncio.Semaphore(max(1, self.ctx.settings.split or 0) or self.ctx.limits.per_host)
        try:
            async with asyncio.TaskGroup() as tg:
                for idx, piece in enumerate(self.pieces):
                    if idx not in done:
                        tg.create_task(self._piece(idx, piece, limit))
        except BaseExceptionGroup as group:
            raise _first(group) from None
        if len(self.sizes) < len(self.pieces):  # (a piece's task cancelled from outside)
            raise Cancelled("interrupted; run again to resume")
        if self.staged:
            total = self._assemble()
        else:
            total = max((self.offsets[i] or 0) + n for i, n in self.sizes.items())
        said = job.item.size_bytes  # (another size than the item's fails the check)
        job.size = total if said is None else said
        job.done = [(0, total)] if total else []

    async def _piece(self, idx: int, piece: Piece, limit: asyncio.Semaphore) -> None:
        job = self.job
        async with limit:
            try:
                size, out = await self._tries(idx, piece)
            finally:
                if (ticket := self.tickets.pop(idx, None)) is not None:
                    ticket.close()
        self.sizes[idx] = size
        ends = out.ends
        piece_done(job, idx, size, in_part=self.offsets[idx] is not None,
                       fingerprint=None if ends is None else ends.print())
        if job.ctx.lost_syncs:  # (the disk failed a sync of the file: it fails now)
            sync_lost(job)
        self.ctx.event(PieceDone(job.item, job.final, idx, size))
        job.progress(time.monotonic())

    async def _tries(self, idx: int, piece: Piece) -> tuple[int, Out]:
        """Piece ``idx``'s tries till one puts its bytes in place: its size, and where."""
        job = self.job
        down = self.ctx.down
        attempts = 0
        mark = 0  # (down.mark at the start of the streak's first failed try)
        last: OmnigetError | None = None  # the last try's error
        while True:
            out = self._out(idx)
            url = piece.url if piece.local is None else ""
            if url:  # (its host, or its proxy, found down: not tried, as a file's span)
                down.before_try(url, job, last, attempts)
            begun = down.mark(url) if url else 0
            try:
                size = await self._produce(idx, piece, out)
                return size, out
            except asyncio.CancelledError:
                ticket = self.tickets.get(idx)
                task = asyncio.current_task()
                # (refused: its own cancel, taken back unless one came from outside)
                if ticket is not None and ticket.refused and task and task.uncancel() == 0:
                    raise down.not_tried(url, down.why(url) or "it was found down") from None
                raise
            except OmnigetError as exc:
                job.written -= out.pos  # those bytes are fetched again
                if job.refreshable(exc) and await job.refresh(exc):
                    piece = self._renewed(idx)
                    if (ticket := self.tickets.pop(idx, None)) is not None:
                        ticket.close()  # (its URL renewed: maybe another host's)
                    continue
                attempts += 1
                if attempts == 1:
                    mark = begun
                if url:  # (its host or its proxy found down meanwhile: it ends now)
                    down.after_try(url, exc, attempts, job)
                now = self.ctx.clock.monotonic()
                waited = self.waits.spent(now)  # (the file's, not the piece's)
                delay = self.ctx.policy.next_delay(attempts, exc, waited, self.ctx.rng)
                if delay is None:
                    gave_up(exc, attempts, self.ctx.policy, waited)
                    if isinstance(exc, TransferError) and exc.piece is None:
                        exc.piece = piece
                    if url and not self.gave_up_on_host:  # (one file: one strike)
                        self.gave_up_on_host = True
                        down.gave_up(url, str(exc), mark, exc.shared)
                    raise
                last = exc
                self.waits.add(now, delay)
                self.ctx.event(Retrying(job.item, job.final, exc, attempts, delay))
                ticket = self.tickets.get(idx)
                if ticket is not None:  # (no connection while it waits)
                    ticket.park()
                await self.ctx.clock.sleep(delay)
                if ticket is not None:
                    await ticket.unpark()

    def _renewed(self, idx: int) -> Piece:
        """Piece ``idx`` of the item its source refreshed: its URL renewed, nothing else
        (other pieces are another file, not the one whose bytes are being put together)."""
        fresh = self.job.item.pieces
        if len(fresh) != len(self.pieces) or any(
            dataclasses.replace(new, url=old.url) != old
            for old, new in zip(self.pieces, fresh, strict=True)
        ):
            raise RemoteError(
                f"{self.job.item.filename}: its source's refresh gave other pieces than those"
                " being fetched (only their URLs may change); run again"
            )
        return fresh[idx]

    async def _still_there(
        self, known: dict[int, tuple[int, Print | None]], part: PartFile
    ) -> dict[int, int]:
        """The pieces an earlier run verified (``known``: index -> size and print), less
        those whose bytes ``part`` no longer holds, by their prints: forgotten, they are
        fetched again (one warning for the file). Only those: each piece was checked on
        its own, and its print is its own; a file overwritten in part keeps the others
        (a file replaced whole fails them all). Pieces without a print (an older record,
        or staged: not in the part file) are taken as they are."""
        done = {i: size for i, (size, _) in known.items()}
        checked = [
            (i, off, size, mark) for i, (size, mark) in known.items()
            if mark is not None and i < len(self.offsets)
            and (off := self.offsets[i]) is not None
        ]
        if not checked:
            return done
        spans = [(off, off + size) for _, off, size, _ in checked]
        marks = [mark for _, _, _, mark in checked]
        try:
            length = part.size()
        except OSError:
            length = 0  # (then none of them is taken)
        if len(checked) > CHECK_IN_THREAD:
            bad = await asyncio.to_thread(changed, part.fd, spans, marks, length)
        else:
            bad = changed(part.fd, spans, marks, length)
        if not bad:
            return done
        gone = [checked[k][0] for k in bad]
        for i in gone:
            del done[i]
        job = self.job
        self.ctx.event(Warned(job.item, job.final, CHANGED))
        journal = self.ctx.journal
        if journal is not None:
            try:  # (their rows claim bytes that are not there)
                journal.drop_pieces(job.key, gone, own=job.owned)
            except StorageError as exc:
                self.ctx.journal_failed(exc)
        return done

    def _out(self, idx: int) -> Out:
        offset = self.offsets[idx]
        if offset is not None:
            assert self.job.part is not None
            return Out(self.job.part, offset, Ends())
        assert self.stage_dir is not None and self.job.final is not None
        stage = PartFile(self.stage_dir / str(idx), fresh=True)
        return Out(stage, 0)

    async def _produce(self, idx: int, piece: Piece, out: Out) -> int:
        """Put piece ``idx``'s output bytes in place; returns the output size."""
        try:
            if piece.local is not None:
                return await self._copy_local(piece, out)
            key = _chunk_key(piece)
            if key is not None:
                size = await self._copy_shared(key, piece, out)
                if size is not None:
                    return size
            ticket = self.tickets.get(idx)
            if ticket is None or ticket.closed:
                ticket = self.tickets[idx] = self.ctx.limits.ticket(
                    piece.url, self.job.claim, light=piece.range is None
                )
            if not ticket.granted:  # (refused if its host is found down meanwhile)
                me = asyncio.current_task()
                if me is not None:
                    ticket.refusal = me.cancel
            try:
                fut: asyncio.Future[ChunkSource | None] | None = None
                if key is not None:
                    # Claim a chunk only once its transfer may start: a file still waiting
                    # for its turn must not hold up one that is transferring (-j 1).
                    await ticket.wait()
                    size = await self._copy_shared(key, piece, out)
                    if size is not None:
                        return size
                    if out.part is self.job.part:
                        fut = asyncio.get_running_loop().create_future()
                        self.ctx.chunks[key] = fut  # type: ignore[assignment]
                try:
                    size = await self._fetch(piece, out, ticket)
                except BaseException:
                    if fut is not None:
                        fut.set_result(None)
                        self.ctx.chunks.pop(key, None)  # type: ignore[arg-type]
                    raise
            finally:
                ticket.refusal = None
            if fut is not None:
                fut.set_result(ChunkSource(self._path_now, out.offset, size, self.job))
            return size
        finally:
            if out.part is not self.job.part:
                out.part.close()

    def _path_now(self) -> Path:
        final = self.job.final
        assert final is not None
        part = part_path(final)
        return part if part.exists() else final

    async def _fetch(self, piece: Piece, out: Out, ticket: Ticket) -> int:
        sink = PieceSink(self.job, piece, out)
        req = Request(
            piece.url,
            headers=self.job.item.headers,
            range=piece.range,
            secret_headers=self.job.item.secret_headers,
            rate=self.ctx.rate,
        )
        try:
            await fetch_when_granted(self.ctx.transport_for(piece.url), req, sink, ticket)
        finally:
            if sink.answered:
                self.ctx.down.ended(piece.url)
        sink.finish()
        check(piece, sink.fetched, sink.output, out.pos, self.job.item.filename)
        return out.pos

    async def _copy_shared(self, key: ChunkKey, piece: Piece, out: Out) -> int | None:
        fut = self.ctx.chunks.get(key)
        if fut is None:
            return None
        src = await asyncio.shield(fut)  # (a waiter cancelled must not cancel it for all)
        if src is None:
            return None
        try:
            return self._copy_from(src.path_getter(), src.offset, src.size, piece, out)
        except OmnigetError as exc:  # (its bytes there changed, or went): fetched instead
            log.debug("%s: a copy of a shared chunk failed (%s); fetching it",
                      self.job.item.filename, exc)
            if self.ctx.chunks.get(key) is fut:
                del self.ctx.chunks[key]
            self.job.written -= out.pos
            out.reset()
            if out.part is not self.job.part:  # (its own staging file: emptied)
                out.part.truncate(0)
            return None

    def _from_part_file(self, path: str, final: Path) -> StorageError:
        """A local slice of a part file: its bytes are whatever is written there yet."""
        base = os.path.basename(path)
        whose = "its own part file" if base == part_path(final).name else "a part file"
        return StorageError(f"{self.job.item.filename} takes bytes from {whose}, {base}")

    async def _copy_local(self, piece: Piece, out: Out) -> int:
        local = piece.local
        assert local is not None
        name, final = self.job.item.filename, self.job.final
        assert final is not None
        if is_part_name(local.path):  # (no item's name: contain() would give another)
            raise self._from_part_file(local.path, final)
        path = Path(local.path) if os.path.isabs(local.path) else contain(self.ctx.dest, local.path)
        producer = self.ctx.outputs.get(output_key(path))
        if producer is None and not self.ctx.listed and not path.exists():
            # Perhaps a later item of the run writes it. Give up this job's set-up slot
            # while the run lists on: that item may need the slot to be set up.
            self.ctx.limits.release_file(self.job.claim)
            if self.job.slot is not None:
                self.job.slot.release()
            producer = await self.ctx.producer_of(path)
        if producer is not None and path != self.job.final and not producer.done():
            # Another item of this run writes it. Give up this file's transfer slot while
            # waiting: under -j 1 the producer needs it (a later network piece of this
            # file takes a slot again).
            self.ctx.limits.release_file(self.job.claim)
            await asyncio.shield(producer)  # (shared with other readers and writers)
        if path == part_path(final):
            raise self._from_part_file(str(path), final)
        if not path.exists():
            if path == final:
                why = ": it is the file itself, not there yet"
            elif producer is not None:
                why = ": the item of this run that writes it failed"
            else:
                why = " and which no item of this run writes"
            raise StorageError(f"{name} takes bytes from {path}, which does not exist{why}")
        start = local.range.start if local.range else 0
        end = local.range.end if local.range else None
        try:
            have = path.stat().st_size
        except OSError as exc:
            raise storage_error(exc, path, "reading") from exc
        if local.range is not None and (start >= have if end is None else end > have):
            asked = f"{start}..{'' if end is None else end}"
            raise StorageError(f"{name} takes bytes {asked} from {path}, which has {have} bytes")
        length = (have if end is None else end) - start
        return self._copy_from(path, start, length, piece, out, as_fetched=True)

    def _copy_from(
        self, path: Path, start: int, length: int, piece: Piece, out: Out,
        as_fetched: bool = False,
    ) -> int:
        """Copy ``length`` bytes of ``path`` from ``start`` as the piece's output, checked
        against its digest; ``as_fetched``: they are its bytes as fetched too (a local
        slice's; a shared chunk's copy is of the output, its fetched bytes were zlib's)."""
        hasher = StreamHasher(piece.digest.algo) if piece.digest else None
        fetched = piece.fetched_digest if as_fetched else None
        raw = StreamHasher(fetched.algo) if fetched is not None else None
        try:
            with open(path, "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    block = f.read(min(COPY_BLOCK, left))
                    if not block:
                        raise StorageError(f"{path} is shorter than expected")
                    out.write(block)
                    self.job.written += len(block)
                    if hasher is not None:
                        hasher.update(block)
                    if raw is not None:
                        raw.update(block)
                    left -= len(block)
        except OSError as exc:
            raise storage_error(exc, path, "reading") from exc
        check(piece, raw, hasher, out.pos, self.job.item.filename)
        return out.pos

    def _assemble(self) -> int:
        """Append staged pieces in order into the part file; returns the file size."""
        job = self.job
        part = job.part
        assert part is not None and self.stage_dir is not None
        pos = 0
        for idx in range(len(self.pieces)):
            offset = self.offsets[idx]
            if offset is not None:
                pos = max(pos, offset + self.sizes[idx])
                continue
            src = part_path(self.stage_dir / str(idx))  # written by a PartFile
            try:
                with open(src, "rb") as f:
                    while block := f.read(COPY_BLOCK):
                        part.write_at(block, pos)
                        pos += len(block)
            except OSError as exc:
                raise storage_error(exc, src, "assembling") from exc
        import shutil  # (only here: its import costs start-up time)

        shutil.rmtree(self.stage_dir, ignore_errors=True)
        self._unstaged()
        return pos

    def _unstaged(self) -> None:
        """The staged pieces' files are gone: their records go too, so that a rerun
        (the file failed its digest, and is kept) fetches them again instead of
        appending files that are not there."""
        job, journal = self.job, self.ctx.journal
        staged = [i for i, offset in enumerate(self.offsets) if offset is None]
        if journal is None or not job.journal_started or not staged:
            return
        try:
            journal.drop_pieces(job.key, staged, own=job.owned)
        except StorageError as exc:
            self.ctx.journal_failed(exc)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (an omniget error before a cancellation)."""
    flat: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            walk(e) if isinstance(e, BaseExceptionGroup) else flat.append(e)

    walk(group)
    for e in flat:
        if isinstance(e, OmnigetError):
            return e
    return flat[0]


def _offsets(pieces: tuple[Piece, ...]) -> list[int | None]:
    """Each piece's output offset: given, or the sum of the sizes before it when known."""
    out: list[int | None] = []
    pos: int | None = 0
    for p in pieces:
        off = p.offset if p.offset is not None else pos
        out.append(off)
        pos = None if off is None or p.size is None else off + p.size
    return out


def _chunk_key(piece: Piece) -> ChunkKey | None:
    d = piece.fetched_digest
    return None if d is None else (d.algo, d.hex, piece.transform.value)
