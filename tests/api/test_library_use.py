"""The library as a newcomer uses it: against a real local server, with the mistakes and
combinations people make (a handler that raises, a list that fails, a cancelled task)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TextIO, cast

import pytest
from tests.api._leftovers import ours, threads
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine import Engine, FileResult, Report
from omniget.engine.events import Event, Failed, Finished, Progress, Skipped, Started
from omniget.model import Item
from omniget.sources.base import Source


def _settings(tmp_path: Path, **kw: object) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0, **kw)  # type: ignore[arg-type]


def _broken(event: Event) -> None:
    raise ValueError("a bug in my handler")


def test_a_raising_handler_does_not_stop_a_run_with_an_unknown_url(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure of a URL no source takes went to the handler unguarded: its exception
    ended the whole run (the other files abandoned, ``journal is closed`` noise)."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)
    caplog.set_level(logging.WARNING)
    report = omniget.download(
        [url, "gopher://x/y"], tmp_path / "out", settings=_settings(tmp_path), on_event=_broken
    )
    assert [r.status for r in report.results] == ["ok", "failed"]
    assert isinstance(report.results[1].error, omniget.UnsupportedURL)
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"a" * 1000
    said = [r for r in caplog.records if "on_event handler failed" in r.getMessage()]
    assert len(said) == 1


def test_a_raising_handler_does_not_fail_a_stream(httpd: HTTPServer) -> None:
    """stream()'s warning about an unverifiable end reached the handler unguarded: the
    bytes were all written, then stream() raised the handler's error."""
    url = httpd.add(httpd.new_path("a.bin"), b"b" * 500)
    out = io.BytesIO()
    n = omniget.stream(url + "?nolength=1", out, on_event=_broken)
    assert n == 500 and out.getvalue() == b"b" * 500


class _Halt(BaseException):
    """A BaseException of one's own (as pytest.fail() or a gevent timeout raises)."""


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, asyncio.CancelledError, _Halt])
def test_a_handler_raising_a_base_exception_stops_the_run_as_ctrl_c_does(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    raised: type[BaseException],
) -> None:
    """A KeyboardInterrupt raised by the user's on_event handler (Ctrl+C pressed while it
    ran) came out of a file's task through the event loop: download() raised it, with
    tracebacks of the tasks it left ("Task exception was never retrieved").
    A CancelledError raised by the handler (a cancelled future's result() read in it)
    passed for a cancel of the file's task: that file ended "interrupted" with no word of
    the handler (report.handler_error None), and one whose Finished event raised it was
    on the disk whole yet reported failed. Any other BaseException came out of the
    engine's midst. Now each stops the run as a KeyboardInterrupt raised there does (the
    files keep their resume state), and download() raises it."""
    data = bytes(range(256)) * 1000
    url = httpd.add(httpd.new_path("big.bin"), data) + "?drip=200000"
    small = [httpd.add(httpd.new_path(f"{n}.bin"), b"s" * 1000) for n in range(3)]

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0 and ev.item.filename == "big.bin":
            raise raised

    caplog.set_level(logging.WARNING)
    with pytest.raises(raised):
        omniget.download([url, *small], tmp_path / "out", settings=_settings(tmp_path),
                         on_event=on_event)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert (tmp_path / "out" / "big.bin.omniget-part").exists()
    started: list[Event] = []
    again = omniget.download(url, tmp_path / "out", settings=_settings(tmp_path),
                             on_event=started.append)
    assert again.ok == 1 and (tmp_path / "out" / "big.bin").read_bytes() == data
    assert [ev.resumed > 0 for ev in started if isinstance(ev, Started)] == [True]


@pytest.mark.parametrize("raised", [KeyboardInterrupt, asyncio.CancelledError])
@pytest.mark.parametrize("end", ["Finished", "Failed", "Skipped"])
def test_a_stop_raised_by_a_handler_at_a_file_s_end_leaves_that_end_alone(
    httpd: HTTPServer, tmp_path: Path, raised: type[BaseException], end: str
) -> None:
    """A KeyboardInterrupt (or CancelledError) a handler raised at a file's Finished
    event was followed by a Failed (Cancelled) one for the same file, the file whole on
    the disk: two ends for one file (a Failed, or a Skipped, by a second Failed)."""
    name = {"Finished": "a.bin", "Failed": "gone.bin", "Skipped": "there.bin"}[end]
    url = (httpd.add(httpd.new_path(name), b"a" * 1000) if end != "Failed"
           else httpd.url(httpd.new_path(name)))
    (tmp_path / "out").mkdir()
    if end == "Skipped":
        (tmp_path / "out" / name).write_bytes(b"a" * 1000)
    seen: list[Event] = []

    def on_event(ev: Event) -> None:
        seen.append(ev)
        if isinstance(ev, (Finished, Failed, Skipped)):
            raise raised

    with pytest.raises(raised):
        omniget.download(url, tmp_path / "out", settings=_settings(tmp_path),
                         on_event=on_event)
    ends = [type(ev).__name__ for ev in seen if isinstance(ev, (Finished, Failed, Skipped))]
    assert ends == [end]
    if end != "Failed":
        assert (tmp_path / "out" / name).read_bytes() == b"a" * 1000


