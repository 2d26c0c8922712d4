"""The library API as a program embedding omniget uses it: several runs at once on one
engine, an engine kept across event loops, a listing left early; against a real local
server."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
from tests.servers.conns import can_count, established
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine import Engine
from omniget.engine.events import Event, Progress, Started
from omniget.model import Item
from omniget.sources.base import Source

#: Which hook refreshed which file: (hook, filename).
Calls = list[tuple[str, str]]


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


class ExpiringSource(Source):
    """``https://expiring.test/TAG``: one item whose URL expired already (a 403), and
    whose refresh gives ``TAG``'s fresh URL; each refresh is noted in ``calls``."""

    name = "expiring"
    patterns = (r"^https?://expiring\.test/",)
    examples = ("https://expiring.test/a",)
    urls: ClassVar[dict[str, str]] = {}  # TAG-old / TAG-new -> URL (set by the fixture)
    calls: ClassVar[Calls] = []

    @classmethod
    def stale(cls, tag: str) -> Item:
        return Item(cls.urls[f"{tag}-old"], filename=f"{tag}.bin", source=cls.name, expires=0.0)

    @classmethod
    def fresh(cls, tag: str) -> Item:
        return Item(cls.urls[f"{tag}-new"], filename=f"{tag}.bin", source=cls.name)

    async def items(self) -> AsyncIterator[Item]:
        yield self.stale(self.url.rpartition("/")[2])

    async def refresh(self, item: Item) -> Item:
        tag = self.url.rpartition("/")[2]
        self.calls.append((f"source {tag}", item.filename))
        return self.fresh(tag)


@pytest.fixture
def expiring(httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> type[ExpiringSource]:
    import omniget.sources as registry

    urls = {}
    for tag in "abc":
        urls[f"{tag}-old"] = httpd.add(httpd.new_path(f"{tag}-old.bin"), b"old") + "?status=403"
        urls[f"{tag}-new"] = httpd.add(httpd.new_path(f"{tag}-new.bin"), tag.encode() * 300)
    monkeypatch.setattr(ExpiringSource, "urls", urls)
    monkeypatch.setattr(ExpiringSource, "calls", [])
    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (ExpiringSource, *builtin))
    return ExpiringSource


def test_runs_on_one_engine_each_refresh_with_their_own_hook(
    expiring: type[ExpiringSource], tmp_path: Path
) -> None:
    """adownload() stored its run's refresh hook on the shared engine (``engine.refresh``)
    and left it there: the engine's own hook was gone, an item of another run given as an
    Item was not refreshed at all (it failed with the 403), and a later run on the engine
    refreshed its items with the sources of an adownload() that had ended."""
    calls = expiring.calls

    async def mine(item: Item) -> Item:
        calls.append(("engine", item.filename))
        return expiring.fresh(item.filename[0])

    async def main() -> list[omniget.Report]:
        eng = Engine(_settings(tmp_path), refresh=mine)
        try:
            both = await asyncio.gather(
                omniget.adownload("https://expiring.test/a", tmp_path / "a", engine=eng),
                omniget.adownload([expiring.stale("b")], tmp_path / "b", engine=eng),
            )
            later = await eng.run([expiring.stale("c")], tmp_path / "c")
            assert eng.refresh is mine
            return [*both, later]
        finally:
            await eng.aclose()

    reports = asyncio.run(main())
    assert [r.exit_code for r in reports] == [0, 0, 0], [r.failures for r in reports]
    assert sorted(calls) == [("engine", "b.bin"), ("engine", "c.bin"), ("source a", "a.bin")]
    for tag in "abc":
        assert (tmp_path / tag / f"{tag}.bin").read_bytes() == tag.encode() * 300


