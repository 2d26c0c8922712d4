"""The public API: ``extract`` / ``aextract`` describe, ``download`` / ``adownload`` fetch,
``stream`` writes one URL to a binary stream. The sync functions are thin wrappers that
drive the async core (:mod:`omniget.drive`); the arguments are checked by
:mod:`omniget.checks`, and a URL list is listed entry by entry by :mod:`omniget.listing`."""

from __future__ import annotations

import asyncio
import errno
import io
import itertools
import os
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from typing import Protocol

from .checks import (
    check_cancel,
    check_function,
    check_item,
    check_options,
    check_out,
    check_run,
    check_settings,
    check_source_options,
    check_url,
    one_or_many,
    shown,
)
from .drive import default_transports, drive, not_in_a_loop, run
from .engine import Engine, FileResult, Report
from .engine.cleanup import to_the_end
from .engine.events import EventHandler, Failed, Listed, Queued, ignore
from .engine.pulled import OffLoop, may_block
from .engine.transports.base import Transport
from .engine.transports.outgoing import check_proxy
from .engine.transports.trust import check_ca
from .errors import Cancelled, OmnigetError, UsageError, write_error
from .keywords import anamed_keywords, named_keywords
from .model import Item, unextracted
from .settings import Settings
from .sources import find_source
from .sources.base import Reach, Source, SourceContext, source_context, with_origin

__all__ = ["Writer", "adownload", "aextract", "download", "extract", "stream"]

class Writer(Protocol):
    """What :func:`stream` writes to: any object with a ``write`` that takes bytes (a
    binary file, ``sys.stdout.buffer``, a socket's file, a class of one's own). It is
    handed ``bytes`` alone; it may return how many it took (the rest is written again)
    or anything else (None: it took them all). A ``flush`` it has is called at the end."""

    def write(self, data: bytes, /) -> object: ...


#: Seconds a list in memory is resolved ahead of its first file when events are listened
#: to (a display): the rest is resolved as files go (50,000 URLs took ~1.5 s).
RESOLVE_AHEAD = 0.02


async def aextract(
    url: str,
    *,
    source: str | None = None,
    settings: Settings | None = None,
    transports: Mapping[str, Transport] | None = None,
    **options: object,
) -> AsyncGenerator[Item, None]:
    """Yield the items behind ``url``, lazily: nothing runs before the first item is
    asked for, so a URL no source takes (UnsupportedURL) or an option it does not take
    (TypeError) fails there, at the first ``anext()``."""
    url = check_url(url, "aextract")
    check_settings(settings, "aextract")
    cls = find_source(url, source)
    check_options(cls, options, "aextract")
    settings = settings or Settings()
    own = transports is None
    tr = transports if transports is not None else default_transports(settings)
    try:
        src = cls(url, source_context(settings, tr, options), **options)
        mark = with_origin(src)  # (a download of these items can refresh them)
        async for item in src.items():
            yield item if mark is None else mark(item)
    finally:
        if own:
            for t in {id(t): t for t in tr.values()}.values():
                await t.aclose()


def extract(
    url: str, *, source: str | None = None, settings: Settings | None = None, **options: object
) -> Generator[Item, None, None]:
    """The :class:`~omniget.Item` objects behind ``url``, as a generator: no request
    until the first ``next()`` (``for``, ``list()``), and none once it is closed
    (``close()``, a ``break`` that drops it). A plain link is one item, made without a
    request (its size and the server's name come with the download). Fails at once: a
    URL no source takes (:class:`~omniget.errors.UnsupportedURL`), an option the source
    does not take (TypeError). Inside a running event loop: ``aextract``. An item whose
    source refreshes expiring URLs carries its ``origin``: ``download(items)`` later has
    that source refresh it."""
    url = check_url(url, "extract")
    check_settings(settings, "extract")
    check_options(find_source(url, source), options, "extract")  # fail fast, no request
    not_in_a_loop("extract", "aextract")
    settings = settings or Settings()
    transports = default_transports(settings)  # (no I/O until an item is asked for)
    agen = aextract(url, source=source, settings=settings, transports=transports, **options)
    return drive(agen, transports)


