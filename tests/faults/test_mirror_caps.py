"""The per-host cap (``-N``) holds for files that switch to a mirror: a file under way
that goes to another URL's host takes a connection slot for that host (giving back the
one of the host it left) before its request goes, as its first try did.

Counted twice: the requests to the mirror's host under way at once (a transport that
wraps the real one counts them: a request past the cap would wait inside libcurl for one
of its connections, its connect timeout running, outside the run's order), and its
connections as the kernel has them (tests/servers/conns.py). Backoff sleeps run on a
fake clock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from tests.servers.conns import PeakConnections
from tests.servers.httpd import HTTPServer

from omniget.engine import Engine, Report
from omniget.engine.events import Event, Started, Warned
from omniget.engine.retry import FakeClock
from omniget.engine.scheduler import host_of
from omniget.engine.transports.base import Head, Request, Sink
from omniget.engine.transports.http import CurlTransport
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.model import Item
from omniget.settings import NetworkSettings, Settings

KiB = 1024
MiB = 1024 * KiB

#: Files in the many-files runs: many more than the live host's connections.
FILES = 30


class HostCounts:
    """Each host's requests under way (from the call that sends one, its slot granted,
    to its end) and the most of them at once."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    async def counted(self, request: Request, fetch: Awaitable[Head]) -> Head:
        host = host_of(request.url)
        self.now[host] += 1
        self.most[host] = max(self.most[host], self.now[host])
        try:
            return await fetch
        finally:
            self.now[host] -= 1


class Counting(HostCounts):
    """The real transport, counting its requests (:class:`HostCounts`)."""

    def __init__(self, inner: CurlTransport) -> None:
        super().__init__()
        self.inner = inner

    async def fetch(self, request: Request, sink: Sink) -> Head:
        return await self.counted(request, self.inner.fetch(request, sink))

    async def aclose(self) -> None:
        await self.inner.aclose()


def run_peak(
    items: list[Item], tmp_path: Path, live: HTTPServer, **kw: object
) -> tuple[Report, list[Event], int, int]:
    """Download ``items`` with ``kw`` settings (within a generous minute: a run that
    stalls fails, not hangs); the report, its events, the most requests to ``live`` under
    way at once, and the most connections to it the kernel saw open at once (counted as
    each file starts too: see ``counted``)."""
    settings = Settings(
        state_dir=tmp_path / "state",
        min_split_size=256 * KiB,
        network=NetworkSettings(stall_timeout=30.0, connect_timeout=30.0),
        **kw,  # type: ignore[arg-type]
    )
    transport = Counting(
        CurlTransport(settings.network, max_host_connections=settings.connections_per_host)
    )
    events: list[Event] = []

    def seen(ev: Event) -> None:
        events.append(ev)
        counted(conns, ev)

    async def go() -> Report:
        eng = Engine(settings, transports={"http": transport},  # type: ignore[dict-item]
                     clock=FakeClock(), on_event=seen)
        try:
            return await asyncio.wait_for(eng.run(items, tmp_path / "out"), 60)
        finally:
            await eng.aclose()
            await transport.aclose()

    with PeakConnections(live.port) as conns:
        report = asyncio.run(go())
    return report, events, transport.most[host_of(live.base_url)], conns.peak


def counted(conns: PeakConnections, ev: Event) -> None:
    """Count the connections as a file starts, the run's connections held open meanwhile
    (a loaded machine may give the sampler no turn of its own in a whole run)."""
    if isinstance(ev, Started):
        conns.settle()


def mirror_tries(events: list[Event]) -> int:
    """Failed tries that sent a file to its next mirror."""
    return sum(isinstance(e, Warned) and e.message.endswith("trying a mirror") for e in events)


