"""The public surface: exports, laziness of extract, errors raised early."""

from __future__ import annotations

import asyncio
import gc
import inspect
import io
import logging
import typing
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from tests.servers.httpd import HTTPServer

import omniget
import omniget.drive
from omniget.engine import Engine
from omniget.engine.events import Event, Finished, Progress, Started
from omniget.engine.retry import FakeClock


def test_all_is_exact_and_sorted() -> None:
    public = {n for n in dir(omniget) if not n.startswith("_")} | {"__version__"}
    modules = {n for n in public if inspect.ismodule(getattr(omniget, n, None))}
    assert set(omniget.__all__) == public - modules
    assert omniget.__all__ == sorted(omniget.__all__)


def test_extract_is_lazy_and_megaloader_shaped() -> None:
    gen = omniget.extract("https://example.test/files/a.bin")
    assert inspect.isgenerator(gen)
    # (mypy narrows gen to GeneratorType[object, ...]: its items are still Items)
    item = cast(omniget.Item, next(gen))
    assert (item.download_url, item.filename, item.size_bytes) == (
        "https://example.test/files/a.bin",
        "a.bin",
        None,
    )
    assert item.collection_name is None and item.source_id is None and dict(item.headers) == {}
    assert list(gen) == []


def test_extract_unknown_url_fails_at_once() -> None:
    with pytest.raises(omniget.UnsupportedURL):
        omniget.extract("not a url")


def test_error_tree_exit_codes() -> None:
    codes = {
        omniget.UsageError: 2,
        omniget.UnsupportedURL: 2,
        omniget.NotFound: 6,
        omniget.AuthRequired: 5,
        omniget.RateLimited: 3,
        omniget.Refused: 8,
        omniget.ParseError: 1,
        omniget.TransientError: 3,
        omniget.RemoteError: 3,
        omniget.RemoteNotFound: 6,
        omniget.IntegrityError: 4,
        omniget.StorageError: 7,
        omniget.Cancelled: 130,
    }
    for cls, code in codes.items():
        assert issubclass(cls, omniget.OmnigetError)
        assert cls("x").exit_code == code
    assert omniget.TransientError("x").retryable and not omniget.RemoteError("x").retryable


def test_a_404_is_a_not_found_for_library_callers() -> None:
    """``except omniget.NotFound`` catches a removed file whether a source or the
    transfer found it gone."""
    err = omniget.RemoteNotFound("not found (HTTP 404 from http://h/x)", status=404)
    assert isinstance(err, omniget.NotFound) and isinstance(err, omniget.RemoteError)
    assert isinstance(err, omniget.TransferError) and isinstance(err, omniget.SourceError)
    assert (err.exit_code, err.status, err.item, err.url) == (6, 404, None, "")
    assert str(err) == "not found (HTTP 404 from http://h/x)" and not err.retryable


@pytest.mark.parametrize(("after", "says"), [("3600", "1 h"), ("date:90000", "25 h")])
def test_a_retry_after_beyond_the_retry_time_is_named_by_the_failure(
    httpd: HTTPServer, tmp_path: Path, after: str, says: str
) -> None:
    """A server asking for more time than the retries may take fails the file at once
    (retries 5 or not); the error says what the server asked for, that it gave up, and
    what to raise. Before: "HTTP 503 from URL" alone, no retry made, and nothing to tell
    why."""
    path = httpd.new_path("busy.bin")
    httpd.add(path, b"x" * 100)
    url = httpd.url(path, status=503, retry_after=after)
    report = omniget.download(url, tmp_path, settings=omniget.Settings(
        state_dir=tmp_path / "state", retries=5))
    (failed,) = report.failures
    assert str(failed.error) == (
        f"HTTP 503 from {url} (Retry-After: {says}): gave up at once: a file waits at most"
        " 5 min in all (retry-max-time); run again later, or raise retry-max-time and"
        f" retry-max-wait above {says}")
    assert len(httpd.requests_to(path)) == 1


