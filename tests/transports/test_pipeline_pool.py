"""PipelinePool (transports/pipeline.py) on its own, against raw sockets on 127.0.0.1.

Each test drives the pool with small fake per-request objects (:class:`Hop`) and a server
from ``_server.py`` whose handlers write exactly the bytes a test wants, then checks the
finish codes, the bytes delivered and the connections the server saw.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import os
import random
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pycurl
import pytest

from omniget.engine.transports import pipeline
from omniget.engine.transports.curlloop import CLOSED, STALLED
from omniget.engine.transports.hop import parse_head
from omniget.engine.transports.pipeline import DEPTH, FALLBACK, PipelinePool, pipeline_key

from ._server import Handler, Req, Server, reset, static

T = TypeVar("T")

RECV: int = pycurl.E_RECV_ERROR
WRITE: int = pycurl.E_WRITE_ERROR
BAD_ENCODING: int = pycurl.E_BAD_CONTENT_ENCODING
WEIRD = pipeline.WEIRD_REPLY

#: Plain paths every test server answers with :func:`want`.
PLAIN = ("a", "b", "c", "d", "e", "next", "after")


def want(path: str) -> bytes:
    """The body the test server sends for a plain path (``/f<i>`` or one of PLAIN)."""
    if path.startswith("/f"):
        i = int(path[2:])
        return f"body {i};".encode() * (i + 1)
    return f"<{path[1:]}>".encode()


def head_of(body: bytes) -> list[bytes]:
    """The raw head lines of ``static(body)``'s answer, as the pool hands them over."""
    return [b"HTTP/1.1 200 X\r\n", f"Content-Length: {len(body)}\r\n".encode(), b"\r\n"]


