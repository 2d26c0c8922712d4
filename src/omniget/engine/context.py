"""Run-level services shared by every file job of one engine run."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import posixpath
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from .._frozen import plain_dataclass
from ..errors import StorageError
from ..model import Item
from ..settings import Settings
from .assemble import Leftovers, create_part, drop_part
from .downhosts import DownHosts
from .durable import Durability
from .events import Event, EventHandler
from .journal import FileRecord, Journal
from .journal.opening import unmoved
from .journal.records import RecordGone
from .journal.repair import damaged
from .ratelimit import RateLimit
from .retry import Clock, RetryPolicy
from .scheduler import HostLimits
from .transports.base import Transport, transport_for

if TYPE_CHECKING:
    import random
    from concurrent.futures import ThreadPoolExecutor

    from .checkpoints import PartSync
    from .job import FileJob
    from .pieces import ChunkSource

__all__ = [
    "Ahead", "ChunkKey", "Refresher", "RunContext", "SetupSlot", "SetupSlots", "output_key",
]

log = logging.getLogger(__name__)

#: Creating a file taking this long (seconds) is slow (tmpfs: ~10 us, a local disk
#: 20-100 us; ext4 with crowded inode groups and network file systems: 0.3-1 ms)...
SLOW_CREATE = 200e-6
#: ...and once a folder's score reaches SLOW_SCORE, its other files are created on a
#: thread. Each create scales the score by CREATE_DECAY, and a slow one then adds 1:
#: three slow creates in a row, or one in three for a while, make a folder slow; stray
#: slow ones among fast ones (a busy moment of the machine) never do.
SLOW_SCORE = 2.0
CREATE_DECAY = 0.8
#: A journal with at most this many unfinished records (with a part file) has them all
#: read at once, the first time a file has none (see RunContext.unfinished_records).
FEW = 1000

Refresher = Callable[[Item], Awaitable[Item]]
#: Unfinished records with a known part file: [(key, part file inode)].
Found = list[tuple[str, int]]
#: (algo, hex, transform) of a piece's fetched bytes: the content address of a chunk.
ChunkKey = tuple[str, str, str]
Future = asyncio.Future[None]
#: Set when an item of the run is done with its output path: True if it wrote the file.
Output = asyncio.Future[bool]


#: The system compares names as they are written (normcase changes no string).
_SAME_CASE = os.path.normcase is posixpath.normcase


def output_key(path: Path) -> str:
    """``path`` as :attr:`RunContext.outputs` keys it: its string, compared as the system
    compares names (a Path's first hash costs several times as much, once per file)."""
    return os.path.normcase(path)



class Ahead:
    """A part file being created on the run's file thread, for ``final``."""

    __slots__ = ("_done", "_fd", "final", "folder", "text")

    def __init__(self, final: Path, folder: str | None = None, text: str | None = None) -> None:
        self.final = final
        self.folder = folder  # (final's, if known)
        self.text = text  # (final as a string, if known)
        self._fd = -1
        self._done = threading.Lock()  # held until the create is over
        self._done.acquire()

    def create(self, made: set[str]) -> None:
        """On the file thread."""
        try:
            self._fd = create_part(self.final, made, self.folder, self.text)
        finally:
            self._done.release()

    def fd(self) -> int:
        """The part file's descriptor (-1: the create failed), once it is made."""
        with self._done:  # (seldom still held by the time the answer comes)
            return self._fd

    def drop(self) -> None:
        """On the file thread: remove the part file, which went unused."""
        drop_part(self.final, self.fd())


class FileThread:
    """The thread that creates part files ahead of their answers: a plain queue of calls
    (a ThreadPoolExecutor's futures and semaphores cost more than the create itself)."""

    def __init__(self) -> None:
        import queue  # (for slow folders only: not at start-up)

        self._calls: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="omniget-files", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], object]) -> None:
        self._calls.put(call)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call()
            except Exception:  # (a call's failure is its own: the next ones still run)
                log.debug("file thread call failed", exc_info=True)

    def close(self) -> None:
        """Run what was submitted, then end the thread."""
        self._calls.put(None)
        self._thread.join()