def test_a_stream_s_handler_raising_a_cancelled_error_stops_it(httpd: HTTPServer) -> None:
    url = httpd.add(httpd.new_path("big.bin"), b"b" * 200_000) + "?drip=200000"
    out = io.BytesIO()

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        omniget.stream(url, out, on_event=on_event)
    assert 0 < len(out.getvalue()) < 200_000


def test_ctrl_c_inside_a_stream_s_handler_stops_it(httpd: HTTPServer) -> None:
    url = httpd.add(httpd.new_path("big.bin"), b"b" * 200_000) + "?drip=200000"
    out = io.BytesIO()

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        omniget.stream(url, out, on_event=on_event)
    assert 0 < len(out.getvalue()) < 200_000


def test_a_handler_s_error_is_in_the_report_and_the_files_are_whole(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler failing at every event: the files are downloaded whole all the same, the
    failure is logged once, and the report gives it (the caller had only the log)."""
    data = {n: bytes([n]) * 300_000 for n in range(3)}
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), data[n]) for n in data]
    caplog.set_level(logging.WARNING)
    report = omniget.download(urls, tmp_path / "out", settings=_settings(tmp_path),
                              on_event=_broken)
    assert report.ok == 3 and report.exit_code == 0
    assert isinstance(report.handler_error, ValueError)
    assert str(report.handler_error) == "a bug in my handler"
    for n in data:
        assert (tmp_path / "out" / f"{n}.bin").read_bytes() == data[n]
    said = [r for r in caplog.records if "on_event handler failed" in r.getMessage()]
    assert len(said) == 1
    clean = omniget.download(urls, tmp_path / "again", settings=_settings(tmp_path))
    assert clean.handler_error is None


def test_a_handler_that_calls_the_blocking_api_back_is_told_to_await_instead(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A handler runs on the run's loop: a download() or extract() it calls is refused
    there (RuntimeError naming the async form), which is its error, not the run's; one
    that starts adownload as a task of that loop gets it run."""
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), bytes([n]) * 200_000) for n in range(2)]
    other = httpd.add(httpd.new_path("other.bin"), b"o" * 1000)
    refused: list[str] = []
    started: list[asyncio.Task[Report]] = []

    def on_event(event: Event) -> None:
        if not isinstance(event, Finished):
            return
        for call in (lambda: omniget.download(other, tmp_path / "other"),
                     lambda: omniget.extract(other)):
            try:
                call()
            except RuntimeError as exc:
                refused.append(str(exc))
        if not started:
            started.append(asyncio.ensure_future(omniget.adownload(
                other, tmp_path / "other", settings=_settings(tmp_path))))

    async def main() -> Report:
        report = await omniget.adownload(urls, tmp_path / "out", settings=_settings(tmp_path),
                                         on_event=on_event)
        assert (await started[0]).succeeded
        return report

    report = asyncio.run(main())
    assert report.succeeded and report.handler_error is None
    assert refused[:2] == [
        "omniget.download() blocks; inside an event loop use omniget.adownload() instead",
        "omniget.extract() blocks; inside an event loop use omniget.aextract() instead"]
    assert (tmp_path / "other" / "other.bin").read_bytes() == b"o" * 1000


def test_a_list_that_raises_stops_the_files_in_flight(httpd: HTTPServer, tmp_path: Path) -> None:
    """An exception from the caller's item list (its generator, ``only``) left the files
    already handed over running as orphan tasks against a closed engine."""
    url = httpd.add(httpd.new_path("slow.bin"), b"s" * 200_000)

    def items() -> Iterator[str]:
        yield url + "?drip=100000"
        raise RuntimeError("my list broke")

    async def main() -> set[asyncio.Task[Any]]:
        with pytest.raises(RuntimeError, match="my list broke"):
            await omniget.adownload(items(), tmp_path / "out", settings=_settings(tmp_path))
        return asyncio.all_tasks() - {cast(asyncio.Task[Any], asyncio.current_task())}

    assert asyncio.run(main()) == set()


def test_cancelling_the_task_of_adownload_cancels_it(httpd: HTTPServer, tmp_path: Path) -> None:
    """task.cancel() (asyncio.timeout, wait_for, Ctrl+C under asyncio.run) once the list
    was read was swallowed: the other files ran to their end and adownload returned a
    report, so no TimeoutError and no KeyboardInterrupt ever came."""
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), b"c" * 200_000) + "?drip=100000"
            for n in ("a", "b")]

    async def main() -> None:
        started: list[Event] = []
        both = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Started):
                started.append(ev)
                if len(started) == 2:
                    both.set()

        task = asyncio.create_task(omniget.adownload(
            urls, tmp_path / "out", settings=_settings(tmp_path), on_event=on_event))
        await both.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a.bin.omniget-part", "b.bin.omniget-part"]


def test_adownload_takes_aextract_s_items(httpd: HTTPServer, tmp_path: Path) -> None:
    """``adownload(aextract(url))``, the async form of ``download(extract(url))``, failed
    inside omniget: 'async_generator' object is not iterable."""
    url = httpd.add(httpd.new_path("a.bin"), b"x" * 3000)

    async def urls() -> AsyncIterator[str]:
        yield "gopher://x/y"
        yield url

    async def main() -> tuple[omniget.Report, omniget.Report]:
        settings = _settings(tmp_path)
        one = await omniget.adownload(omniget.aextract(url), tmp_path / "a", settings=settings)
        two = await omniget.adownload(urls(), tmp_path / "b", settings=settings)
        return one, two

    one, two = asyncio.run(main())
    assert [r.status for r in one.results] == ["ok"]
    assert [r.status for r in two.results] == ["failed", "ok"]
    assert (tmp_path / "a" / "a.bin").read_bytes() == (tmp_path / "b" / "a.bin").read_bytes()


