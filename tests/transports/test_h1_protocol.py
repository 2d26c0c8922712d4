"""One pooled connection (transports/h1conn.py) against servers that break the protocol:
answers libcurl would read otherwise, bad chunk sizes, chunk data without its CRLF, trailer
lines libcurl refuses, answers nobody asked for. The kit is in ``_pool_kit.py``; the
fuzzing is in ``test_h1_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from tests.servers.tls import JSSE_ALERT

from omniget.engine.transports import h1answer, h1conn, h1queue
from omniget.engine.transports.curlloop import TLS_REPLY
from omniget.engine.transports.pipeline import FALLBACK, PipelinePool

from ._pool_kit import (
    WEIRD,
    Client,
    Hop,
    linger_close,
    no_loop_errors,
    ok,
    run,
    send,
    stall_after,
)
from ._server import Req, Server

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def hints(lines: int) -> bytes:
    """A 103 answer with ``lines`` header lines."""
    return b"HTTP/1.1 103 Early Hints\r\n" + b"Link: </s>\r\n" * lines + b"\r\n"


def final(lines: int) -> bytes:
    """A 200 answer whose head has ``lines`` header lines, with the body "ok"."""
    pad = b"".join(b"X-%d: v\r\n" % i for i in range(lines - 1))
    return b"HTTP/1.1 200 OK\r\n" + pad + b"Content-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    ("answer", "max_head"),
    [
        (b"FOO 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/2 200\r\n\r\n", None),
        (b"HTTP/1.1 abc OK\r\n\r\n", None),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", None),  # (a digit in Latin-1)
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 500, 200),
        # as long, in one read with its end (it passed: how the bytes came decided)
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 500 + b"\r\nContent-Length: 2\r\n\r\nok", 200),
        # (int() refuses over 4300 digits: that escaped into the event loop)
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", None),
        (b"HTTP/1.1 " + b"2" * 5000 + b" OK\r\nContent-Length: 2\r\n\r\nok", None),
        # a status code is three digits (curl: "Unsupported response code")
        (b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 099 OK\r\nContent-Length: 2\r\n\r\nok", None),  # (curl: the same)
        (b" HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None),  # (curl: HTTP/0.9)
        # a bare LF ends a line for curl: its framing would not be ours
        (b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nX: a\n\nok\r\n\r\n", None),
        (b"HTTP/1.1 100 Continue\r\nX: a\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
         None),
        # a blank before a framing field's colon: curl ignores the field (RFC 9112 5.1
        # forbids it), so its framing would not be ours
        (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding :chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nConnection : close\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding : gzip\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nConnection\r\nContent-Length: 2\r\n\r\nok", None),  # (no colon)
        # HTTP/1.0 or 1.1 and one blank, or curl: "Unsupported HTTP/1 subversion"
        (b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.9 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.10 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.2 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1\x0b200 OK\r\nContent-Length: 2\r\n\r\nok", None),
        # all heads of one answer, interim ones included, are one head's size (libcurl:
        # 300 KiB) and at most 5000 header lines (libcurl: fields)
        (CONTINUE * 4000, None),
        # (this head alone, 199 bytes before its blank line, would pass)
        (CONTINUE * 3 + b"HTTP/1.1 200 OK\r\nX: " + b"a" * 160 + b"\r\nContent-Length: 2\r\n\r\nok",
         200),
        # (and refused as it comes, not once it is one head's size: none follows here)
        (CONTINUE * 3 + b"HTTP/1.1 200 OK\r\nX: " + b"a" * 160, 200),
        (hints(2600) + final(2401), None),
        (final(5001), None),
        # a header line without a colon, a CR not before LF or a NUL anywhere in a head,
        # an interim one's too: curl refuses the answer ("Header without colon", "Carriage
        # return found in header", "NUL byte in header"); "\r\r\n" ends its head
        (b"HTTP/1.1 200 OK\r\nX-No-Colon\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-No-Colon\r\n\r\nok", None),
        (b"HTTP/1.1 100 Continue\r\nX-No-Colon\r\n\r\n" + final(1), None),
        # a folded line with no colon first in its head (it folds nothing there)
        (b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\n\tfolded\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\n \r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 103 Hints\r\n folded\r\n\r\n" + final(1), None),
        (hints(1) + b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nX: a\r\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\n\r\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 O\rK\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 100 Continue\r\nX: a\rb\r\n\r\n" + final(1), None),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 OK\r\nX\x00: ab\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok", None),
        (b"HTTP/1.1 100 Con\x00tinue\r\n\r\n" + final(1), None),
    ],
    ids=[
        "status", "http2", "code", "101", "length", "negative", "superscript", "two-lengths",
        "long-head", "long-whole-head", "huge-length", "huge-code", "short-code", "code-1",
        "code-99", "lead-space",
        "lf-in-line", "lf-status", "lf-blank", "lf-interim",
        "blank-length", "tab-length", "blank-chunked", "blank-connection", "blank-coding",
        "no-colon-connection",
        "http-1.2", "http-1.9", "http-1.10", "interim-1.2", "two-blanks", "vtab",
        "endless-100", "long-after-100", "long-unended-after-100",
        "5001-lines-in-two", "5001-lines",
        "no-colon", "no-colon-last", "interim-no-colon",
        "fold-first", "fold-first-tab", "fold-first-blank", "interim-fold-first",
        "fold-first-after-interim",
        "cr-in-value", "cr-before-crlf", "cr-line", "cr-status", "interim-cr",
        "nul-value", "nul-name", "nul-status", "interim-nul",
    ],
)
def test_protocol_errors_before_any_byte_refuse_the_origin(
    srv: Server, monkeypatch: pytest.MonkeyPatch, answer: bytes, max_head: int | None
) -> None:
    if max_head is not None:
        monkeypatch.setattr(h1conn, "MAX_HEAD", max_head)
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


def test_odd_header_lines_libcurl_reads_are_read(srv: Server) -> None:
    """Folded lines after a head's first one, a first one folded with a colon in it, an
    empty name, a blank in a name, control and high bytes: libcurl reads these answers,
    and so does the connection (read elsewhere, they would cost it its pipelining)."""
    srv.route("/fold", send(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\t c\r\n \r\n" + final(1)[17:]))
    srv.route("/first", send(b"HTTP/1.1 200 OK\r\n X: folded\r\n" + final(1)[17:]))
    srv.route("/names", send(b"HTTP/1.1 200 OK\r\n: v\r\nX a: b\r\n:\r\n" + final(1)[17:]))
    srv.route("/bytes", send(b"HTTP/1.1 200 OK\r\nX: \x01\x7f\x0b\x0c\xff\r\n" + final(1)[17:]))
    srv.route("/hints", send(b"HTTP/1.1 103 Hints\r\n Link: </s>\r\n X: y\r\n\r\n" + final(1)))
    paths = ("/fold", "/first", "/names", "/bytes", "/hints")

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get(*paths, "/a")
            assert await c.codes(hops) == [0] * (len(paths) + 1)
            assert c.pool.usable(c.key)
            return hops

    hops = run(go)
    assert [bytes(h.body) for h in hops[:-1]] == [b"ok"] * len(paths)
    assert srv.connections == 1


def test_heads_up_to_5000_lines_in_all_are_read(srv: Server) -> None:
    """As libcurl (5000 fields at most): the interim heads' lines count."""
    srv.route("/many", send(hints(2500) + final(2500)))
    srv.route("/more", send(final(5000)))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/many", "/more", "/a")
            assert await c.codes(hops) == [0, 0, 0]
            assert c.pool.usable(c.key)
            return hops

    many, more, _a = run(go)
    assert bytes(many.body) == bytes(more.body) == b"ok"
    assert srv.connections == 1