@anamed_keywords
async def adownload(
    items_or_urls: Iterable[Item | str] | AsyncIterable[Item | str] | str | Item,
    dest: str | os.PathLike[str] = ".",
    *,
    settings: Settings | None = None,
    on_event: EventHandler | None = None,
    cancel: threading.Event | asyncio.Event | None = None,
    source: str | None = None,
    source_options: Mapping[str, Mapping[str, object]] | None = None,
    engine: Engine | None = None,
    only: Callable[[Item], bool] | None = None,
) -> Report:
    """:func:`download` for ``await``: the same arguments, report and events (the
    handler, a plain function, is called on this event loop, not awaited), and the list
    may be an async iterable too (``aextract(url)``). Stopping: ``cancel`` (an
    ``asyncio.Event`` or a ``threading.Event``, alike) ends it with a report, as
    ``download``'s does (one already set starts no file: ``clear()`` it to reuse it);
    cancelling its task (``task.cancel()``, ``asyncio.timeout``) stops it too,
    raising CancelledError here once its clean-up is done (cancelled again meanwhile,
    that clean-up still ends first). Either way what landed is kept, and the same call
    again resumes it.
    ``engine``: run on this engine, with its settings (``settings``, if given too, must
    be the same) and its own handler, and ``on_event`` besides for this run's events."""
    return await _adownload("adownload", items_or_urls, dest, settings, on_event, cancel,
                            source, source_options, engine, only)


