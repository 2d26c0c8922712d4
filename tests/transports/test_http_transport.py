"""CurlTransport against real sockets on 127.0.0.1 (see _server.py)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omniget.engine.ratelimit import RateLimit
from omniget.engine.scheduler import HostLimits
from omniget.engine.transports.base import Head, Request, StopTransfer
from omniget.engine.transports.http import CurlTransport, ca_locations
from omniget.errors import RemoteError, TransientError, UsageError
from omniget.model import ByteRange
from omniget.settings import NetworkSettings

from ._server import (
    Req,
    Server,
    delayed,
    ranged,
    redirect,
    reply,
    reset,
    static,
    wait_then_close,
)

BODY = bytes(range(256)) * 400  # 100 KiB


class Sink:
    """Collects what the transport hands over; can raise on cue."""

    def __init__(
        self,
        *,
        stop_after: int | None = None,
        head_error: BaseException | None = None,
        data_error: BaseException | None = None,
    ) -> None:
        self.heads: list[Head] = []
        self.data = bytearray()
        self.chunks = 0
        self.events: list[str] = []
        self.stop_after = stop_after
        self.head_error = head_error
        self.data_error = data_error

    def on_head(self, head: Head) -> None:
        self.events.append("head")
        self.heads.append(head)
        if self.head_error is not None:
            raise self.head_error

    def on_data(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data
        self.chunks += 1
        if self.data_error is not None:
            raise self.data_error
        if self.stop_after is not None and len(self.data) >= self.stop_after:
            raise StopTransfer


def run(
    fn: Callable[[CurlTransport], Awaitable[Any]],
    settings: NetworkSettings | None = None,
    **kw: Any,
) -> Any:
    async def main() -> Any:
        transport = CurlTransport(settings or NetworkSettings(), **kw)
        try:
            return await fn(transport)
        finally:
            await transport.aclose()

    return asyncio.run(main())


def get(url: str, settings: NetworkSettings | None = None, **req: Any) -> tuple[Head, Sink]:
    sink = Sink()

    async def go(t: CurlTransport) -> Head:
        return await t.fetch(Request(url, **req), sink)

    head = run(go, settings)
    return head, sink


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        yield server


@pytest.fixture
def other() -> Iterator[Server]:
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
    # Each answer takes ~5 ms; a polling loop adds ~25 ms per request, we must not.
    srv.route("/slow", delayed(b"ok", 0.005))

    async def go(t: CurlTransport) -> float:
        start = time.perf_counter()
        for _ in range(200):
            s = Sink()
            await t.fetch(Request(srv.url("/slow")), s)
            assert s.data == b"ok"
        return time.perf_counter() - start

    elapsed = run(go)
    assert elapsed < 200 * 0.015, f"200 requests took {elapsed:.2f} s"


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
    # 600 KB at 1 MB/s (less the 0.1 s burst): each alone would be well under the limit
    assert time.perf_counter() - start >= 0.45


# -- redirects --


def test_redirect_chain_followed(srv: Server) -> None:
    srv.route("/r1", redirect("/r2", 301))
    srv.route("/r2", redirect("r3", 302))  # relative to /r2
    srv.route("/r3", redirect(srv.url("/final"), 307))
    srv.route("/final", static(b"final body"))
    head, sink = get(srv.url("/r1"))
    assert head.status == 200
    assert head.url == srv.url("/final")
    assert bytes(sink.data) == b"final body"
    assert len(sink.heads) == 1
    assert srv.paths() == ["/r1", "/r2", "/r3", "/final"]


@pytest.mark.parametrize(
    ("location", "scheme"),
    [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/x", "ftp"),
        ("gopher://127.0.0.1/x", "gopher"),
        ("data:text/plain,hi", "data"),
    ],
)
def test_redirect_to_other_scheme_refused(srv: Server, location: str, scheme: str) -> None:
    srv.route("/r", redirect(location))
    with pytest.raises(RemoteError) as info:
        get(srv.url("/r"))
    assert scheme in str(info.value)
    assert "\n" not in str(info.value)
    assert srv.paths() == ["/r"]


def test_redirect_loop_refused(srv: Server) -> None:
    srv.route("/a", redirect("/b"))
    srv.route("/b", redirect("/a"))
    with pytest.raises(RemoteError, match="loop"):
        get(srv.url("/a"))
    assert srv.paths() == ["/a", "/b"]


def test_too_many_redirects(srv: Server) -> None:
    for i in range(10):
        srv.route(f"/h{i}", redirect(f"/h{i + 1}"))
    with pytest.raises(RemoteError, match="too many redirects"):
        get(srv.url("/h0"), NetworkSettings(max_redirects=3))
    assert len(srv.requests) == 4


def test_redirect_without_location_is_handed_over(srv: Server) -> None:
    srv.route("/r", static(b"no location", status=302))
    head, sink = get(srv.url("/r"))
    assert head.status == 302
    assert bytes(sink.data) == b"no location"


SECRET_HEADERS = {
    "Authorization": "Bearer tok",
    "Cookie": "sid=1",
    "Proxy-Authorization": "Basic cHg=",
    "X-Token": "s3cret",
    "X-Plain": "visible",
}


def test_cross_origin_redirect_drops_credentials(srv: Server, other: Server) -> None:
    srv.route("/start", redirect(other.url("/land")))
    other.route("/land", static(b"landed"))
    settings = NetworkSettings(user="alice:pw", netrc=False)
    head, sink = get(
        srv.url("/start"),
        settings,
        headers={**SECRET_HEADERS, "Host": f"127.0.0.1:{srv.port}"},
        secret_headers=("x-token",),
    )
    assert bytes(sink.data) == b"landed"
    assert head.url == other.url("/land")
    first = srv.requests[0].headers
    assert first["authorization"] == "Bearer tok"  # explicit header wins over --user
    assert first["cookie"] == "sid=1"
    assert first["x-token"] == "s3cret"
    landed = other.requests[0].headers
    for name in ("authorization", "cookie", "proxy-authorization", "x-token"):
        assert name not in landed
    assert landed["x-plain"] == "visible"
    assert landed["host"] == f"127.0.0.1:{other.port}"


def test_cross_origin_redirect_drops_user_credentials(srv: Server, other: Server) -> None:
    srv.route("/start", redirect(other.url("/land")))
    other.route("/land", static(b"landed"))
    get(srv.url("/start"), NetworkSettings(user="alice:pw", netrc=False))
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert srv.requests[0].headers["authorization"] == expected
    assert "authorization" not in other.requests[0].headers


def test_user_credentials_go_to_their_origin_only(srv: Server, other: Server) -> None:
    srv.route("/a", static(b"a"))
    other.route("/b", static(b"b"))
    settings = NetworkSettings(user="alice:pw", user_origin=srv.url("/"), netrc=False)
    get(srv.url("/a"), settings)
    get(other.url("/b"), settings)
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert srv.requests[0].headers["authorization"] == expected
    assert "authorization" not in other.requests[0].headers


def test_url_credentials_stay_with_first_origin(srv: Server, other: Server) -> None:
    srv.route("/start", redirect(other.url("/land")))
    other.route("/land", static(b"landed"))
    url = f"http://bob:pa%3Ass@127.0.0.1:{srv.port}/start"
    head, _ = get(url, NetworkSettings(netrc=False))
    expected = "Basic " + base64.b64encode(b"bob:pa:ss").decode()
    assert srv.requests[0].headers["authorization"] == expected
    assert "authorization" not in other.requests[0].headers
    assert "bob" not in head.url


def test_url_credentials_never_reach_the_head(srv: Server) -> None:
    srv.route("/f", static(b"x"))
    head, _ = get(f"http://bob:pw@127.0.0.1:{srv.port}/f", NetworkSettings(netrc=False))
    assert head.url == srv.url("/f")
    assert srv.requests[0].headers["authorization"].startswith("Basic ")


def test_url_with_spaces_and_non_ascii_is_encoded(srv: Server) -> None:
    srv.route("/a%20b/caf%C3%A9", static(b"encoded"))
    _, sink = get(srv.url("/a b/café"))
    assert bytes(sink.data) == b"encoded"
    assert srv.requests[0].target == "/a%20b/caf%C3%A9"


def test_redirect_to_raw_utf8_location(srv: Server) -> None:
    # The Location header carries raw UTF-8 bytes (reply() encodes str as latin-1).
    srv.route("/r", redirect("/caf\xc3\xa9?q=\xc3\xa9"))
    srv.route("/caf%C3%A9", static(b"ok"))
    head, sink = get(srv.url("/r"))
    assert bytes(sink.data) == b"ok"
    assert srv.requests[1].target == "/caf%C3%A9?q=%C3%A9"
    assert head.url == srv.url("/caf%C3%A9?q=%C3%A9")


def test_same_origin_redirect_keeps_credentials(srv: Server) -> None:
    srv.route("/start", redirect("/land"))
    srv.route("/land", static(b"landed"))
    get(srv.url("/start"), headers=SECRET_HEADERS, secret_headers=("X-Token",))
    landed = srv.requests[1].headers
    assert landed["authorization"] == "Bearer tok"
    assert landed["cookie"] == "sid=1"
    assert landed["x-token"] == "s3cret"


def test_other_port_is_another_origin(srv: Server, other: Server) -> None:
    # Same host, other port: credentials must not follow (CVE-2022-27776).
    srv.route("/start", redirect(f"http://127.0.0.1:{other.port}/land"))
    other.route("/land", static(b"x"))
    get(srv.url("/start"), headers={"Authorization": "Bearer tok"})
    assert "authorization" not in other.requests[0].headers


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


def test_stall_is_detected_quickly(srv: Server) -> None:
    srv.route("/stall", wait_then_close(srv, 10))
    settings = NetworkSettings(stall_timeout=0.5)
    start = time.perf_counter()
    with pytest.raises(TransientError, match="stalled"):
        get(srv.url("/stall"), settings)
    assert time.perf_counter() - start < 3.0


def test_slow_but_moving_transfer_is_not_a_stall(srv: Server) -> None:
    def drip(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, b"", [("Content-Length", "10")], length=False)
        for _ in range(10):
            time.sleep(0.1)
            sock.sendall(b"d")

    srv.route("/drip", drip)
    _, sink = get(srv.url("/drip"), NetworkSettings(stall_timeout=0.4))
    assert bytes(sink.data) == b"d" * 10


def test_refused_port_is_transient() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TransientError) as info:
        get(f"http://user:hunter2@127.0.0.1:{port}/x")
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


# -- network path --


def test_resolve_maps_made_up_host(srv: Server) -> None:
    srv.route("/f", static(b"resolved"))
    host = "files.example.test"
    settings = NetworkSettings(resolve=(f"{host}:{srv.port}:127.0.0.1",))
    _head, sink = get(f"http://{host}:{srv.port}/f", settings)
    assert bytes(sink.data) == b"resolved"
    assert srv.requests[0].headers["host"] == f"{host}:{srv.port}"


def test_proxy_setting_is_used(srv: Server) -> None:
    def proxied(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.target.encode())

    srv.route("/via", proxied)
    settings = NetworkSettings(proxy=srv.origin)
    _, sink = get("http://origin.example.test/via", settings)
    assert bytes(sink.data) == b"http://origin.example.test/via"


def test_proxy_environment_applies_when_no_proxy_is_set(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def proxied(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.target.encode())

    srv.route("/via", proxied)
    monkeypatch.setenv("http_proxy", srv.origin)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    _, sink = get("http://origin.example.test/via")
    assert bytes(sink.data) == b"http://origin.example.test/via"


def test_unusable_proxy_scheme_in_the_environment_is_not_retried(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "ftp://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(RemoteError, match="unusable proxy") as err:
        get(f"{srv.origin}/never")
    assert not err.value.retryable
    assert srv.requests == []


def test_empty_proxy_setting_switches_the_environment_proxy_off(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv.route("/direct", static(b"direct"))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    _, sink = get(f"{srv.origin}/direct", NetworkSettings(proxy=""))
    assert bytes(sink.data) == b"direct"


def test_cookies_file_scoping(srv: Server, tmp_path: Path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/a\tFALSE\t0\tin_a\t1\n"
        "127.0.0.1\tFALSE\t/\tTRUE\t0\tsecure_only\t2\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t1\texpired\t3\n"
        "other.example\tFALSE\t/\tFALSE\t0\telsewhere\t4\n"
    )
    srv.route("/a/x", static(b"a"))
    srv.route("/b/x", static(b"b"))
    settings = NetworkSettings(cookies_file=str(jar))

    async def go(t: CurlTransport) -> None:
        await t.fetch(Request(srv.url("/a/x")), Sink())
        await t.fetch(Request(srv.url("/b/x")), Sink())

    run(go, settings)
    assert srv.requests[0].headers.get("cookie") == "in_a=1"
    assert "cookie" not in srv.requests[1].headers


def test_cookies_set_on_redirect_are_sent_on_next_hop(srv: Server, tmp_path: Path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n")

    def login(req: Req, sock: socket.socket) -> None:
        reply(sock, 302, b"", [("Location", "/in"), ("Set-Cookie", "session=abc; Path=/")])

    srv.route("/login", login)
    srv.route("/in", static(b"in"))
    get(srv.url("/login"), NetworkSettings(cookies_file=str(jar)))
    assert srv.requests[1].headers.get("cookie") == "session=abc"


def test_missing_cookies_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cookies"):
        CurlTransport(NetworkSettings(cookies_file=str(tmp_path / "nope.txt")))


def test_netrc_file_used_per_host(srv: Server, other: Server, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nina password pw1\n")
    netrc.chmod(0o600)
    srv.route("/f", static(b"ok"))
    get(srv.url("/f"), NetworkSettings(netrc=True, netrc_file=str(netrc)))
    expected = "Basic " + base64.b64encode(b"nina:pw1").decode()
    assert srv.requests[0].headers["authorization"] == expected


# -- TLS --


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Server(tls=ctx) as server:
        server.route("/f", static(b"secret bytes"))
        yield server, ca_file


def test_https_untrusted_fails_by_default(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server, _ = tls_server
    with pytest.raises(RemoteError) as info:
        get(server.url("/f"))
    message = str(info.value)
    assert "--ca-cert" in message and "--insecure" in message
    assert "\n" not in message


def test_https_insecure_works(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    _, sink = get(server.url("/f"), NetworkSettings(insecure=True))
    assert bytes(sink.data) == b"secret bytes"


def test_https_with_ca_cert_works(tls_server: tuple[Server, Path]) -> None:
    server, ca_file = tls_server
    _, sink = get(server.url("/f"), NetworkSettings(ca_cert=str(ca_file)))
    assert bytes(sink.data) == b"secret bytes"


def test_ssl_cert_file_env_is_honoured(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_file = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    _, sink = get(server.url("/f"))
    assert bytes(sink.data) == b"secret bytes"


def test_ca_locations_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", "from-env.pem")
    assert ca_locations(NetworkSettings(ca_cert="given.pem")) == ("given.pem", None)
    assert ca_locations(NetworkSettings(ca_cert=str(tmp_path))) == (None, str(tmp_path))
    assert ca_locations(NetworkSettings()) == ("from-env.pem", None)
    monkeypatch.delenv("CURL_CA_BUNDLE")
    cainfo, capath = ca_locations(NetworkSettings())
    # Whatever the system has, it is something that exists (or libcurl's default).
    assert cainfo is None or Path(cainfo).is_file()
    assert capath is None or Path(capath).is_dir()


def test_pooled_handles_forget_the_last_requests_extras(srv: Server) -> None:
    """Handles are reused without a full reset: a HEAD, a POST, credentials or a speed cap
    must not leak into the next plain GET on the same handle."""
    srv.route("/f", static(BODY))
    srv.route("/p", lambda req, sock: reply(sock, 200, req.method.encode() + b":" + req.body))

    async def go(t: CurlTransport) -> list[tuple[str, bytes]]:
        out = []
        for req in (
            Request(srv.url("/f"), method="HEAD"),
            Request(srv.url("/f")),
            Request(srv.url("/p"), method="POST", body=b"x"),
            Request(srv.url("/p")),
            Request(srv.url("/f").replace("://", "://u:pw@"), max_speed=10_000_000),
            Request(srv.url("/f")),
        ):
            sink = Sink()
            await t.fetch(req, sink)
            out.append((req.method, bytes(sink.data)))
        return out

    results = run(go, max_total_connections=1)
    assert results[0] == ("HEAD", b"") and results[1] == ("GET", BODY)
    assert results[2] == ("POST", b"POST:x") and results[3] == ("GET", b"GET:")
    assert results[5] == ("GET", BODY)
    methods = [r.method for r in srv.requests]
    assert methods == ["HEAD", "GET", "POST", "GET", "GET", "GET"]
    assert "authorization" in srv.requests[4].headers
    assert "authorization" not in srv.requests[5].headers


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

    async def go(t: CurlTransport) -> list[float]:
        took: list[float] = []
        for _ in range(12):
            start = time.monotonic()
            sink = Sink()
            await t.fetch(Request(srv.url("/f")), sink)
            took.append(time.monotonic() - start)
            assert bytes(sink.data) == BODY
            await asyncio.sleep(0.01)  # let the server's FIN arrive on the idle socket
        return took

    took = run(go, NetworkSettings(stall_timeout=5.0))
    assert len({r.conn for r in srv.requests}) == 12
    assert max(took) < 2.0  # a stale registration would wait for the stall watchdog


def test_netrc_in_home_is_read_when_present(
    srv: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv.route("/f", static(b"ok"))
    monkeypatch.setenv("HOME", str(tmp_path))
    get(srv.url("/f"))
    assert "authorization" not in srv.requests[0].headers  # no netrc: nothing sent
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login nina password pw1\n")
    netrc.chmod(0o600)
    get(srv.url("/f"))
    expected = "Basic " + base64.b64encode(b"nina:pw1").decode()
    assert srv.requests[1].headers["authorization"] == expected



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