def rq(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def ok(body: bytes, *headers: str) -> bytes:
    """A whole 200 answer with a Content-Length."""
    lines = ["HTTP/1.1 200 OK", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, head: str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked") -> bytes:
    return (
        (head + "\r\n\r\n").encode()
        + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
        + b"0\r\n\r\n"
    )


def slices(data: bytes, sizes: tuple[int, ...] = (1, 7, 2, 13, 3, 64, 5, 300)) -> list[bytes]:
    """``data`` cut into odd pieces."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos : pos + n])
        pos, i = pos + n, i + 1
    return out


# ----- server side --------------------------------------------------------------------


def linger_close(sock: socket.socket) -> None:
    """Half-close and read until the client goes (so our FIN is not turned into an RST
    by pipelined requests left unread)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        while sock.recv(65536):
            pass
    except OSError:
        pass


def send(*parts: bytes, pause: float = 0.0, end: str = "keep") -> Handler:
    """Write ``parts`` (``pause`` seconds apart), then keep the connection (``keep``),
    close it (``close``), half-close it and linger (``linger``) or reset it (``reset``)."""

    def handle(req: Req, sock: socket.socket) -> bool | None:
        for i, part in enumerate(parts):
            if pause and i:
                time.sleep(pause)
            sock.sendall(part)
        if end == "linger":
            linger_close(sock)
            return False
        if end == "reset":
            time.sleep(0.05)  # let the client read what came before
            reset(sock)
            return False
        return False if end == "close" else None

    return handle


def hang(srv: Server) -> Handler:
    """Read the request and never answer (until the server stops)."""

    def handle(req: Req, sock: socket.socket) -> bool:
        srv.stopping.wait(10)
        return False

    return handle


def stall_after(srv: Server, data: bytes) -> Handler:
    """Send ``data``, then go silent (until the server stops)."""

    def handle(req: Req, sock: socket.socket) -> bool:
        sock.sendall(data)
        srv.stopping.wait(10)
        return False

    return handle


def conns_of(srv: Server, path: str) -> list[int]:
    return [r.conn for r in srv.requests if r.path == path]


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        for i in range(40):
            server.route(f"/f{i}", static(want(f"/f{i}")))
        for p in PLAIN:
            server.route(f"/{p}", static(want(f"/{p}")))
        yield server


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ----- client side --------------------------------------------------------------------


class Hop:
    """What the transport's per-request object does, recorded."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        abort_after: int | None = None,
        cancel_after: int | None = None,
    ) -> None:
        self.raw: list[bytes] = []
        self.parsed: tuple[int, list[tuple[str, str]]] | None = None
        self.fut: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.body = bytearray()
        self.writes = 0
        self.empty_writes = 0
        self.late_writes = 0  # after the request finished
        self.abort_after = abort_after
        self.cancel_after = cancel_after
        self.views = True  # (it copies what it gets at once)
        self.kinds: set[type] = set()

    def on_write(self, data: bytes | memoryview) -> int | None:
        self.kinds.add(type(data))
        if self.fut.done():
            self.late_writes += 1
            return None
        if not data:
            self.empty_writes += 1
        self.writes += 1
        self.body += data
        if self.cancel_after is not None and len(self.body) >= self.cancel_after:
            self.fut.cancel()
        if self.abort_after is not None and len(self.body) >= self.abort_after:
            return 0
        return None

    def pipe_room(self) -> int:
        return 0  # (takes bytes only; PipeHop takes pipes)

    def on_pipe(self, pipe: int, count: int) -> int | None:
        raise AssertionError("a pipe handed to a requester that takes none")

    def finish(self, code: int, message: str) -> None:
        if not self.fut.done():
            self.fut.set_result((code, message))

    @property
    def code(self) -> int:
        return self.fut.result()[0]

    @property
    def message(self) -> str:
        return self.fut.result()[1]


class PipeHop(Hop):
    """A requester that also takes body bytes from a pipe, like the engine's span sink:
    up to ``limit`` bytes of body in all (then it ends the answer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, limit: int | None = None) -> None:
        super().__init__(loop, abort_after=limit)
        self.limit = limit
        self.piped = 0  # body bytes that came through the pipe
        self.pipe_calls = 0

    def on_write(self, data: bytes | memoryview) -> int | None:
        if self.limit is not None:
            data = data[: self.limit - len(self.body)]  # (as the span sink cuts at its end)
        return super().on_write(data)

    def pipe_room(self) -> int:
        return (1 << 40) if self.limit is None else self.limit - len(self.body)

    def on_pipe(self, pipe: int, count: int) -> int | None:
        assert 0 < count <= self.pipe_room() and not self.fut.done()
        self.pipe_calls += 1
        got = bytearray()
        while len(got) < count:
            got += os.read(pipe, count - len(got))
        self.body += got
        self.piped += count
        return 0 if self.limit is not None and len(self.body) >= self.limit else None


class Client:
    """A pool bound to the running loop, aimed at one origin; closed on exit."""

    def __init__(
        self,
        port: int,
        *,
        max_conns: int = 2,
        stall_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        resolve: tuple[str, ...] = (),
        key: str | None = None,
        confirm: bool = True,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = PipelinePool(
            self.loop,
            max_conns=max_conns,
            connect_timeout=connect_timeout,
            stall_timeout=stall_timeout,
            resolve=resolve,
        )
        self.key = key or f"127.0.0.1:{port}"
        if confirm:
            self.pool.confirm(self.key)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.pool.close()
        await asyncio.sleep(0)

    def get(self, *paths: str, **hop: Any) -> list[Hop]:
        hops = []
        for path in paths:
            h = Hop(self.loop, **hop)
            self.pool.submit(self.key, rq(path), h)
            hops.append(h)
        return hops

    async def codes(self, hops: list[Hop], timeout: float = 3.0) -> list[int]:
        await asyncio.wait_for(asyncio.gather(*(h.fut for h in hops)), timeout)
        for h in hops:
            assert h.late_writes == 0 and h.empty_writes == 0
        return [h.code for h in hops]

    async def until(self, pred: Callable[[], bool], timeout: float = 2.0) -> None:
        end = self.loop.time() + timeout
        while not pred():
            assert self.loop.time() < end, "condition not met in time"
            await asyncio.sleep(0.005)


def run(fn: Callable[[], Awaitable[T]], errors: list[dict[str, Any]] | None = None) -> T:
    """Run ``fn`` in a fresh loop. Anything the loop reports to its exception handler
    (an exception escaping a protocol callback, say) fails the test, unless ``errors``
    is given to collect it."""
    seen: list[dict[str, Any]] = [] if errors is None else errors

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        return await asyncio.wait_for(fn(), 8)

    result = asyncio.run(main())
    if errors is None:
        assert not seen, [(c.get("message"), c.get("exception")) for c in seen]
    return result


def fetch_one_conn(srv: Server, *paths: str, codes: list[int] | None = None) -> list[Hop]:
    """GET ``paths`` over one pooled connection; each finishes with its code in ``codes``
    (default 0) and the origin stays usable."""

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get(*paths)
            assert await c.codes(hops) == (codes or [0] * len(paths))
            assert c.pool.usable(c.key)
            return hops

    return run(go)


def no_loop_errors(errors: list[dict[str, Any]]) -> None:
    """Nothing escaped into the event loop's exception handler."""
    assert not errors, [(c.get("message"), c.get("exception")) for c in errors]


# ----- many requests, few connections -----------------------------------------------


def test_requests_go_out_as_given(srv: Server) -> None:
    async def go() -> None:
        async with Client(srv.port) as c:
            hop = Hop(c.loop)
            c.pool.submit(c.key, b"GET /a?q=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\n", hop)
            assert await c.codes([hop]) == [0]
            assert hop.raw == head_of(want("/a"))
            assert bytes(hop.body) == want("/a")

    run(go)
    [req] = srv.requests
    assert (req.method, req.target, req.query) == ("GET", "/a?q=1", "q=1")
    assert req.raw_headers == [("Host", "x"), ("X-Y", "z")]


def test_bodies_come_as_views_only_to_those_who_take_them(srv: Server) -> None:
    """A requester that keeps what it is given gets bytes; one that takes views gets
    slices of the read buffer (no copy), and the bytes are right either way."""
    paths = [f"/f{i * 7}" for i in range(6)]

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = [Hop(c.loop) for _ in paths]
            for i, hop in enumerate(hops):
                hop.views = i % 2 == 0
            for path, hop in zip(paths, hops, strict=True):
                c.pool.submit(c.key, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), hop)
            assert await c.codes(hops) == [0] * len(paths)
            return hops

    hops = run(go)
    for i, (path, hop) in enumerate(zip(paths, hops, strict=True)):
        assert bytes(hop.body) == want(path)
        assert hop.kinds == ({memoryview} if i % 2 == 0 else {bytes})


def test_twenty_requests_share_at_most_max_conns(srv: Server) -> None:
    paths = [f"/f{i}" for i in range(20)]

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=2) as c:
            hops = c.get(*paths)
            assert await c.codes(hops) == [0] * 20
            assert c.pool.has_connections(c.key) and c.pool.usable(c.key)
            return hops

    hops = run(go)
    for path, h in zip(paths, hops, strict=True):
        assert bytes(h.body) == want(path)
        assert h.raw == head_of(want(path))
    assert srv.connections == 2
    assert sorted(srv.paths(), key=lambda p: int(p[2:])) == paths  # each asked once
    per_conn: dict[int, list[int]] = {}
    for r in srv.requests:
        per_conn.setdefault(r.conn, []).append(int(r.path[2:]))
    assert set(per_conn) == {1, 2}
    for order in per_conn.values():
        assert order == sorted(order)  # in submission order on each connection
        assert len(order) > 1
    assert max(len(o) for o in per_conn.values()) <= 20 - 1


@pytest.mark.parametrize(("n", "max_conns", "conns"), [(1, 4, 1), (3, 4, 3), (8, 2, 2)])
def test_requests_spread_over_new_connections_up_to_the_cap(
    srv: Server, n: int, max_conns: int, conns: int
) -> None:
    """A request goes to an idle connection, else to a new one while the cap allows."""

    async def go() -> None:
        async with Client(srv.port, max_conns=max_conns) as c:
            hops = c.get(*(f"/f{i}" for i in range(n)))
            assert len(c.pool._origins[c.key].conns) == conns
            assert await c.codes(hops) == [0] * n

    run(go)
    assert srv.connections == conns


def test_more_than_cap_times_depth_requests_wait_for_room(srv: Server) -> None:
    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get(*(f"/f{i}" for i in range(DEPTH + 3)))
            o = c.pool._origins[c.key]
            assert [len(x.queue) for x in o.conns] == [DEPTH] and len(o.waiting) == 3
            assert await c.codes(hops) == [0] * (DEPTH + 3)
            assert [bytes(h.body) for h in hops] == [want(f"/f{i}") for i in range(DEPTH + 3)]

    run(go)
    assert srv.connections == 1
    assert srv.paths() == [f"/f{i}" for i in range(DEPTH + 3)]


@pytest.mark.parametrize(("held", "cap"), [(1, 2), (5, 1)])
def test_connections_held_elsewhere_lower_the_cap(srv: Server, held: int, cap: int) -> None:
    asked: list[str] = []

    async def go() -> None:
        async with Client(srv.port, max_conns=3) as c:

            def held_for(key: str) -> int:
                asked.append(key)
                return held

            c.pool.held = held_for
            hops = c.get(*(f"/f{i}" for i in range(6)))
            assert await c.codes(hops) == [0] * 6
            assert set(asked) == {c.key}

    run(go)
    assert srv.connections == cap


def test_kept_connections_are_reused_by_later_requests(srv: Server) -> None:
    async def go() -> None:
        async with Client(srv.port, max_conns=2) as c:
            for _ in range(3):
                hops = c.get("/a", "/b", "/c")
                assert await c.codes(hops) == [0, 0, 0]
                assert [bytes(h.body) for h in hops] == [want("/a"), want("/b"), want("/c")]

    run(go)
    assert srv.connections == 2
    assert len(srv.requests) == 9


# ----- framing ------------------------------------------------------------------------


def test_head_and_body_split_across_many_small_writes(srv: Server) -> None:
    body = (bytes(range(256)) * 12)[:3000]
    parts = [
        b"HTT",
        b"P/1.1 200 OK\r",
        b"\nX-One: 1\r\nContent-Le",
        b"ngth: 3000\r\n\r",
        b"\n" + body[:1],
        *slices(body[1:]),
    ]
    srv.route("/split", send(*parts, pause=0.001))

    split, after = fetch_one_conn(srv, "/split", "/after")
    assert split.raw == [
        b"HTTP/1.1 200 OK\r\n",
        b"X-One: 1\r\n",
        b"Content-Length: 3000\r\n",
        b"\r\n",
    ]
    assert bytes(split.body) == body
    assert bytes(after.body) == want("/after") and after.raw == head_of(want("/after"))
    assert srv.connections == 1


def test_next_head_glued_to_the_previous_body_and_split(srv: Server) -> None:
    # the first answer's handler also writes the start of the second answer's head
    srv.route("/g1", send(ok(b"first") + b"HTTP/1.1 200 X\r\nContent-Len"))
    srv.route("/g2", send(b"gth: 6\r", b"\n\r\nsec", b"ond", pause=0.01))

    g1, g2, a = fetch_one_conn(srv, "/g1", "/g2", "/a")
    assert bytes(g1.body) == b"first"
    assert g2.raw == [b"HTTP/1.1 200 X\r\n", b"Content-Length: 6\r\n", b"\r\n"]
    assert bytes(g2.body) == b"second"
    assert bytes(a.body) == want("/a")
    assert srv.connections == 1


def test_a_head_is_parsed_once_as_the_generic_parser_would(srv: Server) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Folded: one\r\n  two\r\n"
        b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nNoColon\r\nX-Empty:\r\n"
        b"X-Pad :  v  \r\n\r\nabc"
    )
    srv.route("/odd", send(head))

    odd, a = fetch_one_conn(srv, "/odd", "/a")
    assert bytes(odd.body) == b"abc" and bytes(a.body) == want("/a")
    assert odd.parsed == parse_head(odd.raw)
    assert odd.parsed[1][1:3] == [("X-Folded", "one two"), ("Set-Cookie", "a=1")]