def test_download_takes_extract_s_items(httpd: HTTPServer, tmp_path: Path) -> None:
    """``download(extract(url))`` failed: extract's generator ran its own event loop
    from inside download's ("Cannot run the event loop while another loop is running")."""
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), n.encode() * 1000) for n in "ab"]
    report = omniget.download(omniget.extract(urls[0]), tmp_path, settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["ok"]
    rest = omniget.extract(urls[1])
    assert next(rest).filename == "b.bin"  # (one step on this thread, the end on another)
    report = omniget.download(rest, tmp_path, settings=_settings(tmp_path))
    assert report.results == []
    assert (tmp_path / "a.bin").read_bytes() == b"a" * 1000


def test_a_404_caught_as_not_found_names_its_url(httpd: HTTPServer, tmp_path: Path) -> None:
    """``NotFound`` promises ``.url``; the 404 of a download carried an empty one."""
    url = httpd.url(httpd.new_path("gone.bin"))
    report = omniget.download([url], tmp_path, settings=_settings(tmp_path))
    error = report.results[0].error
    assert isinstance(error, omniget.NotFound) and isinstance(error, omniget.TransferError)
    assert (error.url, error.status, error.exit_code) == (url, 404, 6)
    assert error.item is not None and error.item.download_url == url


def test_stream_refuses_an_item_made_of_pieces(httpd: HTTPServer) -> None:
    """stream() wrote the bytes of the item's download_url, whatever its pieces said."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 100)
    other = httpd.add(httpd.new_path("b.bin"), b"b" * 100)
    item = omniget.Item(url, pieces=(omniget.Piece(other),))
    out = io.BytesIO()
    with pytest.raises(omniget.UsageError, match="pieces"):
        omniget.stream(item, out)
    assert out.getvalue() == b"" and httpd.requests == []


@pytest.mark.parametrize("kind", ["dir", "link"])
def test_stream_refuses_an_item_of_a_folder_or_a_link(httpd: HTTPServer, kind: str) -> None:
    """stream() wrote the body of a folder's (or a link's) download_url, which a download
    makes a folder (or a link) of, and fetches nothing from."""
    url = httpd.add(httpd.new_path("d"), b"<html>a listing</html>")
    item = omniget.Item(url, kind=cast(Any, kind), link_target="x" if kind == "link" else None)
    out = io.BytesIO()
    with pytest.raises(omniget.UsageError, match="folder" if kind == "dir" else "link"):
        omniget.stream(item, out)
    assert out.getvalue() == b"" and httpd.requests == []


def test_stream_names_a_url_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="a URL is a str, not bytes"):
        omniget.stream(cast(Any, b"http://127.0.0.1:9/a"), io.BytesIO())


def test_a_mistyped_on_exists_is_refused() -> None:
    """Any on_exists but "skip" and "rename" overwrote: a typo replaced the user's file."""
    with pytest.raises(ValueError, match="on_exists"):
        omniget.Settings(on_exists=cast(Any, "overwite"))


def test_the_readme_says_where_the_events_are() -> None:
    """The README's example passes ``on_event`` "typed engine events" without naming
    them or where they live."""
    from omniget.engine import events

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    library = readme.partition("## The library")[2].partition("\n## ")[0]
    assert "`omniget.engine.events`" in library
    named = {n for n in events.__all__ if n not in ("Event", "EventHandler")}
    assert {n for n in named if f"`{n}`" in library} == named


