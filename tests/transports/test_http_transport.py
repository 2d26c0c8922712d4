"""CurlTransport against real sockets on 127.0.0.1 (see _server.py): transfers, the sink,
connection reuse, failures, event-loop registrations. Redirects, credentials, proxies and
TLS: test_http_network.py."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pycurl
import pytest

from omniget.engine.ratelimit import RateLimit
from omniget.engine.scheduler import HostLimits
from omniget.engine.transports.base import Head, Request, StopTransfer
from omniget.engine.transports.curlloop import CONNECT_RETRIES
from omniget.engine.transports.http import CurlTransport
from omniget.errors import IntegrityError, RemoteError, TransientError, UsageError
from omniget.model import ByteRange
from omniget.settings import NetworkSettings

from ._http_kit import BODY, Sink, get, run
from ._server import (
    Req,
    Server,
    ranged,
    redirect,
    reply,
    reset,
    static,
    wait_then_close,
)


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        yield server


# -- plain transfers --


def test_full_get(srv: Server) -> None:
    srv.route("/f", static(BODY, headers=[("ETag", '"e1"')]))
    head, sink = get(srv.url("/f"))
    assert head.status == 200
    assert head.url == srv.url("/f")
    assert head.content_length == len(BODY)
    assert head.etag == '"e1"'
    assert not head.decoded
    assert bytes(sink.data) == BODY
    assert sink.heads == [head]
    assert sink.events[0] == "head" and sink.events.count("head") == 1
    req = srv.requests[0]
    assert req.method == "GET"
    assert req.headers["user-agent"] == "omniget/0.1"
    assert "gzip" not in req.headers.get("accept-encoding", "")


def test_ranged_get(srv: Server) -> None:
    srv.route("/f", ranged(BODY))
    head, sink = get(srv.url("/f"), range=ByteRange(1000, 3000))
    assert head.status == 206
    assert head.content_range == (1000, 3000, len(BODY))
    assert head.total_size == len(BODY)
    assert bytes(sink.data) == BODY[1000:3000]
    assert srv.requests[0].headers["range"] == "bytes=1000-2999"


def test_if_range_sent_and_changed_resource_answers_200(srv: Server) -> None:
    srv.route("/f", ranged(BODY, etag='"new"'))
    head, sink = get(srv.url("/f"), range=ByteRange(10), if_range='"old"')
    assert srv.requests[0].headers["if-range"] == '"old"'
    assert srv.requests[0].headers["range"] == "bytes=10-"
    assert head.status == 200
    assert bytes(sink.data) == BODY


def test_head_request_and_empty_body(srv: Server) -> None:
    srv.route("/f", static(BODY))
    srv.route("/empty", static(b"", status=204))
    head, sink = get(srv.url("/f"), method="HEAD")
    assert head.status == 200 and head.content_length == len(BODY)
    assert sink.events == ["head"]
    head, sink = get(srv.url("/empty"))
    assert head.status == 204 and sink.events == ["head"]
    assert srv.requests[0].method == "HEAD"


def test_error_status_is_handed_over_not_raised(srv: Server) -> None:
    head, sink = get(srv.url("/missing"))
    assert head.status == 404
    assert bytes(sink.data) == b"no such path"


def test_post_with_body(srv: Server) -> None:
    def echo(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.method.encode() + b":" + req.body)

    srv.route("/p", echo)
    _head, sink = get(
        srv.url("/p"),
        method="POST",
        body=b'{"a": 1}',
        headers={"Content-Type": "application/json"},
    )
    assert bytes(sink.data) == b'POST:{"a": 1}'
    req = srv.requests[0]
    assert req.headers["content-type"] == "application/json"
    assert req.headers["content-length"] == "8"
    assert "expect" not in req.headers


def test_put_with_body(srv: Server) -> None:
    def echo(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.method.encode() + b":" + req.body)

    srv.route("/p", echo)
    _, sink = get(srv.url("/p"), method="PUT", body=b"xyz")
    assert bytes(sink.data) == b"PUT:xyz"


def test_post_then_303_becomes_get_without_body(srv: Server) -> None:
    srv.route("/p", redirect("/done", 303))
    srv.route("/done", static(b"ok"))
    _head, sink = get(srv.url("/p"), method="POST", body=b"data=1")
    assert bytes(sink.data) == b"ok"
    assert [(r.method, r.path, r.body) for r in srv.requests] == [
        ("POST", "/p", b"data=1"),
        ("GET", "/done", b""),
    ]


def test_307_keeps_method_and_body(srv: Server) -> None:
    def echo(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.method.encode() + b":" + req.body)

    srv.route("/p", redirect("/echo", 307))
    srv.route("/echo", echo)
    _, sink = get(srv.url("/p"), method="POST", body=b"keep")
    assert bytes(sink.data) == b"POST:keep"


def test_interim_responses_are_skipped(srv: Server) -> None:
    def with_100(req: Req, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        reply(sock, 200, b"final", [("X-Final", "yes")])

    srv.route("/c", with_100)
    head, sink = get(srv.url("/c"))
    assert head.status == 200 and head.headers["x-final"] == "yes"
    assert bytes(sink.data) == b"final" and len(sink.heads) == 1


def test_transport_survives_successive_event_loops(srv: Server) -> None:
    srv.route("/f", static(b"again"))
    transport = CurlTransport(NetworkSettings())

    async def once() -> bytes:
        s = Sink()
        await transport.fetch(Request(srv.url("/f")), s)
        return bytes(s.data)

    assert asyncio.run(once()) == b"again"
    assert asyncio.run(once()) == b"again"
    asyncio.run(transport.aclose())


# -- sink semantics --


def test_stop_transfer_mid_body(srv: Server) -> None:
    big = b"z" * (8 << 20)
    srv.route("/big", static(big))
    srv.route("/small", static(b"after"))
    sink = Sink(stop_after=1)

    async def go(t: CurlTransport) -> tuple[Head, bytes]:
        head = await t.fetch(Request(srv.url("/big")), sink)
        after = Sink()
        await t.fetch(Request(srv.url("/small")), after)
        return head, bytes(after.data)

    head, after = run(go)
    assert head.status == 200
    assert sink.chunks == 1
    assert 0 < len(sink.data) < len(big)
    assert after == b"after"  # the transport is still healthy


def test_stop_transfer_in_on_head(srv: Server) -> None:
    srv.route("/f", static(BODY))
    sink = Sink(head_error=StopTransfer())

    async def go(t: CurlTransport) -> Head:
        return await t.fetch(Request(srv.url("/f")), sink)

    head = run(go)
    assert head.status == 200
    assert sink.events == ["head"]


def test_exception_in_on_head_aborts_before_body(srv: Server) -> None:
    srv.route("/f", static(BODY))

    class Refuse(Exception):
        pass

    err = Refuse("no thanks")
    sink = Sink(head_error=err)

    async def go(t: CurlTransport) -> Head:
        return await t.fetch(Request(srv.url("/f")), sink)

    with pytest.raises(Refuse) as info:
        run(go)
    assert info.value is err
    assert sink.events == ["head"]
    assert not sink.data


def test_exception_in_on_data_is_reraised_unchanged(srv: Server) -> None:
    srv.route("/f", static(BODY))
    err = OSError(28, "No space left on device")
    sink = Sink(data_error=err)

    async def go(t: CurlTransport) -> Head:
        return await t.fetch(Request(srv.url("/f")), sink)

    with pytest.raises(OSError) as info:
        run(go)
    assert info.value is err
    assert sink.chunks == 1


# -- concurrency and connection reuse --


def test_many_concurrent_fetches_reuse_connections(srv: Server) -> None:
    for i in range(60):
        srv.route(f"/f{i}", static(f"file {i}".encode() * 50))
    sinks = [Sink() for _ in range(60)]

    async def go(t: CurlTransport) -> list[Head]:
        return await asyncio.gather(
            *(t.fetch(Request(srv.url(f"/f{i}")), s) for i, s in enumerate(sinks))
        )

    heads = run(go, max_host_connections=4)
    assert all(h.status == 200 for h in heads)
    for i, s in enumerate(sinks):
        assert bytes(s.data) == f"file {i}".encode() * 50
    assert len(srv.requests) == 60
    assert 1 <= srv.connections <= 4


def test_sequential_fetches_use_one_connection(srv: Server) -> None:
    srv.route("/f", static(b"x" * 1000))

    async def go(t: CurlTransport) -> int:
        for _ in range(20):
            s = Sink()
            await t.fetch(Request(srv.url("/f")), s)
            assert len(s.data) == 1000
        return srv.connections

    assert run(go) == 1


def test_event_driven_latency(srv: Server) -> None:
    # Each answer takes ~5 ms; a polling loop adds ~25 ms to every request, we must not.
    # What counts is the time the client adds: the server's own time to answer (a loaded
    # machine oversleeps its 5 ms) is taken off, and the median is bounded (requests a
    # loaded machine held up here and there do not count).
    answering: list[float] = []

    def answer(req: Req, sock: socket.socket) -> None:
        began = time.perf_counter()
        time.sleep(0.005)
        answering.append(time.perf_counter() - began)  # (before the client can have it)
        reply(sock, 200, b"ok")

    srv.route("/slow", answer)

    async def go(t: CurlTransport) -> list[float]:
        added = []
        for _ in range(200):
            s = Sink()
            start = time.perf_counter()
            await t.fetch(Request(srv.url("/slow")), s)
            added.append(time.perf_counter() - start - answering[-1])
            assert s.data == b"ok"
        return added

    added = sorted(run(go))
    assert len(answering) == 200
    assert added[100] < 0.010, f"the median request took {added[100] * 1000:.1f} ms more"


def test_cancelled_fetch_aborts_and_transport_stays_usable(srv: Server) -> None:
    srv.route("/stall", wait_then_close(srv, 10))
    srv.route("/f", static(b"fine"))

    async def go(t: CurlTransport) -> bytes:
        task = asyncio.ensure_future(t.fetch(Request(srv.url("/stall")), Sink()))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        s = Sink()
        await t.fetch(Request(srv.url("/f")), s)
        return bytes(s.data)

    assert run(go) == b"fine"


def test_aclose_fails_pending_transfers(srv: Server) -> None:
    srv.route("/stall", wait_then_close(srv, 10))

    async def go(t: CurlTransport) -> BaseException | None:
        task = asyncio.ensure_future(t.fetch(Request(srv.url("/stall")), Sink()))
        await asyncio.sleep(0.2)
        await t.aclose()
        try:
            await task
        except TransientError as exc:
            return exc
        return None

    assert isinstance(run(go), TransientError)


def test_max_speed_caps_the_rate(srv: Server) -> None:
    srv.route("/f", static(b"r" * 300_000))
    start = time.perf_counter()
    _, sink = get(srv.url("/f"), max_speed=1_000_000)
    assert len(sink.data) == 300_000
    assert time.perf_counter() - start >= 0.15


def test_shared_rate_limit_paces_concurrent_transfers(srv: Server) -> None:
    srv.route("/a", static(b"a" * 300_000))
    srv.route("/b", static(b"b" * 300_000))
    rate = RateLimit(1_000_000)
    sinks = [Sink(), Sink()]

    async def go(t: CurlTransport) -> None:
        await asyncio.gather(
            t.fetch(Request(srv.url("/a"), rate=rate), sinks[0]),
            t.fetch(Request(srv.url("/b"), rate=rate), sinks[1]),
        )

    start = time.perf_counter()
    run(go)
    assert bytes(sinks[0].data) == b"a" * 300_000 and bytes(sinks[1].data) == b"b" * 300_000
    # 600 KB at 1 MB/s (a margin): each alone would be well under the limit
    assert time.perf_counter() - start >= 0.45


def test_a_rated_transfer_ends_once_its_bytes_are_paid_for(srv: Server) -> None:
    """200 KB at 1 MB/s take 0.2 s. Before, the run's first 0.1 s came free (the bucket
    started full) and its last read was never paid for (the transfer ended at once):
    such a run took about nothing, and a 3 s run at --limit-rate 100K 2.9 s."""
    srv.route("/f", static(b"p" * 200_000))
    rate = RateLimit(1_000_000)

    async def go(t: CurlTransport) -> None:
        await t.fetch(Request(srv.url("/f"), rate=rate), sink)

    sink = Sink()
    start = time.monotonic()
    run(go)
    assert len(sink.data) == 200_000
    assert time.monotonic() - start >= 0.2
    assert rate.owed() == 0.0


# -- content encoding --


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_forced_content_encoding_is_decoded(srv: Server, encoding: str) -> None:
    plain = b"the identity bytes " * 500
    packed = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)

    def handle(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, packed, [("Content-Encoding", encoding)])

    srv.route("/z", handle)
    head, sink = get(srv.url("/z"))
    assert head.decoded
    assert head.total_size is None
    assert bytes(sink.data) == plain
    sent = srv.requests[0].headers.get("accept-encoding", "")
    assert "gzip" not in sent and "deflate" not in sent


def _gzip_handler(body: bytes) -> Callable[[Req, socket.socket], None]:
    def handle(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, body, [("Content-Encoding", "gzip")])

    return handle


def test_an_encoded_stream_cut_short_is_not_a_whole_body(srv: Server) -> None:
    """The body is all there by its Content-Length, but the gzip stream in it stops
    before its end (libcurl would hand over what it decoded as if complete)."""
    srv.route("/z", _gzip_handler(gzip.compress(BODY)[:-40]))
    with pytest.raises(IntegrityError, match="ends before its stream does"):
        get(srv.url("/z"))


def test_gzip_members_in_a_row_are_all_decoded(srv: Server) -> None:
    srv.route("/z", _gzip_handler(gzip.compress(BODY[:1000]) + gzip.compress(BODY[1000:])))
    _, sink = get(srv.url("/z"))
    assert bytes(sink.data) == BODY


@pytest.mark.parametrize(
    ("encoding", "body", "plain"),
    [("br", b"\x0b\x02\x80hello\x03", b"hello"), ("compress", b"\x1f\x9d\x90", None)],
)
def test_encodings_not_decoded_here_are_left_to_libcurl(
    srv: Server, encoding: str, body: bytes, plain: bytes | None
) -> None:
    """The first answer stops at its head; the request is made again with libcurl
    decoding (brotli, in our builds). One libcurl cannot undo either is an error."""

    if plain is not None and "brotli" not in pycurl.version.lower():
        pytest.skip("this libcurl was built without brotli")

    def handle(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, body, [("Content-Encoding", encoding)])

    srv.route("/e", handle)
    if plain is None:
        said = rf"Content-Encoding omniget cannot undo \({encoding}\)"  # (named)
        with pytest.raises(RemoteError, match=said):
            get(srv.url("/e"))
    else:
        head, sink = get(srv.url("/e"))
        assert head.decoded and bytes(sink.data) == plain
    assert len(srv.requests) == 2


# -- failures --


def test_short_body_is_transient(srv: Server) -> None:
    def short(req: Req, sock: socket.socket) -> bool:
        reply(sock, 200, b"a" * 500, [("Content-Length", "1000")], length=False)
        return False

    srv.route("/s", short)
    with pytest.raises(TransientError) as info:
        get(srv.url("/s"))
    assert info.value.retryable


def test_truncated_chunked_body_is_transient(srv: Server) -> None:
    def chunked(req: Req, sock: socket.socket) -> bool:
        reply(sock, 200, b"", [("Transfer-Encoding", "chunked")], length=False)
        sock.sendall(b"5\r\nhello\r\n10\r\nonly part")
        return False

    srv.route("/c", chunked)
    with pytest.raises(TransientError):
        get(srv.url("/c"))


def test_connection_reset_is_transient(srv: Server) -> None:
    def rst(req: Req, sock: socket.socket) -> bool:
        reply(sock, 200, b"", [("Content-Length", "100000")], length=False)
        sock.sendall(b"b" * 1000)
        time.sleep(0.05)
        reset(sock)
        return False

    srv.route("/r", rst)
    sink = Sink()

    async def go(t: CurlTransport) -> Head:
        return await t.fetch(Request(srv.url("/r")), sink)

    with pytest.raises(TransientError):
        run(go)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBroken header line\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\x00b\r\n\r\nok",
    ],
    ids=["no-colon", "bad-length", "nul"],
)
def test_malformed_head_is_a_remote_error_not_retried(srv: Server, head: bytes) -> None:
    def broken(req: Req, sock: socket.socket) -> bool:
        sock.sendall(head)
        return False

    srv.route("/m", broken)
    with pytest.raises(RemoteError) as info:
        get(srv.url("/m"))
    err = info.value
    assert type(err) is RemoteError
    assert not err.retryable and err.exit_code == 3
    assert str(err).startswith(f"malformed answer from {srv.url('/m')}: ")
    assert "\n" not in str(err)
    assert len(srv.requests) == 1  # asked once, on a connection of its own


def test_an_answer_in_another_protocol_says_so_and_is_not_retried(srv: Server) -> None:
    """An SSH banner (or TLS) where HTTP was asked: libcurl's "Received HTTP/0.9" was
    reported as an unusable URL."""

    def ssh(req: Req, sock: socket.socket) -> bool:
        sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        return False

    srv.route("/s", ssh)
    with pytest.raises(RemoteError) as info:
        get(srv.url("/s"))
    err = info.value
    assert not err.retryable and err.exit_code == 3
    https = srv.url("/s").replace("http://", "https://", 1)
    assert str(err).startswith(
        f"{srv.url('/s')} did not answer in HTTP (if it speaks TLS, use {https}): "
    )
    assert len(srv.requests) == 1


def test_malformed_head_on_a_reused_connection_gets_a_few_retries(srv: Server) -> None:
    # On a kept connection a bad "head" may be bytes an earlier answer sent past its
    # Content-Length: a new connection may do. The server here answers /b with junk on
    # the connection /a used, and properly on a new one.
    def junk_on_kept(req: Req, sock: socket.socket) -> bool:
        if req.conn == 1:
            sock.sendall(b"Junk line\r\n\r\n")
            return False
        reply(sock, 200, b"fine")
        return True

    srv.route("/a", static(b"ok"))
    srv.route("/b", junk_on_kept)
    sink = Sink()

    async def go(t: CurlTransport) -> list[BaseException]:
        await t.fetch(Request(srv.url("/a")), Sink())
        failed: list[BaseException] = []
        try:
            await t.fetch(Request(srv.url("/b")), Sink())
        except TransientError as exc:
            failed.append(exc)
        await t.fetch(Request(srv.url("/b")), sink)
        return failed

    failed = run(go)
    assert [r.conn for r in srv.requests] == [1, 1, 2]
    assert len(failed) == 1
    err = failed[0]
    assert isinstance(err, TransientError) and err.retryable
    assert err.max_retries == CONNECT_RETRIES
    assert str(err).startswith(f"malformed answer from {srv.url('/b')}: ")
    assert bytes(sink.data) == b"fine"


def test_stall_is_detected_quickly(srv: Server) -> None:
    srv.route("/stall", wait_then_close(srv, 10))
    settings = NetworkSettings(stall_timeout=0.5)
    start = time.perf_counter()
    with pytest.raises(TransientError, match="stalled"):
        get(srv.url("/stall"), settings)
    # cut by the window, well before the server's close at 10 s (a loaded machine may
    # run the watchdog's checks late: its 0.5 s can take seconds of wall clock)
    assert time.perf_counter() - start < 8.0


def test_slow_but_moving_transfer_is_not_a_stall(srv: Server) -> None:
    # 1.5 s in all, over the 1 s timeout; a byte every 0.1 s (a loaded machine would have
    # to hold the server up for 1 s between two of them to make a stall of it)
    def drip(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, b"", [("Content-Length", "15")], length=False)
        for _ in range(15):
            time.sleep(0.1)
            sock.sendall(b"d")

    srv.route("/drip", drip)
    _, sink = get(srv.url("/drip"), NetworkSettings(stall_timeout=1.0))
    assert bytes(sink.data) == b"d" * 15


def test_refused_port_is_transient(refused_port: int) -> None:
    with pytest.raises(TransientError) as info:
        get(f"http://user:hunter2@127.0.0.1:{refused_port}/x")
    assert "hunter2" not in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_host_is_remote_error() -> None:
    with pytest.raises(RemoteError, match=r"could not resolve host nothing-here\.invalid"):
        get("http://nothing-here.invalid/x")


def test_non_http_url_refused() -> None:
    with pytest.raises(RemoteError, match="file"):
        get("file:///etc/hostname")


def test_header_injection_refused(srv: Server) -> None:
    with pytest.raises(UsageError):
        get(srv.url("/f"), headers={"X-A": "1\r\nX-B: 2"})


@pytest.mark.parametrize("name", ["Range", "if-range"])
def test_settings_header_the_engine_sets_is_refused(name: str) -> None:
    # (sent with every request, it would make each answer a part nobody asked for)
    with pytest.raises(UsageError, match=f"{name}.*sends it itself"):
        CurlTransport(NetworkSettings(headers=((name, "bytes=0-3"),)))


# -- socket registrations on the event loop --


def _counting_add_reader(loop: asyncio.AbstractEventLoop) -> list[int]:
    calls: list[int] = []
    add = loop.add_reader

    def counted(fd: Any, *args: Any) -> None:
        calls.append(fd)
        add(fd, *args)

    loop.add_reader = counted  # type: ignore[method-assign,assignment]
    return calls


def test_reused_connection_stays_registered(srv: Server) -> None:
    srv.route("/f", static(BODY))

    async def go(t: CurlTransport) -> list[int]:
        calls = _counting_add_reader(asyncio.get_running_loop())
        for _ in range(10):
            sink = Sink()
            await t.fetch(Request(srv.url("/f")), sink)
            assert bytes(sink.data) == BODY
        return calls

    calls = run(go)
    assert {r.conn for r in srv.requests} == {1}  # one kept-alive connection
    assert len(calls) <= 2  # not once per request (libcurl's wakeup fd may add one)


@pytest.mark.parametrize("announced", [True, False], ids=["connection-close", "silent-close"])
def test_descriptor_numbers_reused_by_new_connections(srv: Server, announced: bool) -> None:
    """The server closes every connection after its answer, so libcurl closes sockets
    and new ones get the same numbers: none of them may wait on a stale registration."""
    headers = [("Connection", "close")] if announced else []

    def once(req: Req, sock: socket.socket) -> bool:
        reply(sock, 200, BODY, headers)
        return False

    srv.route("/f", once)

    async def go(t: CurlTransport) -> None:
        for _ in range(12):
            sink = Sink()
            # a stale registration: nothing wakes the transfer; the stall watchdog fails it
            await t.fetch(Request(srv.url("/f")), sink)
            assert bytes(sink.data) == BODY
            await asyncio.sleep(0.01)  # let the server's FIN arrive on the idle socket

    run(go, NetworkSettings(stall_timeout=10.0))  # (no answer here is silent that long)
    assert len({r.conn for r in srv.requests}) == 12


def test_a_request_waiting_on_its_gate_starts_when_granted(srv: Server) -> None:
    srv.route("/f", static(BODY))

    async def go(t: CurlTransport) -> None:
        await t.fetch(Request(srv.url("/f")), Sink())
        limits = HostLimits(per_host=1, total=1)
        held = limits.ticket(srv.url("/f"))
        gate = limits.ticket(srv.url("/f"))
        sink = Sink()
        task = asyncio.create_task(t.fetch(Request(srv.url("/f")), sink, gate=gate))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done() and len(srv.requests) == 1  # set up, not sent
        held.close()
        await asyncio.wait_for(task, 5)
        gate.close()
        assert bytes(sink.data) == BODY
        # cancelled while waiting: never sent, and its slot request is withdrawn
        gate2 = limits.ticket(srv.url("/f"))
        blocked = limits.ticket(srv.url("/f"))
        task2 = asyncio.create_task(t.fetch(Request(srv.url("/f")), Sink(), gate=blocked))
        await asyncio.sleep(0)
        task2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task2
        blocked.close()
        gate2.close()
        assert limits.free_for(srv.url("/f")) == 1

    run(go)
    assert len(srv.requests) == 2
    assert {r.conn for r in srv.requests} == {1}


def test_a_queued_zero_timeout_keeps_its_place_on_the_loop() -> None:
    """libcurl asks for a 0 ms timeout on every add: the first one queued must not be
    pushed behind work queued after it (the next requests would wait for all of it)."""
    from omniget.engine.transports.curlloop import CurlLoop

    async def go() -> list[str]:
        loop = asyncio.get_running_loop()
        core = CurlLoop(loop, max_host_connections=4, max_total_connections=4)
        order: list[str] = []
        core._act = lambda fd, event: order.append("timeout")  # type: ignore[method-assign]
        core._on_timer(0)
        loop.call_soon(order.append, "other work")
        core._on_timer(0)  # a second add in the same pass
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        core.close()
        return order

    assert asyncio.run(go()) == ["timeout", "other work"]


@pytest.mark.parametrize(("connect_timeout", "stalled"), [(1.0, False), (5.0, True)])
def test_a_transfer_still_connecting_is_the_connect_timeouts_if_that_is_no_longer(
    monkeypatch: pytest.MonkeyPatch, connect_timeout: float, stalled: bool
) -> None:
    """Windows of 1 s both (--connect-timeout 1 --stall-timeout 1): a connection that never
    gets through ended as "stalled" or as "timed out", whichever of the watchdog and
    libcurl's connect timeout came first on a loaded machine. Its request has not gone:
    the connect timeout, not longer than the stall window, is what ends it ("timed out").
    A longer connect timeout leaves it to the stall window, as before."""
    from omniget.engine.transports import curlloop

    now = [1000.0]  # (the watchdog's clock runs two windows while libcurl is never run)
    monkeypatch.setattr(curlloop, "time", type("Clock", (), {"monotonic": lambda: now[0]}))

    async def go() -> list[int]:
        loop = asyncio.get_running_loop()
        core = curlloop.CurlLoop(loop, max_host_connections=4, max_total_connections=4,
                                 stall_timeout=1.0, connect_timeout=connect_timeout)
        ended: list[int] = []
        easy = pycurl.Curl()
        easy.setopt(pycurl.URL, "https://127.0.0.1:9/x.bin")
        core.add(easy, lambda code, message: ended.append(code))
        for _ in range(8):
            now[0] += 0.25
            core._check_stalls()
        before_close = list(ended)
        core.close()
        easy.close()
        return before_close

    assert asyncio.run(go()) == ([curlloop.STALLED] if stalled else [])


def test_a_transfer_s_stall_window_starts_when_its_request_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transfer waiting for its turn (its request not gone: an HTTP/2 stream past the
    server's limit) while others move is no stall; its window starts when the request
    goes. Before, it started anew only at a check that found it stalled: one that went
    between two checks, the check before its window was up, was cut at the next as
    stalled for the whole window (a stream sent a moment before; seen under load)."""
    from omniget.engine.transports import curlloop

    now = [1000.0]
    monkeypatch.setattr(curlloop, "time", type("Clock", (), {"monotonic": lambda: now[0]}))
    checks = [0]
    monkeypatch.setattr(curlloop, "_unsent", lambda easy: checks[0] <= 3)  # (goes after 3)

    async def go() -> list[list[int]]:
        loop = asyncio.get_running_loop()
        # (--connect-timeout no longer than the window: a transfer whose request has not
        # gone waits, as it does while others move)
        core = curlloop.CurlLoop(loop, max_host_connections=4, max_total_connections=4,
                                 stall_timeout=1.0, connect_timeout=1.0)
        ended: list[int] = []
        seen: list[list[int]] = []
        easy = pycurl.Curl()
        easy.setopt(pycurl.URL, "https://127.0.0.1:9/x.bin")
        now[0] += 0.05  # (added between two checks)
        core.add(easy, lambda code, message: ended.append(code))
        for _ in range(7):
            now[0] += 0.25
            checks[0] += 1
            core._check_stalls()
            seen.append(list(ended))
        core.close()
        easy.close()
        return seen

    seen = asyncio.run(go())
    # sent at the 4th check, silent: a whole window later (the 7th), and not before
    assert seen == [[]] * 6 + [[curlloop.STALLED]]