def test_lenient_but_exact_heads(srv: Server) -> None:
    srv.route("/dup", send(b"HTTP/1.1 200\r\ncontent-LENGTH : 3\r\nContent-Length:3\r\n\r\nabc"))
    srv.route("/zero", send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))

    dup, zero, a = fetch_one_conn(srv, "/dup", "/zero", "/a")
    assert bytes(dup.body) == b"abc"
    assert dup.raw[0] == b"HTTP/1.1 200\r\n"
    assert zero.writes == 0 and zero.raw[-1] == b"\r\n"
    assert bytes(a.body) == want("/a")
    assert srv.connections == 1


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
    b"5;x=y\r\nhello\r\n"
    b'6 ; name="v"\r\n world\r\n'
    b"A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\nOther: u\r\n\r\n"
)


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_chunked_body_with_extensions_and_trailers(srv: Server, split: bool) -> None:
    srv.route("/ch", send(*(slices(CHUNKED, (3, 1, 5)) if split else [CHUNKED]), pause=0.001))

    ch, after = fetch_one_conn(srv, "/ch", "/after")
    assert bytes(ch.body) == b"hello world0123456789"
    assert ch.raw == [  # the trailer is read, not handed over as head lines
        b"HTTP/1.1 200 OK\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"X-A: 1\r\n",
        b"\r\n",
    ]
    assert bytes(after.body) == want("/after")
    assert srv.connections == 1


def test_two_chunked_answers_back_to_back(srv: Server) -> None:
    srv.route("/c1", send(chunked(b"one", b"-", b"1")))
    srv.route(
        "/c2",
        send(chunked(b"two" * 100, b"2", head="HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked")),
    )

    c1, c2, again = fetch_one_conn(srv, "/c1", "/c2", "/c1")
    assert bytes(c1.body) == b"one-1" == bytes(again.body)
    assert bytes(c2.body) == b"two" * 100 + b"2"
    assert srv.connections == 1 and conns_of(srv, "/c1") == [1, 1]


# ----- content encodings --------------------------------------------------------------

TEXT = b"".join(f"line {i} of a compressible body\n".encode() for i in range(2000))


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