@pytest.mark.parametrize("url", ["example.com/x", "ftp://h/y", "http:/x", "http:///x"])
def test_source_http_refuses_what_is_no_http_url(
    httpd: HTTPServer, tmp_path: Path, url: str
) -> None:
    """With source="http", a URL without http(s):// failed with an IndexError from inside
    the source (and ended a whole download); an ftp:// one became an item."""
    with pytest.raises(omniget.UnsupportedURL):
        list(omniget.extract(url, source="http"))
    good = httpd.add(httpd.new_path("a.bin"), b"a" * 10)
    report = omniget.download([url, good], tmp_path, source="http", settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["failed", "ok"]
    assert isinstance(report.results[0].error, omniget.UnsupportedURL)


def test_an_item_whose_header_has_a_nul_byte_fails_alone(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """It raised "ValueError: embedded null byte" out of download() (from libcurl), the
    other files of the run abandoned, as a line break in it fails that file alone."""
    good = httpd.add(httpd.new_path("good.bin"), b"g" * 1000)
    bad = Item(httpd.add(httpd.new_path("bad.bin"), b"b"), headers={"X-A": "a\x00b"})
    report = omniget.download([good, bad], tmp_path / "out", settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["ok", "failed"]
    error = report.results[1].error
    assert isinstance(error, omniget.UsageError) and "NUL" in str(error)
    assert (tmp_path / "out" / "good.bin").read_bytes() == b"g" * 1000
    with pytest.raises(omniget.UsageError, match="NUL"):
        omniget.stream(bad, io.BytesIO())
    assert [r.path for r in httpd.requests] == ["/" + good.split("/", 3)[3]]


@pytest.mark.parametrize("when", [1e20, -1e20])
def test_an_item_s_time_beyond_what_a_file_can_have_leaves_the_file_s_time_alone(
    httpd: HTTPServer, tmp_path: Path, when: float
) -> None:
    """A time no file system takes (a source's parse of a date gone wrong) raised
    "OverflowError: timestamp out of range for platform time_t" out of the run, after
    the file was in; now the file keeps the time it was written at."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)
    other = httpd.add(httpd.new_path("b.bin"), b"b" * 1000)
    report = omniget.download([Item(url, modified=when), other], tmp_path / "out",
                              settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["ok", "ok"], report.failures
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"a" * 1000


@pytest.mark.parametrize("depth", [1200, 3000])
def test_an_item_s_path_of_thousands_of_folders_is_that_file_s_matter(
    httpd: HTTPServer, tmp_path: Path, depth: int
) -> None:
    """A path of 3000 folders raised RecursionError out of the run (os.makedirs recurses
    once per folder). Now one too long for the system fails that file alone, as a
    storage error; one it takes is written."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)
    other = httpd.add(httpd.new_path("b.bin"), b"b" * 1000)
    rel = "d/" * depth + "a.bin"
    try:
        report = omniget.download([Item(url, path=rel), other], tmp_path / "out",
                                  settings=_settings(tmp_path))
        first, second = report.results
        assert second.status == "ok"
        if len(str(tmp_path / "out" / rel).encode()) < 4000:
            assert first.status == "ok"
            assert (tmp_path / "out" / rel).read_bytes() == b"a" * 1000
        else:
            assert first.status == "failed" and isinstance(first.error, omniget.StorageError)
            assert "too long" in str(first.error)
    finally:  # (pytest's own clean-up of old temporary folders recurses: RecursionError)
        subprocess.run(["rm", "-rf", str(tmp_path / "out")], check=True)


@pytest.mark.parametrize("name", ["Range", "if-range"])
def test_an_item_cannot_set_the_headers_omniget_sends_itself(name: str) -> None:
    """An item with a Range header failed with "connection closed at byte 100 of N": the
    engine asks for the whole file and resumes with its own Range."""
    with pytest.raises(ValueError, match="Piece"):
        omniget.Item("http://127.0.0.1:9/a.bin", headers={"X-Other": "1", name: "bytes=0-99"})


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding"])
def test_headers_of_a_request_body_are_refused_as_the_command_refuses_them(
    httpd: HTTPServer, tmp_path: Path, name: str
) -> None:
    """An item's (or the settings') Content-Length: 100 went with a GET that has no body:
    the server waited for one, and the file failed as stalled after every retry (two
    minutes). The command's -H refuses them; so do an Item and the settings now."""
    with pytest.raises(ValueError, match=f"cannot set {name}"):
        omniget.Item("http://127.0.0.1:9/a.bin", headers={name: "100"})
    assert omniget.Item("http://127.0.0.1:9/a.bin", headers={name: ""}).headers == {name: ""}
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 100)
    settings = omniget.Settings(state_dir=tmp_path / "state",
                                network=omniget.NetworkSettings(headers=((name, "100"),)))
    with pytest.raises(omniget.UsageError, match=f"cannot set {name}"):
        omniget.download(url, tmp_path / "out", settings=settings)
    assert httpd.requests == []


def test_engine_run_given_urls_says_it_takes_items(httpd: HTTPServer, tmp_path: Path) -> None:
    """``await engine.run([url])`` (adownload takes URLs; the engine does not): it failed
    with AttributeError: 'str' object has no attribute 'output_path', from deep inside."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)

    async def main() -> None:
        eng = omniget.Engine(_settings(tmp_path))
        try:
            with pytest.raises(TypeError, match=r"not URLs .*omniget\.adownload\(urls"):
                await eng.run([url], tmp_path / "out")  # type: ignore[list-item]
            report = await omniget.adownload([url], tmp_path / "out", engine=eng)
            assert report.ok == 1
        finally:
            await eng.aclose()

    asyncio.run(main())
    assert httpd.requests[-1].path.endswith("/a.bin") and len(httpd.requests) == 1


class SlowPagesSource(Source):
    """``https://slowpages.test/BASE-URL``: the file URLs of pages ``p0.json`` then
    ``p1.json`` under BASE-URL; a fetch cancelled is noted in ``cancelled``."""

    name = "slowpages"
    patterns = (r"^https?://slowpages\.test/",)
    examples = ("https://slowpages.test/http://127.0.0.1:9/list/",)
    cancelled: ClassVar[list[str]] = []

    async def items(self) -> AsyncIterator[Item]:
        base = self.url.removeprefix("https://slowpages.test/")
        for n in range(2):
            try:
                urls = await self.ctx.http.get_json(f"{base}p{n}.json")
            except asyncio.CancelledError:
                self.cancelled.append(f"p{n}.json")
                raise
            for url in urls:
                yield Item(url)


#: Seconds the second page is held at most (the run must not wait for it): only a failing
#: run waits that long (10 s was a bound a loaded machine could pass, the page answered)
HELD = 30.0


@pytest.mark.parametrize("how", ["handler", "cancel", "aclose", "task"])
def test_a_stop_while_a_source_waits_for_its_next_page_stops_at_once(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, how: str,
) -> None:
    """A KeyboardInterrupt raised by an on_event handler, a ``cancel`` set or an
    ``aclose()`` while the source waited for its next page (a slow listing API): the run
    went on waiting for that page, and stopped only at its first item. (``task``: the
    run's own task cancelled there is still a CancelledError, not a stopped report.)"""
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (SlowPagesSource, *builtin))
    monkeypatch.setattr(SlowPagesSource, "cancelled", [])
    first = httpd.add(httpd.new_path("first.bin"), b"f" * 200_000) + "?drip=100000"
    httpd.add("/slow/p0.json", json.dumps([first]).encode())
    asked, gate, answered = threading.Event(), threading.Event(), threading.Event()

    def second_page(_req: object) -> tuple[int, dict[str, str], bytes]:
        asked.set()
        gate.wait(HELD)
        answered.set()
        return 200, {}, json.dumps([httpd.url("/never.bin")]).encode()

    httpd.handle("/slow/p1.json", second_page)
    url = "https://slowpages.test/" + httpd.url("/slow/")
    stop = threading.Event()
    eng = Engine(_settings(tmp_path))

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0 and asked.is_set():
            if how == "handler":
                raise KeyboardInterrupt
            stop.set()

    async def main() -> omniget.Report:
        task = asyncio.create_task(omniget.adownload(
            url, tmp_path / "out", engine=eng, on_event=on_event,
            cancel=stop if how == "cancel" else None))
        if how in ("aclose", "task"):
            await asyncio.to_thread(stop.wait, HELD)
            if how == "task":
                task.cancel()
            else:
                await eng.aclose()
        try:
            return await task
        finally:
            await eng.aclose()

    caplog.set_level(logging.WARNING)
    try:
        if how in ("handler", "task"):
            with pytest.raises(KeyboardInterrupt if how == "handler" else asyncio.CancelledError):
                asyncio.run(main())
        else:
            report = asyncio.run(main())
            assert report.stopped and (report.failed, report.interrupted) == (1, 1)
        assert not answered.is_set()  # (it did not wait for the page)
        assert SlowPagesSource.cancelled == ["p1.json"]  # (the fetch was cancelled)
        gc.collect()  # (a task or generator left behind says so when collected)
        assert [r.getMessage() for r in caplog.records] == []
    finally:
        gate.set()
    assert (tmp_path / "out" / "first.bin.omniget-part").exists()
    assert all(r.path != "/never.bin" for r in httpd.requests)


@pytest.mark.parametrize("how", ["once", "twice", "timeout"])
def test_aextract_stopped_as_its_source_waits_for_a_page_ends_at_once(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """A task reading ``aextract(url)`` cancelled (once, or again as it ends) or timed out
    (``asyncio.timeout``) while the source waits for its next page: CancelledError (or
    TimeoutError) at once, not when the page comes; the page's fetch is cancelled, and
    the transports aextract made are closed: no descriptor, thread or task is left, and
    nothing is logged."""
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (SlowPagesSource, *builtin))
    monkeypatch.setattr(SlowPagesSource, "cancelled", [])
    httpd.add("/slow/p0.json", json.dumps([httpd.url("/a.bin")]).encode())
    asked, gate, answered = threading.Event(), threading.Event(), threading.Event()

    def second_page(_req: object) -> tuple[int, dict[str, str], bytes]:
        asked.set()
        gate.wait(HELD)
        answered.set()
        return 200, {}, b"[]"

    httpd.handle("/slow/p1.json", second_page)
    url = "https://slowpages.test/" + httpd.url("/slow/")
    got: list[Item] = []

    async def read() -> None:
        async for item in omniget.aextract(url):
            got.append(item)

    async def main() -> None:
        if how == "timeout":
            async with asyncio.timeout(None) as timeout:

                async def once_asked() -> None:  # (the time is up as the page is asked)
                    await asyncio.to_thread(asked.wait, HELD)
                    timeout.reschedule(asyncio.get_running_loop().time())

                waiting = asyncio.create_task(once_asked())
                await read()
            await waiting
            return
        task = asyncio.create_task(read())
        await asyncio.to_thread(asked.wait, HELD)
        task.cancel()
        if how == "twice":
            await asyncio.sleep(0)
            task.cancel()
        try:
            await task
        finally:
            assert asyncio.all_tasks() == {asyncio.current_task()}

    gc.collect()
    fds, before = ours(httpd.port), threads()
    caplog.set_level(logging.WARNING)
    try:
        with pytest.raises(TimeoutError if how == "timeout" else asyncio.CancelledError):
            asyncio.run(main())
        assert asked.is_set() and not answered.is_set()  # (it did not wait for the page)
    finally:
        gate.set()
    assert [item.download_url for item in got] == [httpd.url("/a.bin")]
    assert SlowPagesSource.cancelled == ["p1.json"]
    gc.collect()
    assert [r.getMessage() for r in caplog.records] == []
    wait_for(lambda: threads() <= before, timeout=30)
    assert ours(httpd.port) - fds == set()


def test_a_non_ascii_host_in_resolve_is_asked_for_as_its_punycode(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A library caller's ``resolve`` entry with a host beyond ASCII reached pycurl as a str
    it cannot encode (download() raised UnicodeEncodeError); the CLI turns the host into
    its punycode, as the URL's host is asked for, and so does the library now."""
    httpd.add("/r.bin", b"r" * 700)
    resolve = (f"exämple.test:{httpd.port}:127.0.0.1",)
    settings = _settings(tmp_path, network=omniget.NetworkSettings(resolve=resolve))
    assert settings.network.resolve == (f"xn--exmple-cua.test:{httpd.port}:127.0.0.1",)
    report = omniget.download([f"http://exämple.test:{httpd.port}/r.bin"], tmp_path / "out",
                              settings=settings)
    assert [r.status for r in report.results] == ["ok"], report.results[0].error
    assert (tmp_path / "out" / "r.bin").read_bytes() == b"r" * 700


def test_a_resolve_host_that_is_no_host_name_is_refused_at_settings() -> None:
    """The +HOST and -HOST forms keep their mark; a host IDNA refuses, or an address
    beyond ASCII, is a ValueError at construction, not pycurl's UnicodeEncodeError."""
    made = omniget.NetworkSettings(resolve=("+ä.test:80:127.0.0.1", "-ä.test:80"))
    assert made.resolve == ("+xn--4ca.test:80:127.0.0.1", "-xn--4ca.test:80")
    with pytest.raises(ValueError, match="HOST:PORT:ADDRESS"):
        omniget.NetworkSettings(resolve=("ä.test:80:127.0.0.ä",))
    with pytest.raises(ValueError, match="HOST:PORT:ADDRESS"):
        omniget.NetworkSettings(resolve=("a..ä:80:127.0.0.1",))


def test_a_non_ascii_proxy_is_refused_at_settings_as_the_cli_refuses_it() -> None:
    """A library caller's proxy beyond ASCII reached pycurl as a str it cannot encode:
    download() raised an internal UnicodeEncodeError. The CLI refuses it (--proxy);
    NetworkSettings now does too."""
    with pytest.raises(ValueError, match="proxy URL in ASCII"):
        omniget.NetworkSettings(proxy="http://prøxy.test:3128")


def test_an_item_s_repr_shows_the_fields_it_was_given(httpd: HTTPServer, tmp_path: Path) -> None:
    """The README's ``on_event=print`` printed ~500 characters an event, most of them the
    item's 20 fields at their defaults (``kind='file', link_target=None, ...``)."""
    item = Item("http://h.test/a.bin", size_bytes=5, headers={"X-A": "1"})
    assert repr(item) == ("Item(download_url='http://h.test/a.bin', filename='a.bin', "
                          "size_bytes=5, headers={'X-A': '1'})")
    assert eval(repr(item), {"Item": Item}) == item  # (still what makes it again)
    said: list[str] = []
    url = httpd.add(httpd.new_path("p.bin"), b"x" * 10)
    omniget.download(url, tmp_path, settings=_settings(tmp_path),
                     on_event=lambda ev: said.append(repr(ev)))
    # (Finished is the longest: its item, path, size, verified, fetched and resumed)
    assert said and max(map(len, said)) < 135 + len(str(tmp_path)) + 2 * len(url)


def test_an_item_s_repr_hides_secret_headers_values() -> None:
    """An ``on_event=print`` or a log line must not show a token (as libcurl's messages
    and --debug do not)."""
    item = Item("http://h.test/a", headers={"Authorization": "Bearer t0k", "Cookie": "s=c00k",
                                            "X-Token": "s3c", "Accept": "*/*"},
                secret_headers=("x-token",))
    shown = repr(item)
    assert not any(s in shown for s in ("t0k", "c00k", "s3c"))
    assert "'Authorization': '***'" in shown and "'Accept': '*/*'" in shown


def test_a_report_s_repr_counts_the_interrupted_files() -> None:
    cut = FileResult(Item("http://h.test/a"), None, "failed", error=omniget.Cancelled("cut"))
    bad = FileResult(Item("http://h.test/b"), None, "failed", error=omniget.NotFound("gone"))
    assert repr(Report([cut, bad], elapsed=1.0)) == (
        "<Report ok=0 skipped=0 failed=2 (interrupted=1) fetched=0 elapsed=1.00s>")
    assert "interrupted" not in repr(Report([bad]))


def test_a_report_says_in_one_word_whether_everything_landed() -> None:
    """``report.ok`` counts: ``if report.ok:`` was true with some files failed, and a run
    stopped before its list ended, with nothing failed, had exit_code 0."""
    good = FileResult(Item("http://h.test/a"), None, "ok")
    kept = FileResult(Item("http://h.test/k"), None, "skipped", reason="exists")
    bad = FileResult(Item("http://h.test/b"), None, "failed", error=omniget.NotFound("gone"))
    assert Report([good, kept]).succeeded and Report([]).succeeded
    mixed = Report([good, bad])
    assert mixed.ok == 1 and not mixed.succeeded and mixed.exit_code == 6
    stopped = Report([good], stopped=True)
    assert (stopped.succeeded, stopped.exit_code) == (False, 130)
    assert repr(stopped) == ("<Report ok=1 skipped=0 failed=0 (stopped) fetched=0 "
                             "elapsed=0.00s>")
    doc = " ".join((omniget.download.__doc__ or "").split())
    assert "report.succeeded" in doc
    shown = {name: getattr(Report, name).__doc__ or "" for name in (
        "ok", "skipped", "failed", "failures", "fetched", "succeeded")}
    assert all(shown.values()) and "succeeded" in shown["ok"]  # (help(Report) said none)
    assert "succeeded" in (Report.__doc__ or "")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "report.succeeded" in readme


def _readme_example() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    part = readme[readme.index("## The library"):]
    return part[part.index("```python\n") + len("```python\n"):part.index("```\n", 10)]


@pytest.mark.parametrize("there", [True, False])
def test_the_readme_s_library_example_runs(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], there: bool
) -> None:
    """The README's example, its URL one of a local server's (served, or a 404)."""
    code = _readme_example()
    assert "https://example.com/file.zip" in code
    url = httpd.add("/file.zip", b"PK" * 500) if there else httpd.url("/file.zip")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNIGET_STATE_DIR", str(tmp_path / "state"))
    exec(code.replace("https://example.com/file.zip", url), {})
    out = capsys.readouterr().out
    assert out.startswith(f"file.zip None {url} {{}}\n")
    assert "Finished(" in out if there else "1 failed: [RemoteNotFound(" in out
    assert (tmp_path / "downloads" / "file.zip").exists() is there


def test_the_package_s_docstring_example_runs_as_a_doctest(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``help(omniget)``'s example printed a name its text did not show (as a doctest, it
    failed: "Expected nothing, Got: file.zip")."""
    import doctest

    url = httpd.add("/file.zip", b"PK" * 500)
    doc = (omniget.__doc__ or "").replace("https://example.com/file.zip", url)
    assert url in doc
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNIGET_STATE_DIR", str(tmp_path / "state"))
    test = doctest.DocTestParser().get_doctest(doc, {"omniget": omniget}, "omniget", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert (tmp_path / "downloads" / "file.zip").read_bytes() == b"PK" * 500


class _Sips(io.RawIOBase):
    """An unbuffered output (``open(name, "wb", buffering=0)``, a socket's file) that takes
    at most ``most`` bytes a call, and says how many it took, as ``write`` may."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.got = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        taken = bytes(data[: self.most])
        self.got += taken
        return len(taken)


def test_stream_writes_every_byte_to_an_output_that_takes_a_part_of_each_write(
    httpd: HTTPServer, payload: Any
) -> None:
    """A write that took part of the bytes lost the rest: stream() said it wrote them all."""
    data = payload(300_000)
    url = httpd.add(httpd.new_path("a.bin"), data)
    out = _Sips(1000)
    assert omniget.stream(url, out) == len(data)
    assert bytes(out.got) == data
    got = bytearray()

    class Quiet:  # (a writer of one's own, that returns nothing: it took them all)
        def write(self, data: bytes) -> None:
            got.extend(data)

        def flush(self) -> None:
            pass

    assert omniget.stream(url, Quiet()) == len(data) and bytes(got) == data


def test_a_writer_of_one_s_own_is_typed_and_handed_bytes_alone(
    httpd: HTTPServer, payload: Any
) -> None:
    """``stream(url, out)`` takes any object whose ``write`` takes bytes: its hint said
    BinaryIO, so mypy --strict refused a class of one's own without a cast (this module is
    checked so: it has none). What such a ``write`` gets is bytes, the rest of a write it
    took a part of too (that came as a memoryview: ``data + b""`` failed on it)."""
    data = payload(300_000)
    url = httpd.add(httpd.new_path("a.bin"), data)

    class Sips:
        def __init__(self) -> None:
            self.got = b""
            self.kinds: set[type] = set()

        def write(self, data: bytes) -> int:
            self.kinds.add(type(data))
            self.got += data[:1000]
            return min(len(data), 1000)

    out = Sips()
    named: omniget.Writer = out  # (the protocol, named as users name it)
    assert omniget.stream(url, named) == len(data)
    assert out.got == data and out.kinds == {bytes}
    assert "Writer" in omniget.__all__ and omniget.Writer is omniget.api.Writer


def _outputs_mypy_takes(binary: BinaryIO, raw: io.FileIO, text: TextIO) -> None:
    """Never run: mypy --strict checks these calls (an ignore it did not need fails it)."""
    omniget.stream("http://h/a", binary)
    omniget.stream("http://h/a", raw)
    omniget.stream("http://h/a", sys.stdout.buffer)
    omniget.stream("http://h/a", text)  # type: ignore[arg-type]  # (a text file: refused)


@pytest.mark.parametrize("said", [5, 10_000])
def test_stream_of_an_item_of_another_size_fails_as_its_download_does(
    httpd: HTTPServer, tmp_path: Path, said: int
) -> None:
    """``download(Item(url, size_bytes=5))`` fails (a size mismatch, exit 4); ``stream`` of
    the same item wrote the server's 1,000 bytes and said nothing."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)
    item = omniget.Item(url, size_bytes=said)
    report = omniget.download(item, tmp_path / "out", settings=_settings(tmp_path))
    assert isinstance(report.failures[0].error, omniget.IntegrityError)
    out = io.BytesIO()
    with pytest.raises(omniget.IntegrityError, match=(
            f"size mismatch for a.bin: 1000 bytes on the server, the item says {said}")) as err:
        omniget.stream(item, out, settings=_settings(tmp_path))
    assert err.value.exit_code == report.exit_code == 4
    assert out.getvalue() == b""  # (found before any byte went out)


def test_stream_into_a_writer_with_no_flush_writes_it_all(httpd: HTTPServer) -> None:
    """stream() takes any object with a ``write``; one with no ``flush`` got every byte,
    then stream() failed: ``'Sink' object has no attribute 'flush'``."""
    url = httpd.add(httpd.new_path("a.bin"), b"z" * 5000)
    got = bytearray()

    class Sink:
        def write(self, data: bytes) -> int:
            got.extend(data)
            return len(data)

    assert omniget.stream(url, Sink()) == 5000 and bytes(got) == b"z" * 5000


def test_an_output_that_fails_as_stream_flushes_it_is_a_storage_error(
    httpd: HTTPServer,
) -> None:
    """A pipe whose reader went away took the bytes into its buffer, then the flush at
    the end raised BrokenPipeError itself (a full disk: OSError), where each failed write
    before it is a StorageError, as stream's help promises an OmnigetError."""
    url = httpd.add(httpd.new_path("a.bin"), b"z" * 100)
    reader, writer = os.pipe()
    os.close(reader)
    out = open(writer, "wb")  # noqa: SIM115  # (its close fails as its flush did)
    with pytest.raises(omniget.StorageError) as closed:
        omniget.stream(url, out)
    with contextlib.suppress(BrokenPipeError):
        out.close()
    assert str(closed.value) == "the output closed before the whole file was written"

    class Full:
        def write(self, data: bytes) -> None:
            pass

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(omniget.StorageError, match="disk full"):
        omniget.stream(url, Full())


def test_a_stream_stops_when_its_cancel_is_set_from_another_thread(httpd: HTTPServer) -> None:
    """``download`` took ``cancel=`` but ``stream`` did not: a stream on a worker thread
    could be stopped only by closing its output under it. Now the event stops it:
    Cancelled, the bytes written kept in order, nothing written after it returns."""
    data = bytes(range(256)) * 800
    url = httpd.add(httpd.new_path("c.bin"), data) + "?drip=200000"
    out = io.BytesIO()
    cancel = threading.Event()

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0:
            cancel.set()

    with pytest.raises(omniget.Cancelled, match="cancel was set"):
        omniget.stream(url, out, on_event=on_event, cancel=cancel)
    got = out.getvalue()
    assert 0 < len(got) < len(data) and data.startswith(got)


@pytest.mark.parametrize("given", [False, True], ids=["no-cancel", "cancel"])
def test_ctrl_c_stops_a_stream_with_a_cancel_as_one_without(
    httpd: HTTPServer, caplog: pytest.LogCaptureFixture, given: bool
) -> None:
    """Ctrl+C (asyncio.run cancels the stream's task) with ``cancel=`` given: the stream
    was left running while the engine closed, and asyncio logged its error ("Task
    exception was never retrieved", a traceback) as it does not without ``cancel=``."""
    import signal

    data = bytes(range(256)) * 16000
    url = httpd.add(httpd.new_path("i.bin"), data) + "?drip=1000000"
    out = io.BytesIO()
    sent: list[int] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0 and not sent:
            sent.append(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # (asyncio.run's handler: a cancel)

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(KeyboardInterrupt):
        omniget.stream(url, out, on_event=on_event,
                       cancel=threading.Event() if given else None)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    got = out.getvalue()
    assert 0 < len(got) < len(data) and data.startswith(got)


def test_a_stream_whose_cancel_is_already_set_makes_no_request(httpd: HTTPServer) -> None:
    path = httpd.new_path("d.bin")
    url = httpd.add(path, b"d" * 1000)
    cancel = threading.Event()
    cancel.set()
    out = io.BytesIO()
    with pytest.raises(omniget.Cancelled, match="cancel was set"):
        omniget.stream(url, out, cancel=cancel)
    assert out.getvalue() == b""
    assert httpd.requests_to(path) == []


def test_a_stream_whose_cancel_is_already_set_keeps_nothing_of_the_call() -> None:
    """Each call raises an error of its own: one shared by every call kept, in its
    traceback, each call's frames and what they held (``out``), and grew with each."""
    import traceback
    import weakref

    cancel = threading.Event()
    cancel.set()
    depths = []
    for _ in range(2):
        out = io.BytesIO()
        kept = weakref.ref(out)
        try:
            omniget.stream("http://127.0.0.1:9/a", out, cancel=cancel)
        except omniget.Cancelled as exc:
            assert "cancel was set" in str(exc)
            depths.append(len(traceback.extract_tb(exc.__traceback__)))
        del out
        gc.collect()
        assert kept() is None  # (no frame of the call holds it)
    assert depths[0] == depths[1]


def test_a_stream_that_ends_before_its_cancel_is_set_returns_its_count(
    httpd: HTTPServer,
) -> None:
    url = httpd.add(httpd.new_path("e.bin"), b"e" * 5000)
    out = io.BytesIO()
    assert omniget.stream(url, out, cancel=threading.Event()) == 5000
    assert out.getvalue() == b"e" * 5000


def test_stream_names_a_cancel_of_the_wrong_kind() -> None:
    with pytest.raises(TypeError, match=r"cancel= takes a threading\.Event, not True"):
        omniget.stream("http://127.0.0.1:9/a", io.BytesIO(), cancel=cast(Any, True))