async def _adownload(
    name: str,
    items_or_urls: Iterable[Item | str] | AsyncIterable[Item | str] | str | Item,
    dest: str | os.PathLike[str],
    settings: Settings | None,
    on_event: EventHandler | None,
    cancel: threading.Event | asyncio.Event | None,
    source: str | None,
    source_options: Mapping[str, Mapping[str, object]] | None,
    engine: Engine | None,
    only: Callable[[Item], bool] | None,
) -> Report:
    """adownload's and download's run; ``name``, the one called, names their mistakes."""
    items_or_urls = one_or_many(items_or_urls, name)
    check_run(name, dest, settings, on_event, only, source)
    check_source_options(source_options, name)
    check_cancel(cancel, name)
    if engine is not None and not isinstance(engine, Engine):
        raise TypeError(f"omniget.{name}(): engine= takes an omniget.Engine, not "
                        f"{shown(engine)}")
    if engine is not None and settings is not None and settings != engine.settings:
        raise ValueError(f"omniget.{name}(): settings= and engine= disagree (the engine "
                         "downloads with its own settings: give one of them)")
    given = engine.settings if engine is not None else settings
    count = len(items_or_urls) if isinstance(items_or_urls, Sized) else 0
    if count > 1 and given is not None and given.checksum is not None:  # (as the command)
        raise ValueError(f"omniget.{name}(): settings.checksum is one file's digest, and the "
                         f"list has {count} entries (give each Item its digest=)")
    own = engine is None
    eng = engine or Engine(settings, on_event=on_event)
    settings = eng.settings  # (the sources' too)
    if isinstance(items_or_urls, Sequence):  # (before any transfer: said once, not per file)
        check_ca(settings.network, items_or_urls)
        check_proxy(settings.network.proxy, items_or_urls)
    emit = eng.emitter(None if own else on_event)  # (a given engine: the run's handler too)
    sources: dict[str, Source] = {}  # the first of each name made in this run
    reach = Reach(settings, eng.transports)  # the source of an item, by its origin
    contexts: dict[str, SourceContext] = {}  # one per source: a long URL list shares it
    failures: list[tuple[int, FileResult]] = []  # (items listed before it, result)
    listed = 0

    async def refresh(item: Item) -> Item:
        """This run's hook (runs sharing the engine each have their own): the source that
        made the item (in this run, or made again from its origin: an item extracted
        before), else a source of its name in this run, else the engine's own hook."""
        if reach.source(item) is not None:
            return await reach.refresh(item)
        src = sources.get(item.source)
        if src is not None:
            return await src.refresh(item)
        return await eng.refresh(item) if eng.refresh is not None else item

    listen = on_event is not None or eng.on_event is not ignore

    def resolve(entry: Item | str) -> Sequence[Item] | Source | FileResult:
        """The entry's items the run keeps (``only``) when known without a request; else
        its source (its items come as it finds them); a failure's result (said at once)."""
        if isinstance(entry, Item):
            check_item(entry, name)
            return (entry,) if only is None or only(entry) else ()
        entry = check_url(entry, name)  # (a list's entries are not typed at run time)
        try:
            cls = find_source(entry, source)
            opts = (source_options or {}).get(cls.name, {})
            sctx = contexts.get(cls.name)
            if sctx is None:
                sctx = contexts[cls.name] = source_context(settings, eng.transports(), opts)
            src = cls(entry, sctx, **opts)
            sources.setdefault(src.name, src)
            known = src.items_at_once()
        except OmnigetError as exc:
            return failed(entry, exc)
        if known is None:
            return src
        mark = with_origin(src)
        if mark is not None:  # (its items are refreshed by it, not by another of its name)
            reach.add(mark.origin, src)
            known = [mark(item) for item in known]
        return known if only is None else [item for item in known if only(item)]

    def failed(url: str, exc: OmnigetError) -> FileResult:
        bad = unextracted(url)
        emit(Failed(bad, None, exc))
        return FileResult(bad, None, "failed", error=exc)

    # a list in memory, with a listener: counted whole from the first Queued
    whole = items_or_urls if listen and isinstance(items_or_urls, Sequence) else None
    counted = whole is not None
    left = len(whole) if whole is not None else 0  # entries counted, not resolved yet
    listing = 0  # sources resolved whose listing has not ended

    def more() -> bool:
        """Items beyond those counted may follow: a source finds them, or the list is
        read as it goes."""
        return listing > 0 or not counted

    def take(entry: Item | str) -> Sequence[Item] | Source | FileResult:
        """The entry resolved; its items announced (a source's, as it finds them)."""
        nonlocal left, listing
        got = resolve(entry)
        if isinstance(got, Source):
            listing += 1
        if not listen:
            return got
        if counted:
            left -= 1
        if isinstance(got, Source):
            return got
        if isinstance(got, FileResult) or not got:  # (its failure, or its filter, told)
            if counted:
                said = entry if isinstance(entry, Item) else unextracted(entry)
                emit(Listed(said, None, more=more(), ahead=left))
            return got
        for item in got:
            emit(Queued(item, None, more=more(), ahead=left))
        return got

    async def items() -> AsyncIterator[Item]:
        nonlocal listed, listing
        # A list's entries are taken in a plain loop (an async generator around them
        # costs a step of its own per entry); an async iterable's as they come, and a
        # generator's on a thread (its next() may wait for a page: the loop goes on).
        given: AsyncIterator[Item | str] | None = None
        pulled: OffLoop[Item | str] | None = None
        found: Iterator[Sequence[Item] | Source | FileResult] = iter(())
        if whole is not None:
            # Resolved ahead while that is quick (a display shows the items' sizes from
            # its first frame); the rest as files go, counted from the first Queued.
            early: list[Sequence[Item] | Source | FileResult] = []
            until = time.perf_counter() + RESOLVE_AHEAD
            for entry in whole:
                early.append(take(entry))
                if time.perf_counter() > until:
                    break
            found = itertools.chain(early, map(take, itertools.islice(whole, len(early), None)))
        elif isinstance(items_or_urls, AsyncIterable):  # (aextract's, say)
            given = aiter(items_or_urls)
        elif may_block(items_or_urls):  # (a generator: its next page, extract's say)
            given = pulled = OffLoop(items_or_urls)
        else:
            found = map(take, items_or_urls)
        try:
            while True:
                if given is not None:
                    try:
                        entry = await anext(given)
                    except StopAsyncIteration:
                        break
                    got = take(entry)
                else:
                    nxt = next(found, None)  # (take() never gives None)
                    if nxt is None:
                        break
                    got = nxt
                if isinstance(got, FileResult):
                    failures.append((listed, got))
                    continue
                if isinstance(got, Source):
                    mark = with_origin(got)
                    if mark is not None:
                        reach.add(mark.origin, got)
                    try:
                        async for item in got.items():
                            if mark is not None:
                                item = mark(item)
                            if only is None or only(item):
                                listed += 1
                                if listen:
                                    emit(Queued(item, None, more=True, ahead=left))
                                yield item
                    except OmnigetError as exc:
                        failures.append((listed, failed(got.url, exc)))
                    listing -= 1
                    if listen:  # (its count loses its "+", unless more is to come)
                        emit(Listed(unextracted(got.url), None, more=more(), ahead=left))
                    continue
                for item in got:
                    listed += 1
                    yield item
        finally:
            if pulled is not None:  # (its thread ends)
                pulled.close()

    # An asyncio.Event (adownload's) is the run's own; any other (a threading.Event) is
    # mirrored: read at each of the run's checks, and polled to stop the files in flight.
    if isinstance(cancel, asyncio.Event) and name == "adownload":
        stop: asyncio.Event | None = cancel
    else:
        stop = None if cancel is None else _Mirror(cancel)
    poll = asyncio.create_task(stop.poll()) if isinstance(stop, _Mirror) else None
    try:
        report = await eng.run(items(), os.fspath(dest), cancel=stop, on_event=emit,
                               refresh=refresh)
    finally:
        if poll is not None:
            poll.cancel()
        if own:  # (to its end: a cancel meanwhile is raised after it)
            await to_the_end(eng.aclose())
    if report.stopped and whole and left == len(whole):
        # (stopped before its first entry was taken: the list, counted whole, is told
        # as the rest of one is, whose first Queued counts it: its entries not started)
        first = whole[0]
        said = first if isinstance(first, Item) else unextracted(str(first))
        emit(Listed(said, None, more=False, ahead=left))
    for n, (at, result) in enumerate(failures):  # in list order: the first failure's code
        report.results.insert(min(at + n, len(report.results)), result)
    return report