@pytest.mark.parametrize("is_chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize(
    ("name", "encode"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", _deflate)],
)
def test_content_encoding_is_decoded(
    srv: Server, name: str, encode: Callable[[bytes], bytes], is_chunked: bool
) -> None:
    coded = encode(TEXT)
    if is_chunked:
        answer = chunked(
            *slices(coded, (1000, 7, 333)),
            head=f"HTTP/1.1 200 OK\r\nContent-Encoding: {name}\r\nTransfer-Encoding: chunked",
        )
    else:
        answer = ok(coded, f"Content-Encoding: {name}")
    srv.route("/z", send(*slices(answer, (1500, 1, 4000)), pause=0.001))

    z, after = fetch_one_conn(srv, "/z", "/after")
    assert bytes(z.body) == TEXT
    assert f"Content-Encoding: {name}\r\n".encode() in z.raw
    assert bytes(after.body) == want("/after")
    assert srv.connections == 1


def test_corrupt_encoded_body_fails_and_moves_the_rest(srv: Server) -> None:
    srv.route("/z", send(ok(b"this is not gzip at all", "Content-Encoding: gzip")))

    z, b = fetch_one_conn(srv, "/z", "/b", codes=[BAD_ENCODING, 0])
    assert z.body == b"" and z.raw[0] == b"HTTP/1.1 200 OK\r\n"
    assert bytes(b.body) == want("/b")
    assert 2 in conns_of(srv, "/b")


def test_raw_deflate_is_decoded_like_libcurl(srv: Server) -> None:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    srv.route("/rd", send(ok(c.compress(TEXT) + c.flush(), "Content-Encoding: deflate")))

    async def go() -> Hop:
        async with Client(srv.port, max_conns=1) as cl:
            [rd] = cl.get("/rd")
            await cl.codes([rd])
            return rd

    rd = run(go)
    assert rd.code == FALLBACK or (rd.code == 0 and bytes(rd.body) == TEXT)


@pytest.mark.parametrize(
    "answer",
    [
        ok(b"\x0b\x02\x80hello\x03", "Content-Encoding: br"),
        ok(b"xx", "Content-Encoding: gzip, br"),
        chunked(b"whatever", head="HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"),
        ok(b"xx", "Transfer-Encoding: identity"),
    ],
    ids=["br", "stacked", "gzip-chunked", "te-identity"],
)
def test_undecodable_answer_is_given_back_and_the_rest_resent(srv: Server, answer: bytes) -> None:
    srv.route("/odd", send(answer))

    a, odd, b, cc = fetch_one_conn(srv, "/a", "/odd", "/b", "/c", codes=[0, FALLBACK, 0, 0])
    assert odd.raw == [] and odd.body == b"" and odd.writes == 0
    assert (bytes(a.body), bytes(b.body), bytes(cc.body)) == (want("/a"), want("/b"), want("/c"))
    assert conns_of(srv, "/a") == [1] and conns_of(srv, "/odd") == [1]
    assert 2 in conns_of(srv, "/b") and 2 in conns_of(srv, "/c")
    assert srv.connections == 2


# ----- answers without a body, interim answers ----------------------------------------


def test_interim_answers_are_skipped(srv: Server) -> None:
    srv.route(
        "/i",
        send(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200",
            b" OK\r\nContent-Length: 2\r\n\r\nok",
            pause=0.01,
        ),
    )

    i, a = fetch_one_conn(srv, "/i", "/a")
    assert i.raw == [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n", b"\r\n"]
    assert bytes(i.body) == b"ok"
    assert bytes(a.body) == want("/a")
    assert srv.connections == 1


def test_204_and_304_have_no_body_and_the_next_answer_follows(srv: Server) -> None:
    srv.route("/nc", send(b"HTTP/1.1 204 No Content\r\nX: 1\r\n\r\n"))
    # a 304 may carry the Content-Length of the body it does not send
    srv.route(
        "/nm", send(b'HTTP/1.1 304 Not Modified\r\nETag: "v"\r\nContent-Length: 1234\r\n\r\n')
    )

    nc, nm, a, nc2 = fetch_one_conn(srv, "/nc", "/nm", "/a", "/nc")
    assert nc.raw == [b"HTTP/1.1 204 No Content\r\n", b"X: 1\r\n", b"\r\n"]
    assert nm.raw[0] == b"HTTP/1.1 304 Not Modified\r\n" and nm.raw[-1] == b"\r\n"
    assert nc.writes == nm.writes == nc2.writes == 0
    assert bytes(a.body) == want("/a")
    assert srv.connections == 1


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_bodyless_status_ignores_transfer_encoding(srv: Server, status: bytes) -> None:
    srv.route("/nb", send(b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n\r\n"))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/nb", "/a")
            await c.codes(hops)
            return hops

    errors: list[dict[str, Any]] = []
    nb, a = run(go, errors)
    assert (nb.code, a.code) == (0, 0)
    assert bytes(a.body) == want("/a")
    assert not errors


# ----- the server ends connections ----------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        ok(b"bye", "Connection: close"),
        ok(b"bye", "Connection: Keep-Alive, Close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
    ],
    ids=["close", "keep-alive-close", "http10"],
)
def test_close_on_a_connections_first_answer_refuses_the_origin(srv: Server, answer: bytes) -> None:
    srv.route("/close", send(answer, end="linger"))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/close", "/b", "/c")
            assert await c.codes(hops) == [0, FALLBACK, FALLBACK]
            assert not c.pool.usable(c.key) and c.pool.known(c.key)
            [late] = c.get("/b")
            assert late.fut.done() and late.code == FALLBACK  # at once
            c.pool.confirm(c.key)  # a refusal stands
            assert not c.pool.usable(c.key)
            return hops

    close, b, cc = run(go)
    assert bytes(close.body) == b"bye"
    assert b.raw == cc.raw == [] and b.body == cc.body == b""
    assert srv.paths() == ["/close"] and srv.connections == 1


@pytest.mark.parametrize("at", [2, 3])
def test_close_after_two_answers_resends_the_rest(srv: Server, at: int) -> None:
    srv.route("/close", send(ok(b"bye", "Connection: close"), end="linger"))
    paths = [*["/a", "/b", "/c"][: at - 1], "/close", "/d", "/e"]

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get(*paths)
            assert await c.codes(hops) == [0] * len(paths)
            assert c.pool.usable(c.key)
            return hops

    hops = run(go)
    for path, h in zip(paths, hops, strict=True):
        assert bytes(h.body) == (b"bye" if path == "/close" else want(path))
    assert conns_of(srv, "/close") == [1]
    assert conns_of(srv, "/d") == [2] and conns_of(srv, "/e") == [2]
    assert srv.connections == 2


def test_http10_keep_alive_is_kept(srv: Server) -> None:
    srv.route(
        "/k", send(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
    )

    k, _a, k2 = fetch_one_conn(srv, "/k", "/a", "/k")
    assert bytes(k.body) == bytes(k2.body) == b"ok"
    assert srv.connections == 1


def test_close_delimited_answer_ends_at_eof_and_pauses_the_origin(srv: Server) -> None:
    srv.route(
        "/eof",
        send(
            b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", b"part one, ", b"part two", pause=0.01, end="linger"
        ),
    )

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/eof", "/b", "/c")
            # the requests behind it go back: pipelining pauses for an origin whose
            # answers are not small (here: of unknown length)
            assert await c.codes(hops) == [0, FALLBACK, FALLBACK]
            assert not c.pool.usable(c.key) and not c.pool.known(c.key)
            c.pool.confirm(c.key)  # paused, not refused: a small answer confirms it again
            assert c.pool.usable(c.key)
            hops += c.get("/b")
            assert await c.codes(hops[3:]) == [0]
            return hops

    eof, b, cc, b2 = run(go)
    assert eof.raw == [b"HTTP/1.1 200 OK\r\n", b"X: y\r\n", b"\r\n"]
    assert bytes(eof.body) == b"part one, part two"
    assert b.raw == cc.raw == [] and b.body == cc.body == b""
    assert bytes(b2.body) == want("/b")
    assert srv.paths() == ["/eof", "/b"] and conns_of(srv, "/b") == [2]


@pytest.mark.parametrize("end", ["reset", "linger"], ids=["rst", "fin"])
def test_connection_lost_mid_body_fails_that_answer_only(srv: Server, end: str) -> None:
    srv.route(
        "/cut", send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100, end=end)
    )

    cut, b, cc = fetch_one_conn(srv, "/cut", "/b", "/c", codes=[RECV, 0, 0])
    assert bytes(cut.body) == b"x" * 100
    assert cut.raw[1] == b"Content-Length: 1000\r\n"
    assert (bytes(b.body), bytes(cc.body)) == (want("/b"), want("/c"))
    assert 2 in conns_of(srv, "/b") and 2 in conns_of(srv, "/c")


def test_server_closing_an_idle_connection_is_no_failure(srv: Server) -> None:
    srv.route("/once", send(ok(b"one"), end="close"))  # keep-alive said, then closed

    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            [h] = c.get("/once")
            assert await c.codes([h]) == [0]
            await c.until(lambda: not c.pool.has_connections(c.key))
            [h] = c.get("/once")  # on a new connection
            assert await c.codes([h]) == [0]
            [h] = c.get("/a")  # at once: may go out on the closing one, then again
            assert await c.codes([h]) == [0] and bytes(h.body) == want("/a")
            assert c.pool.usable(c.key)

    run(go)
    assert conns_of(srv, "/once") == [1, 2]
    assert conns_of(srv, "/a") == [3]


# ----- large bodies and receivers that stop -------------------------------------------


def test_big_body_moves_the_requests_behind_it(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "BIG_BODY", 1000)
    big = bytes(range(256)) * 20
    srv.route("/big", static(big))
    srv.route("/edge", static(b"e" * 1000))  # not larger than BIG_BODY: nothing moves

    edge, bg, b, cc = fetch_one_conn(srv, "/edge", "/big", "/b", "/c")
    assert bytes(edge.body) == b"e" * 1000
    assert bytes(bg.body) == big
    assert (bytes(b.body), bytes(cc.body)) == (want("/b"), want("/c"))
    assert conns_of(srv, "/edge") == [1] and conns_of(srv, "/big") == [1]
    assert 2 in conns_of(srv, "/b") and 2 in conns_of(srv, "/c")
    assert srv.connections == 2


@pytest.mark.parametrize("big_body", [None, 2000], ids=["rest-stays", "rest-moves"])
def test_answer_larger_than_small_body_sends_one_request_at_a_time(
    srv: Server, monkeypatch: pytest.MonkeyPatch, big_body: int | None
) -> None:
    monkeypatch.setattr(pipeline, "SMALL_BODY", 1000)
    if big_body is not None:
        monkeypatch.setattr(pipeline, "BIG_BODY", big_body)
    big = bytes(range(256)) * 20
    srv.route("/big", static(big))
    srv.route("/edge", static(b"e" * 1000))  # not larger than SMALL_BODY

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            [edge] = c.get("/edge")
            assert await c.codes([edge]) == [0]
            assert c.pool.usable(c.key) and c.pool.shares(c.key)
            hops = c.get("/big", "/b")
            # behind a body over BIG_BODY a request moves to a new connection
            assert await c.codes(hops) == [0, 0]
            assert c.pool.usable(c.key) and not c.pool.shares(c.key)
            more = c.get("/c", "/d", "/e")
            # one at a time: one request on the connection, the others wait for it
            origin = c.pool._origins[c.key]
            assert [len(conn.queue) for conn in origin.conns] == [1]
            assert len(origin.waiting) == 2
            assert await c.codes(more) == [0, 0, 0]
            c.pool.confirm(c.key)  # a small answer elsewhere: pipelined again
            assert c.pool.shares(c.key)
            hops += more + c.get("/f1", "/f2")
            assert [len(conn.queue) for conn in origin.conns] == [2]
            assert await c.codes(hops[5:]) == [0, 0]
            return hops

    bg, b, cc, d, e, f1, f2 = run(go)
    assert bytes(bg.body) == big
    for hop, path in ((b, "/b"), (cc, "/c"), (d, "/d"), (e, "/e"), (f1, "/f1"), (f2, "/f2")):
        assert bytes(hop.body) == want(path)
    # (moved: asked on the first connection too, answered on a new one; the server's
    # connection threads may log the two in either order)
    assert sorted(conns_of(srv, "/b")) == ([1] if big_body is None else [1, 2])
    assert conns_of(srv, "/c") == conns_of(srv, "/e") == conns_of(srv, "/f2")


BIG = bytes(range(256)) * 20  # 5120 bytes
BIG_IN_TWO = send(
    b"HTTP/1.1 200 OK\r\nContent-Length: 5120\r\n\r\n" + BIG[:100], BIG[100:], pause=0.03
)


def test_receiver_abort_with_little_left_drains_and_keeps_the_connection(srv: Server) -> None:
    srv.route("/big", BIG_IN_TWO)

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            [bg] = c.get("/big", abort_after=1)
            hops = [bg, *c.get("/next", "/big")]
            assert await c.codes(hops) == [WRITE, 0, 0]
            assert c.pool.usable(c.key)
            return hops

    bg, nxt, bg2 = run(go)
    assert bg.raw[0] == b"HTTP/1.1 200 OK\r\n"
    assert 0 < len(bg.body) < len(BIG) and bytes(bg.body) == BIG[: len(bg.body)]
    assert bytes(nxt.body) == want("/next")
    assert bytes(bg2.body) == BIG
    assert srv.connections == 1


def test_receiver_abort_with_much_left_closes_and_resends(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "DRAIN_MAX", 1000)
    srv.route("/big", BIG_IN_TWO)

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            [bg] = c.get("/big", abort_after=1)
            hops = [bg, *c.get("/next")]
            assert await c.codes(hops) == [WRITE, 0]
            return hops

    bg, nxt = run(go)
    assert len(bg.body) == 100
    assert bytes(nxt.body) == want("/next")
    assert 2 in conns_of(srv, "/next") and srv.connections == 2


def test_receiver_abort_in_a_chunked_body_closes_and_resends(srv: Server) -> None:
    whole = chunked(b"a" * 10, b"b" * 10)
    srv.route("/ch", send(whole[:60], whole[60:], pause=0.03))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            [ch] = c.get("/ch", abort_after=1)
            hops = [ch, *c.get("/next")]
            assert await c.codes(hops) == [WRITE, 0]
            return hops

    ch, nxt = run(go)
    assert bytes(ch.body) == b"a" * 10
    assert bytes(nxt.body) == want("/next")
    assert 2 in conns_of(srv, "/next")


@pytest.mark.parametrize("at", ["before", "mid-body"])
def test_cancelled_request_answer_is_read_and_dropped(srv: Server, at: str) -> None:
    srv.route("/big", BIG_IN_TWO)

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            if at == "before":
                [first] = c.get("/a")
                [gone] = c.get("/big")
                gone.fut.cancel()
            else:
                [first] = c.get("/a")
                [gone] = c.get("/big", cancel_after=1)
            rest = c.get("/next")
            assert await c.codes([first, *rest]) == [0, 0]
            assert gone.fut.cancelled()
            return [first, gone, *rest]

    _first, gone, nxt = run(go)
    assert bytes(nxt.body) == want("/next")
    if at == "before":
        assert gone.raw == [] and gone.writes == 0
    else:
        assert gone.raw[0] == b"HTTP/1.1 200 OK\r\n" and len(gone.body) == 100
    assert gone.late_writes == 0
    assert srv.paths() == ["/a", "/big", "/next"] and srv.connections == 1


def test_request_cancelled_while_waiting_is_never_sent(srv: Server) -> None:
    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get(*(f"/f{i}" for i in range(DEPTH)))
            [late] = c.get("/a")  # no room: it waits
            late.fut.cancel()
            hops += c.get("/b")
            assert await c.codes(hops) == [0] * (DEPTH + 1)

    run(go)
    assert "/a" not in srv.paths() and srv.paths()[-1] == "/b"
    assert srv.connections == 1


# ----- large bodies spliced into the requester's file ---------------------------------

HUGE = random.Random(7).randbytes(3 << 19)  # under BIG_BODY; no period: a misplaced block shows
HUGE_HEAD = f"HTTP/1.1 200 OK\r\nContent-Length: {len(HUGE)}\r\n\r\n".encode()


def spliced_gets(
    srv: Server, *hops: type[Hop], one_by_one: bool = True, conns: int = 1
) -> list[Hop]:
    """GET /huge once per entry of ``hops`` (a Hop or a PipeHop each) over ``conns``
    connections."""

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=conns) as c:
            if one_by_one:
                c.pool.one_by_one(c.key)
            made = [kind(c.loop) for kind in hops]
            for h in made:
                c.pool.submit(c.key, rq("/huge"), h)
            assert await c.codes(made, timeout=6) == [0] * len(made)
            return made

    return run(go)


@pytest.mark.parametrize("one_by_one", [True, False], ids=["one-by-one", "pipelined"])
def test_a_large_body_goes_from_socket_to_pipe_for_a_requester_that_takes_pipes(
    srv: Server, one_by_one: bool
) -> None:
    srv.route("/huge", static(HUGE))
    got = spliced_gets(srv, PipeHop, Hop, PipeHop, one_by_one=one_by_one)
    for h in got:
        assert bytes(h.body) == HUGE
    first, plain, last = got
    assert isinstance(first, PipeHop) and isinstance(last, PipeHop)
    # most of each body skipped user space; the head's read brought the rest
    assert first.piped > len(HUGE) // 2 and last.piped > len(HUGE) // 2
    assert first.pipe_calls >= 1 and first.writes >= 1
    assert plain.writes > 1  # (a requester without pipes gets bytes, as before)
    assert srv.connections == 1  # the connection lives on after spliced answers


def test_a_requester_that_ends_a_spliced_body_gets_no_byte_past_its_end(srv: Server) -> None:
    """Like a span cut short by stealing: the pipe never holds more than it takes."""
    srv.route("/huge", static(HUGE))
    limit = len(HUGE) // 2 + 12345

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            c.pool.one_by_one(c.key)
            short = PipeHop(c.loop, limit=limit)
            c.pool.submit(c.key, rq("/huge"), short)
            whole = PipeHop(c.loop)
            c.pool.submit(c.key, rq("/huge"), whole)
            assert await c.codes([short, whole], timeout=6) == [WRITE, 0]
            return [short, whole]

    short, whole = run(go)
    assert bytes(short.body) == HUGE[:limit]
    assert isinstance(short, PipeHop) and short.piped > 0
    assert bytes(whole.body) == HUGE
    # much was left of the cut answer: that connection closed, the next one took over
    assert conns_of(srv, "/huge") == [1, 2]


@pytest.mark.parametrize("end", ["close", "reset"])
def test_a_connection_lost_during_a_spliced_body_fails_its_request(
    srv: Server, end: str
) -> None:
    cut = len(HUGE) // 2
    srv.route("/huge", send(HUGE_HEAD + HUGE[:4096], HUGE[4096:cut], pause=0.05, end=end))

    async def go() -> PipeHop:
        async with Client(srv.port, max_conns=1) as c:
            c.pool.one_by_one(c.key)
            h = PipeHop(c.loop)
            c.pool.submit(c.key, rq("/huge"), h)
            assert await c.codes([h], timeout=6) == [RECV]
            return h

    h = run(go)
    assert 0 < len(h.body) <= cut and bytes(h.body) == HUGE[: len(h.body)]
    assert h.message == "connection closed during the answer"


def test_a_kernel_that_refuses_socket_splices_gets_bytes_instead(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = []

    def refuse(*args: object, **kwargs: object) -> int:
        refused.append(args)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refuse)
    srv.route("/huge", static(HUGE))
    got = spliced_gets(srv, PipeHop, PipeHop, PipeHop, PipeHop, conns=2)
    assert all(bytes(h.body) == HUGE for h in got)
    assert len(refused) == 1  # not tried again, on this connection or the other
    assert srv.connections == 2


# ----- stalls -------------------------------------------------------------------------


def test_stall_mid_body(srv: Server) -> None:
    # (not _server.wait_then_close: it announces more than SMALL_BODY, which pauses)
    srv.route(
        "/stall", stall_after(srv, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    )

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            t0 = time.monotonic()
            hops = c.get("/stall", "/b")
            assert await c.codes(hops) == [STALLED, 0]
            assert time.monotonic() - t0 < 2.0
            assert c.pool.usable(c.key)  # bytes came: a slow answer, not a bad server
            return hops

    st, b = run(go)
    assert st.body == b"x" * 100 and "0.2 s" in st.message
    assert bytes(b.body) == want("/b") and 2 in conns_of(srv, "/b")


@pytest.mark.parametrize(
    "abort",
    [
        False,
        True,
    ],
    ids=["reading", "draining"],
)
def test_stall_after_an_answer_began_does_not_refuse(srv: Server, abort: bool) -> None:
    srv.route(
        "/big", stall_after(srv, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    )

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            [a] = c.get("/a")
            [bg] = c.get("/big", abort_after=1 if abort else None)
            hops = [a, bg, *c.get("/c")]
            assert await c.codes(hops) == [0, WRITE if abort else STALLED, 0]
            assert c.pool.usable(c.key)
            return hops

    _a, bg, cc = run(go)
    assert bg.raw[1] == b"Content-Length: 1000\r\n" and bytes(bg.body) == b"x" * len(bg.body)
    assert bytes(cc.body) == want("/c") and 2 in conns_of(srv, "/c")


def test_no_byte_at_all_stalls_without_refusing(srv: Server) -> None:
    srv.route("/hang", hang(srv))

    async def go() -> None:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            [h] = c.get("/hang")
            assert await c.codes([h]) == [STALLED]
            assert h.raw == []
            assert c.pool.usable(c.key)

    run(go)
    assert conns_of(srv, "/hang") == [1]  # failed, not sent again


def test_server_ignoring_pipelined_requests_is_refused(srv: Server) -> None:
    srv.route("/hang", hang(srv))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            hops = c.get("/a", "/hang", "/c")
            assert await c.codes(hops) == [0, STALLED, FALLBACK]
            assert not c.pool.usable(c.key)
            return hops

    a, hg, cc = run(go)
    assert bytes(a.body) == want("/a")
    assert hg.raw == [] and cc.raw == []
    assert conns_of(srv, "/hang") == [1] and srv.connections == 1


def test_slow_but_steady_body_does_not_stall(srv: Server) -> None:
    body = bytes(range(200)) * 4
    srv.route(
        "/slow",
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 800\r\n\r\n", *slices(body, (100,)), pause=0.04),
    )

    async def go() -> Hop:
        async with Client(srv.port, max_conns=1, stall_timeout=0.15) as c:
            [h] = c.get("/slow")
            assert await c.codes([h]) == [0]
            return h

    assert bytes(run(go).body) == body


# ----- servers that break the protocol ------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "max_head"),
    [
        (b"FOO 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/2 200\r\n\r\n", None),
        (b"HTTP/1.1 abc OK\r\n\r\n", None),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 500, 200),
    ],
    ids=["status", "http2", "code", "101", "length", "negative", "two-lengths", "long-head"],
)
def test_protocol_errors_before_any_byte_refuse_the_origin(
    srv: Server, monkeypatch: pytest.MonkeyPatch, answer: bytes, max_head: int | None
) -> None:
    if max_head is not None:
        monkeypatch.setattr(pipeline, "MAX_HEAD", max_head)
    # silent afterwards: an answer to /b right behind could end an unfinished head
    srv.route("/bad", stall_after(srv, answer))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/bad", "/b")
            assert await c.codes(hops) == [FALLBACK, FALLBACK]  # no byte came: libcurl asks
            assert not c.pool.usable(c.key)
            assert not c.pool.has_connections(c.key)
            return hops

    errors: list[dict[str, Any]] = []
    bad, b = run(go, errors)
    assert bad.raw == b.raw == [] and bad.body == b.body == b""
    assert srv.connections == 1
    no_loop_errors(errors)


@pytest.mark.parametrize("size", [b"zz", b"", b"1 2"], ids=["letters", "empty-then-junk", "space"])
def test_bad_chunk_size_after_the_head_fails_that_request(srv: Server, size: bytes) -> None:
    tail = b"\r\nQ\r\n" if not size else b""  # an empty line is skipped; then junk
    srv.route(
        "/bad",
        send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
            + size
            + tail
            + b"\r\n"
        ),
    )

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/bad", "/b")
            await c.codes(hops)
            assert hops[1].code == FALLBACK
            assert not c.pool.usable(c.key)
            return hops

    errors: list[dict[str, Any]] = []
    bad, _b = run(go, errors)
    assert bytes(bad.body) == b"abc" and bad.raw[0] == b"HTTP/1.1 200 OK\r\n"
    no_loop_errors(errors)
    assert bad.code == WEIRD


