"""CurlTransport's pipelined path (see transports/pipeline.py) as the engine uses it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pycurl
import pytest
from tests.servers.conns import PeakConnections, can_count, established
from tests.servers.tls import JSSE_ALERT, make_tls

from omniget import download
from omniget.engine.assemble import PartFile
from omniget.engine.events import Event, Started
from omniget.engine.scheduler import UNIT
from omniget.engine.transports.base import Head, Request
from omniget.engine.transports.http import CurlTransport
from omniget.engine.transports.pipeline import DEPTH
from omniget.errors import RemoteError
from omniget.settings import NetworkSettings, Settings

from ._http_kit import Sink, run
from ._server import Handler, Req, Server, ranged, redirect, reply, static

LOGGER = "omniget.engine.transports.http"


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        for i in range(40):
            server.route(f"/f{i}", static(f"file {i} ".encode() * (i + 1)))
            server.route(f"/r{i}", redirect(f"/f{i}"))
        yield server


def body(i: int) -> bytes:
    return f"file {i} ".encode() * (i + 1)


async def fetch_all(t: CurlTransport, urls: list[str]) -> list[Sink | BaseException]:
    sinks = [Sink() for _ in urls]
    results = await asyncio.gather(
        *(t.fetch(Request(u), s) for u, s in zip(urls, sinks, strict=True)),
        return_exceptions=True,
    )
    return [r if isinstance(r, BaseException) else s for r, s in zip(results, sinks, strict=True)]


def first_then(
    first: str, rest: list[str]
) -> Callable[[CurlTransport], Awaitable[list[Sink | BaseException]]]:
    """For run(): ``first`` fetched alone (by libcurl; its answer confirms the origin),
    then all of ``rest`` at once: their results."""

    async def go(t: CurlTransport) -> list[Sink | BaseException]:
        await fetch_all(t, [first])
        return await fetch_all(t, rest)

    return go


async def open_settled(srv: Server, cap: int) -> int:
    """The server's open connections once they are down to ``cap`` (or after 30 s): its
    threads see a client's close a moment after the client made it, and on a loaded
    machine a moment may be seconds."""
    deadline = time.monotonic() + 30
    while srv.open > cap and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return srv.open


def pipelined(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().endswith("(pipelined)") for r in caplog.records)


async def fetch_granted(t: CurlTransport, srv: Server, count: int) -> list[bytes]:
    """``/f0`` to ``/f{count - 1}`` all asked at once, each fetched when the host's slot
    (two of them) is granted: their bodies."""
    from omniget.engine.scheduler import HostLimits
    from omniget.engine.transports.base import fetch_when_granted

    limits = HostLimits(per_host=2, total=2)
    sinks = [Sink() for _ in range(count)]
    tickets = [limits.ticket(srv.url(f"/f{i}")) for i in range(count)]

    async def one(i: int) -> None:
        try:
            await fetch_when_granted(t, Request(srv.url(f"/f{i}")), sinks[i], tickets[i])
        finally:
            tickets[i].close()

    await asyncio.gather(*(one(i) for i in range(count)))
    return [bytes(s.data) for s in sinks]


def test_concurrent_gets_are_pipelined_once_the_origin_kept_a_connection(
    srv: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def go(t: CurlTransport) -> list[Sink | BaseException]:
        first = await fetch_all(t, [srv.url("/f0")])  # libcurl; the origin is confirmed
        assert t.pipelined(srv.url("/x"))
        rest = await fetch_all(t, [srv.url(f"/f{i}") for i in range(1, 40)])
        open_now.append(await open_settled(srv, 2))
        return first + rest

    open_now: list[int] = []
    sinks = run(go, max_host_connections=2)
    for i, s in enumerate(sinks):
        assert isinstance(s, Sink) and bytes(s.data) == body(i)
    assert pipelined(caplog) >= 30
    # libcurl's one connection, then at most two pipelined ones (the per-host cap):
    # libcurl's, idle once the pool took over, is shut when the pool opens its own
    assert len({r.conn for r in srv.requests}) <= 3
    assert open_now == [2]
    per_conn: dict[int, int] = {}
    for r in srv.requests:
        per_conn[r.conn] = per_conn.get(r.conn, 0) + 1
    assert max(per_conn.values()) > 8  # several requests per connection


def _late(body: bytes, pause: float) -> Handler:
    """Answers ``body`` after ``pause`` seconds: each pipelined answer comes on its own."""

    def handle(req: Req, sock: socket.socket) -> None:
        time.sleep(pause)
        reply(sock, 200, body)

    return handle


@pytest.mark.parametrize("pause", [0.0, 0.02])
def test_a_pipelined_request_asks_the_pool_once_whether_it_goes_there(
    srv: Server, monkeypatch: pytest.MonkeyPatch, pause: float
) -> None:
    """Once the origin is known, a request asks the pool one question (takes) before it
    goes, and one (answered) once its answer is in: not usable, has_connections, shares,
    known and confirm each in turn (and the key of its URL again). A connection asks the
    pool at most once per read; how many reads the answers take depends on timing (a
    ``pause`` before each answer gives most their own read), so those are counted apart."""
    from omniget.engine.transports.h1conn import Conn
    from omniget.engine.transports.pipeline import PipelinePool

    if pause:
        for i in range(1, 33):
            srv.route(f"/f{i}", _late(body(i), pause))
    asked: list[str] = []  # pool questions outside a connection's read
    in_reads: list[str] = []  # ... and during one
    reads = [0]
    for name in ("usable", "has_connections", "shares", "known", "confirm", "takes",
                 "answered"):  # fmt: skip
        real = getattr(PipelinePool, name, None)
        if real is None:
            continue

        def counted(self: PipelinePool, *args: Any, _real: Any = real, _name: str = name) -> Any:
            (in_reads if reading else asked).append(_name)
            return _real(self, *args)

        monkeypatch.setattr(PipelinePool, name, counted)
    reading = False
    real_get_buffer = Conn.get_buffer

    def get_buffer(self: Conn, sizehint: int) -> memoryview:
        nonlocal reading
        reads[0] += 1
        reading = True
        try:
            return real_get_buffer(self, sizehint)
        finally:
            reading = False

    monkeypatch.setattr(Conn, "get_buffer", get_buffer)

    async def go(t: CurlTransport) -> list[tuple[int, int, int]]:
        await fetch_all(t, [srv.url("/f0")])  # libcurl; the origin is confirmed
        counts = []
        for batch in (range(1, 9), range(9, 33)):
            asked.clear()
            in_reads.clear()
            reads[0] = 0
            got = await fetch_all(t, [srv.url(f"/f{i}") for i in batch])
            assert all(isinstance(s, Sink) and bytes(s.data) == body(i) for i, s in zip(
                batch, got, strict=True))  # fmt: skip
            others = sum(1 for a in asked if a not in ("takes", "answered"))
            counts.append((others, len(in_reads), reads[0]))
            assert asked.count("answered") == len(batch)
        return counts

    counts = run(go, max_host_connections=2)
    # (24 requests, all pipelined: the pool holds connections since the first batch)
    others, during, reads_made = counts[1]
    assert others == 0, counts  # nothing per request beside takes and answered
    assert during <= reads_made, counts  # the pool's own bookkeeping: per read


def test_pipelined_requests_carry_what_libcurl_sends(srv: Server) -> None:
    settings = NetworkSettings(headers=(("X-Token", "abc"),), user_agent="ua/1")
    urls = [srv.url(f"/f{i}?q=1#frag") for i in range(1, 12)]
    sinks = run(first_then(srv.url("/f0"), urls), settings)
    assert all(isinstance(s, Sink) for s in sinks)
    first, rest = srv.requests[0], srv.requests[1:]
    for r in rest:
        assert r.method == "GET" and r.query == "q=1"
        assert r.headers["x-token"] == "abc" and r.headers["user-agent"] == "ua/1"
        assert r.headers["host"] == first.headers["host"]
        assert r.headers["accept-encoding"] == "identity"
        assert r.headers.keys() >= first.headers.keys() - {"content-length"}


def test_a_header_given_empty_is_not_sent_by_either_path(srv: Server) -> None:
    # as curl's -H "Accept:": the default goes, and nothing empty is sent in its place
    empty = (("Accept", ""), ("User-Agent", ""), ("X-A", "1"))
    settings = NetworkSettings(headers=empty, user_agent="ua/1")
    rest = [srv.url(f"/f{i}") for i in range(1, 12)]  # (pipelined)
    sinks = run(first_then(srv.url("/f0"), rest), settings)
    assert all(isinstance(s, Sink) for s in sinks)
    assert len(srv.requests) == 12
    for r in srv.requests:
        assert "accept" not in r.headers and "user-agent" not in r.headers
        assert r.headers["x-a"] == "1"


def test_redirects_and_errors_on_the_pipelined_path(srv: Server) -> None:
    urls = [srv.url(f"/r{i}") for i in range(1, 20)] + [srv.url("/missing")]
    results = run(first_then(srv.url("/f0"), urls))
    for i, r in enumerate(results[:-1], start=1):
        assert isinstance(r, Sink) and bytes(r.data) == body(i)
        assert r.heads[-1].url.endswith(f"/f{i}")
    last = results[-1]
    assert isinstance(last, Sink) and last.heads[-1].status == 404


@pytest.mark.parametrize(
    ("host", "entry"),
    [
        # libcurl tries each address of HOST:PORT:A,B; the pool tried only A, so nothing
        # to the host was ever pipelined when A refused
        ("made.test", "made.test:{port}:127.0.0.2,127.0.0.1"),
        # libcurl takes [::1]:PORT:ADDR (the CLI refused it); the pool maps it too
        # (nothing listens on ::1: only the entry reaches the server)
        ("[::1]", "[::1]:{port}:127.0.0.1"),
    ],
    ids=["second-address", "ipv6-host"],
)
def test_a_resolve_entry_gets_its_host_pipelined(
    srv: Server, caplog: pytest.LogCaptureFixture, host: str, entry: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    base = f"http://{host}:{srv.port}"
    settings = NetworkSettings(resolve=(entry.format(port=srv.port),))
    results = run(first_then(f"{base}/f0", [f"{base}/f{i}" for i in range(1, 12)]), settings)
    for i, r in enumerate(results, start=1):
        assert isinstance(r, Sink) and bytes(r.data) == body(i)
    assert pipelined(caplog) >= 6


def test_credentials_in_a_location_never_reach_the_host_line(srv: Server) -> None:
    """A pipelined redirect to ``http://user:pw@host/`` sent ``Host: user:pw@host``."""
    for i in range(1, 12):
        srv.route(f"/c{i}", redirect(f"http://eve:pw@127.0.0.1:{srv.port}/f{i}"))
    rest = [srv.url(f"/c{i}") for i in range(1, 12)]
    results = run(first_then(srv.url("/f0"), rest), NetworkSettings(netrc=False))
    for i, r in enumerate(results, start=1):
        assert isinstance(r, Sink) and bytes(r.data) == body(i)
    assert {r.headers["host"] for r in srv.requests} == {f"127.0.0.1:{srv.port}"}
    assert not any("authorization" in r.headers for r in srv.requests)