#: Seconds between looks at a threading.Event given as ``cancel`` (set from any thread).
POLL = 0.05


class _Mirror(asyncio.Event):
    """The run's asyncio.Event for a ``cancel`` set from any thread (a threading.Event):
    set as soon as the run looks (``is_set``: no file starts once it is set, as with an
    asyncio.Event), and by :meth:`poll` for the files in flight."""

    def __init__(self, given: threading.Event | asyncio.Event) -> None:
        super().__init__()
        self.given = given
        self.seen = False  # (set once seen: clearing ``given`` later takes nothing back)

    def is_set(self) -> bool:  # (looked at for each item: kept to two calls)
        if self.seen or not self.given.is_set():
            return self.seen
        self.seen = True
        self.set()
        return True

    async def poll(self) -> None:
        while not self.is_set():
            await asyncio.sleep(POLL)


@named_keywords
def download(
    items_or_urls: Iterable[Item | str] | str | Item,
    dest: str | os.PathLike[str] = ".",
    *,
    settings: Settings | None = None,
    on_event: EventHandler | None = None,
    cancel: threading.Event | None = None,
    source: str | None = None,
    source_options: Mapping[str, Mapping[str, object]] | None = None,
    only: Callable[[Item], bool] | None = None,
) -> Report:
    """Download into the folder ``dest`` (made if missing) and return a
    :class:`~omniget.engine.Report`; it blocks until every file is done. ``dest`` is no
    file's name (as urlretrieve's is): name a file ``Item(url, filename="a.zip")``.

    ``items_or_urls``: a URL, an :class:`~omniget.Item`, or any iterable of them (a list,
    a generator, ``extract(url)``: read as the run goes; a generator on a thread of its
    own, so while its ``next()`` waits for a page the files begun go on and a stop ends
    the wait at once: give one that must be read on the thread that made it, a
    ``sqlite3`` cursor say, as a list); a URL without the blanks around it (a file's
    lines, ``open("urls.txt")``, are URLs). ``settings``: an
    :class:`omniget.Settings` (``Settings(connections_per_host=8, retries=3)``;
    ``omniget.load_settings(flags={"connections": 8})`` takes the command's names; its
    ``checksum`` is one file's digest: with a list of more, refused).

    A file that fails does not raise: ``report.succeeded`` is True when every file is
    in and the run was not stopped (``if report.ok:`` is no such check: ``ok`` counts the
    files fetched, as ``.failed``, ``.skipped`` and ``.interrupted`` count theirs);
    ``.exit_code`` is the command's code for it (0 when it succeeded), and
    ``report.failures`` are the failed files' :class:`~omniget.FileResult` (``.item``,
    ``.path``, ``.error``: an :class:`~omniget.OmnigetError`). Raised here: an argument
    of the wrong kind (TypeError, ValueError, UsageError, at once), a ``dest`` that cannot
    be made (StorageError), what the iterable or ``only`` raises, and KeyboardInterrupt.

    Stopping: ``cancel`` (a ``threading.Event``) set from any thread (the way to stop a
    download running on another thread: Ctrl+C is the main thread's), or Ctrl+C (which
    raises KeyboardInterrupt here once the run's clean-up is done; a second Ctrl+C
    meanwhile does not cut it short), stops the transfers; what landed is kept (part files
    ``NAME.omniget-part``, and the resume journal in the folder of ``Settings.state_dir``:
    see :class:`~omniget.Settings`), and the same call again resumes them.
    Cancelled, the report has each file it cut short failed with ``Cancelled``
    (``report.interrupted``), and ``report.stopped`` when files of the list were never
    started (those waiting for their turn among them: they have no result). The run
    does not clear ``cancel``: one already set when it starts (left set by an earlier
    run, say) starts no file, the report stopped (exit code 130); give each run a new
    event, or ``clear()`` it first.

    ``on_event(event)`` is called, on this thread, with each event of
    :mod:`omniget.engine.events`: ``Started``, ``Progress`` (``.done`` and ``.size``
    bytes, at most every 0.25 s per file), ``Finished``, ``Failed``, ... (each with its
    ``.item`` and output ``.path``; a ``Failed`` with ``.after_finished`` takes back the
    file's ``Finished``: the disk failed its write once it was in place, and the report
    has it failed). The transfers wait while it runs: keep it quick. An
    exception it raises is logged once and is the report's ``handler_error`` (the
    download goes on); a KeyboardInterrupt (or another exception that is no Exception:
    SystemExit, CancelledError) stops the run as Ctrl+C does, and is raised here.

    ``only``: items it returns False for are left out. Items extracted earlier are
    refreshed by their source (their ``origin``). Inside a running event loop (an
    ``async def``, a notebook cell) this raises RuntimeError: ``await adownload(...)``."""
    not_in_a_loop("download", "adownload")
    given = one_or_many(items_or_urls, "download")
    check_run("download", dest, settings, on_event, only, source)
    check_source_options(source_options, "download")
    return run(_adownload("download", given, dest, settings, on_event, cancel, source,
                          source_options, None, only))