def test_extract_left_midway_closes_a_source_s_inner_generators(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # `omniget list ... | head -1` stops after one item: a source paging through an inner
    # async generator must be closed on extract's loop, not by the garbage collector on a
    # closed loop ("Task was destroyed but it is pending!").
    import gc

    closed: list[str] = []

    class Paged:
        async def pages(self) -> AsyncIterator[int]:
            try:
                for n in range(3):
                    yield n
            finally:
                closed.append("pages")

        async def items(self) -> AsyncIterator[omniget.Item]:
            async for n in self.pages():
                yield omniget.Item(f"https://example.test/{n}.bin")

    monkeypatch.setattr(omniget.api, "find_source", lambda *a: lambda *a, **k: Paged())
    gen = omniget.extract("https://example.test/album")
    assert next(gen).filename == "0.bin"
    gen.close()
    gc.collect()
    assert closed == ["pages"]
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


def test_extract_never_iterated_or_dropped_midway_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``extract``/``aextract`` made and dropped unread start no source; one dropped
    half-way (garbage-collected, not closed) closes the source's generators on its own
    loop, and neither leaves a descriptor or thread behind."""
    import asyncio
    import gc
    import os
    import threading

    began: list[int] = []
    closed: list[int] = []

    class Paged:
        async def items(self) -> AsyncIterator[omniget.Item]:
            began.append(1)
            try:
                for n in range(3):
                    yield omniget.Item(f"https://example.test/{n}.bin")
            finally:
                closed.append(1)

    monkeypatch.setattr(omniget.api, "find_source", lambda *a: lambda *a, **k: Paged())
    gc.collect()
    # (threads as a set: one of an earlier test may end meanwhile; a count then drops)
    fds, threads = set(os.listdir("/proc/self/fd")), set(threading.enumerate())
    for _ in range(20):
        omniget.extract("https://example.test/album")
        omniget.aextract("https://example.test/album")
    gc.collect()
    assert began == []
    for _ in range(20):
        gen = omniget.extract("https://example.test/album")
        assert next(gen).filename == "0.bin"
        del gen
    gc.collect()
    assert (len(began), len(closed)) == (20, 20)

    async def half_way() -> None:
        agen = omniget.aextract("https://example.test/album")
        assert (await anext(agen)).filename == "0.bin"
        await agen.aclose()

    asyncio.run(half_way())
    gc.collect()
    assert (len(began), len(closed)) == (21, 21)
    assert set(os.listdir("/proc/self/fd")) <= fds and set(threading.enumerate()) <= threads
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_extract_left_midway_cancels_a_source_task_that_never_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    state: dict[str, object] = {}

    class Chatty:
        async def items(self) -> AsyncIterator[omniget.Item]:
            state["task"] = asyncio.get_running_loop().create_task(asyncio.Event().wait())
            yield omniget.Item("https://example.test/a.bin")
            yield omniget.Item("https://example.test/b.bin")

    monkeypatch.setattr(omniget.api, "find_source", lambda *a: lambda *a, **k: Chatty())
    monkeypatch.setattr(omniget.drive, "SETTLE_WAIT", 0.01)
    gen = omniget.extract("https://example.test/album")
    next(gen)
    gen.close()  # returns: the stray task is cancelled, not waited for
    task = state["task"]
    assert isinstance(task, asyncio.Task) and task.cancelled()


def test_blocking_forms_inside_an_event_loop_name_the_async_ones(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """stream() inside a loop failed with asyncio's "asyncio.run() cannot be called from a
    running event loop" and a warning "coroutine 'stream.<locals>.run' was never
    awaited"; it has no async form: it says to run it on a thread."""

    async def inside() -> list[str]:
        said = []
        for call in (
            lambda: omniget.download(["http://127.0.0.1:9/x"], tmp_path),
            lambda: omniget.extract("http://127.0.0.1:9/x"),
            lambda: omniget.stream("http://127.0.0.1:9/x", io.BytesIO()),
        ):
            with pytest.raises(RuntimeError) as err:
                call()
            said.append(str(err.value))
        out = io.BytesIO()  # (what stream() says to do instead)
        await asyncio.to_thread(omniget.stream, httpd.add(httpd.new_path("s.bin"), b"s"), out)
        assert out.getvalue() == b"s"
        return said

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        said = asyncio.run(inside())
        gc.collect()
    assert not [w for w in warned if "never awaited" in str(w.message)]
    assert "adownload()" in said[0] and "aextract()" in said[1]
    assert "asyncio.to_thread(omniget.stream" in said[2]
    assert list(tmp_path.iterdir()) == []


def test_a_url_no_source_takes_fails_in_list_order(tmp_path: Path) -> None:
    """The first failure's exit code is the run's: a URL no source takes, listed first,
    comes first among the results (it was put after the files)."""
    report = omniget.download(
        ["ftp-ish://x/y", "http://127.0.0.1:9/nope.bin"],
        tmp_path,
        settings=omniget.Settings(state_dir=tmp_path / "state", retries=0),
    )
    assert [r.item.download_url for r in report.results] == [
        "ftp-ish://x/y",
        "http://127.0.0.1:9/nope.bin",
    ]
    assert report.exit_code == 2


def test_each_entry_of_a_mixed_list_ends_once_in_list_order(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Every entry (a file, a 404, a URL no source takes, a blank line, the same URL
    again, a bad URL, a file that is there) has one result, in list order, and one end
    among the events (Finished, Failed or Skipped); the report's counts and bytes are its
    results' sums, and a failure's error is of the error tree, saying which URL."""
    from omniget.engine.events import Failed, Skipped

    good = httpd.add(httpd.new_path("good.bin"), b"g" * 1000)
    there = httpd.add(httpd.new_path("there.bin"), b"t" * 10)
    gone = httpd.url(httpd.new_path("gone.bin"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "there.bin").write_bytes(b"t" * 10)
    entries = [good, gone, "gopher://x/y", "", good, "http://[bad", there]
    events: list[Event] = []
    report = omniget.download(entries, tmp_path / "out", on_event=events.append,
                              settings=omniget.Settings(state_dir=tmp_path / "state",
                                                        retries=0))
    assert [r.item.download_url for r in report.results] == entries
    assert [r.status for r in report.results] == [
        "ok", "failed", "failed", "failed", "skipped", "failed", "skipped"]
    ends = [ev for ev in events if isinstance(ev, (Finished, Failed, Skipped))]
    assert sorted(ev.item.download_url for ev in ends) == sorted(entries)
    assert [type(r.error).__name__ for r in report.failures] == [
        "RemoteNotFound", "UnsupportedURL", "UnsupportedURL", "UsageError"]
    assert gone in str(report.failures[0].error)
    assert all(isinstance(r.error, omniget.OmnigetError) for r in report.failures)
    assert (report.ok, report.failed, report.skipped) == (1, 4, 2)
    assert report.fetched == sum(r.fetched for r in report.results) == 1000
    assert report.exit_code == 6 and not report.succeeded


def test_a_url_whose_port_is_no_number_says_so_without_its_password(tmp_path: Path) -> None:
    """The error names the URL as the transports' errors do, its user:password left out
    (a program logs its results' errors as they are; the CLI masks, a library does not)."""
    url = "http://bob:hunter2@127.0.0.1:abc/a.bin"
    report = omniget.download(
        url, tmp_path, settings=omniget.Settings(state_dir=tmp_path / "state", retries=0)
    )
    [result] = report.results
    assert report.exit_code == 2
    assert str(result.error) == ("not a valid URL: the port 'abc' is not a number "
                                 "(in 'http://127.0.0.1:abc/a.bin')")


def test_a_failing_on_event_handler_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(event: object) -> None:
        calls.append(event)
        raise ValueError("oops in my handler")

    report = omniget.download(
        ["http://127.0.0.1:9/a.bin", "http://127.0.0.1:9/b.bin"],
        tmp_path,
        settings=omniget.Settings(state_dir=tmp_path / "state", retries=0),
        on_event=broken,
    )
    assert report.failed == 2 and len(calls) >= 2  # (the download went on)
    said = [r for r in caplog.records if "on_event handler failed" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None


def test_adownload_takes_one_url_as_download_does(tmp_path: Path) -> None:
    """A str is one URL, not a list of one-letter ones (was: a failure per letter)."""
    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0)
    report = asyncio.run(omniget.adownload("http://127.0.0.1:9/a.bin", tmp_path / "out",
                                           settings=settings))
    assert [r.item.download_url for r in report.results] == ["http://127.0.0.1:9/a.bin"]


# (wrong on purpose: typed Any so that mypy lets the calls through)
BYTES_URL: Any = b"http://127.0.0.1:9/a"
NOT_AN_EVENT: Any = True
NOT_A_URL: Any = 42
URL_LIST: Any = ["http://127.0.0.1:9/a.bin"]


def _settings(d: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=d / "state", retries=0)


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda d: omniget.download(BYTES_URL, d, settings=_settings(d)), "str, not bytes"),
        (lambda d: omniget.download([NOT_A_URL], d, settings=_settings(d)), "str, not int"),
        (lambda d: omniget.download(["http://127.0.0.1:9/a"], d, cancel=NOT_AN_EVENT),
         "Event, not True"),
        (lambda d: omniget.extract(URL_LIST), "a URL is a str, not list"),
    ],
)
def test_arguments_of_the_wrong_type_are_named(
    tmp_path: Path, call: Callable[[Any], object], said: str
) -> None:
    with pytest.raises(TypeError, match=said):
        call(tmp_path)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda d: omniget.extract("http://127.0.0.1:9/a", setings=_settings(d)),
         r"omniget.extract\(\): unknown option 'setings' \(the http source takes: none\); "
         r"did you mean 'settings'\?"),
        (lambda d: asyncio.run(anext(omniget.aextract("http://127.0.0.1:9/a", sorce="http"))),
         r"omniget.aextract\(\): unknown option 'sorce' .*; did you mean 'source'\?"),
        (lambda d: omniget.extract("https://site.test/a", tokn="t"),
         r"unknown option 'tokn' \(the site source takes: token, password, max_pages\); "
         r"did you mean 'token'\?"),
    ],
)
def test_an_option_no_source_takes_is_a_type_error(
    site_source: type[object], tmp_path: Path, call: Callable[[Path], object], said: str
) -> None:
    """A typo in an option was silently ignored (sources declared no options)."""
    with pytest.raises(TypeError, match=said):
        call(tmp_path)