def test_answer_nobody_asked_for_refuses_the_origin(srv: Server) -> None:
    srv.route("/twice", send(ok(b"one") + ok(b"two")))

    async def go() -> Hop:
        async with Client(srv.port, max_conns=1) as c:
            [h] = c.get("/twice")
            assert await c.codes([h]) == [0]
            await c.until(lambda: not c.pool.usable(c.key))
            await c.until(lambda: not c.pool.has_connections(c.key))
            await asyncio.sleep(0.02)  # let the transport report its end
            return h

    errors: list[dict[str, Any]] = []
    h = run(go, errors)
    assert bytes(h.body) == b"one"
    no_loop_errors(errors)


def test_negative_chunk_size_is_a_protocol_error() -> None:
    async def go() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        pool = PipelinePool(loop, max_conns=1, connect_timeout=1, stall_timeout=0)
        pool.confirm("h:1")
        origin = pipeline._Origin("h:1", ("127.0.0.1", 1))
        conn = pipeline._Conn(pool, origin)
        origin.conns.append(conn)
        hop = Hop(loop)
        p = pipeline._Pending(hop, b"")
        p.got = True
        conn.queue.append(p)
        conn.state = pipeline._CHUNK_LINE
        conn._line(b"-5")
        return conn.left, pool.usable("h:1")

    left, usable = asyncio.run(go())
    assert left >= 0 and not usable