@pytest.mark.parametrize("size", [b"zz", b"", b"1 2"], ids=["letters", "empty-then-junk", "space"])
def test_bad_chunk_size_after_the_head_fails_that_request(srv: Server, size: bytes) -> None:
    tail = b"\r\nQ\r\n" if not size else b""  # (an empty line is an error already)
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


@pytest.mark.parametrize(
    ("body", "came"),
    [
        (b"3\r\nabcde\r\n0\r\n\r\n", b"abc"),  # more data than the size said
        (b"3\r\nabc4\r\nwxyz\r\n0\r\n\r\n", b"abc"),  # no CRLF after the data
        (b"\r\n3\r\nabc\r\n0\r\n\r\n", b""),  # an empty line for a size
        (b"3\r\nabc\r\n\r\n0\r\n\r\n", b"abc"),
    ],
    ids=["long-data", "no-crlf", "blank-first", "blank-between"],
)
def test_chunk_data_ends_with_one_crlf(srv: Server, body: bytes, came: bytes) -> None:
    """As libcurl ("Malformed encoding" or "Illegal or missing hexadecimal sequence"):
    the end of a chunk's data is checked, so a size that was wrong cannot make later
    bytes (the next answer's) a chunk."""
    srv.route("/bad", send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/bad", "/b")
            assert await c.codes(hops) == [WEIRD, FALLBACK]
            assert not c.pool.usable(c.key)
            return hops

    errors: list[dict[str, Any]] = []
    bad, _b = run(go, errors)
    assert bytes(bad.body) == came
    no_loop_errors(errors)


@pytest.mark.parametrize(
    ("trailer", "code"),
    [
        (b"T: 1\r\n", 0),
        (b"T: 1\r\nU:\r\n : v\r\nW: \x01\x7f\xff\r\n", 0),  # (a folded line with a colon)
        (b"T\r\n", WEIRD),
        (b"T: 1\r\n x\r\n", WEIRD),  # (curl folds no trailer line: it has no colon)
        (b" x\r\n", WEIRD),
        (b"T: \x00\r\n", WEIRD),
        (b"T: a\rb\r\n", WEIRD),
        (b"\r\r\n", WEIRD),
        (b"T: 1\nU\r\n", WEIRD),  # (curl: two lines, and the second has no colon)
    ],
    ids=["plain", "odd", "no-colon", "folded", "folded-first", "nul", "cr", "cr-line", "lf"],
)
def test_trailer_lines_libcurl_refuses_fail_the_answer(
    srv: Server, trailer: bytes, code: int
) -> None:
    """As libcurl ("Header without colon", "NUL byte in header", "Malformed encoding"):
    the body came whole, but the answer is not taken (a retry goes to libcurl)."""
    srv.route("/t", send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                         + trailer + b"\r\n"))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/t", "/b")
            assert await c.codes(hops) == [code, FALLBACK if code else 0]
            assert c.pool.usable(c.key) == (code == 0)
            return hops

    errors: list[dict[str, Any]] = []
    t, _b = run(go, errors)
    assert bytes(t.body) == b"ok"
    no_loop_errors(errors)


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
        origin = h1queue.Origin("h:1", (("127.0.0.1",), 1))
        conn = h1conn.Conn(pool, origin)
        origin.conns.append(conn)
        hop = Hop(loop)
        p = h1queue.Pending(hop, b"")
        p.got = True
        conn.queue.append(p)
        conn.state = h1answer._CHUNK_LINE
        conn._line(b"-5")
        return conn.left, pool.usable("h:1")

    left, usable = asyncio.run(go())
    assert left >= 0 and not usable