def test_options_a_source_takes_reach_it(site_source: type[object]) -> None:
    (item,) = omniget.extract("https://site.test/a.bin", token="t", max_pages=2)
    assert dict(item.meta) == {"token": "t", "max_pages": 2}


def test_source_options_of_download_are_checked_before_any_request(
    site_source: type[object], httpd: HTTPServer, tmp_path: Path
) -> None:
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    cases: list[tuple[dict[str, dict[str, object]], str]] = [
        ({"http": {"max_page": 1}}, r"source_options\['http'\]: unknown option 'max_page'"),
        ({"site": {"pasword": "p"}}, r"source_options\['site'\]: .*did you mean 'password'"),
        ({"htp": {}}, r"no source is called 'htp'; did you mean 'http'\?"),
        ({"HTTP": {"x": 1}}, r"no source is called 'HTTP'; did you mean 'http'\?"),
    ]
    for tables, said in cases:
        with pytest.raises(ValueError, match=said):
            omniget.download([url], tmp_path / "out", settings=_settings(tmp_path),
                             source_options=tables)
        with pytest.raises(ValueError, match=said.replace("download", "adownload")):
            asyncio.run(omniget.adownload([url], tmp_path / "out", settings=_settings(tmp_path),
                                          source_options=tables))
    assert httpd.requests == [] and not (tmp_path / "out").exists()
    # a table for a source not installed here (GOFILE_TOKEN's, say) is left alone
    report = omniget.download([url], tmp_path / "out", settings=_settings(tmp_path),
                              source_options={"gofile": {"token": "t"}, "site": {"token": "t"}})
    assert report.ok == 1


