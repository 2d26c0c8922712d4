"""Adaptive splitting against the fault server: more connections only where they pay.

These run in real time (the server's drip paces each connection), a second or less each.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from omniget.engine import Engine, Report
from omniget.engine.transports.base import Head, Request, Sink
from omniget.engine.transports.http import CurlTransport
from omniget.model import Item
from omniget.settings import NetworkSettings, Settings

KiB = 1024
MiB = 1024 * KiB


class Counting:
    """Wraps the real transport and records the most fetches in flight at once."""

    def __init__(self, inner: CurlTransport) -> None:
        self.inner = inner
        self.now = self.most = 0

    async def fetch(self, request: Request, sink: Sink) -> Head:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.inner.fetch(request, sink)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def run(url: str, tmp_path: Path, **kw: object) -> tuple[Report, int]:
    settings = Settings(
        state_dir=tmp_path / "state",
        min_split_size=256 * KiB,
        network=NetworkSettings(stall_timeout=5.0, connect_timeout=5.0),
        **kw,  # type: ignore[arg-type]
    )

    transport = Counting(
        CurlTransport(settings.network, max_host_connections=settings.connections_per_host)
    )

    async def go() -> Report:
        eng = Engine(settings, transports={"http": transport})  # type: ignore[dict-item]
        try:
            return await eng.run([Item(url, filename="f.bin")], tmp_path / "out")
        finally:
            await eng.aclose()
            await transport.aclose()

    return asyncio.run(go()), transport.most


def test_per_connection_limit_goes_to_the_host_cap(httpd, payload, tmp_path) -> None:
    data = payload(8 * MiB, 7)
    httpd.add("/capped.bin", data)
    report, most = run(httpd.url("/capped.bin", drip=6 * MiB), tmp_path, connections_per_host=6)
    assert report.ok, report.failures
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    # one connection, then four, then the cap: each step nearly multiplied the rate
    assert most == 6


def test_split_waits_for_the_new_connections_first_answers(httpd, payload, tmp_path) -> None:
    # Every answer comes 0.15 s late: a window that started at connect time would see the
    # new connections add nothing and stop; measured from their answers they double it.
    data = payload(3 * MiB, 8)
    httpd.add("/late.bin", data)
    url = httpd.url("/late.bin", drip=4 * MiB, delay=0.15)
    report, most = run(url, tmp_path, connections_per_host=8)
    assert report.ok, report.failures
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert most >= 4


def test_small_file_uses_one_request(httpd, payload, tmp_path) -> None:
    data = payload(300 * KiB, 9)
    httpd.add("/small.bin", data)
    report, _ = run(httpd.url("/small.bin", drip=2 * MiB), tmp_path, connections_per_host=8)
    assert report.ok
    assert len(httpd.requests_to("/small.bin")) == 1


def test_tail_is_stolen_below_the_split_size(httpd, payload, tmp_path) -> None:
    # --split 2 on a file just over 2 x min_split: when the faster half ends, the other's
    # remainder (well under 2 x min_split) is still split again.
    data = payload(600 * KiB, 10)
    httpd.add("/tail.bin", data)
    url = httpd.url("/tail.bin", drip=200 * KiB, times=1)  # only the first answer is slow
    report, _ = run(url, tmp_path, split=2, connections_per_host=4)
    assert report.ok
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert len(httpd.requests_to("/tail.bin")) >= 3