def test_an_engine_kept_across_asyncio_run_calls(httpd: HTTPServer, tmp_path: Path) -> None:
    """A program calling ``asyncio.run(adownload(..., engine=eng))`` twice: the first run
    left connections kept open for the next one (small files go pipelined over them) to
    its closed loop; the second run, on a new loop, failed whole with "Event loop is
    closed" (closing them on the first run's loop), and so did ``asyncio.run(eng.aclose())``.
    A loop closed without asyncio.run's end (``loop.close()``) still leaves them, said by
    the ResourceWarning of their garbage collection."""
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), bytes([n]) * 16 * 1024) for n in range(24)]
    eng = Engine(_settings(tmp_path))
    first = asyncio.run(omniget.adownload(urls[:8], tmp_path / "a", engine=eng))
    if can_count():  # asyncio.run closed them at its end (they were left to the closed loop)
        assert established(httpd.port) == 0
    loop = asyncio.new_event_loop()  # (closed without closing its async generators)
    second = loop.run_until_complete(omniget.adownload(urls[8:16], tmp_path / "b", engine=eng))
    loop.close()
    with pytest.warns(ResourceWarning, match="unclosed"):  # (that loop's sockets)
        third = asyncio.run(omniget.adownload(urls[16:], tmp_path / "c", engine=eng))
        gc.collect()
    asyncio.run(eng.aclose())
    assert [r.ok for r in (first, second, third)] == [8, 8, 8]
    assert (tmp_path / "c" / "23.bin").read_bytes() == bytes([23]) * 16 * 1024


class PrefetchingSource(Source):
    """``https://pages.test/BASE-URL``: pages ``p0.json``, ``p1.json``... under BASE-URL
    (lists of file URLs), each asked for (on a task) while the one before is listed."""

    name = "pages"
    patterns = (r"^https?://pages\.test/",)
    examples = ("https://pages.test/http://127.0.0.1:9/list/",)

    async def items(self) -> AsyncIterator[Item]:
        base = self.url.removeprefix("https://pages.test/")
        page = asyncio.ensure_future(self.ctx.http.get_json(f"{base}p0.json"))
        for n in range(1, 4):
            urls = await page
            page = asyncio.ensure_future(self.ctx.http.get_json(f"{base}p{n}.json"))
            for url in urls:
                yield Item(url)


