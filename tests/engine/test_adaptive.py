"""Adaptive splitting against the fault server: more connections only where they pay.

These run in real time (the server's drip paces each connection), a second or less each.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.checks import wait_for
from tests.servers.conns import PeakConnections, established
from tests.servers.httpd import HTTPServer

from omniget.engine import Engine, Report
from omniget.engine.events import Event, Finished, Retrying, Started
from omniget.engine.retry import FakeClock
from omniget.engine.splitter import EARLY_SPLIT
from omniget.engine.transports.base import Head, Request, Sink
from omniget.engine.transports.http import CurlTransport
from omniget.model import ByteRange, Item, Piece
from omniget.settings import NetworkSettings, Settings

KiB = 1024
MiB = 1024 * KiB


class Counting:
    """Wraps the real transport and records the most fetches in flight at once, and how
    many body bytes had arrived when each fetch began."""

    def __init__(self, inner: CurlTransport) -> None:
        self.inner = inner
        self.now = self.most = 0
        self.bytes = 0
        self.starts: list[int] = []

    async def fetch(self, request: Request, sink: Sink) -> Head:
        self.now += 1
        self.most = max(self.most, self.now)
        self.starts.append(self.bytes)
        try:
            return await self.inner.fetch(request, _Tap(self, sink))
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Tap:
    def __init__(self, counting: Counting, sink: Sink) -> None:
        self.counting = counting
        self.sink = sink

    def on_head(self, head: Head) -> None:
        self.sink.on_head(head)

    def on_data(self, data: bytes) -> None:
        self.counting.bytes += len(data)
        self.sink.on_data(data)


def run(url: str, tmp_path: Path, within: float | None = None, **kw: object) -> tuple[Report, int]:
    report, transport = run_counting(url, tmp_path, within, **kw)
    return report, transport.most


def run_counting(
    url: str, tmp_path: Path, within: float | None = None, **kw: object
) -> tuple[Report, Counting]:
    """Download ``url`` with ``kw`` settings (in ``within`` seconds at most, if given)."""
    kw.setdefault("network", NetworkSettings(stall_timeout=5.0, connect_timeout=5.0))
    settings = Settings(
        state_dir=tmp_path / "state",
        min_split_size=256 * KiB,
        **kw,  # type: ignore[arg-type]
    )

    transport = Counting(
        CurlTransport(settings.network, max_host_connections=settings.connections_per_host)
    )

    async def go() -> Report:
        eng = Engine(settings, transports={"http": transport})  # type: ignore[dict-item]
        try:
            return await asyncio.wait_for(
                eng.run([Item(url, filename="f.bin")], tmp_path / "out"), within
            )
        finally:
            await eng.aclose()
            await transport.aclose()

    return asyncio.run(go()), transport


def test_per_connection_limit_goes_to_the_host_cap(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(8 * MiB, 7)
    httpd.add("/capped.bin", data)
    report, most = run(httpd.url("/capped.bin", drip=6 * MiB), tmp_path, connections_per_host=6)
    assert report.ok, report.failures
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    # one connection, then four, then the cap: each step nearly multiplied the rate
    assert most == 6


def test_split_waits_for_the_new_connections_first_answers(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # Every answer comes 0.15 s late: a window that started at connect time would see the
    # new connections add nothing and stop; measured from their answers they double it.
    data = payload(3 * MiB, 8)
    httpd.add("/late.bin", data)
    url = httpd.url("/late.bin", drip=4 * MiB, delay=0.15)
    report, most = run(url, tmp_path, connections_per_host=8)
    assert report.ok, report.failures
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert most >= 4


def test_small_file_uses_one_request(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(300 * KiB, 9)
    httpd.add("/small.bin", data)
    report, _ = run(httpd.url("/small.bin", drip=2 * MiB), tmp_path, connections_per_host=8)
    assert report.ok
    assert len(httpd.requests_to("/small.bin")) == 1


def test_tail_is_stolen_below_the_split_size(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # --split 2 on a file just over 2 x min_split: when the faster half ends, the other's
    # remainder (well under 2 x min_split) is still split again.
    data = payload(600 * KiB, 10)
    httpd.add("/tail.bin", data)
    url = httpd.url("/tail.bin", drip=200 * KiB, times=1)  # only the first answer is slow
    report, _ = run(url, tmp_path, split=2, connections_per_host=4)
    assert report.ok
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert len(httpd.requests_to("/tail.bin")) >= 3


@pytest.mark.parametrize(("cap", "opened"), [(4, 4), (8, 8), (16, 8)])
def test_large_file_opens_up_to_eight_connections_at_its_first_answer(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, cap: int, opened: int
) -> None:
    # 32 split sizes or more: no 0.1 s window on one connection first. The first answer
    # sends its head and 1/20 s worth, then stays silent (until its remainder is taken
    # over): connections opened at that answer start with no more bytes in than those,
    # however long the engine takes to open them (a window would need more bytes first).
    data = payload(12 * MiB, 11)
    httpd.add("/large.bin", data)
    first = 4 * MiB // 20
    url = httpd.url("/large.bin", drip=4 * MiB, stall=600, stall_after=first, times=1)
    report, counting = run_counting(url, tmp_path, 60, connections_per_host=cap)
    assert report.ok, report.failures
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert len(counting.starts) >= opened
    assert counting.starts[1:opened] == sorted(counting.starts[1:opened])
    assert max(counting.starts[1:opened]) <= first, counting.starts
    if cap > opened:  # more only after a window measured the first ones
        assert counting.starts[opened] >= 2 * first, counting.starts


def test_smaller_file_measures_one_connection_first(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(2 * MiB, 12)
    httpd.add("/medium.bin", data)
    report, counting = run_counting(
        httpd.url("/medium.bin", drip=1 * MiB), tmp_path, connections_per_host=4
    )
    assert report.ok, report.failures
    assert len(counting.starts) >= 2
    assert counting.starts[1] >= 2 * (1 * MiB // 20), counting.starts  # a window came first


def test_quiet_tail_is_taken_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # The first answer stalls after 16 KiB. Stealing halves its remainder down to the
    # steal unit; what is left then is taken over by a fresh request instead of waiting
    # out the stall. The stall and the stall timeout are 600 s: only a takeover ends the
    # run within the 60 s it is given (it takes well under a second).
    data = payload(1 * MiB, 13)
    httpd.add("/quiet.bin", data)
    url = httpd.url("/quiet.bin", stall=600, stall_after=16 * KiB, times=1)
    network = NetworkSettings(stall_timeout=600.0, connect_timeout=5.0)
    report, _ = run(url, tmp_path, 60, split=2, connections_per_host=4, network=network)
    assert report.ok, report.failures
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    starts = sorted(int(r.headers.get("range", "bytes=0-")[6:].split("-")[0])
                    for r in httpd.requests_to("/quiet.bin"))
    assert starts[0] == 0 and 16 * KiB in starts  # the remainder moved as a whole


def run_peak(
    httpd: HTTPServer, urls: list[str], tmp_path: Path, **kw: object
) -> tuple[Report, int]:
    """Download ``urls`` (each named by its path) with ``kw`` settings; the report and
    the most connections to the server the kernel saw open at once, counted as the first
    file starts too (see ``counted``). (Windows that only a hang reaches: callers
    count connections, not pace, some with no retry, and on a loaded machine 5 s bounded
    no transfer's or connect's pause.)"""
    settings = Settings(
        state_dir=tmp_path / "state",
        min_split_size=256 * KiB,
        network=NetworkSettings(stall_timeout=30.0, connect_timeout=30.0),
        **kw,  # type: ignore[arg-type]
    )

    async def go(conns: PeakConnections) -> Report:
        eng = Engine(settings, on_event=lambda ev: counted(conns, ev))
        try:
            items = [Item(u, filename=u.split("/")[-1].split("?")[0]) for u in urls]
            return await eng.run(items, tmp_path / "out")
        finally:
            await eng.aclose()

    with PeakConnections(httpd.port) as conns:
        report = asyncio.run(go(conns))
    return report, conns.peak


def counted(conns: PeakConnections, ev: Event) -> None:
    """Count the connections as the first file starts, the run's connections held open
    meanwhile: a loaded machine may give the sampler no turn in a whole run (its peak 0,
    though the run had its connections open). (Once: the run's loop waits meanwhile,
    which the adaptive split's measures would feel at each file.)"""
    if isinstance(ev, Started):
        conns.settle(once=True)


def test_the_peak_is_counted_though_the_sampler_gets_no_turn_of_its_own(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A sampler that counts only when a count is waited for (a loaded machine's, at
    worst): the run's peak is still seen. Before, run_peak waited for none: peak 0."""

    def count_now(self: PeakConnections, timeout: float = 30.0) -> None:
        for _ in range(2):
            self.peak = max(self.peak, established(self.port))
            self.walks += 1

    monkeypatch.setattr(PeakConnections, "_sample", lambda self: None)
    monkeypatch.setattr(PeakConnections, "_count_from_now", count_now)
    url = httpd.add(httpd.new_path("one.bin"), bytes(64 * KiB))
    report, peak = run_peak(httpd, [url], tmp_path, connections_per_host=1)
    assert report.ok == 1, report.failures
    assert peak == 1


def test_many_large_files_keep_the_per_host_cap(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Large files after a large first answer: their first requests go over our own kept
    connections one at a time, their split spans through libcurl; together they stay
    within the per-host cap."""
    files = {f"/many{i}.bin": payload(9 * MiB + i * 4096, 20 + i) for i in range(4)}
    for path, data in files.items():
        httpd.add(path, data)
    urls = [httpd.url(path, drip=24 * MiB) for path in files]
    report, peak = run_peak(httpd, urls, tmp_path, connections_per_host=3, jobs=4)
    assert report.ok == 4, report.failures
    for path, data in files.items():
        assert (tmp_path / "out" / path[1:]).read_bytes() == data
    logged = [r for r in httpd.requests if r.target.startswith("/many")]
    assert any("range" not in r.headers for r in logged[1:])  # later first requests
    assert any("range" in r.headers for r in logged)  # and split spans
    # The kernel's count: the server's log overlaps a cut span with its successor.
    assert 0 < peak <= 3


def test_a_file_right_at_the_early_split_size_splits_at_its_first_answer(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A file of exactly EARLY_SPLIT split sizes opens its connections at its first
    answer, as a larger one does, though that answer's first bytes came with its head.
    (What was left, those bytes taken off, was compared with the threshold: such a file
    went on one connection and its one-connection window, which a held answer, moving no
    bytes, never ends.) The answer is held after its first bytes until a ranged request
    for the file came, or a generous deadline passed."""
    big = payload(EARLY_SPLIT * 256 * KiB, 11)  # (run_peak's min_split_size)
    httpd.add("/edge.bin", big)
    split_while_held = threading.Event()

    def release_once_split() -> None:
        with contextlib.suppress(AssertionError):
            wait_for(lambda: any(r.path == "/edge.bin" and "range" in r.headers
                                 for r in httpd.requests), timeout=30)
            split_while_held.set()
        httpd.release("edge")

    releaser = threading.Thread(target=release_once_split, daemon=True)
    releaser.start()
    try:
        report, _ = run_peak(httpd, [httpd.url("/edge.bin", hold="edge", times=1)], tmp_path)
    finally:
        httpd.release("edge")
        releaser.join()
    assert report.ok == 1, report.failures
    assert (tmp_path / "out" / "edge.bin").read_bytes() == big
    assert split_while_held.is_set()


@pytest.mark.parametrize("cap", [2, 4])
def test_a_split_file_after_small_ones_keeps_the_per_host_cap(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, cap: int
) -> None:
    """Small files leave the pool's pipelined connections open (idle) to the host; a large
    file after them is split over libcurl's connections (ranged requests do not go
    pipelined). Those count against the same cap: the pool's idle connections close to
    make room, busy ones once their answers are in. Before, libcurl opened its own beside
    them: ``-N 4`` showed 7 connections to the host.

    The large file's answer is held after its first bytes until a ranged request for it
    came (or a generous deadline passed): it splits at its first answer (EARLY_SPLIT),
    however slowly a loaded machine goes. (Dripped at a rate instead, its whole body could
    come before the split's turn: not split at all, seen under load.)"""
    small = {f"/s{i}.bin": payload(16 * KiB, 40 + i) for i in range(24)}
    for path, data in small.items():
        httpd.add(path, data)
    big = payload(9 * MiB, 9)  # (EARLY_SPLIT split sizes and more, its first bytes in)
    httpd.add("/after.bin", big)
    urls = [httpd.url(p) for p in small] + [httpd.url("/after.bin", hold="big")]

    def release_once_split() -> None:
        with contextlib.suppress(AssertionError):
            wait_for(lambda: any(r.path == "/after.bin" and "range" in r.headers
                                 for r in httpd.requests), timeout=60)
        httpd.release("big")

    releaser = threading.Thread(target=release_once_split, daemon=True)
    releaser.start()
    try:
        report, peak = run_peak(httpd, urls, tmp_path, connections_per_host=cap)
    finally:
        httpd.release("big")
        releaser.join()
    assert report.ok == len(urls), report.failures
    assert (tmp_path / "out" / "after.bin").read_bytes() == big
    ranged = [r for r in httpd.requests if r.path == "/after.bin" and "range" in r.headers]
    assert ranged  # (it was split)
    assert 0 < peak <= cap


def test_ranged_pieces_set_up_ahead_do_not_wait_for_room_they_hold(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """With one connection per host, small files (pipelined) and then files made of
    ranged pieces of one blob (libcurl's): the pieces set up ahead for their slots hold
    no connection, so the pool's one connection is all a started piece waits for. (An
    early count of them waited for room the pool could never give: the run hung.)"""
    blob = payload(64 * KiB, 77)
    httpd.add("/blob.bin", blob)
    small = {f"/t{i}.bin": payload(8 * KiB, 60 + i) for i in range(6)}
    for path, data in small.items():
        httpd.add(path, data)
    items = [Item(httpd.url(p), filename=p[1:]) for p in small]
    for i in range(6):
        at = [(j * 4 * KiB, j * 4 * KiB + 2 * KiB) for j in range(i, i + 4)]
        pieces = tuple(
            Piece(url=httpd.url("/blob.bin"), range=ByteRange(a, b), offset=n * 2 * KiB,
                  size=b - a)
            for n, (a, b) in enumerate(at)
        )
        items.append(Item(httpd.url("/blob.bin"), filename=f"r{i}.bin", size_bytes=8 * KiB,
                          pieces=pieces))
    settings = Settings(state_dir=tmp_path / "state", connections_per_host=1, jobs=128,
                        network=NetworkSettings(stall_timeout=5.0, connect_timeout=5.0))

    async def go() -> Report:
        eng = Engine(settings)
        try:
            return await asyncio.wait_for(eng.run(items, tmp_path / "out"), 20)
        finally:
            await eng.aclose()

    report = asyncio.run(go())
    assert report.ok == len(items), report.failures
    for i in range(6):
        want = b"".join(blob[j * 4 * KiB : j * 4 * KiB + 2 * KiB] for j in range(i, i + 4))
        assert (tmp_path / "out" / f"r{i}.bin").read_bytes() == want


@pytest.mark.parametrize("fault", ["reset", "status"])
def test_the_per_host_cap_holds_while_concurrent_files_are_retried(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, fault: str
) -> None:
    """Six files at once, large enough to split, each hit by a fault it is retried after
    (a reset mid-body, twice, or a 503 first): the connections the retries open again take
    the place of the ones that failed, never one more, counted as the kernel has them."""
    files = {f"/cap{fault}{i}.bin": payload((3 + i) * MiB, 90 + i) for i in range(6)}
    query = {"reset": f"reset={MiB}&times=2", "status": "status=503&times=1"}[fault]
    for path, data in files.items():
        httpd.add(path, data)
    urls = [f"{httpd.url(path, drip=12 * MiB)}&{query}" for path in files]
    report, peak = run_peak(httpd, urls, tmp_path, connections_per_host=2, jobs=6)
    assert report.ok == 6, report.failures
    for path, data in files.items():
        assert (tmp_path / "out" / path[1:]).read_bytes() == data
    assert len({r.conn_id for r in httpd.requests}) > 2  # (the faults made new ones)
    assert 0 < peak <= 2


def test_files_of_two_hosts_redirected_to_a_third_wait_for_its_cap_without_a_retry(
    httpd: HTTPServer, httpd2: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Two files, each from its own host (a ticket each), both redirected to a third host
    with room for one connection (-N 1): libcurl keeps the second waiting for that one
    connection, while its connect timeout runs. Before, it ended that wait as "Operation
    timed out after 500 milliseconds with 0 bytes received": a retry counted, and with
    --retries 0 the file failed, though the third host had not been asked anything."""
    with HTTPServer() as target:
        datas = [payload(150 * KiB, 97 + i) for i in range(2)]
        items = []
        for i, (source, data) in enumerate(zip((httpd, httpd2), datas, strict=True)):
            target.add(f"/to{i}.bin", data)
            to = target.url(f"/to{i}.bin", drip=100 * KiB)  # (1.5 s: thrice the timeout)
            items.append(Item(source.url(f"/from{i}", redirect=to), filename=f"to{i}.bin"))
        settings = Settings(
            state_dir=tmp_path / "state", connections_per_host=1, retries=0,
            network=NetworkSettings(stall_timeout=5.0, connect_timeout=0.5),
        )
        events: list[Event] = []

        def seen(ev: Event) -> None:
            events.append(ev)
            counted(conns, ev)

        async def go() -> Report:
            eng = Engine(settings, on_event=seen)
            try:
                return await eng.run(items, tmp_path / "out")
            finally:
                await eng.aclose()

        with PeakConnections(target.port) as conns:
            report = asyncio.run(go())
    assert report.ok == 2, report.failures
    assert [(tmp_path / "out" / f"to{i}.bin").read_bytes() for i in range(2)] == datas
    assert [e for e in events if isinstance(e, Retrying)] == []
    assert conns.peak == 1  # (the third host's cap held)


class _WaitForOthers(FakeClock):
    """A fake clock whose waits before a retry last until the other host's files are in
    (10 s at most: then ``cut`` is True)."""

    def __init__(self) -> None:
        super().__init__()
        self.others: asyncio.Event | None = None
        self.cut = False

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        assert self.others is not None
        try:
            await asyncio.wait_for(self.others.wait(), 10)
        except TimeoutError:
            self.cut = True
        self.advance(seconds)


def test_files_waiting_to_try_again_leave_the_run_s_cap_to_other_hosts(
    httpd: HTTPServer, httpd2: HTTPServer, tmp_path: Path
) -> None:
    """Two files of a host that answered 503 (Retry-After: 30) wait to try again, while
    a run capped at two connections has two files of another host to fetch. Before, the
    waiting files held both of the run's connection slots (without a connection): the
    other host's files waited the 30 s out, doing nothing. Now they come meanwhile; the
    waiting files keep their own host's slots (it asked to be left alone)."""
    items = []
    for i in range(2):
        path = httpd.new_path(f"busy{i}.bin")
        httpd.add(path, b"busy" * 1000)
        items.append(Item(httpd.url(path, status=503, times=1, retry_after=30),
                          filename=f"busy{i}.bin"))
    others = []
    for i in range(2):
        path = httpd2.new_path(f"free{i}.bin")
        others.append(httpd2.add(path, b"free" * 1000))
        items.append(Item(others[-1], filename=f"free{i}.bin"))
    clock = _WaitForOthers()
    settings = Settings(state_dir=tmp_path / "state", connections_per_host=2,
                        max_connections=2, network=NetworkSettings(connect_timeout=5.0))

    async def go() -> Report:
        done = clock.others = asyncio.Event()
        came: set[str] = set()

        def note(e: Event) -> None:
            if isinstance(e, Finished) and e.item.download_url in others:
                came.add(e.item.download_url)
                if len(came) == len(others):
                    done.set()

        eng = Engine(settings, clock=clock, on_event=note)
        try:
            return await eng.run(items, tmp_path / "out")
        finally:
            await eng.aclose()

    report = asyncio.run(go())
    assert report.ok == 4, report.failures
    assert clock.sleeps and not clock.cut  # (the other host's files came while they waited)