@named_keywords
def stream(
    url_or_item: str | Item,
    out: Writer,
    *,
    settings: Settings | None = None,
    on_event: EventHandler | None = None,
    cancel: threading.Event | None = None,
    source: str | None = None,
    source_options: Mapping[str, Mapping[str, object]] | None = None,
) -> int:
    """Write one URL's bytes in order to ``out`` (a binary file: ``open(name, "wb")``,
    ``sys.stdout.buffer``; or any :class:`~omniget.Writer`, an object whose ``write``
    takes bytes); returns how many were written. A failure (after retries,
    which continue where the bytes stopped) raises its :class:`~omniget.OmnigetError`;
    ``out`` keeps what was written, with no resume state.
    ``on_event`` sees its start, progress, end, retries and warnings (their path: None).
    A URL is the one item its source gives (a URL no source takes fails at once:
    :class:`~omniget.errors.UnsupportedURL`, as in ``extract``); an item made of pieces is
    refused (UsageError). ``source``: use the source of that name instead of guessing;
    ``source_options``: each source's options, by its name (a password, say), checked
    before any request as ``download`` checks them (an item needs neither: its source is
    reached by its origin). An expiring URL is renewed by its source (on a 403 or 410, or
    near its known expiry), as in ``download``. ``cancel`` (a ``threading.Event``) set from
    any thread stops it: :class:`~omniget.errors.Cancelled`, ``out`` keeping the bytes
    written (one already set when it starts makes no request). It blocks: inside an event
    loop, run it on a thread (``await asyncio.to_thread(omniget.stream, url, out)``)."""
    not_in_a_loop("stream", "asyncio.to_thread(omniget.stream, ...)")
    check_out(out)
    check_cancel(cancel, "stream")
    check_settings(settings, "stream")
    check_function(on_event, "on_event", "one event", "stream")
    if isinstance(url_or_item, Item):
        check_item(url_or_item, "stream")
    check_source_options(source_options, "stream")
    cls: type[Source] | None = None
    opts: Mapping[str, object] = {}
    if not isinstance(url_or_item, Item):
        url_or_item = check_url(url_or_item, "stream")
        cls = find_source(url_or_item, source)  # fail fast, without any request
        opts = (source_options or {}).get(cls.name, {})

    # a buffered file takes each write whole; another (unbuffered) may take a part
    write: Callable[[bytes], object] = (
        out.write if isinstance(out, io.BufferedIOBase) else _whole_writes(out)
    )

    async def fetch(eng: Engine) -> int:
        if isinstance(url_or_item, Item):
            return await eng.stream(url_or_item, write)
        assert cls is not None
        item, src = await _one_item(cls, url_or_item, eng, opts)
        return await eng.stream(item, write, refresh=src.refresh)

    async def fetch_all() -> int:
        eng = Engine(settings, journal=False, on_event=on_event)
        try:
            if cancel is None:
                return await fetch(eng)
            return await _unless_set(cancel, asyncio.ensure_future(fetch(eng)))
        finally:
            await eng.aclose()

    if cancel is not None and cancel.is_set():  # (an error of its own: one raised again
        raise Cancelled(*_CANCELLED.args)  # keeps each raise's frames in its traceback)

    n = run(fetch_all())
    flush = getattr(out, "flush", None)  # (a writer of one's own may have none)
    if flush is not None:
        try:
            flush()
        except OSError as exc:  # (as a write that fails: its reader gone, a full disk)
            raise write_error(exc) from exc
    return n