# ----- connecting, closing, refusing --------------------------------------------------


def test_connection_refused_gives_every_request_back(closed_port: int) -> None:
    async def go() -> None:
        async with Client(closed_port, max_conns=1) as c:
            hops = c.get(*(f"/f{i}" for i in range(2 * DEPTH + 4)))  # some wait their turn
            assert await c.codes(hops) == [FALLBACK] * (2 * DEPTH + 4)
            assert all(h.raw == [] for h in hops)
            assert not c.pool.has_connections(c.key)
            assert c.pool.usable(c.key)  # libcurl reports the failure in its own words

    run(go)


def test_close_ends_requests_in_flight_and_gives_back_waiting_ones(srv: Server) -> None:
    srv.route("/hang", hang(srv))

    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/hang", *(f"/f{i}" for i in range(DEPTH + 1)))
            await c.until(lambda: "/hang" in srv.paths())
            c.pool.close()
            assert all(h.fut.done() for h in hops)  # at once
            assert await c.codes(hops) == [CLOSED] * DEPTH + [FALLBACK] * 2
            assert not c.pool.has_connections(c.key)
            [late] = c.get("/a")
            assert late.fut.done() and late.code == FALLBACK
            await asyncio.sleep(0.02)

    run(go)
    assert "/a" not in srv.paths()


