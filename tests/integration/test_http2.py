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
    return [r for r in server.requests() if r.target.startswith(prefix)]


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
    assert len(log) == 60 and {r.protocol for r in log} == {"HTTP/2.0"}
    per_conn = sorted(sum(r.connection == c for r in log) for c in {r.connection for r in log})
    assert len(per_conn) <= 4  # the per-host cap holds for connections
    assert per_conn[-1] >= 30  # one connection carried most of them


def test_ranged_requests_stay_on_http11_connections(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(4 * 1024 * KiB, seed=7)
    h2.add("/split/big.bin", data)
    _get([h2.url("split/big.bin", slow=True)], tmp_path / "o", tls_ca_path, split=4)
    assert (tmp_path / "o" / "big.bin").read_bytes() == data
    log = _logged(h2, "/slow/split/")
    plain = [r for r in log if not r.range]
    ranged = [r for r in log if r.range]
    assert [r.protocol for r in plain] == ["HTTP/2.0"]  # the first GET offers HTTP/2
    assert len(ranged) >= 3 and {r.protocol for r in ranged} == {"HTTP/1.1"}
    assert plain[0].connection not in {r.connection for r in ranged}
    assert len({r.connection for r in ranged}) >= 3  # a connection each: per-connection caps split


def test_large_answers_send_light_requests_back_to_http11(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    urls = _files(h2, "/mixed", [512 * KiB, 512 * KiB, 8 * KiB, 8 * KiB], payload)
    _get(urls, tmp_path / "o", tls_ca_path, jobs=1, split=1)  # one at a time, in order
    log = _logged(h2, "/mixed/")
    assert [r.target.rsplit("/", 1)[1] for r in log] == [f"f{i:03d}.bin" for i in range(4)]
    # large over HTTP/2: the next goes HTTP/1.1; small again: HTTP/2 after it
    assert [r.protocol for r in log] == ["HTTP/2.0", "HTTP/1.1", "HTTP/1.1", "HTTP/2.0"]


def test_https_without_http2_keeps_its_connections(
    h1tls: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    urls = _files(h1tls, "/plain", [4 * KiB] * 30, payload)
    _get(urls, tmp_path / "o", tls_ca_path)
    log = _logged(h1tls, "/plain/")
    assert len(log) == 30 and {r.protocol for r in log} == {"HTTP/1.1"}
    assert len({r.connection for r in log}) <= 4  # kept and reused, not one per file


def test_the_transport_says_when_light_requests_share_a_connection(
    h2: NginxServer, tls_ca_path: Path, payload: Callable[..., bytes]
) -> None:
    import asyncio

    from omniget.engine.transports.base import Head, Request
    from omniget.engine.transports.http import CurlTransport

    small, big = _files(h2, "/state", [4 * KiB, 600 * KiB], payload)

    class Sink:
        def on_head(self, head: Head) -> None: ...

        def on_data(self, data: bytes) -> None: ...

    async def states() -> list[bool]:
        t = CurlTransport(NetworkSettings(ca_cert=str(tls_ca_path), netrc=False))
        seen = [t.pipelined(small)]  # unknown host: not yet
        for url in (small, big, small):
            await t.fetch(Request(url), Sink())
            seen.append(t.pipelined(url))
        await t.aclose()
        return seen

    assert asyncio.run(states()) == [False, True, False, True]