@pytest.mark.parametrize(
    "parts", [(JSSE_ALERT,), (JSSE_ALERT[:1], JSSE_ALERT[1:3], JSSE_ALERT[3:])],
    ids=["whole", "split"],
)
def test_a_tls_record_first_on_a_connection_fails_its_requests_as_tls(
    srv: Server, parts: tuple[bytes, ...]
) -> None:
    """A TLS server's alert where an HTTP answer was to come (its origin turned to
    https, or another server took the port): each request sent on that connection fails
    at once, said to be TLS (no retry gets another answer), and the origin is refused."""
    srv.route("/a", send(*parts, pause=0.02, end="linger"))

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/a", "/b")
            assert await c.codes(hops) == [TLS_REPLY, TLS_REPLY]
            assert not c.pool.usable(c.key)
            return hops

    errors: list[dict[str, Any]] = []
    hops = run(go, errors)
    assert all(h.raw == [] and h.body == b"" for h in hops)
    assert srv.connections == 1
    no_loop_errors(errors)


def test_tls_bytes_after_an_answer_are_not_taken_for_a_tls_server(srv: Server) -> None:
    """On a connection that answered in HTTP they are no TLS server's first words: what
    follows the answer is left to the old ways (a close with no head: asked again)."""

    def alert_on_first(req: Req, sock: socket.socket) -> bool | None:
        if req.conn == 1:
            sock.sendall(JSSE_ALERT)
            linger_close(sock)
            return False
        sock.sendall(ok(b"b"))
        return None

    srv.route("/a", send(ok(b"a")))
    srv.route("/b", alert_on_first)

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/a", "/b")
            assert await c.codes(hops) == [0, 0]
            return hops

    a, b = run(go)
    assert bytes(a.body) == b"a" and bytes(b.body) == b"b"
