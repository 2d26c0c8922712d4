"""HTTPS through a real nginx: light GETs share connections as HTTP/2 streams; ranged
requests and large answers stay on HTTP/1.1, one transfer per connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.servers.nginx import Logged, NginxServer, nginx_binary, start_nginx
from tests.servers.tls import TLSFiles

import omniget
from omniget.settings import NetworkSettings, Settings

KiB = 1024


def _server(
    factory: pytest.TempPathFactory, tls: TLSFiles, *, http2: bool
) -> Iterator[NginxServer]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    server = start_nginx(
        factory.mktemp("www"), factory.mktemp("nginx"), access_log=True, tls=tls, http2=http2
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def h2(tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles) -> Iterator[NginxServer]:
    yield from _server(tmp_path_factory, tls_files, http2=True)


@pytest.fixture(scope="module")
def h1tls(tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles) -> Iterator[NginxServer]:
    yield from _server(tmp_path_factory, tls_files, http2=False)


def _get(urls: list[str], dest: Path, ca: Path, **settings: object) -> omniget.Report:
    net = NetworkSettings(ca_cert=str(ca), netrc=False)
    s = Settings(network=net, state_dir=dest.parent / "state", **settings)  # type: ignore[arg-type]
    report = omniget.download(urls, dest, settings=s)
    assert [r.status for r in report.results] == ["ok"] * len(urls), report.results
    return report


def _logged(server: NginxServer, prefix: str) -> list[Logged]:
    """The logged requests under ``prefix``, by target."""
    log = [r for r in server.requests() if r.target.startswith(prefix)]
    return sorted(log, key=lambda r: r.target)


def _files(
    server: NginxServer, prefix: str, sizes: list[int], payload: Callable[..., bytes]
) -> list[str]:
    return [server.add(f"{prefix}/f{i:03d}.bin", payload(n, seed=i)) for i, n in enumerate(sizes)]


def test_small_files_go_as_http2_streams_on_few_connections(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    urls = _files(h2, "/small", [4 * KiB] * 60, payload)
    _get(urls, tmp_path / "o", tls_ca_path)
    for i in range(60):
        assert (tmp_path / "o" / f"f{i:03d}.bin").read_bytes() == payload(4 * KiB, seed=i)
    log = _logged(h2, "/small/")
    assert len(log) == 60
    # (the first goes alone, over HTTP/1.1; libcurl may reuse that kept connection later)
    assert sum(r.protocol == "HTTP/2.0" for r in log) >= 45
    per_conn = sorted(sum(r.connection == c for r in log) for c in {r.connection for r in log})
    assert len(per_conn) <= 4  # the per-host cap holds for connections
    assert per_conn[-1] >= 30  # one connection carried most of them


def test_a_lone_download_stays_on_http11(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # (16 MiB: the spans' connections open while the first still has a way to go, also
    # on a loaded machine; a connection done early takes over a silent span's rest)
    data = payload(16 * 1024 * KiB, seed=7)
    h2.add("/lone/big.bin", data)
    _get([h2.url("lone/big.bin", slow=True)], tmp_path / "o", tls_ca_path, split=4)
    assert (tmp_path / "o" / "big.bin").read_bytes() == data
    log = _logged(h2, "/slow/lone/")
    assert len(log) >= 4 and {r.protocol for r in log} == {"HTTP/1.1"}
    assert len({r.connection for r in log if r.range}) >= 3  # a connection per range


def test_ranged_requests_stay_on_http11_beside_http2_streams(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # (room for the spans beside the small files' connections, and a file that lasts
    # at the slow location's rate while a loaded machine opens them: with 8 MiB and the
    # host cap shared with the small files, 3 ranged requests, the bound, was usual)
    import asyncio

    from omniget.engine import Engine, Report
    from omniget.engine.transports.http import CurlTransport
    from omniget.model import Item

    data = payload(24 * 1024 * KiB, seed=8)
    h2.add("/both/big.bin", data)
    small = _files(h2, "/both/s", [4 * KiB] * 20, payload)
    net = NetworkSettings(ca_cert=str(tls_ca_path), netrc=False)
    s = Settings(network=net, state_dir=tmp_path / "state", split=4, connections_per_host=8)
    urls = [h2.url("both/big.bin", slow=True), *small]

    async def run() -> tuple[Report, int]:
        eng = Engine(s)
        try:
            report = await eng.run([Item(u) for u in urls], tmp_path / "o")
            transport = eng.transports()["https"]
            assert isinstance(transport, CurlTransport)
            return report, transport.pipelined(small[0])
        finally:
            await eng.aclose()

    report, shared = asyncio.run(run())
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "o" / "big.bin").read_bytes() == data
    ranged = [r for r in _logged(h2, "/slow/both/") if r.range]
    streams = [r for r in _logged(h2, "/both/s/") if r.protocol == "HTTP/2.0"]
    # the big file's first (large) answer, whenever it came among the small ones' (it
    # came between them: a run then sent 13 of the 20 over HTTP/1.1), leaves the host's
    # light GETs streams (how many went before the first small answers is timing)
    assert streams and shared == 1
    assert len(ranged) >= 3 and {r.protocol for r in ranged} == {"HTTP/1.1"}
    assert len({r.connection for r in ranged}) >= 3  # per-connection caps still split
    assert not {r.connection for r in ranged} & {r.connection for r in streams}


def test_https_without_http2_keeps_its_connections(
    h1tls: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    urls = _files(h1tls, "/plain", [4 * KiB] * 30, payload)
    _get(urls, tmp_path / "o", tls_ca_path)
    log = _logged(h1tls, "/plain/")
    assert len(log) == 30 and {r.protocol for r in log} == {"HTTP/1.1"}
    assert len({r.connection for r in log}) <= 4  # kept and reused, not one per file


class _Gate:
    """A slot granted when the test says so (the engine's Ticket, reduced)."""

    def __init__(self) -> None:
        self.granted = False
        self._callbacks: list[Callable[[], None]] = []

    def on_grant(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def wait(self) -> None:
        raise AssertionError("not used: the transport starts on the grant")

    def open(self) -> None:
        self.granted = True
        for cb in self._callbacks:
            cb()


def test_large_answers_send_light_requests_back_to_http11(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes]
) -> None:
    import asyncio

    from omniget.engine.transports.base import Head, Request
    from omniget.engine.transports.http import CurlTransport

    sizes = [4 * KiB] * 3 + [600 * KiB] * 2 + [4 * KiB] * 4
    urls = _files(h2, "/pairs", sizes, payload)

    class Sink:
        def on_head(self, head: Head) -> None: ...

        def on_data(self, data: bytes) -> None: ...

    async def pairs() -> list[int]:
        t = CurlTransport(NetworkSettings(ca_cert=str(tls_ca_path), netrc=False))
        seen = [t.pipelined(urls[0])]  # unknown host: not yet
        await t.fetch(Request(urls[0]), Sink())  # alone: HTTP/1.1, its connection kept
        seen.append(t.pipelined(urls[0]))
        for i in range(1, len(urls), 2):  # two at a time, both set up before their grant
            gate = _Gate()
            tasks = [
                asyncio.create_task(t.fetch(Request(u), Sink(), gate)) for u in urls[i : i + 2]
            ]
            await asyncio.sleep(0.01)
            gate.open()
            await asyncio.gather(*tasks)
            seen.append(t.pipelined(urls[0]))
        await t.aclose()
        return seen

    # alone: nothing learnt; small answers: share (even when one of the pair reused the
    # kept HTTP/1.1 connection); large ones: stop; small again (over HTTP/1.1): share again
    assert asyncio.run(pairs()) == [0, 0, 1, 0, 1, 1]  # (1: one stream of a connection)
    protocols = [r.protocol for r in _logged(h2, "/pairs/")]
    assert protocols[0] == "HTTP/1.1" and "HTTP/2.0" in protocols[1:3]
    assert protocols[5:7] == ["HTTP/1.1"] * 2  # after the large answers


def test_a_large_answer_among_small_ones_leaves_light_requests_on_http2(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes]
) -> None:
    # a host serving small files and a large one, whose answer comes between theirs:
    # the small ones after it still go as streams (the last answer decided: the large
    # one sent them back to HTTP/1.1, each on a connection of its own)
    import asyncio

    from omniget.engine.transports.base import Head, Request
    from omniget.engine.transports.http import CurlTransport

    sizes = [4 * KiB] * 3 + [600 * KiB] + [4 * KiB] * 3
    urls = _files(h2, "/mixed", sizes, payload)

    class Sink:
        def on_head(self, head: Head) -> None: ...

        def on_data(self, data: bytes) -> None: ...

    async def steps() -> list[int]:
        t = CurlTransport(NetworkSettings(ca_cert=str(tls_ca_path), netrc=False))
        await t.fetch(Request(urls[0]), Sink())  # alone: HTTP/1.1, nothing learnt
        seen = []
        for group in (urls[1:3], urls[3:5], urls[5:7]):  # set up together, then granted
            gate = _Gate()
            tasks = [asyncio.create_task(t.fetch(Request(u), Sink(), gate)) for u in group]
            await asyncio.sleep(0.01)
            gate.open()
            await asyncio.gather(*tasks)
            seen.append(t.pipelined(urls[0]))
        await t.aclose()
        return seen

    # small answers: share; the large one beside a small one, in either order: still
    assert asyncio.run(steps()) == [1, 1, 1]
    protocols = [r.protocol for r in _logged(h2, "/mixed/")]
    # (a request offered HTTP/2 may reuse the first one's kept HTTP/1.1 connection)
    assert "HTTP/2.0" in protocols[1:3] and "HTTP/2.0" in protocols[5:7]