def test_extract_closed_early_asks_for_no_further_page(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A source that asks for its next page while the caller reads the items of this one:
    closing extract()'s generator after the first item still sent that request (queued
    before the close, it left on the loop's first turn of the close), and the source's
    task ran on (at times failing as the transports closed under it: asyncio then logged
    "Task exception was never retrieved")."""
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (PrefetchingSource, *builtin))
    for n in range(4):
        httpd.add(f"/list/p{n}.json", json.dumps([httpd.url(f"/{n}.bin")]).encode())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        items = omniget.extract("https://pages.test/" + httpd.url("/list/"))
        assert next(items).filename == "0.bin"
        items.close()
        gc.collect()
    assert [r.path for r in httpd.requests] == ["/list/p0.json"]
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    if can_count():
        assert established(httpd.port) == 0


def test_one_engine_refuses_a_second_thread_s_loop_while_it_runs(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Two threads, each with ``asyncio.run(adownload(..., engine=eng))`` at once: the
    second run took the engine's connections over to its own loop under the first one
    (when they were idle) or failed whole with "CurlTransport is in use by another event
    loop" (when libcurl was busy), as it happened. It is refused, saying what to do,
    before any request; the first run goes on, and runs one after the other are fine."""
    asked, gate = threading.Event(), threading.Event()

    def held(_req: object) -> tuple[int, dict[str, str], bytes]:
        asked.set()
        gate.wait(10)
        return 200, {}, b"a" * 1000

    slow = httpd.handle("/held/a.bin", held)
    other = httpd.add(httpd.new_path("b.bin"), b"b" * 1000)
    eng = Engine(_settings(tmp_path))
    reports: list[omniget.Report] = []
    runner = threading.Thread(target=lambda: reports.append(
        asyncio.run(omniget.adownload(slow, tmp_path / "a", engine=eng))))
    runner.start()
    try:
        assert asked.wait(10)
        with pytest.raises(RuntimeError, match="give each thread its own Engine"):
            asyncio.run(omniget.adownload(other, tmp_path / "b", engine=eng))
        assert [r.path for r in httpd.requests] == ["/held/a.bin"]
    finally:
        gate.set()
        runner.join(10)
    assert [r.ok for r in reports] == [1]
    later = asyncio.run(omniget.adownload(other, tmp_path / "b", engine=eng))
    asyncio.run(eng.aclose())
    assert later.ok == 1 and (tmp_path / "b" / "b.bin").read_bytes() == b"b" * 1000


def test_closing_an_engine_stops_its_runs_as_a_cancel_does(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``await eng.aclose()`` while an adownload on it went on (a program shutting down):
    the run raised RuntimeError("CurlTransport is closed") from inside, its files' resume
    state was lost (their part files gone), and a warning said the journal was closed.
    Now the runs stop first, as ``cancel`` stops them, then the engine closes (without
    waiting for an item list that waits for more)."""
    data = {n: bytes([n]) * 200_000 for n in range(2)}
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), data[n]) + "?drip=200000" for n in data]
    more = asyncio.Event()

    async def listing() -> AsyncIterator[str]:
        for url in urls:
            yield url
        await more.wait()  # (a program's queue of URLs, say)

    async def main() -> omniget.Report:
        eng = Engine(_settings(tmp_path))
        going, writing = asyncio.Event(), set[str]()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Progress) and ev.done > 0:
                writing.add(ev.item.download_url)
                if len(writing) == 2:
                    going.set()

        task = asyncio.create_task(
            omniget.adownload(listing(), tmp_path / "out", engine=eng, on_event=on_event))
        await going.wait()
        await eng.aclose()
        more.set()
        return await task

    report = asyncio.run(main())
    assert (report.failed, report.interrupted) == (2, 2)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["0.bin.omniget-part", "1.bin.omniget-part"]
    started: list[Event] = []
    again = omniget.download(urls, out, settings=_settings(tmp_path), on_event=started.append)
    assert again.ok == 2
    assert all(ev.resumed > 0 for ev in started if isinstance(ev, Started))
    assert (out / "1.bin").read_bytes() == data[1]


def test_closing_an_engine_stops_its_stream_as_a_cancel_does(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``await eng.aclose()`` while ``eng.stream()`` wrote: the stream's transport was
    closed under it, and the stream failed from inside ("CurlTransport is closed", after
    a retry on it); with ``retries=0``, "transport closed during the transfer". Now it is
    stopped first, as a run's files are: Cancelled, the bytes written kept in order,
    nothing written after the engine is closed; the task that awaited it is not itself
    cancelled, and a stream cancelled by its own task still says so (CancelledError)."""
    data = bytes(range(256)) * 1000
    url = httpd.add(httpd.new_path("s.bin"), data) + "?drip=200000"

    async def main() -> tuple[bytes, int]:
        eng = Engine(omniget.Settings(state_dir=tmp_path / "state"), journal=False)
        got = bytearray()
        writing = asyncio.Event()

        def write(chunk: bytes) -> None:
            got.extend(chunk)
            writing.set()

        task = asyncio.create_task(eng.stream(Item(url), write))
        await writing.wait()
        await eng.aclose()
        with pytest.raises(omniget.Cancelled, match="the engine was closed"):
            await task
        at_close = len(got)
        writing.clear()
        theirs = Engine(omniget.Settings(state_dir=tmp_path / "state"), journal=False)
        other = asyncio.create_task(theirs.stream(Item(url), lambda b: writing.set()))
        await writing.wait()
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other
        await theirs.aclose()
        return bytes(got), at_close

    got, n = asyncio.run(main())
    assert 0 < n < len(data) and got == data[:n]  # (nothing written after the close)