@pytest.mark.parametrize(
    ("url", "error"),
    [("not a url", omniget.UnsupportedURL), ("ftp://127.0.0.1:9/x", omniget.UnsupportedURL),
     ("http://127.0.0.1:99999/x", omniget.UsageError)],
)
def test_stream_of_a_url_no_source_takes_fails_as_extract_does(
    url: str, error: type[omniget.OmnigetError]
) -> None:
    """Was: a RemoteError from the transport (exit 3, a network failure, for a typo)."""
    out = io.BytesIO()
    with pytest.raises(error) as e:
        omniget.stream(url, out)
    assert e.value.exit_code == 2 and out.getvalue() == b""


def test_stream_of_a_url_writes_the_item_its_source_gives(httpd: HTTPServer) -> None:
    url = httpd.add(httpd.new_path("s.bin"), b"streamed")
    out = io.BytesIO()
    assert omniget.stream(url, out) == 8 and out.getvalue() == b"streamed"


def test_stream_tells_its_start_progress_and_end(httpd: HTTPServer) -> None:
    """Before: a stream's handler saw only retries and warnings, so `-O -` had nothing to
    show a progress bar with."""
    data = bytes(range(256)) * 1024
    url = httpd.add(httpd.new_path("s.bin"), data)
    clock, out = FakeClock(), bytearray()
    events: list[Event] = []

    def write(chunk: bytes) -> None:
        out.extend(chunk)
        clock.advance(1)  # (every write is a Progress event's time)

    async def go() -> int:
        eng = Engine(journal=False, clock=clock, on_event=events.append)
        try:
            return await eng.stream(omniget.Item(download_url=url), write)
        finally:
            await eng.aclose()

    assert asyncio.run(go()) == len(data) and out == data
    first, *middle, last = events
    assert isinstance(first, Started) and (first.size, first.path) == (len(data), None)
    assert middle and all(isinstance(e, Progress) and e.size == len(data) for e in middle)
    done = [cast(Progress, e).done for e in middle]
    assert done == sorted(done) and done[-1] <= len(data)
    assert isinstance(last, Finished)
    assert (last.size, last.verified, last.fetched) == (len(data), "size", len(data))