def test_credentials_and_proxies_keep_requests_on_libcurl(
    srv: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def go(t: CurlTransport) -> list[Sink | BaseException]:
        base = srv.url("/").replace("http://", "http://me:pw@")
        await fetch_all(t, [base + "f0"])
        return await fetch_all(t, [base + f"f{i}" for i in range(1, 10)])

    assert all(isinstance(s, Sink) for s in run(go))
    assert pipelined(caplog) == 0
    assert all("authorization" in r.headers for r in srv.requests)

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # (never reached: see below)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    t = CurlTransport(NetworkSettings(proxy=""))  # --proxy "": no proxy at all
    assert t._may_pipeline
    assert not CurlTransport(NetworkSettings())._may_pipeline
    assert not CurlTransport(NetworkSettings(proxy="http://127.0.0.1:9"))._may_pipeline


def test_a_host_no_proxy_exempts_is_pipelined_and_a_proxied_one_never(
    srv: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http_proxy set, a host in no_proxy goes direct in libcurl: it is pipelined
    as without a proxy (it never was), while a host the proxy serves stays on libcurl."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with Server() as proxy:
        for i in range(12):
            proxy.route(f"/f{i}", static(body(i)))  # (asked for far.test's URLs)
        monkeypatch.setenv("http_proxy", proxy.origin)
        monkeypatch.setenv("no_proxy", "example.org, .near.test")
        monkeypatch.delenv("NO_PROXY", raising=False)
        resolve = (f"a.near.test:{srv.port}:127.0.0.1",)

        async def go(t: CurlTransport) -> list[Sink | BaseException]:
            out = []
            for host in ("a.near.test", "far.test"):
                base = f"http://{host}:{srv.port}"
                out += await fetch_all(t, [f"{base}/f0"])
                out += await fetch_all(t, [f"{base}/f{i}" for i in range(1, 12)])
            return out

        results = run(go, NetworkSettings(resolve=resolve))
        assert [bytes(r.data) for r in results if isinstance(r, Sink)] == [
            body(i) for i in range(12)
        ] * 2
        assert {r.target.rpartition("/")[0] for r in proxy.requests} == {
            f"http://far.test:{srv.port}"
        }
        assert len(proxy.requests) == 12 and len(srv.requests) == 12
    assert 6 <= pipelined(caplog) <= 11  # (a.near.test's, but its first)


def test_a_server_that_closes_after_each_answer_is_not_pipelined_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    count = {"n": 0}

    def keep_once(req: Req, sock: object) -> bool:
        # the first answer keeps the connection (so the origin is confirmed), later
        # ones say Connection: close
        count["n"] += 1
        close = count["n"] > 1
        headers = [("Connection", "close")] if close else []
        static(b"data", headers=headers)(req, sock)  # type: ignore[arg-type]
        return not close

    with Server() as server:
        server.route("/k", keep_once)

        async def go(t: CurlTransport) -> list[Sink | BaseException]:
            await fetch_all(t, [server.url("/k")])
            return await fetch_all(t, [server.url("/k") for _ in range(12)])

        results = run(go)
    assert all(isinstance(s, Sink) and bytes(s.data) == b"data" for s in results)


def test_an_origin_that_turns_to_tls_fails_its_pipelined_requests_at_once(
    srv: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its port now speaks TLS (as Java's server does: an alert to a plain request) and
    the old connections are gone: the requests the pool sends fail at once, said to be
    TLS, as do those libcurl sends ("HTTP/0.9" on a new connection): none is retried."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    urls = [srv.url(f"/f{i}") for i in range(1, 9)]

    async def go(t: CurlTransport) -> list[Sink | BaseException]:
        await fetch_all(t, [srv.url("/f0")])  # libcurl; the origin is confirmed
        assert t.pipelined(srv.url("/x"))
        srv.tls, srv.plain = make_tls(tmp_path).server_context(), JSSE_ALERT
        srv.drop()
        return await fetch_all(t, urls)

    results = run(go)
    for r in results:
        assert isinstance(r, RemoteError) and not r.retryable, r
    said = [str(r) for r in results]
    tls = [f"{u} answered in TLS: use https{u[4:]}" for u in urls]
    not_http = [f"{u} did not answer in HTTP (if it speaks TLS, use https{u[4:]}): Received "
                "HTTP/0.9 when not allowed" for u in urls]
    assert all(s in pair for s, *pair in zip(said, tls, not_http, strict=True)), said
    assert sum(s in tls for s in said) == pipelined(caplog) >= 1
    assert len(srv.requests) == 1  # (only /f0 was asked in HTTP)


def test_a_run_of_many_small_files_and_a_large_one(tmp_path: Path) -> None:
    """Engine end to end: the large file's first answer holds pipelined requests up only
    until they move to another connection; every byte lands where it belongs."""
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB: over the pipelined large-body mark
    with Server() as server:
        for i in range(60):
            server.route(f"/s{i}.bin", static(body(i)))
        server.route("/big.bin", static(big))
        urls = [server.url(f"/s{i}.bin") for i in range(30)]
        urls += [server.url("/big.bin")] + [server.url(f"/s{i}.bin") for i in range(30, 60)]
        settings = Settings(jobs=32, state_dir=tmp_path / "state")
        report = download(urls, tmp_path / "out", settings=settings)
    assert report.ok == 61 and not report.failed, report.failures
    for i in range(60):
        assert (tmp_path / "out" / f"s{i}.bin").read_bytes() == body(i)
    got = (tmp_path / "out" / "big.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    assert not list((tmp_path / "out").glob("*.part"))


def counted_once(conns: PeakConnections, ev: Event) -> None:
    """Count the connections as the first file starts, the run's connections held open
    meanwhile (a loaded machine's sampler may have no turn in a whole run: peak 0)."""
    if isinstance(ev, Started):
        conns.settle(once=True)


@pytest.mark.parametrize("cap", [1, 2, 4])
def test_the_per_host_cap_counts_the_connections_libcurl_kept(tmp_path: Path, cap: int) -> None:
    """Engine end to end: many small files start on libcurl (as many at once as the cap
    allows) until the origin is settled, then go pipelined; the connections libcurl kept
    are closed as the pool opens its own, so no more than the cap are ever open
    (before, ``-N 4`` left four idle beside four pipelined). Counted as the kernel has
    them: the server's threads see a close late (a loaded machine's showed 6 for 4
    after the first 50 requests)."""
    with Server() as server:
        for i in range(200):
            server.route(f"/s{i}.bin", static(body(i % 40)))
        urls = [server.url(f"/s{i}.bin") for i in range(200)]
        settings = Settings(connections_per_host=cap, state_dir=tmp_path / "state")
        with PeakConnections(server.port) as conns:
            report = download(urls, tmp_path / "out", settings=settings,
                              on_event=lambda ev: counted_once(conns, ev))
        requests = list(server.requests)
    assert report.ok == 200 and not report.failed, report.failures
    assert 1 <= conns.peak <= cap
    assert len({r.conn for r in requests}) <= 2 * cap + 1


def test_connections_do_not_pile_up_across_many_origins(tmp_path: Path) -> None:
    """Engine end to end: small files from 12 host names (one server) with a run cap of
    4. The cap counts the pipelined connections and libcurl's (which starts each new
    origin) together: an idle one is closed when another origin needs room, and a new
    origin's first request waits for that. Before, the server saw 2 per host (24); then
    up to twice the cap (the pool's and libcurl's)."""
    hosts = [f"h{i}.test" for i in range(12)]
    with Server() as server:
        for j in range(len(hosts)):
            for i in range(10):
                server.route(f"/{j}_{i}.bin", static(body(i)))
        urls = [
            f"http://{h}:{server.port}/{j}_{i}.bin" for j, h in enumerate(hosts) for i in range(10)
        ]
        settings = Settings(
            connections_per_host=2,
            max_connections=4,
            state_dir=tmp_path / "state",
            network=NetworkSettings(resolve=tuple(f"{h}:{server.port}:127.0.0.1" for h in hosts)),
        )
        with PeakConnections(server.port) as conns:
            report = download(urls, tmp_path / "out", settings=settings,
                              on_event=lambda ev: counted_once(conns, ev))
    assert report.ok == 120 and not report.failed, report.failures
    assert 1 <= conns.peak <= 4


def _closing(data: bytes) -> Handler:
    """An answer with ``Connection: close``, then the close: the requests pipelined
    behind it come back unanswered and go through libcurl."""

    def handle(req: Req, sock: socket.socket) -> bool:
        reply(sock, 200, data, [("Connection", "close")])
        return False

    return handle


@pytest.mark.parametrize("cap", [2, 4])
def test_requests_given_back_to_libcurl_wait_for_room_under_the_host_cap(
    tmp_path: Path, cap: int
) -> None:
    """Engine end to end: a server that ends a pipelined connection now and then. The
    requests queued behind each end go through libcurl, a connection each: they start as
    the pool's connections make room (idle ones close, busy ones after their answers),
    and the pool opens no more while they run. Before, the host saw twice the cap."""
    n = 400
    with Server() as server:
        for i in range(n):
            server.route(f"/c{i}.bin", (_closing if i % 25 == 24 else static)(body(i % 40)))
        urls = [server.url(f"/c{i}.bin") for i in range(n)]
        settings = Settings(connections_per_host=cap, state_dir=tmp_path / "state")
        with PeakConnections(server.port) as conns:
            report = download(urls, tmp_path / "out", settings=settings,
                              on_event=lambda ev: counted_once(conns, ev))
    assert report.ok == n and not report.failed, report.failures
    for i in range(n):
        assert (tmp_path / "out" / f"c{i}.bin").read_bytes() == body(i % 40)
    assert 1 <= conns.peak <= cap


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Byte counts written from a pipe into part files (splice), in order."""
    counts: list[int] = []
    write_from_pipe = PartFile.write_from_pipe

    def counted(part: PartFile, pipe: int, count: int, offset: int) -> None:
        counts.append(count)
        write_from_pipe(part, pipe, count, offset)

    monkeypatch.setattr(PartFile, "write_from_pipe", counted)
    return counts


def test_large_bodies_are_spliced_into_their_part_files(
    tmp_path: Path, spliced: list[int]
) -> None:
    """Engine end to end: whole-file GETs of large files ride kept connections and most
    of their bytes go from the socket to the part file through a pipe, including the
    first answer of a file split while it runs (its span is cut short)."""
    bigs = {f"/b{i}.bin": random.Random(i).randbytes(300_000 + i * 150_000) for i in range(6)}
    huge = random.Random(99).randbytes(9 << 20)
    with Server() as server:
        for i in range(4):
            server.route(f"/s{i}.bin", static(body(i)))
        for path, data in bigs.items():
            server.route(path, static(data))
        server.route("/huge.bin", ranged(huge))
        urls = [server.url(f"/s{i}.bin") for i in range(4)] + [server.url(p) for p in bigs]
        settings = Settings(jobs=4, split=4, state_dir=tmp_path / "state")
        report = download([*urls, server.url("/huge.bin")], tmp_path / "out", settings=settings)
        assert report.ok == 11 and not report.failed, report.failures
        huge_gets = [r for r in server.requests if r.path == "/huge.bin"]
    for path, data in bigs.items():
        assert (tmp_path / "out" / path[1:]).read_bytes() == data
    assert (tmp_path / "out" / "huge.bin").read_bytes() == huge
    # a whole-file GET, cut short when ranged spans took parts of it (how many depends on
    # how far the first answer got meanwhile)
    assert "range" not in huge_gets[0].headers and len(huge_gets) >= 2
    assert sum(spliced) > (sum(map(len, bigs.values())) + len(huge)) // 4


def test_a_lone_large_file_is_split_over_kept_connections_and_spliced(
    tmp_path: Path, spliced: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """Engine end to end, one large file: its first GET goes through libcurl; the head of
    that answer settles the origin, so the ranged requests that split the file ride our
    own connections and their bytes are spliced into the part file."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    huge = random.Random(5).randbytes(12 << 20)
    with Server() as server:
        server.route("/huge.bin", ranged(huge, pace=0.002))  # >= 0.1 s for the whole
        settings = Settings(split=4, state_dir=tmp_path / "state")
        report = download([server.url("/huge.bin")], tmp_path / "out", settings=settings)
        assert report.ok == 1 and not report.failed, report.failures
        gets = [r for r in server.requests if r.path == "/huge.bin"]
    assert (tmp_path / "out" / "huge.bin").read_bytes() == huge
    assert "range" not in gets[0].headers and len(gets) >= 2
    lines = [r.getMessage() for r in caplog.records if "/huge.bin" in r.getMessage()]
    ranged_lines = [m for m in lines if " bytes=" in m]
    # the three that split the file at its first answer, at least (a last stolen piece,
    # asked when nothing else is in flight and no kept connection is left, may go
    # through libcurl: one request alone is as fast there)
    assert sum(m.endswith("(kept connection)") for m in ranged_lines) >= 3
    assert sum(spliced) > len(huge) // 3


def test_large_answers_go_one_by_one_over_kept_connections_until_a_small_one(
    srv: Server, caplog: pytest.LogCaptureFixture
) -> None:
    from omniget.engine.transports.h1conn import SMALL_BODY

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    big = b"b" * (SMALL_BODY + 1)
    for i in range(4):
        srv.route(f"/big{i}", static(big + bytes([i])))

    async def go(t: CurlTransport) -> list[tuple[int, bool]]:
        # (shared: pipelined, a request costs part of a connection; usable: our own)
        seen = []
        await fetch_all(t, [srv.url("/big0")])  # libcurl: a kept connection, large answers
        pipes = t._pipes
        assert pipes is not None
        key = srv.url("/x")[7:].split("/")[0]
        seen.append((t.pipelined(srv.url("/x")), pipes.usable(key)))
        got = await fetch_all(t, [srv.url(f"/big{i}") for i in range(1, 4)])
        assert [bytes(g.data) for g in got if isinstance(g, Sink)] == [
            big + bytes([i]) for i in range(1, 4)
        ]
        await fetch_all(t, [srv.url("/f1")])
        seen.append((t.pipelined(srv.url("/x")), pipes.usable(key)))  # a small one
        await fetch_all(t, [srv.url(f"/f{i}") for i in range(2, 6)])
        [one] = await fetch_all(t, [srv.url("/big0")])
        assert isinstance(one, Sink) and bytes(one.data) == big + b"\0"
        seen.append((t.pipelined(srv.url("/x")), pipes.usable(key)))  # large again
        return seen

    assert run(go) == [(0, True), (UNIT // DEPTH, True), (0, True)]
    kept = [r.getMessage() for r in caplog.records if r.getMessage().endswith("(kept connection)")]
    # (the first goes through libcurl: one request at a time needs no second connection)
    assert sorted(m for m in kept if "/big" in m) == [
        f"GET {srv.url(f'/big{i}')} -> 200 (kept connection)" for i in (2, 3)
    ]


def test_ranged_requests_ride_kept_connections_once_a_large_answer_settled_the_origin(
    srv: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The head of a large answer settles its origin one by one (before its body ends);
    ranged requests beside it then go over our own connections, one at a time, with their
    Range and If-Range on the wire. A small ranged answer does not turn pipelining on."""
    from omniget.engine.transports.h1conn import SMALL_BODY
    from omniget.model import ByteRange

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    big = random.Random(7).randbytes(3 * SMALL_BODY)
    srv.route("/big", ranged(big, etag='"e1"'))
    key = srv.url("/x")[7:].split("/")[0]
    spans = [(0, 10), (SMALL_BODY, 2 * SMALL_BODY), (2 * SMALL_BODY + 5, 3 * SMALL_BODY)]

    class Watching(Sink):
        usable_at_head: bool | None = None

        def __init__(self, t: CurlTransport) -> None:
            super().__init__()
            self.t = t

        def on_head(self, head: Head) -> None:
            pipes = self.t._pipes
            self.usable_at_head = pipes is not None and pipes.usable(key)
            super().on_head(head)

    async def go(t: CurlTransport) -> tuple[Watching, list[Sink | BaseException], Sink]:
        whole = Watching(t)
        await t.fetch(Request(srv.url("/big")), whole)  # libcurl: nothing known yet
        sinks = [Sink() for _ in spans]
        got = await asyncio.gather(
            *(
                t.fetch(Request(srv.url("/big"), range=ByteRange(a, b), if_range='"e1"'), s)
                for (a, b), s in zip(spans, sinks, strict=True)
            ),
            return_exceptions=True,
        )
        changed = Sink()  # a validator that no longer matches: the whole body, 200
        await asyncio.gather(
            t.fetch(Request(srv.url("/big"), range=ByteRange(5, 9), if_range='"old"'), changed),
            t.fetch(Request(srv.url("/big"), range=ByteRange(0, 3)), Sink()),
        )
        assert not t.pipelined(srv.url("/x"))
        out = [g if isinstance(g, BaseException) else s for g, s in zip(got, sinks, strict=True)]
        return whole, out, changed

    whole, results, changed = run(go)
    assert whole.usable_at_head and bytes(whole.data) == big
    for (a, b), r in zip(spans, results, strict=True):
        assert isinstance(r, Sink) and bytes(r.data) == big[a:b]
        assert r.heads[0].status == 206
    assert changed.heads[0].status == 200 and bytes(changed.data) == big
    kept = [r.getMessage() for r in caplog.records if r.getMessage().endswith("(kept connection)")]
    assert len([m for m in kept if " bytes=" in m]) >= len(spans)
    ranged_reqs = [r for r in srv.requests if "range" in r.headers]
    assert {r.headers["range"] for r in ranged_reqs} >= {
        f"bytes={a}-{b - 1}" for a, b in spans
    }
    assert all(r.headers.get("if-range") in ('"e1"', '"old"', None) for r in ranged_reqs)
    assert sum(r.headers.get("if-range") == '"e1"' for r in ranged_reqs) == len(spans)


def test_ranged_requests_to_a_pipelined_origin_stay_on_libcurl(
    srv: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A ranged request holds a whole connection: it is never queued on a pipelined one,
    and its answer (small or large) does not change how the origin is sent to."""
    from omniget.engine.transports.h1conn import SMALL_BODY
    from omniget.model import ByteRange

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    big = random.Random(8).randbytes(2 * SMALL_BODY)
    srv.route("/big", ranged(big))

    async def go(t: CurlTransport) -> list[bytes]:
        await fetch_all(t, [srv.url("/f0")])  # a small answer: pipelined from now on
        sinks = [Sink() for _ in range(3)]
        await asyncio.gather(
            t.fetch(Request(srv.url("/big"), range=ByteRange(0, SMALL_BODY + 1)), sinks[0]),
            t.fetch(Request(srv.url("/big"), range=ByteRange(7, 9)), sinks[1]),
            *(t.fetch(Request(srv.url(f"/f{i}")), Sink()) for i in range(1, 6)),
            t.fetch(Request(srv.url("/f6")), sinks[2]),
        )
        assert t.pipelined(srv.url("/x"))
        return [bytes(s.data) for s in sinks]

    assert run(go) == [big[: SMALL_BODY + 1], big[7:9], body(6)]
    ranged_lines = [r.getMessage() for r in caplog.records if " bytes=" in r.getMessage()]
    assert len(ranged_lines) == 2
    assert not any(m.endswith(("(kept connection)", "(pipelined)")) for m in ranged_lines)
    assert pipelined(caplog) >= 3


def test_requests_set_up_before_the_origin_was_known_go_pipelined_when_granted(
    srv: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A request waiting for its slot was set up for libcurl; if the origin has been
    confirmed by the time the slot comes, it goes pipelined instead."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert run(lambda t: fetch_granted(t, srv, 10)) == [body(i) for i in range(10)]
    assert pipelined(caplog) >= 5


def test_a_request_that_goes_pipelined_when_granted_never_gets_a_libcurl_handle(
    srv: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that wait for their slots before the origin is known (a run's first
    files) get a libcurl handle only when a slot comes and they stay with libcurl: those
    that go pipelined then never had one set up (each cost a handle, its options and its
    close, for nothing)."""
    from omniget.engine.transports.easy import Handles

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    handles: list[object] = []
    real_base = Handles.base

    def counted(self: Handles, easy: Any) -> Any:
        handles.append(easy)
        return real_base(self, easy)

    monkeypatch.setattr(Handles, "base", counted)
    assert run(lambda t: fetch_granted(t, srv, 12)) == [body(i) for i in range(12)]
    by_libcurl = [
        r for r in caplog.records
        if r.getMessage().startswith("GET ") and not r.getMessage().endswith(")")
    ]  # fmt: skip
    assert pipelined(caplog) >= 6
    assert 1 <= len(handles) <= len(by_libcurl)  # (a pooled handle may serve two)


def test_a_host_with_a_netrc_login_is_not_pipelined(
    srv: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login me password pw\n")
    netrc.chmod(0o600)
    rest = [srv.url(f"/f{i}") for i in range(1, 10)]
    results = run(first_then(srv.url("/f0"), rest), NetworkSettings(netrc_file=str(netrc)))
    assert all(isinstance(s, Sink) for s in results)
    assert pipelined(caplog) == 0
    assert all("authorization" in r.headers for r in srv.requests)


def test_a_netrc_others_can_read_still_lets_its_other_hosts_be_pipelined(
    srv: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libcurl reads a ~/.netrc whatever its mode, as curl; Python's netrc module refused
    one others can read, and then no host at all was pipelined."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("HOME", str(tmp_path))
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine elsewhere.test login me password pw\n")
    netrc.chmod(0o644)
    results = run(first_then(srv.url("/f0"), [srv.url(f"/f{i}") for i in range(1, 10)]))
    assert all(isinstance(s, Sink) for s in results)
    assert pipelined(caplog) >= 6
    assert not any("authorization" in r.headers for r in srv.requests)


def test_a_kept_connection_is_not_spared_for_a_transfer_opening_its_own(srv: Server) -> None:
    """libcurl's idle connection to an origin stays open only for a transfer that has not
    picked one yet: one libcurl already runs without a socket is connecting its own, and
    the kept one beside it was an open connection no cap counted."""
    if not can_count():
        pytest.skip("needs Linux's sock_diag netlink to count connections")
    answer = threading.Event()

    def held(req: Req, sock: socket.socket) -> None:
        answer.wait(5)
        reply(sock, 200, b"held")

    srv.route("/held", held)
    srv.route("/next", static(b"next"))

    async def go(t: CurlTransport) -> tuple[int, int]:
        key = srv.url("/")[7:-1]
        first = asyncio.ensure_future(t.fetch(Request(srv.url("/held")), Sink()))
        while not srv.requests:
            await asyncio.sleep(0.005)
        second = asyncio.ensure_future(t.fetch(Request(srv.url("/next")), Sink()))
        await asyncio.sleep(0)  # (its transfer is added: libcurl runs it on a later turn)
        core = t._core
        assert core is not None
        core._act(pycurl.SOCKET_TIMEOUT, 0)  # it opens a connection: the first one is busy
        [easy] = [e for e in t._on_curl[key] if e.getinfo(pycurl.ACTIVESOCKET) >= 0]
        fd = easy.getinfo(pycurl.ACTIVESOCKET)
        answer.set()
        # (the answer arrives, in one piece: the loop does not run meanwhile; a server
        # thread may take its time to send it on a loaded machine)
        readable = select.poll()  # (not select(): a worker's descriptors may pass 1023)
        readable.register(fd, select.POLLIN)
        assert readable.poll(10_000)
        core._act(fd, pycurl.CSELECT_IN)  # the first transfer ends; libcurl keeps its connection
        # what that transfer's task does on its next step (before libcurl hears that the
        # second one's connection is up): note the kept connection and shut it if need be
        t._kept_after(core, easy, key)
        t._shut_kept(key)
        seen = established(srv.port)
        await asyncio.gather(first, second)
        return seen, len(srv.requests)

    seen, requests = run(go)
    assert requests == 2
    assert seen == 1  # the second transfer's own; before, the kept one too
