"""The public API: ``extract`` / ``aextract`` describe, ``download`` / ``adownload`` fetch,
``stream`` writes one URL to a binary stream. The sync functions are thin wrappers that
drive the async core."""

from __future__ import annotations

import asyncio
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
)
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from .engine import Engine, FileResult, Report
from .engine.events import EventHandler, Failed, Listed, Queued, ignore
from .engine.transports.base import Transport
from .errors import OmnigetError, UsageError, nearest
from .model import Item, unextracted
from .settings import Settings
from .sources import find_source
from .sources.base import (
    Reach,
    Source,
    SourceContext,
    option_problem,
    source_context,
    with_origin,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from .engine.transports.http import CurlTransport

__all__ = ["adownload", "aextract", "download", "extract", "stream"]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds a list in memory is resolved ahead of its first file when events are listened
#: to (a display): the rest is resolved as files go (50,000 URLs took ~1.5 s).
RESOLVE_AHEAD = 0.02


def _default_transports(settings: Settings) -> dict[str, CurlTransport]:
    from .engine.transports.http import CurlTransport

    http = CurlTransport(
        settings.network,
        max_host_connections=settings.connections_per_host,
        max_total_connections=settings.max_connections,
    )
    return {"http": http, "https": http}


async def aextract(
    url: str,
    *,
    source: str | None = None,
    settings: Settings | None = None,
    transports: Mapping[str, Transport] | None = None,
    **options: object,
) -> AsyncGenerator[Item, None]:
    """Yield the items behind ``url``, lazily (no request before the first item is asked)."""
    _check_url(url, "aextract")
    cls = find_source(url, source)
    _check_options(cls, options, "aextract")
    settings = settings or Settings()
    own = transports is None
    tr = transports if transports is not None else _default_transports(settings)
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
    """Items behind ``url`` as a lazy generator. An unknown URL fails at once
    (:class:`~omniget.errors.UnsupportedURL`); requests happen while iterating, and
    none once the generator is closed (``close()``, a ``break`` that drops it). An item
    whose source refreshes expiring URLs carries its ``origin``: ``download(items)``
    later has that source refresh it."""
    _check_url(url, "extract")
    _check_options(find_source(url, source), options, "extract")  # fail fast, no request
    _not_in_a_loop("extract", "aextract")
    settings = settings or Settings()
    transports = _default_transports(settings)  # (no I/O until an item is asked for)
    agen = aextract(url, source=source, settings=settings, transports=transports, **options)
    return _drive(agen, transports)


def _extract_each(
    entries: Iterable[str | Item],
    *,
    source: str | None,
    settings: Settings,
    source_options: Mapping[str, Mapping[str, object]],
) -> Generator[tuple[str | Item, Item | OmnigetError], None, None]:
    """Each entry's items in order, lazily, as ``extract`` gives them, each as (entry,
    item); an entry's failure as (entry, error), and the rest goes on (an Item entry is
    its own item). ``source_options``: each source's options, by its name. One set of
    transports serves every URL; items known without a request need no loop, and the
    listings that do share one, made when first needed (a loop and transports per URL
    cost ~0.5 ms each)."""
    contexts: dict[str, SourceContext] = {}  # one per source, as in adownload
    transports: dict[str, CurlTransport] = {}  # made at the first URL, as extract's own
    unusable: OmnigetError | None = None  # why they could not be made (--ca-cert, say)
    pending: list[Source] = []  # the next source for the listings to list
    listings: Generator[Item | OmnigetError | None, None, None] | None = None
    try:
        for entry in entries:
            if isinstance(entry, Item):
                yield entry, entry
                continue
            _check_url(entry, "extract")
            try:
                cls = find_source(entry, source)
                opts = source_options.get(cls.name, {})
                _check_options(cls, opts, "extract")
                if not transports and unusable is None:
                    try:
                        transports.update(_default_transports(settings))
                    except OmnigetError as exc:
                        unusable = exc
                if unusable is not None:  # (each URL fails so, as with extract)
                    yield entry, unusable
                    continue
                ctx = contexts.get(cls.name)
                if ctx is None:
                    ctx = contexts[cls.name] = source_context(settings, transports, opts)
                src = cls(entry, ctx, **opts)
                known = src.items_at_once()
            except OmnigetError as exc:
                yield entry, exc
                continue
            if known is not None:
                mark = with_origin(src)
                for item in known:
                    yield entry, item if mark is None else mark(item)
                continue
            if listings is None:
                listings = _drive(_listings(pending.pop), transports)
            pending.append(src)
            for got in listings:
                if got is None:  # its listing ended
                    break
                yield entry, got
    finally:
        if listings is not None:
            listings.close()
        else:  # (made, never used: nothing to wait for)
            for transport in {id(t): t for t in transports.values()}.values():
                transport.close()


async def _listings(
    next_source: Callable[[], Source],
) -> AsyncGenerator[Item | OmnigetError | None, None]:
    """The items of source after source (``next_source()`` each time), each listing
    ended by None; a listing's failure is given as its error, and the next one goes on."""
    while True:
        src = next_source()
        mark = with_origin(src)
        try:
            async for item in src.items():
                yield item if mark is None else mark(item)
        except OmnigetError as exc:
            yield exc
        yield None


def _check_options(cls: type[Source], options: Mapping[str, object], name: str) -> None:
    """A keyword argument the source does not take is a typo, never silently ignored."""
    problem = option_problem(cls, options, ("source", "settings", "transports"))
    if problem is not None:
        raise TypeError(f"omniget.{name}(): {problem}")


def _check_source_options(
    tables: Mapping[str, Mapping[str, object]] | None, name: str
) -> None:
    """``source_options`` of download: each known source's table holds only options it
    takes; a name close to a source's is a typo. (Other names are kept: the CLI passes
    tables for sources not installed here, such as GOFILE_TOKEN's.)"""
    if not tables:
        return
    from .sources import source_classes  # (looked up here: tests add a source)

    known = {cls.name: cls for cls in source_classes()}
    for table, options in tables.items():
        cls = known.get(table)
        if cls is None:
            near = nearest(table.lower(), known)  # (names are lower case: HTTP is http)
            if near is not None:
                raise ValueError(f"omniget.{name}(): source_options[{table!r}]: no source "
                                 f"is called {table!r}; did you mean {near!r}?")
            continue
        if not isinstance(options, Mapping):
            raise TypeError(f"omniget.{name}(): source_options[{table!r}] is a mapping of "
                            f"option names to values, not {type(options).__name__}")
        problem = option_problem(cls, options)
        if problem is not None:
            raise ValueError(f"omniget.{name}(): source_options[{table!r}]: {problem}")


def _drive(
    agen: AsyncGenerator[T, None], transports: Mapping[str, CurlTransport]
) -> Generator[T, None, None]:
    """``agen``'s items, driven on a loop of its own; ``transports`` (agen's) close
    when it ends."""
    loop = asyncio.new_event_loop()
    helper: ThreadPoolExecutor | None = None

    def run(call: Callable[[], R]) -> R:
        """``call`` (it runs ``loop``) here; on a helper thread when this thread's own
        loop is running (``download(extract(url))``: download's loop asks for the items)."""
        nonlocal helper
        if not _loop_running():
            return call()
        if helper is None:
            from concurrent.futures import ThreadPoolExecutor  # (rare: not at start-up)

            helper = ThreadPoolExecutor(1, thread_name_prefix="omniget-extract")
        return helper.submit(call).result()

    def close() -> None:
        # Nothing more of the listing is wanted: the source's own tasks (the next page,
        # asked for ahead) stop, and the transports close before the loop runs again (a
        # request they have queued would leave on its next turn).
        for task in asyncio.all_tasks(loop):
            task.cancel()
        for transport in {id(t): t for t in transports.values()}.values():
            transport.close()
        try:
            loop.run_until_complete(agen.aclose())
        except asyncio.CancelledError:  # (the source awaited one of them as it closed)
            pass
        _settle(loop)
        loop.close()

    try:
        while True:
            try:
                yield run(lambda: loop.run_until_complete(agen.__anext__()))
            except StopAsyncIteration:
                return
    finally:
        try:
            run(close)
        finally:
            if helper is not None:
                helper.shutdown()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


SETTLE_WAIT = 1.0  # seconds a source's leftover tasks get to end when extract is closed


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Let generators left mid-way inside a source (its pages, say) close on this loop:
    each one dropped schedules its own close as a task, which may drop the next one.
    Unsettled, they are torn down on a closed loop ("Task was destroyed but it is
    pending!")."""
    loop.run_until_complete(loop.shutdown_asyncgens())
    for _ in range(16):  # one link of such a chain per round
        loop.run_until_complete(asyncio.sleep(0))  # scheduled closes become tasks
        pending = asyncio.all_tasks(loop)
        if not pending:
            return
        done, left = loop.run_until_complete(asyncio.wait(pending, timeout=SETTLE_WAIT))
        if left:  # a task of the source's own that does not end by itself
            for task in left:
                task.cancel()
            done |= loop.run_until_complete(asyncio.wait(left))[0]
        for task in done:  # (their failures are of no interest now: not logged)
            if not task.cancelled():
                task.exception()
        if left:
            return


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
    """Download items (or the items behind URLs) into ``dest`` and report on each; the
    list may be an async iterable (``aextract(url)``, say). ``only``: items it returns
    False for are left out (and not reported). ``engine``: run on this engine, with its
    settings (``settings``, if given too, must be the same) and its own handler, and
    ``on_event`` besides for this run's events. Handlers and refreshing: as ``download``."""
    items_or_urls = _one_or_many(items_or_urls, "adownload")
    _check_source_options(source_options, "adownload")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(
            f"cancel= takes a threading.Event or an asyncio.Event, not {type(cancel).__name__}"
        )
    if engine is not None and settings is not None and settings != engine.settings:
        raise ValueError("omniget.adownload(): settings= and engine= disagree (the engine "
                         "downloads with its own settings: give one of them)")
    own = engine is None
    eng = engine or Engine(settings, on_event=on_event)
    settings = eng.settings  # (the sources' too)
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
            return (entry,) if only is None or only(entry) else ()
        _check_url(entry, "download")  # (a list's entries are not typed at run time)
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
        # costs a step of its own per entry); an async iterable's as they come.
        given: AsyncIterator[Item | str] | None = None
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
        else:
            found = map(take, items_or_urls)
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

    aev = _bridge(cancel)
    try:
        report = await eng.run(items(), os.fspath(dest), cancel=aev[0] if aev else None,
                               on_event=emit, refresh=refresh)
    finally:
        if aev is not None:
            aev[1].cancel()
        if own:
            await eng.aclose()
    for n, (at, result) in enumerate(failures):  # in list order: the first failure's code
        report.results.insert(min(at + n, len(report.results)), result)
    return report


def _bridge(
    cancel: threading.Event | asyncio.Event | None,
) -> tuple[asyncio.Event, asyncio.Task[None]] | None:
    """An asyncio.Event mirroring a threading.Event (polled; set from any thread)."""
    if cancel is None:
        return None
    aev = asyncio.Event()

    async def poll() -> None:
        while True:
            if cancel.is_set():
                aev.set()
                return
            await asyncio.sleep(0.05)

    return aev, asyncio.get_running_loop().create_task(poll())


def download(
    items_or_urls: Iterable[Item | str] | str,
    dest: str | os.PathLike[str] = ".",
    *,
    settings: Settings | None = None,
    on_event: EventHandler | None = None,
    cancel: threading.Event | None = None,
    source: str | None = None,
    source_options: Mapping[str, Mapping[str, object]] | None = None,
    only: Callable[[Item], bool] | None = None,
) -> Report:
    """Download and return a :class:`~omniget.engine.Report`; ``cancel.set()`` stops it,
    keeping resumable state (unfinished files fail with ``Cancelled``). ``only``: items it
    returns False for are left out. Items extracted earlier are refreshed by their source
    (their ``origin``). ``on_event``: an exception it raises is logged once and is the
    report's ``handler_error`` (the download goes on); a KeyboardInterrupt it raises stops
    the run as Ctrl+C does, keeping resumable state, and is raised here."""
    _not_in_a_loop("download", "adownload")
    _check_source_options(source_options, "download")
    return asyncio.run(
        adownload(
            _one_or_many(items_or_urls, "download"),
            dest,
            settings=settings,
            on_event=on_event,
            cancel=cancel,
            source=source,
            source_options=source_options,
            only=only,
        )
    )


def _one_or_many(
    items_or_urls: Iterable[Item | str] | AsyncIterable[Item | str] | str | Item, name: str
) -> Iterable[Item | str] | AsyncIterable[Item | str]:
    """One URL or item as a list of one (a str is no list of URLs); bytes refused."""
    if isinstance(items_or_urls, str | Item):
        return [items_or_urls]
    if isinstance(items_or_urls, bytes | bytearray):
        _check_url(items_or_urls, name)
    return items_or_urls


def _check_url(url: object, name: str) -> None:
    """A URL is a str: anything else fails here, named, not deep inside a source."""
    if not isinstance(url, str):
        raise TypeError(f"omniget.{name}(): a URL is a str, not {type(url).__name__}: {url!r}")


def _not_in_a_loop(name: str, instead: str) -> None:
    """The blocking forms run their own event loop: not from inside a running one.
    ``instead``: the async form's name, or a call to await (stream() has no async form)."""
    if not _loop_running():
        return
    instead = f"await {instead}" if "(" in instead else f"omniget.{instead}()"
    raise RuntimeError(f"omniget.{name}() blocks; inside an event loop use {instead} instead")


def stream(
    url_or_item: str | Item,
    out: BinaryIO,
    *,
    settings: Settings | None = None,
    on_event: EventHandler | None = None,
    source: str | None = None,
    source_options: Mapping[str, Mapping[str, object]] | None = None,
) -> int:
    """Write one URL's bytes in order to ``out``; returns how many were written.
    ``on_event`` sees its start, progress, end, retries and warnings (their path: None).
    A URL is the one item its source gives (a URL no source takes fails at once:
    :class:`~omniget.errors.UnsupportedURL`, as in ``extract``); an item made of pieces is
    refused (UsageError). ``source``: use the source of that name instead of guessing;
    ``source_options``: each source's options, by its name (a password, say), checked
    before any request as ``download`` checks them (an item needs neither: its source is
    reached by its origin). An expiring URL is renewed by its source (on a 403 or 410, or
    near its known expiry), as in ``download``. It blocks: inside an event loop, run it
    on a thread (``await asyncio.to_thread(omniget.stream, url, out)``)."""
    _not_in_a_loop("stream", "asyncio.to_thread(omniget.stream, ...)")
    _check_source_options(source_options, "stream")
    cls: type[Source] | None = None
    opts: Mapping[str, object] = {}
    if not isinstance(url_or_item, Item):
        _check_url(url_or_item, "stream")
        cls = find_source(url_or_item, source)  # fail fast, without any request
        opts = (source_options or {}).get(cls.name, {})

    async def run() -> int:
        eng = Engine(settings, journal=False, on_event=on_event)
        try:
            if isinstance(url_or_item, Item):
                return await eng.stream(url_or_item, out.write)
            assert cls is not None
            item, src = await _one_item(cls, url_or_item, eng, opts)
            return await eng.stream(item, out.write, refresh=src.refresh)
        finally:
            await eng.aclose()

    n = asyncio.run(run())
    out.flush()
    return n


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