@pytest.mark.parametrize("cap", [2, 4])
def test_files_that_go_to_a_live_mirror_keep_its_host_s_cap(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, refused_port: int,
    cap: int,
) -> None:
    """30 files, each with a dead first URL (a refused port) and the same live mirror:
    the live host never has more requests under way, nor connections open, than its cap
    (-N 2, or 4 by default), and the files that tried the dead host first give its slots
    back (the run ends). Before, each such file fetched from the mirror on its slot of
    the dead host, beside the files that got slots of the mirror's own: twice the cap."""
    datas = [payload(48 * KiB, 300 + i) for i in range(FILES)]
    items = []
    for i, data in enumerate(datas):
        httpd.add(f"/m{i}.bin", data)
        items.append(Item(f"http://127.0.0.1:{refused_port}/m{i}.bin",
                          mirrors=(httpd.url(f"/m{i}.bin", drip=256 * KiB),)))
    kw = {} if cap == 4 else {"connections_per_host": cap}
    report, events, most, peak = run_peak(items, tmp_path, httpd, **kw)
    assert report.exit_code == 0, report.failures
    assert [(tmp_path / "out" / f"m{i}.bin").read_bytes() for i in range(FILES)] == datas
    assert mirror_tries(events) >= 2  # (the first files did try the dead host)
    assert most == cap  # (the cap was reached: the files did overlap)
    assert 0 < peak <= cap


def test_a_split_file_whose_first_host_dies_keeps_its_mirror_s_cap(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A large file split over two connections (-N 2, --split 4) to its first host, which
    dies mid-way (its connections cut, its port closed): the spans go to the mirror, and
    the mirror gets two requests at once at most, though the file would take four.
    Before, the spans that switched fetched from the mirror on their slots of the dead
    host, and the splitter added two on the mirror's own: four."""
    data = payload(8 * MiB, 77)
    httpd.add("/split.bin", data)
    with HTTPServer() as first:
        first.add("/split.bin", data)
        item = Item(first.url("/split.bin", hold="cut"),
                    mirrors=(httpd.url("/split.bin", drip=8 * MiB),))

        def cut() -> None:
            """Once both connections to the first host hold an answer, kill it."""
            deadline = time.monotonic() + 30
            while len(first.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            first.stop()  # (its connections cut while they hold: no answer ends)
            first.release("cut")  # (its threads end)

        killer = threading.Thread(target=cut, daemon=True)
        killer.start()
        report, events, most, peak = run_peak(
            [item], tmp_path, httpd, connections_per_host=2, split=4
        )
        killer.join(30)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "out" / "split.bin").read_bytes() == data
    assert len(first.requests) >= 2  # (it was split before the first host died)
    assert mirror_tries(events) >= 2
    assert most == 2
    assert 0 < peak <= 2


class CountingMemory(MemoryTransport):
    """The in-memory transport (its answers a chunk per turn of the loop: the requests
    under way interleave), counting each host's requests under way as :class:`Counting`
    does."""

    def __init__(self) -> None:
        super().__init__(chunk=4 * KiB)
        self.counts = HostCounts()
        self.now, self.most = self.counts.now, self.counts.most

    async def fetch(self, request: Request, sink: Sink) -> Head:
        return await self.counts.counted(request, super().fetch(request, sink))


def test_a_file_whose_renewed_url_is_another_host_s_keeps_that_host_s_cap(
    tmp_path: Path,
) -> None:
    """Files of one host (-N 1), beside files whose URL, on another host, expired (403)
    and whose source renews it on the first host: one request at a time goes to the
    first host. Before, a renewed file went on on its slot of the other host, beside the
    one of the first host's own files: two at once."""
    mem = CountingMemory()
    datas = [bytes([i]) * (256 * KiB) for i in range(6)]
    items = []
    for i, data in enumerate(datas):
        mem.add(f"http://one.test/f{i}.bin", data)
        if i % 2:
            items.append(Item(f"http://one.test/f{i}.bin"))
        else:  # (expired: renewed on one.test)
            mem.on(f"http://two.test/f{i}.bin", lambda req, n: MemResponse(403, b"expired"))
            items.append(Item(f"http://two.test/f{i}.bin"))
    renewed: list[str] = []

    async def refresh(item: Item) -> Item:
        renewed.append(item.download_url)
        return replace(item, download_url=item.download_url.replace("two.test", "one.test"))

    settings = Settings(state_dir=tmp_path / "state", connections_per_host=1)
    eng = Engine(settings, transports={"http": mem}, clock=FakeClock(), refresh=refresh)

    async def go() -> Report:
        try:
            return await asyncio.wait_for(eng.run(items, tmp_path / "out"), 60)
        finally:
            await eng.aclose()

    report = asyncio.run(go())
    assert report.exit_code == 0, report.failures
    assert [(tmp_path / "out" / f"f{i}.bin").read_bytes() for i in range(6)] == datas
    assert sorted(renewed) == [f"http://two.test/f{i}.bin" for i in (0, 2, 4)]
    assert mem.most[host_of("http://one.test/")] == 1