_CANCELLED = Cancelled("interrupted: cancel was set (the bytes written stay in the output)")


async def _unless_set(cancel: threading.Event, work: asyncio.Future[int]) -> int:
    """What ``work`` returns, or Cancelled once ``cancel`` is set (looked at every
    :data:`POLL` seconds; ``work`` is cancelled then)."""
    while True:
        try:
            done, _ = await asyncio.wait({work}, timeout=POLL)
        except asyncio.CancelledError:  # (the call itself, by Ctrl+C say: as without
            work.cancel()  # cancel=, its stream stops before the engine closes)
            await asyncio.wait({work})
            if not work.cancelled():
                work.exception()  # (taken: the cancel is what is raised)
            raise
        if done:
            return work.result()
        if cancel.is_set():
            work.cancel()
            try:
                return await work  # (it ended before the cancel reached it)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise
                raise Cancelled(*_CANCELLED.args) from None


def _whole_writes(out: Writer) -> Callable[[bytes], None]:
    """``out.write`` again with what a write did not take, until it took every byte (an
    unbuffered file, as ``open(name, "wb", buffering=0)`` or a socket's, may take a part).
    Each write gets bytes, as :class:`Writer` says (the rest is a copy: seldom made)."""

    def write(data: bytes) -> None:
        while data:
            took = out.write(data)
            if type(took) is not int or took >= len(data):  # (None: it says nothing of it)
                return
            if took <= 0:
                raise OSError(errno.EIO, "the output took none of the bytes written to it")
            data = data[took:]

    return write


async def _one_item(
    cls: type[Source], url: str, eng: Engine, options: Mapping[str, object]
) -> tuple[Item, Source]:
    """The item behind ``url`` for :func:`stream` and its source, made with ``options``
    (whose requests go through the engine's transports); UsageError unless there is
    exactly one."""
    src = cls(url, source_context(eng.settings, eng.transports(), options), **options)
    known = src.items_at_once()
    items = list(known) if known is not None else [item async for item in src.items()]
    if len(items) != 1:
        raise UsageError(f"omniget.stream() needs a URL that gives one file; {url!r} gives "
                         f"{len(items)} (use omniget.download)")
    return items[0], src