class SetupSlots:
    """A run's set-up slots: how many are free, and the run's listing waiting for one.
    Taking a free slot is a plain call (an asyncio.Semaphore takes one with a coroutine,
    and a generator in its locked(), per file)."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiter: asyncio.Future[None] | None = None

    def take(self) -> bool:
        """Take a free slot; False when none is."""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait until a slot is free and take it (one caller at a time: the listing)."""
        while not self.take():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def give_back(self) -> None:
        self.free += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class SetupSlot:
    """One of a run's set-up slots (files prepared ahead of their turn), given back
    once: when its job ends, or earlier, when the job waits for an item the run has
    not reached yet (which may need that very slot to be set up)."""

    def __init__(self, slots: SetupSlots) -> None:
        self._slots: SetupSlots | None = slots

    def release(self) -> None:
        if self._slots is not None:
            self._slots.give_back()
            self._slots = None


@plain_dataclass
class RunContext:
    """What every job of one run shares: settings, transports, caps, journal, clock."""

    settings: Settings
    transports: Mapping[str, Transport]
    limits: HostLimits
    journal: Journal | None
    clock: Clock
    policy: RetryPolicy
    emit: EventHandler  # never raises (Engine.emit)
    dest: Path
    refresh: Refresher | None = None
    rng: random.Random | None = None  # (None: the random module's own, at a first retry)
    #: Final output paths of this run's items (:func:`output_key`) -> set when that item
    #: is done with it.
    outputs: dict[str, Output] = field(default_factory=dict)
    #: Content-addressed pieces finished (or in flight) in this run.
    chunks: dict[ChunkKey, asyncio.Future[ChunkSource]] = field(default_factory=dict)
    #: Folders already created in this run.
    made_dirs: set[str] = field(default_factory=set)
    #: Part files' temporaries found in folders looked at (see PartFile._clear_leftovers).
    leftovers: Leftovers = field(default_factory=dict)
    #: ``--limit-rate``: the budget every transfer of the run shares.
    rate: RateLimit | None = None
    #: Why ``journal`` is None when resume state was wanted: it could not be opened, or
    #: a call failed during the run (a full disk, a damaged file; see journal_failed).
    journal_error: StorageError | None = None
    #: Finished files whose bytes may not be on the disk yet (None: not looked after).
    durability: Durability | None = None
    #: Part-file syncs under way (checkpoints.py), waited for at the run's end; None
    #: once the run is over (a sync that returns later records nothing).
    syncs: set[asyncio.Future[bool]] | None = field(default_factory=set, repr=False)
    #: Files with a part-file sync under way, and the sync due after it (None: none yet):
    #: one sync of a file at a time, so that they are recorded in order.
    syncing: dict[FileJob, PartSync | None] = field(default_factory=dict, repr=False)
    #: ... and that sync (a finished file waits for it: checkpoints.syncs_back).
    sync_under_way: dict[FileJob, asyncio.Future[bool]] = field(default_factory=dict, repr=False)
    #: Files put in place (marked) while such a sync was still under way (a disk slower
    #: than SYNC_WAIT), with their path and stat: handed to the durability's syncs, which
    #: clear marks, only once theirs returned well (checkpoints._placed_synced).
    placed_unsynced: dict[FileJob, tuple[str, os.stat_result]] = field(
        default_factory=dict, repr=False
    )
    #: The threads those syncs run on, made at the run's first (see checkpoints.py).
    sync_pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    #: Files a sync of which the disk failed (EIO, a full disk): why each fails, at its
    #: end if not before (see checkpoints.sync_lost).
    lost_syncs: dict[FileJob, StorageError] = field(default_factory=dict, repr=False)

    #: True once every item of the run is registered in ``outputs``.
    listed: bool = False
    #: No Progress event before this (monotonic): a slow ``on_event`` is given at most
    #: a tenth of the run's time for them (they are what the bytes would wait for).
    quiet_until: float = 0.0

    #: Journal keys under ``dest`` when the run started (None: not read yet).
    _known: set[str] | None = field(default=None, init=False, repr=False)
    #: Unfinished records with a known part file, [(key, part file inode)] (None: not
    #: read yet): those of other output folders by what follows the folder in their keys,
    _moved: dict[str, list[tuple[str, int]]] | None = field(
        default=None, init=False, repr=False
    )
    #: ... and those of this folder by their output path.
    _here: dict[str, list[tuple[str, int]]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: Whether ``_moved`` holds every unfinished record (else another folder's are
    #: looked up by their rest: see unfinished_records).
    _all_read: bool = field(default=True, init=False, repr=False)
    #: Folder -> its score of recent slow creates (see SLOW_SCORE).
    _slow_creates: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    #: The thread that creates part files ahead of their answers.
    _files: FileThread | None = field(default=None, init=False, repr=False)
    #: Paths a LocalSlice reader waits to see registered.
    _wanted: dict[str, Future] = field(default_factory=dict, init=False, repr=False)
    #: Someone listens to the events (else a file's Started, Progress and Finished are
    #: not built: three objects per file for nobody).
    listened: bool = True

    #: What the journal keys of this run's files begin with (their output folder).
    key_prefix: str = field(default="", init=False, repr=False)
    #: Hosts found down in this run (see downhosts.py).
    down: DownHosts = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key_prefix = f"{self.dest}\0"
        from .transports.outgoing import proxy_for

        proxy = self.settings.network.proxy
        self.down = DownHosts(self.clock, self.policy.max_total, self.limits,
                              lambda url: proxy_for(url, proxy))

    def register_output(
        self, path: Path, text: str | None = None
    ) -> tuple[Output | None, Output]:
        """Announce an item writing ``path`` (``text``: it as a string, if known): (the
        earlier writer, this item's future)."""
        key = output_key(path) if text is None else text if _SAME_CASE else os.path.normcase(text)
        earlier = self.outputs.get(key)
        mine = self.outputs[key] = asyncio.get_running_loop().create_future()
        waiter = self._wanted.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return earlier, mine

    def writing(self, path: Path, mine: Output | None) -> bool:
        """Another file of this run is writing ``path`` (or waits to)."""
        producer = self.outputs.get(output_key(path))
        return producer is not None and producer is not mine and not producer.done()

    def drop_chunks(self, job: FileJob) -> None:
        """Forget the shared chunks ``job``'s part file holds: it starts over (emptied)."""
        for key, fut in list(self.chunks.items()):
            if fut.done() and (src := fut.result()) is not None and src.job is job:
                del self.chunks[key]

    def wrote(self, path: Path, mine: Output | None) -> bool:
        """Another file of this run put its file at ``path`` (it is done)."""
        producer = self.outputs.get(output_key(path))
        return (producer is not None and producer is not mine and producer.done()
                and not producer.cancelled() and producer.result())

    def busy_paths(self) -> set[Path]:
        """Paths files of this run are writing now (or wait to)."""
        return {Path(key) for key, producer in self.outputs.items() if not producer.done()}

    def end_listing(self) -> None:
        """Every item is registered (or the list failed): no more writers will come."""
        self.listed = True
        for waiter in self._wanted.values():
            if not waiter.done():
                waiter.set_result(None)
        self._wanted.clear()

    async def producer_of(self, path: Path) -> Output | None:
        """The future of the item of this run that writes ``path``, waiting for the item
        list to reach it; None when the list ends without one."""
        key = output_key(path)
        while (producer := self.outputs.get(key)) is None and not self.listed:
            waiter = self._wanted.get(key)
            if waiter is None:
                waiter = self._wanted[key] = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)  # (other readers may wait for the same path)
        return producer

    def timed_create(self, where: str, seconds: float, folder: str | None = None) -> None:
        """Note how long creating the file ``where`` (in ``folder``, if known) took."""
        if folder is None:
            folder = os.path.dirname(where)
        score = self._slow_creates.get(folder, 0.0) * CREATE_DECAY
        self._slow_creates[folder] = score + 1 if seconds >= SLOW_CREATE else score

    def creates_slowly(self, final: Path, folder: str | None = None) -> bool:
        """Files are slow to create in ``final``'s folder (``folder``, if known) so far in
        this run."""
        if folder is None:
            folder = os.path.dirname(final)
        return self._slow_creates.get(folder, 0.0) >= SLOW_SCORE

    def create_part_ahead(
        self, final: Path, folder: str | None = None, text: str | None = None
    ) -> Ahead:
        """Create ``final``'s part file (in ``folder``, and ``final`` as a string ``text``,
        if known) on the run's file thread (see FileJob)."""
        if self._files is None:
            self._files = FileThread()
        ahead = Ahead(final, folder, text)
        self._files.submit(functools.partial(ahead.create, self.made_dirs))
        return ahead

    def drop_ahead(self, ahead: Ahead) -> None:
        """Remove a part file created ahead that went unused (on the file thread, after
        its create)."""
        assert self._files is not None
        self._files.submit(ahead.drop)

    def close(self) -> None:
        """Wait for the file thread's work (every part file created ahead is used or
        removed by then)."""
        if self._files is not None:
            self._files.close()
            self._files = None

    def journal_record(self, key: str) -> FileRecord | None:
        """The journal's record for ``key``: one query per run, then per known key only."""
        journal = self.journal
        if journal is None:
            return None
        try:
            if self._known is None:
                self._known = journal.keys(self.key_prefix)
            return journal.get(key) if key in self._known else None
        except StorageError as exc:
            self.journal_failed(exc)
            return None

    def unfinished_records(self, job: FileJob) -> tuple[Found, Found]:
        """Unfinished records with a known part file that ``job``'s could be, [(key, part
        file inode)]: those of other output folders with its key's rest (what follows the
        folder: a part file that moved with its folder is among them), and those of this
        folder with its output path (one an earlier URL of the file left). The lists are
        the run's: a record taken is removed from them. When the journal holds at most
        FEW such records, one query reads them all; else this folder's are read at once,
        and another folder's by their rest (an index), per file."""
        if self._moved is None:
            self._moved = {}
            self._load_unfinished()
        rest = job.key[len(self.key_prefix):]
        same = self._moved.get(rest)
        if same is None:
            same = []
            if not self._all_read and self.journal is not None:
                try:
                    found = self.journal.unfinished_after(rest)
                except StorageError as exc:
                    self.journal_failed(exc)
                    found = []
                same = [(k, p) for k, p in found if not k.startswith(self.key_prefix)]
                self._moved[rest] = same
        return same, self._here.get(job.item.output_path, [])

    def _load_unfinished(self) -> None:
        journal = self.journal
        if journal is None:
            return
        prefix = self.key_prefix
        try:
            rows = journal.unfinished(FEW + 1)
            self._all_read = len(rows) <= FEW
            if not self._all_read:
                rows = journal.unfinished_in(prefix)
        except StorageError as exc:
            self.journal_failed(exc)
            return
        assert self._moved is not None
        for key, part in rows:
            if key.startswith(prefix):
                self._here.setdefault(key.rpartition("\0")[2], []).append((key, part))
            else:
                self._moved.setdefault(key.partition("\0")[2], []).append((key, part))

    def journal_failed(self, exc: StorageError) -> None:
        """A journal call failed after a clean open (its disk full, its file damaged or
        emptied, ...): the run goes on without resume state, every file of it, those under
        way too; one warning says so. A damaged file is moved aside (as at an open), so
        that the next run has a new one. A record gone under its file (another run
        finished it) is no failure of the journal: raised again, for that file."""
        if isinstance(exc, RecordGone):
            raise exc
        journal, self.journal = self.journal, None
        if journal is None:
            return  # (off already, and said)
        if self.journal_error is None:
            self.journal_error = exc
        said = str(exc)
        cause = exc.__cause__
        if cause is not None and damaged(cause):  # (not "delete it": see unmoved)
            try:
                aside = journal.set_aside()
            except StorageError as e:
                what = unmoved(e.__cause__ or e)
            else:
                what = f"moved aside to {aside}" if aside is not None else (
                    "it is not there any more (another omniget run moved it aside, or it"
                    " was removed)")
            said = f"resume journal {journal.path}: the file was damaged ({cause}); {what}"
        log.warning("%s; going on without resume state for the rest of the run", said)

    def journal_started(self, key: str) -> None:
        if self._known is not None:
            self._known.add(key)

    def transport_for(self, url: str) -> Transport:
        return transport_for(self.transports, url)

    def event(self, ev: Event) -> None:
        self.emit(ev)