def test_adownload_on_a_given_engine_hands_the_run_s_events_to_on_event(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Was: ``on_event`` ignored when ``engine=`` was given (the engine's handler only)."""
    url = httpd.add(httpd.new_path("e.bin"), b"x" * 100)
    mine: list[object] = []
    engines: list[object] = []

    async def run() -> omniget.Report:
        eng = Engine(_settings(tmp_path), on_event=engines.append)
        try:
            return await omniget.adownload([url, "gopher://127.0.0.1:9/y"], tmp_path / "out",
                                           engine=eng, on_event=mine.append)
        finally:
            await eng.aclose()

    report = asyncio.run(run())
    assert (report.ok, report.failed) == (1, 1)
    kinds = [type(e).__name__ for e in mine]
    assert "Started" in kinds and "Finished" in kinds and "Failed" in kinds
    assert [type(e).__name__ for e in engines] == kinds  # (the engine's handler as well)


def test_adownload_refuses_settings_that_are_not_its_engine_s(tmp_path: Path) -> None:
    """Was: the engine's settings used for the download, the others for the sources."""

    async def run(settings: omniget.Settings) -> omniget.Report:
        eng = Engine(_settings(tmp_path))
        try:
            return await omniget.adownload([], tmp_path, engine=eng, settings=settings)
        finally:
            await eng.aclose()

    with pytest.raises(ValueError, match="settings= and engine= disagree"):
        asyncio.run(run(omniget.Settings(retries=1)))
    assert asyncio.run(run(_settings(tmp_path))).results == []  # (the same settings: fine)


def test_a_list_of_urls_is_announced_whole_before_any_file_starts(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Was: a display learnt of a file only when it started (``3/7 files`` of 300)."""
    from omniget.engine.events import Listed, Queued, Started

    urls = [httpd.add(httpd.new_path(f"q{i}.bin"), b"x" * 10) for i in range(20)]
    events: list[Event] = []
    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0, jobs=2)
    report = omniget.download([*urls, "ftp-ish://x/y"], tmp_path / "out", settings=settings,
                              on_event=events.append)
    assert report.ok == 20
    first = next(i for i, e in enumerate(events) if isinstance(e, Started))
    queued = [e for e in events[:first] if isinstance(e, Queued)]
    assert [e.item.download_url for e in queued] == urls
    # the list counted whole from its first Queued: the entries after each one
    assert [(e.more, e.ahead) for e in queued] == [(False, 20 - i) for i in range(20)]
    assert not any(isinstance(e, Queued) for e in events[first:])
    listed = [e for e in events if isinstance(e, Listed)]  # (the last entry gave no item)
    assert [(e.item.download_url, e.more, e.ahead) for e in listed] == [
        ("ftp-ish://x/y", False, 0)
    ]


def test_items_of_a_list_read_as_it_goes_are_announced_as_they_come(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    from omniget.engine.events import Queued

    urls = [httpd.add(httpd.new_path(f"g{i}.bin"), b"x" * 10) for i in range(3)]
    events: list[Event] = []
    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0)
    omniget.download((u for u in urls), tmp_path / "out", settings=settings,
                     on_event=events.append)
    queued = [e for e in events if isinstance(e, Queued)]
    assert [e.item.download_url for e in queued] == urls
    assert all(e.more for e in queued)  # (a generator: more may always come)


def test_a_file_skipped_as_already_there_reports_its_size(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Before: size 0 (the skip had the file's lstat in hand)."""
    url = httpd.add(httpd.new_path("there.bin"), b"x" * 1234)
    path = httpd.new_path("n.bin")
    httpd.add(path, b"y" * 99)
    named = httpd.url(path, cd="named.bin")  # (a name the server gives)
    settings = _settings(tmp_path)
    assert omniget.download([url, named], tmp_path / "out", settings=settings).ok == 2
    report = omniget.download([url, named], tmp_path / "out", settings=settings)
    got = [(r.status, r.reason, r.size) for r in report.results]
    assert got == [("skipped", "exists", 1234), ("skipped", "exists", 99)]
    assert report.fetched == 0


def test_a_long_list_starts_its_first_file_before_every_entry_is_resolved(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """With a listener (a terminal's bars), 50,000 URLs were all resolved and announced
    before the first request (~1.5 s of waiting; 5,000: ~0.25 s). The first Queued counts
    the whole list; the rest is resolved as files go."""
    import threading

    from omniget.engine.events import Queued, Started

    first = httpd.add(httpd.new_path("first.bin"), b"x" * 10)
    urls = [first, *(httpd.url(f"/none/{i}.bin") for i in range(30_000))]
    events: list[Event] = []
    stop = threading.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, Started):
            stop.set()

    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0, jobs=1)
    omniget.download(urls, tmp_path / "out", settings=settings, on_event=on_event, cancel=stop)
    queued = [e for e in events if isinstance(e, Queued)]
    assert (queued[0].item.download_url, queued[0].ahead) == (first, 30_000)
    started = next(i for i, e in enumerate(events) if isinstance(e, Started))
    assert len([e for e in events[:started] if isinstance(e, Queued)]) < 30_000


def test_a_list_resolved_as_files_go_keeps_its_count(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries resolved once files have started: each Queued and Listed says how many are
    still to come (a URL no source takes and an item left out included), so a display's
    count stays whole."""
    from omniget.cli.tally import Tally
    from omniget.engine.events import Listed, Queued, Started

    monkeypatch.setattr(omniget.api, "RESOLVE_AHEAD", 0.0)  # (all but the first as files go)
    urls = [httpd.add(httpd.new_path(f"r{i}.bin"), b"x" * 10) for i in range(8)]
    given = [*urls[:6], "ftp-ish://x/y", *urls[6:]]
    events: list[Event] = []
    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0, jobs=1)
    report = omniget.download(given, tmp_path / "out", settings=settings,
                              on_event=events.append, only=lambda i: i.download_url != urls[6])
    assert report.ok == 7 and report.failed == 1
    told = [(type(e).__name__, e.item.download_url, e.ahead) for e in events
            if isinstance(e, Queued | Listed)]
    assert told == [*(("Queued", url, 8 - i) for i, url in enumerate(urls[:6])),
                    ("Listed", "ftp-ish://x/y", 2), ("Listed", urls[6], 1),
                    ("Queued", urls[7], 0)]
    started = next(i for i, e in enumerate(events) if isinstance(e, Started))
    assert any(isinstance(e, Queued | Listed) for e in events[started:])  # (as files go)
    tally = Tally(lambda: 0.0)
    seen = []
    for event in events:
        tally(event, "name")
        if isinstance(event, Queued | Listed):
            seen.append(tally.seen)
    assert seen == [9] * 7 + [8, 8]  # (the item left out is not one of the run's)
    assert (tally.ended, tally.more) == (8, False)


def test_a_source_s_listing_that_ended_completes_the_list(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items a source finds as it goes are Queued with ``more``; before, nothing said when
    its listing ended, and the bars' count kept its "+" (``3/3+``) until the run's end."""
    import omniget.sources as registry
    from omniget.cli.tally import Tally
    from omniget.engine.events import Listed, Queued
    from omniget.sources.base import Source

    files = [httpd.add(httpd.new_path(f"g{i}.bin"), b"x" * 10) for i in range(3)]

    class Growing(Source):
        name = "growing"
        patterns = (r"^https?://grow\.test/",)
        examples = ("https://grow.test/x",)

        async def items(self) -> AsyncIterator[omniget.Item]:
            for url in files:
                await asyncio.sleep(0)
                yield omniget.Item(url)

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (Growing, *builtin))
    plain = httpd.add(httpd.new_path("plain.bin"), b"y" * 10)
    events: list[Event] = []
    report = omniget.download(["https://grow.test/x", plain], tmp_path / "out",
                              settings=_settings(tmp_path), on_event=events.append)
    assert report.ok == 4
    told = [(type(e).__name__, e.item.download_url, e.more) for e in events
            if isinstance(e, Queued | Listed)]
    assert told == [("Queued", plain, True), *(("Queued", url, True) for url in files),
                    ("Listed", "https://grow.test/x", False)]
    tally = Tally(lambda: 0.0)
    for event in events:
        tally(event, "name")
    assert (tally.ended, tally.seen, tally.more) == (4, 4, False)


def test_a_slow_on_event_handler_does_not_hold_the_bytes_back(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Handlers run on the download's loop: a 0.3 s one made a 2 s download take 38 s (a
    Progress event was due at every chunk after it, so one chunk came per call). Progress
    events now leave the handler a tenth of the time at most."""
    import time

    path = httpd.new_path("slow.bin")
    httpd.add(path, b"x" * 1_000_000)
    calls: list[Event] = []

    def on_event(event: Event) -> None:
        calls.append(event)
        time.sleep(0.2)

    report = omniget.download(httpd.url(path, drip=1_000_000), tmp_path / "out",
                              settings=_settings(tmp_path), on_event=on_event)
    assert report.ok == 1
    assert len([e for e in calls if isinstance(e, Progress)]) <= 2  # (was: 60 or so)
    # (1 s of bytes, 0.2 s per event, seconds more on a loaded machine: was ~13 s)
    assert report.elapsed < 8


def test_a_handler_that_blocks_longer_than_the_stall_timeout_fails_no_transfer(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The loop is held while a handler runs, so no byte is read then: that time is no
    stall of the server's (a split file with no retry left would fail else)."""
    import time

    data = bytes(range(256)) * 12_000
    url = httpd.add(httpd.new_path("held.bin"), data) + "?drip=1500000"
    held: list[Event] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Started) or (
            isinstance(event, Progress) and event.done and len(held) == 1
        ):
            held.append(event)
            time.sleep(2.5)  # (the second: bytes are coming)

    settings = omniget.Settings(
        state_dir=tmp_path / "state", retries=0, split=2, min_split_size=1_000_000,
        network=omniget.NetworkSettings(stall_timeout=1))
    report = omniget.download(url, tmp_path / "out", settings=settings, on_event=on_event)
    assert report.succeeded, report.failures
    assert len(held) == 2
    assert (tmp_path / "out" / "held.bin").read_bytes() == data


def test_download_s_type_hints_take_an_item_alone_as_its_docstring_says(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``download(item)`` worked, as its docstring says, but its hint took only a URL or an
    iterable: ``mypy --strict`` refused the call (adownload's took an Item)."""
    item = omniget.Item(httpd.add(httpd.new_path("a.bin"), b"x" * 10))
    report = omniget.download(item, tmp_path / "out", settings=_settings(tmp_path))
    assert report.ok == 1
    for call in (omniget.download, omniget.adownload):
        hint = typing.get_type_hints(call)["items_or_urls"]
        assert omniget.Item in typing.get_args(hint) and str in typing.get_args(hint)


def test_a_url_with_no_host_says_so_without_its_password(tmp_path: Path) -> None:
    url = "http://bob:hunter2@:80/a.bin"
    report = omniget.download(
        url, tmp_path, settings=omniget.Settings(state_dir=tmp_path / "state", retries=0)
    )
    [result] = report.results
    assert report.exit_code == 2
    assert str(result.error) == "not a valid URL: no host name in 'http://:80/a.bin'"