def test_close_while_connecting(srv: Server) -> None:
    async def go() -> None:
        async with Client(srv.port, max_conns=2) as c:
            hops = c.get("/a", "/b", "/c")
            c.pool.close()
            assert await c.codes(hops) == [CLOSED] * 3
            await asyncio.sleep(0.05)

    run(go)
    assert srv.requests == []


def test_unconfirmed_origin_falls_back_at_once(srv: Server) -> None:
    async def go() -> None:
        async with Client(srv.port, confirm=False) as c:
            assert not c.pool.usable(c.key) and not c.pool.known(c.key)
            [h] = c.get("/a")
            assert h.fut.done() and h.code == FALLBACK
            assert not c.pool.has_connections(c.key)
            c.pool.confirm(c.key)
            c.pool.confirm(c.key)
            assert c.pool.usable(c.key) and c.pool.known(c.key)
            [h] = c.get("/a")
            assert await c.codes([h]) == [0]
            assert not c.pool.usable("127.0.0.1:1")  # per origin

    run(go)
    assert srv.paths() == ["/a"]


def test_refuse_gives_back_waiting_requests_and_lets_sent_ones_finish(srv: Server) -> None:
    n = DEPTH + 2

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get(*(f"/f{i}" for i in range(n)))
            c.pool.refuse(c.key)
            assert [h.fut.done() for h in hops] == [False] * DEPTH + [True] * 2
            assert await c.codes(hops) == [0] * DEPTH + [FALLBACK] * 2
            assert not c.pool.usable(c.key) and c.pool.known(c.key)
            [late] = c.get("/a")
            assert late.fut.done() and late.code == FALLBACK
            return hops

    hops = run(go)
    assert [bytes(h.body) for h in hops[:DEPTH]] == [want(f"/f{i}") for i in range(DEPTH)]
    assert srv.paths() == [f"/f{i}" for i in range(DEPTH)]


