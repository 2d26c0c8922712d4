"""The engine: items in, files out, events along the way. The only entry point is
:meth:`Engine.run` (and :meth:`Engine.stream` for writing one URL to a stream).

Beside it: :mod:`.emitter` (a run's events handed to its handlers), :mod:`.outputs` (each
item's path claimed, the output folder a run made removed if left empty) and
:mod:`.resources` (the default refresh hook, the transports' limits shared, the journal's
prune test)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, OmnigetError, StorageError
from ..model import Item
from ..settings import Settings, default_state_dir
from .checkpoints import end_deadline, end_syncs, stop_syncs, sync_threads
from .cleanup import to_the_end
from .context import Refresher, RunContext, SetupSlot, SetupSlots
from .durable import Durability
from .emitter import Emitter
from .events import Event, EventHandler, Failed, ignore
from .job import FileJob
from .journal import Journal
from .outputs import folder_error, make_folders, register_output, remove_if_empty
from .pulled import OffLoop, may_block
from .ratelimit import RateLimit
from .report import FileResult, Report
from .resources import by_origin, gone, share_limits
from .retry import Clock, RetryPolicy, SystemClock
from .scheduler import HostLimits
from .transports.base import Transport
from .transports.outgoing import check_proxy
from .transports.trust import check_ca

if TYPE_CHECKING:
    import random

__all__ = ["Engine"]

log = logging.getLogger(__name__)


class Engine:
    """Downloads items. One engine may serve several runs; close it with :meth:`aclose`.
    Its runs at one time share one event loop (its connections are that loop's): a run
    on another loop (another thread's) while they go on is refused.

    ``transports`` maps URL schemes to transports (default: libcurl for http/https);
    ``journal=False`` disables resume state (tests, ``-O -``). A journal that cannot be
    opened (its state folder unwritable or a file, the database a newer omniget's, or
    damaged and not to be moved aside) is done without, as curl and aria2 keep no state: a
    warning is logged, and :attr:`journal_error` (and each run's report) says why. A
    journal given (``journal=J``) is the caller's to close, and is not pruned; once a run
    finds its file damaged and moves it aside, J stays closed and later runs use a new
    journal at its path, the engine's (closed by :meth:`aclose`), as for its own.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transports: Mapping[str, Transport] | None = None,
        journal: Journal | bool | None = None,
        clock: Clock | None = None,
        on_event: EventHandler | None = None,
        refresh: Refresher | None = None,
        rng: random.Random | None = None,
    ) -> None:
        from ..checks import check_function, check_settings  # (it imports the sources)

        check_settings(settings, "Engine")
        check_function(on_event, "on_event", "one event", "Engine")
        self.settings = settings or Settings()
        self._transports = dict(transports) if transports is not None else None
        self._own_transports = transports is None
        self._journal_arg = journal
        self._journal: Journal | None = None
        self.journal_error: StorageError | None = None  # why there is no journal
        self.clock = clock or SystemClock()
        self.on_event = on_event or ignore
        self._emit_failed = False
        self.refresh = refresh
        #: The retries' jitter; None: the random module's own (imported at a first retry).
        self.rng = rng
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the runs going on
        self._runs = 0
        self._runs_lock = threading.Lock()
        #: One per run or stream going on: stops it, and gives its tasks (see aclose).
        self._stoppers: set[Callable[[], list[asyncio.Future[Any]]]] = set()
        s = self.settings
        self.policy = RetryPolicy(
            retries=s.retries, max_wait=s.retry_max_wait, max_total=s.retry_max_time
        )

    def emit(self, ev: Event) -> None:
        """Hand ``ev`` to ``on_event``: a broken consumer must not break a download (its
        first failure is logged, later ones are not)."""
        try:
            self.on_event(ev)
        except Exception:
            if not self._emit_failed:
                self._emit_failed = True
                log.warning("the on_event handler failed (later failures are not shown)",
                            exc_info=True)

    @property
    def listened(self) -> bool:
        """Someone takes the engine's events (else per-file ones need not be made)."""
        return self.on_event is not ignore

    def emitter(
        self,
        on_event: EventHandler | None,
        interrupt: Callable[[BaseException], None] | None = None,
    ) -> Emitter:
        """Emit for one run: the engine's handler, then ``on_event`` (the run's own); see
        :class:`Emitter`."""
        handlers = tuple(h for h in (self.on_event, on_event) if h is not None and h is not ignore)
        return Emitter(handlers, interrupt)

    # ----- resources --------------------------------------------------------------

    def transports(self) -> Mapping[str, Transport]:
        if self._transports is None:
            from .transports.http import CurlTransport

            http = CurlTransport(
                self.settings.network,
                max_host_connections=self.settings.connections_per_host,
                max_total_connections=self.settings.max_connections,
            )
            self._transports = {"http": http, "https": http}
        return self._transports

    def journal(self, dest: Path | None = None) -> Journal | None:
        """The journal of the next run (None: none), into ``dest`` (if known: a state
        folder made for it is not made private if it is ``dest``, which the downloads
        go into). One a run found damaged and moved aside is followed by a new one at its
        path, the engine's own, also for a journal the caller gave (which stays closed:
        the damaged file's)."""
        old = self._journal
        if old is None and self._journal_arg is not False and self.journal_error is None:
            if not isinstance(self._journal_arg, Journal):
                def opener() -> Journal:  # (a StorageError here too: no state folder)
                    given = self.settings.state_dir
                    state = given or default_state_dir()
                    private = dest is None or os.path.abspath(state) != os.path.abspath(dest)
                    named = self.settings.state_dir_from if given else "--state-dir"
                    return Journal.in_dir(state, private=private, state_from=named)

                self._open_journal(opener)
                return self._journal
            old = self._journal = self._journal_arg
        if old is not None and old.closed and old.found_damaged:
            self._journal = None
            self._open_journal(old.reopened)
        return self._journal

    def _open_journal(self, opener: Callable[[], Journal]) -> None:
        try:
            self._journal = opener()
        except StorageError as exc:
            self.journal_error = exc
            log.warning("%s; downloading without resume state", exc)

    async def aclose(self) -> None:
        """Close the transports and the journal. Runs going on are stopped first, as a
        ``cancel`` stops them: their unfinished files fail as interrupted, keeping their
        resume state (a run whose item list is waiting for its next item, a source's next
        page, stops waiting: that wait is cancelled), and their ends waited for (a run's
        wait for its last part-file syncs: see checkpoints.SYNC_WAIT); a stream going on
        raises :class:`~omniget.errors.Cancelled`."""
        if self._stoppers:
            with self._runs_lock:
                if self._runs and self._loop is not asyncio.get_running_loop():
                    raise RuntimeError("this omniget Engine is running on another event loop"
                                       " (another thread): close it there")
            files = [task for stop in list(self._stoppers) for task in stop()]
            if files:
                await asyncio.wait(files)  # (their last journal writes done, syncs too)
        if self._own_transports and self._transports is not None:
            seen: set[int] = set()
            for t in self._transports.values():
                if id(t) not in seen:
                    seen.add(id(t))
                    await t.aclose()
            self._transports = None
        if self._journal is not None and self._journal is not self._journal_arg:
            journal, self._journal = self._journal, None
            try:  # (the engine's own: one in place of a given one is left as that was)
                if not isinstance(self._journal_arg, Journal):
                    await asyncio.to_thread(journal.prune, gone)
            except StorageError as exc:  # (old state stays: a later run prunes it)
                log.debug("pruning the resume journal failed: %s", exc)
            finally:
                journal.close()

    @contextlib.contextmanager
    def _on_this_loop(self) -> Iterator[None]:
        """A run (or stream) going on, on the running loop: refused while others go on
        on another loop (their connections, callbacks and futures are that loop's)."""
        loop = asyncio.get_running_loop()
        with self._runs_lock:
            if self._runs and self._loop is not loop:
                raise RuntimeError(
                    "this omniget Engine is running on another event loop (another thread):"
                    " one engine serves one loop at a time; give each thread its own Engine"
                )
            self._loop = loop
            self._runs += 1
        try:
            yield
        finally:
            with self._runs_lock:
                self._runs -= 1

    # ----- a run -------------------------------------------------------------------

    async def run(
        self,
        items: Iterable[Item] | AsyncIterable[Item],
        dest: str | Path = ".",
        *,
        cancel: asyncio.Event | None = None,
        on_event: EventHandler | None = None,
        refresh: Refresher | None = None,
    ) -> Report:
        """Download every item into ``dest``; never raises for a single file's failure.
        ``on_event`` sees this run's events (after the engine's own handler; an
        :class:`Emitter` made by :meth:`emitter` is used as it is, as the run's whole
        handling); ``refresh`` re-resolves this run's expiring URLs (default: the engine's
        ``refresh``, else each item's source, reached by the origin extract gave it). A
        KeyboardInterrupt (or any exception that is no Exception: SystemExit,
        CancelledError) raised in a handler stops the run as Ctrl+C does (its files end
        with their resume state kept), then is raised here; an Exception a handler
        raises is logged once, and is the report's ``handler_error``."""
        with self._on_this_loop():
            return await self._run(items, dest, cancel, on_event, refresh)

    async def _run(
        self,
        items: Iterable[Item] | AsyncIterable[Item],
        dest: str | Path,
        cancel: asyncio.Event | None,
        on_event: EventHandler | None,
        refresh: Refresher | None,
    ) -> Report:
        started = time.monotonic()
        dest_path = Path(dest).absolute()
        s = self.settings
        if isinstance(items, Sequence):  # (before any transfer: said once, not per file)
            check_ca(s.network, items)
            check_proxy(s.network.proxy, items)
        stopped_by: list[BaseException] = []  # a handler's KeyboardInterrupt (Ctrl+C)

        def interrupt(exc: BaseException) -> None:
            if not stopped_by:
                stopped_by.append(exc)
                stop()

        if isinstance(on_event, Emitter):  # (adownload's: its list's events said too)
            emit = on_event
            emit.interrupt = interrupt
        else:
            emit = self.emitter(on_event, interrupt)
        if s.limit_rate and s.split is None:
            # (its connections would share the run's one budget: more of them cannot
            # make a file come faster, only cost the server more; --split given is kept)
            s = dataclasses.replace(s, split=1)
        ctx = RunContext(
            settings=s,
            transports=self.transports(),
            limits=HostLimits(s.connections_per_host, s.max_connections, files=s.jobs),
            journal=self.journal(dest_path),
            journal_error=self.journal_error,
            clock=self.clock,
            policy=self.policy,
            emit=emit,
            listened=bool(emit.handlers),
            dest=dest_path,
            refresh=refresh or self.refresh or by_origin(s, self.transports),
            rng=self.rng,
            rate=RateLimit(s.limit_rate) if s.limit_rate else None,
            durability=Durability(s.fsync_seconds),
        )
        if not s.limit_rate:
            share_limits(ctx.transports, ctx.limits)
        try:  # (after the transports: a bad cookies file leaves no empty folder behind)
            made = make_folders(dest_path)  # removed again at the end if nothing went in
        except OSError as exc:
            # (as its files' paths are made: symlinks resolved, normalised)
            raise folder_error(os.path.realpath(dest_path), exc) from exc
        report = Report()
        # -j files transfer at once (HostLimits counts them); as many again are set up
        # ahead, each with its first request ready to leave the moment a slot frees up.
        slots = SetupSlots(2 * max(1, s.jobs))
        # One result per item, in the items' order. A job that ends with its result lets
        # go of it at once (a long run keeps no finished job alive: less for the garbage
        # collector to walk); the others are settled at the end (cancelled, or a bug).
        results: list[FileResult | None] = []
        unsettled: dict[int, tuple[FileJob, asyncio.Task[FileResult]]] = {}
        # Files put in place while their part-file sync was under way (a slow disk), by
        # their place in ``results``: one whose sync then failed so (the disk lost its
        # bytes) fails after all (checkpoints._lost_in_place).
        placed: dict[FileJob, int] = {}
        loop = asyncio.get_running_loop()
        durability = ctx.durability
        assert durability is not None
        durability.running = unsettled.__len__
        durability.threads = lambda: sync_threads(ctx)  # (not the default
        # executor: asyncio.run waits for its threads, a hung disk's sync too)

        # Files still waiting for their turn as the run stopped: a slot the files cut off
        # free may grant one of them on the way (its task's cancel is on its way too)
        waiting_turn: set[FileJob] = set()

        def on_cancel() -> None:
            for job, t in list(unsettled.values()):
                if not job.started and not job.claim.began:
                    waiting_turn.add(job)
                t.cancel()

        async def run_job(i: int, job: FileJob, slot: SetupSlot) -> FileResult:
            # (what ends the job here, in its task: a done callback costs a loop turn)
            try:
                result = await job.run()
            finally:
                slot.release()
            results[i] = result
            unsettled.pop(i, None)
            if ctx.placed_unsynced and job in ctx.placed_unsynced:
                placed[job] = i
            if durability.waits():  # (the files left may all wait for a sync now)
                durability.poke()
            return result

        async def settle_rest() -> None:
            while unsettled:  # in order (a cancel still reaches the one awaited)
                i = next(iter(unsettled))
                job, task = unsettled[i]
                if results[i] is None:
                    results[i] = await self._result(ctx, job, task, partial(results.__getitem__, i),
                                                    job in waiting_turn)
                    if results[i] is None:  # (stopped before it began: as the list's rest)
                        report.stopped = True
                unsettled.pop(i, None)

        closing = False
        # A stop while the item list waits (a source's next page) ends that wait: this
        # task is cancelled there, each such cancel counted so it is told from one from
        # outside and taken back (uncancel), as plain.py's span runs do.
        me = asyncio.current_task()
        waiting = False  # the list's next item is awaited
        halts = 0  # cancels of this task that only end that wait

        def halt() -> None:
            nonlocal halts
            if waiting and me is not None and not me.done():
                halts += 1
                me.cancel()

        # set as the run ends: aclose waits for it (the files' last syncs are recorded by
        # then, before it closes the journal), unless called from this very task
        ended: asyncio.Future[None] = loop.create_future()

        def stop() -> list[asyncio.Future[Any]]:  # (aclose)
            nonlocal closing
            closing = True
            on_cancel()
            loop.call_soon(halt)  # (at the loop's next turn: this task is suspended then)
            tasks: list[asyncio.Future[Any]] = [t for _, t in unsettled.values()]
            if asyncio.current_task() is not me:
                tasks.append(ended)
            return tasks

        def on_cancel_event(_: object) -> None:
            on_cancel()
            loop.call_soon(halt)

        watcher = loop.create_task(cancel.wait()) if cancel is not None else None
        if watcher is not None:
            watcher.add_done_callback(on_cancel_event)
        self._stoppers.add(stop)
        try:
            try:
                listing = aiter(_aiter(items))
                while True:
                    if closing or (cancel is not None and cancel.is_set()):
                        report.stopped = True
                        break
                    waiting = True
                    try:
                        item = await anext(listing)
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if not halts or me is None or me.cancelling() > halts:
                            raise  # (also) cancelled from outside
                        report.stopped = True
                        break
                    finally:
                        waiting = False
                        while halts and me is not None:  # (taken back, whatever came)
                            halts -= 1
                            me.uncancel()
                    if closing or (cancel is not None and cancel.is_set()):  # (as it came:
                        report.stopped = True  # started now, nothing would stop its file)
                        break
                    if not isinstance(item, Item):  # (a URL: adownload takes those)
                        raise _not_an_item(item)
                    if s.checksum is not None and item.digest is None:
                        item = dataclasses.replace(item, digest=s.checksum)  # --checksum
                    if not slots.take():
                        await slots.wait()
                        if closing or (cancel is not None and cancel.is_set()):  # (meanwhile)
                            SetupSlot(slots).release()
                            report.stopped = True
                            break
                    slot = SetupSlot(slots)
                    path, text, earlier, mine = register_output(ctx, item)
                    job = FileJob(
                        ctx, item, path, after=earlier, released=mine, slot=slot, text=text
                    )
                    i = len(results)
                    results.append(None)
                    unsettled[i] = (job, loop.create_task(run_job(i, job, slot)))
            finally:  # however the list stops, LocalSlice readers stop waiting for it
                ctx.end_listing()
            await settle_rest()
            end = end_deadline(ctx)  # (one for both: a hung disk holds the end once)
            # (the part-file syncs first: a file put in place while its own was under way
            # is handed to the filesystem's sync, which clears marks, once it is back)
            await end_syncs(ctx, end)  # (the last syncs of files that failed or stopped)
            await durability.settle(end)  # (the bytes of the files finished last)
        except BaseException:  # cancelled, or the item list raised: stop the files in flight
            on_cancel()

            async def wind_down() -> None:
                await settle_rest()  # (each file still in flight says it was interrupted)
                await end_syncs(ctx)

            # (to its end, however often the task is cancelled again: what is raised is
            # this exception, the cancel of an awaited task too)
            with contextlib.suppress(asyncio.CancelledError):
                await to_the_end(wind_down())
            raise
        finally:
            try:
                if watcher is not None:
                    watcher.cancel()
                stop_syncs(ctx)  # (a sync back later records nothing; its thread is not
                ctx.close()  # awaited)
                if made:
                    remove_if_empty(made)
            finally:  # (a KeyboardInterrupt raised between two of those steps, asyncio's
                # own at a second Ctrl+C: aclose still sees the run end, not waits forever)
                self._stoppers.discard(stop)
                emit.interrupt = None
                ended.set_result(None)
        if stopped_by:  # as Ctrl+C: the files stopped with their resume state, then this
            raise stopped_by[0]
        for job, i in placed.items():
            if job in ctx.lost_syncs:  # (its Failed event, after_finished, said so)
                results[i] = FileResult(job.item, job.final, "failed", fetched=job.fetched,
                                        error=ctx.lost_syncs[job])
        report.results = [r for r in results if r is not None]
        report.journal_error = ctx.journal_error
        report.handler_error = emit.error
        report.elapsed = time.monotonic() - started
        return report

    async def _result(
        self,
        ctx: RunContext,
        job: FileJob,
        task: asyncio.Task[FileResult],
        ended: Callable[[], FileResult | None],
        waiting: bool = False,
    ) -> FileResult | None:
        """How ``job`` ended; ``ended``: its result, once its task has given it. None for
        one stopped before it began (``waiting`` for its turn as the run stopped, and
        no Started since): no end, no result, as an entry of the list the run never
        reached (it was not "interrupted")."""
        item = job.item
        try:
            return await asyncio.shield(task) if not task.done() else task.result()
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the run itself is cancelled: run() stops every file, then settles
            # A stop from a handler its own job called (a KeyboardInterrupt raised at its
            # Finished event) cancels the task as it returns: the file ended all the same.
            result = ended()
            if result is not None:
                return result
            if waiting and not job.started:
                return None
            err = Cancelled("interrupted; run again to resume")
            ctx.event(Failed(item, job.final, err))
            # (the bytes this run fetched count: the part file keeps them)
            return FileResult(item, job.final, "failed", fetched=job.fetched, error=err)
        except OmnigetError as exc:
            return FileResult(item, job.final, "failed", fetched=job.fetched, error=exc)

    async def stream(
        self, item: Item, write: Callable[[bytes], object], *, refresh: Refresher | None = None
    ) -> int:
        """Write one item's bytes, in order, to ``write``; ``refresh`` renews its expiring
        URLs, as a run's does (default: the engine's ``refresh``, else the item's source,
        reached by its origin). :meth:`aclose` stops it: :class:`~omniget.errors.Cancelled`
        (the bytes written stay written)."""
        from .stream import stream_item

        if not isinstance(item, Item):
            raise TypeError(f"Engine.stream() writes an Item, not a URL (a "
                            f"{type(item).__name__}: {item!r}); give a URL to omniget.stream"
                            if isinstance(item, str) else
                            f"Engine.stream() writes an Item, not {type(item).__name__}")
        with self._on_this_loop():
            stopped = False
            stopped_by: list[BaseException] = []  # a handler's KeyboardInterrupt (Ctrl+C)

            def stop() -> list[asyncio.Future[Any]]:
                nonlocal stopped
                stopped = True
                task.cancel()
                return [task]

            def interrupt(exc: BaseException) -> None:
                if not stopped_by:
                    stopped_by.append(exc)
                    task.cancel()

            # (on a task of its own: aclose stops it, not the task that awaits it)
            emit = self.emitter(None, interrupt)
            hook = refresh or self.refresh or by_origin(self.settings, self.transports)
            task = asyncio.get_running_loop().create_task(
                stream_item(self, item, write, emit, hook))
            self._stoppers.add(stop)
            try:
                return await task
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():  # (its own task's cancel)
                    raise
                if stopped_by:
                    raise stopped_by[0] from None
                if stopped:
                    raise Cancelled("interrupted: the engine was closed") from None
                raise
            finally:
                self._stoppers.discard(stop)


def _not_an_item(entry: object) -> TypeError:
    what = f"a {type(entry).__name__}: {entry!r}"
    if isinstance(entry, str):
        return TypeError(f"Engine.run() downloads Items, not URLs ({what}); give URLs to "
                         "omniget.adownload(urls, dest, engine=engine), which lists them")
    return TypeError(f"Engine.run() downloads Items, not {what}")




def _aiter(items: Iterable[Item] | AsyncIterable[Item]) -> AsyncIterable[Item]:
    return items if isinstance(items, AsyncIterable) else _from_sync(items)


async def _from_sync(items: Iterable[Item]) -> AsyncIterable[Item]:
    if not may_block(items):
        for item in items:
            yield item
        return
    pulled = OffLoop(items)  # (a generator: its next() may wait, the loop must not)
    try:
        async for item in pulled:
            yield item
    finally:
        pulled.close()