def test_resolve_entries_route_a_name_to_an_address(srv: Server) -> None:
    p = srv.port
    resolve = (f"-example.test:{p}", "nonsense", f"+EXAMPLE.test:{p}:127.0.0.1,127.0.0.2")

    async def go() -> Hop:
        async with Client(p, key=f"example.test:{p}", resolve=resolve) as c:
            assert c.pool._address(c.key) == ("127.0.0.1", p)
            assert c.pool._address("other.test") == ("other.test", 80)
            assert c.pool._address(f"[::1]:{p}") == ("::1", p)
            [h] = c.get("/a")
            assert await c.codes([h]) == [0]
            return h

    assert bytes(run(go).body) == want("/a")
    assert srv.paths() == ["/a"]


@pytest.mark.parametrize("tries", [1, 3])
def test_request_never_answered_is_given_back_after_tries(
    srv: Server, monkeypatch: pytest.MonkeyPatch, tries: int
) -> None:
    monkeypatch.setattr(pipeline, "TRIES", tries)
    srv.route("/drop", send(end="close"))  # reads the request, closes without a byte

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/drop", "/b")
            # /b rides behind /drop each time, so it runs out of tries with it
            assert await c.codes(hops) == [FALLBACK, FALLBACK]
            assert c.pool.usable(c.key)
            return hops

    run(go)
    assert conns_of(srv, "/drop") == list(range(1, tries + 1))
    assert "/b" not in srv.paths()


def test_pipeline_key() -> None:
    assert pipeline_key("http://Example.COM:8080/a?b=1") == "example.com:8080"
    assert pipeline_key("HTTP://h/x") == "h"
    assert pipeline_key("http://user:pw@h:81/") == "h:81"
    assert pipeline_key("http://[::1]:81/") == "[::1]:81"
    assert pipeline_key("https://h/x") is None
    assert pipeline_key("ftp://h/x") is None
