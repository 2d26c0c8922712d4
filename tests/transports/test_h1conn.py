"""One pooled connection (transports/h1conn.py) against raw sockets on 127.0.0.1: framing,
content encodings, bodyless and interim answers, large and spliced bodies, receivers that
stop. Servers that break the protocol: ``test_h1_protocol.py``. The kit is in ``_pool_kit.py``.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import os
import random
import threading
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from tests.servers.checks import wait_for
from tests.servers.conns import can_count, established

from omniget.engine.transports import h1answer, h1conn, h1queue
from omniget.engine.transports import hop as hops
from omniget.engine.transports.hop import parse_head
from omniget.engine.transports.pipeline import DEPTH, FALLBACK, PipelinePool

from ._pool_kit import (
    BAD_ENCODING,
    RECV,
    WRITE,
    Client,
    Hop,
    PipeHop,
    chunked,
    conns_of,
    fetch_one_conn,
    head_of,
    ok,
    rq,
    run,
    send,
    slices,
    stall_after,
    want,
)
from ._server import Handler, Server, static

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
        b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Empty:\r\n"
        b"X-Pad :  v  \r\n\r\nabc"
    )
    srv.route("/odd", send(head))

    odd, a = fetch_one_conn(srv, "/odd", "/a")
    assert bytes(odd.body) == b"abc" and bytes(a.body) == want("/a")
    assert odd.parsed is not None
    status, headers = odd.parsed
    assert (status, headers.pairs()) == parse_head(odd.raw)
    assert headers.pairs()[1:3] == [("X-Folded", "one two"), ("Set-Cookie", "a=1")]
    assert headers.get_all("set-cookie") == ["a=1", "b=2"] and headers["x-pad"] == "v"


def test_odd_bytes_in_a_head_stay_where_they_came(srv: Server) -> None:
    """Only ASCII blanks are stripped (not a Latin-1 no-break space or separator); names
    are matched without case in ASCII only."""
    head = (
        b"HTTP/1.1 200 OK\r\nX-Nb:\xa0v\xa0 \r\n"
        b"X-Fs\x1c: 1\r\nCONTENT-length: 3\r\nConnection: clo\r\nConnection: se\r\n"
        b"X-\xc9: \xe9\r\n\r\nabc"
    )
    srv.route("/odd", send(head))

    odd, a = fetch_one_conn(srv, "/odd", "/a")
    assert bytes(odd.body) == b"abc" and bytes(a.body) == want("/a")
    assert odd.raw == [line + b"\r\n" for line in head.split(b"\r\n")[:-2]] + [b"\r\n"]
    assert odd.parsed is not None and odd.parsed[0] == 200
    assert odd.parsed[1].pairs() == [
        ("X-Nb", "\xa0v\xa0"), ("X-Fs\x1c", "1"),
        ("CONTENT-length", "3"), ("Connection", "clo"), ("Connection", "se"), ("X-\xc9", "\xe9"),
    ]  # fmt: skip
    assert srv.connections == 1  # ("clo" then "se" is no "close")


def test_lenient_but_exact_heads(srv: Server) -> None:
    srv.route("/dup", send(b"HTTP/1.1 200\r\ncontent-LENGTH: 3\r\nContent-Length:3\r\n\r\nabc"))
    srv.route("/zero", send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    srv.route("/tab", send(b"HTTP/1.1\t200\x0bOK\r\nContent-Length: 2\r\n\r\nok"))  # (as curl)

    dup, zero, tab, a = fetch_one_conn(srv, "/dup", "/zero", "/tab", "/a")
    assert bytes(dup.body) == b"abc" and bytes(tab.body) == b"ok"
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


@pytest.mark.parametrize(
    "head",
    [
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked",
    ],
    ids=["with-length", "http-1.0"],
)
def test_a_chunked_answer_with_faulty_framing_is_the_last_on_its_connection(
    srv: Server, head: str
) -> None:
    """RFC 9112 6.1 and 6.3: chunked beside a Content-Length, or in an HTTP/1.0 answer,
    may be an attempt at response splitting. Its body is read as chunked (as libcurl
    reads it), and the requests behind it go out on another connection."""
    srv.route("/both", send(chunked(b"one", b"two", head=head)))

    both, b = fetch_one_conn(srv, "/both", "/b")
    assert bytes(both.body) == b"onetwo"
    assert bytes(b.body) == want("/b")
    # (/b may reach the server on connection 1 as well, pipelined, and be recorded there
    # after its copy on connection 2: the server's threads race)
    assert conns_of(srv, "/both") == [1] and 2 in conns_of(srv, "/b")


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
    # the rest once the first part is decoded (a pause alone let all come in one read)
    go = threading.Event()
    srv.route("/z", send(*slices(answer, (1500, 1, 4000)), pause=0.001, go=go))

    async def run_all() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = c.get("/z", "/after")
            await hops[0].has(1)
            go.set()
            assert await c.codes(hops) == [0, 0]
            assert c.pool.usable(c.key)
            return hops

    z, after = run(run_all)
    assert bytes(z.body) == TEXT
    assert f"Content-Encoding: {name}\r\n".encode() in z.raw
    assert bytes(after.body) == want("/after")
    assert srv.connections == 1


@pytest.mark.parametrize(
    ("url", "kind"),
    [("http://h/pkg.tar.gz?v=2", "application/x-tar"), ("http://h/z", "application/x-gzip")],
)
def test_a_gzip_file_labelled_with_its_encoding_is_kept_as_sent(
    srv: Server, url: str, kind: str
) -> None:
    """Its name (.gz, .tgz) or its type says the body is a gzip file, the encoding only
    its own compression: the bytes go to the requester as they came (a .tar.gz decoded
    was saved as a bare tar)."""
    coded = gzip.compress(TEXT)
    srv.route("/z", send(ok(coded, f"Content-Type: {kind}", "Content-Encoding: gzip")))

    async def run_all() -> Hop:
        async with Client(srv.port, max_conns=1) as c:
            (z,) = c.get("/z")
            z.url = url  # (what the transport's hop asked for)
            assert await c.codes([z]) == [0]
            return z

    assert bytes(run(run_all).body) == coded


def test_corrupt_encoded_body_fails_and_moves_the_rest(srv: Server) -> None:
    srv.route("/z", send(ok(b"this is not gzip at all", "Content-Encoding: gzip")))

    z, b = fetch_one_conn(srv, "/z", "/b", codes=[BAD_ENCODING, 0])
    assert z.body == b"" and z.raw[0] == b"HTTP/1.1 200 OK\r\n"
    assert bytes(b.body) == want("/b")
    assert 2 in conns_of(srv, "/b")


def test_encoded_stream_cut_short_fails_and_the_connection_goes_on(srv: Server) -> None:
    """Every byte the Content-Length promised came, but the gzip stream inside stops
    before its end: that answer fails; the connection itself is fine and goes on."""
    srv.route("/z", send(ok(gzip.compress(TEXT)[:-30], "Content-Encoding: gzip")))

    _, b = fetch_one_conn(srv, "/z", "/b", codes=[BAD_ENCODING, 0])
    assert bytes(b.body) == want("/b")
    assert srv.connections == 1


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


# ----- large bodies and receivers that stop -------------------------------------------


def test_big_body_moves_the_requests_behind_it(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1answer, "BIG_BODY", 1000)
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
    monkeypatch.setattr(h1answer, "SMALL_BODY", 1000)
    if big_body is not None:
        monkeypatch.setattr(h1answer, "BIG_BODY", big_body)
    big = bytes(range(256)) * 20
    srv.route("/big", static(big))
    srv.route("/edge", static(b"e" * 1000))  # not larger than SMALL_BODY

    async def go() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            [edge] = c.get("/edge")
            assert await c.codes([edge]) == [0]
            assert c.pool.usable(c.key) and c.pool.shares(c.key)
            hops = c.get("/big", "/b")
            # both are written on the connection at once (pipelined) ...
            [first] = c.pool._origins[c.key].conns
            assert [p.hop for p in first.queue] == hops
            assert first.transport is not None and not first.transport.get_write_buffer_size()
            # ... and behind a body over BIG_BODY a request moves to a new connection
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
    # (moved: asked on the first connection too, answered on a new one. The server's
    # thread of the first reads it after it sent /big, maybe after the client closed
    # that connection and this test got here: it is waited for; and the two threads may
    # log the two in either order)
    want_b = [1] if big_body is None else [1, 2]
    wait_for(lambda: len(conns_of(srv, "/b")) >= len(want_b))
    assert sorted(conns_of(srv, "/b")) == want_b
    assert conns_of(srv, "/c") == conns_of(srv, "/e") == conns_of(srv, "/f2")


BIG = bytes(range(256)) * 20  # 5120 bytes
BIG_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5120\r\n\r\n"
BIG_FIRST, BIG_REST = BIG_HEAD + BIG[:100], BIG[100:]


def big_in_two(go: threading.Event) -> Handler:
    """The head and 100 bytes, then the rest once ``go`` is set (when the client took
    the first part: on a loaded machine a pause alone let both come in one read)."""
    return send(BIG_FIRST, BIG_REST, go=go)


def test_receiver_abort_with_little_left_drains_and_keeps_the_connection(srv: Server) -> None:
    go = threading.Event()
    srv.route("/big", big_in_two(go))

    async def run_all() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            [bg] = c.get("/big", abort_after=1)
            hops = [bg, *c.get("/next", "/big")]
            await bg.has(1)
            go.set()
            assert await c.codes(hops) == [WRITE, 0, 0]
            assert c.pool.usable(c.key)
            return hops

    bg, nxt, bg2 = run(run_all)
    assert bg.raw[0] == b"HTTP/1.1 200 OK\r\n"
    assert 0 < len(bg.body) < len(BIG) and bytes(bg.body) == BIG[: len(bg.body)]
    assert bytes(nxt.body) == want("/next")
    assert bytes(bg2.body) == BIG
    assert srv.connections == 1


def abort_then_next(srv: Server, path: str, go: threading.Event) -> list[Hop]:
    """GET ``path`` (its receiver ends it after the first byte), then ``/next``, over one
    connection: the first ends with a write error, the second fine. ``go`` is set once
    the first got its first bytes."""

    async def run_all() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            hops = [*c.get(path, abort_after=1), *c.get("/next")]
            await hops[0].has(1)
            go.set()
            assert await c.codes(hops) == [WRITE, 0]
            return hops

    return run(run_all)


def test_receiver_abort_with_much_left_closes_and_resends(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1answer, "DRAIN_MAX", 1000)
    go = threading.Event()
    srv.route("/big", big_in_two(go))
    bg, nxt = abort_then_next(srv, "/big", go)
    assert len(bg.body) == 100
    assert bytes(nxt.body) == want("/next")
    assert 2 in conns_of(srv, "/next") and srv.connections == 2


def test_receiver_abort_in_a_chunked_body_closes_and_resends(srv: Server) -> None:
    whole = chunked(b"a" * 10, b"b" * 10)
    go = threading.Event()
    srv.route("/ch", send(whole[:60], whole[60:], go=go))
    ch, nxt = abort_then_next(srv, "/ch", go)
    assert bytes(ch.body) == b"a" * 10
    assert bytes(nxt.body) == want("/next")
    assert 2 in conns_of(srv, "/next")


@pytest.mark.parametrize("at", ["before", "mid-body"])
def test_cancelled_request_answer_is_read_and_dropped(srv: Server, at: str) -> None:
    go = threading.Event()
    srv.route("/big", big_in_two(go))

    async def run_all() -> list[Hop]:
        async with Client(srv.port, max_conns=1) as c:
            if at == "before":
                [first] = c.get("/a")
                [gone] = c.get("/big")
                gone.fut.cancel()
                go.set()
            else:
                [first] = c.get("/a")
                [gone] = c.get("/big", cancel_after=1)
            rest = c.get("/next")
            if at != "before":
                await gone.has(1)
                go.set()
            assert await c.codes([first, *rest]) == [0, 0]
            assert gone.fut.cancelled()
            return [first, gone, *rest]

    _first, gone, nxt = run(run_all)
    assert bytes(nxt.body) == want("/next")
    if at == "before":
        assert gone.raw == [] and gone.writes == 0
    else:
        assert gone.raw[0] == b"HTTP/1.1 200 OK\r\n" and len(gone.body) == 100
    assert gone.late_writes == 0
    assert srv.paths() == ["/a", "/big", "/next"] and srv.connections == 1


def test_cancelled_request_with_much_left_closes_its_connection_at_once(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request cancelled in the middle of a long answer (a quiet span whose bytes went
    to a fresh connection) closes its connection when it is cancelled, as a receiver
    that ends one does: its rest is neither waited for nor read (before, the connection
    stayed until the whole rest came, and the next request waited behind it)."""
    monkeypatch.setattr(h1answer, "DRAIN_MAX", 1000)
    srv.route("/quiet", stall_after(srv, BIG_HEAD + BIG[:100]))

    async def go() -> list[Hop]:
        # (the rest never comes, nor a stall: only closing at once frees the place)
        async with Client(srv.port, max_conns=1, stall_timeout=600) as c:
            [gone] = c.get("/quiet", cancel_after=1)
            await c.until(lambda: gone.fut.done())
            await c.until(lambda: not c.pool.has_connections(c.key))
            rest = c.get("/next")
            assert await c.codes(rest) == [0]
            return [gone, *rest]

    gone, nxt = run(go)
    assert gone.fut.cancelled() and len(gone.body) == 100
    assert bytes(nxt.body) == want("/next")
    assert conns_of(srv, "/next") == [2]


def test_a_shut_connection_is_closed_for_the_caps_at_once(srv: Server) -> None:
    """Closing a connection in the middle of an answer ends it in the kernel at once,
    not on the loop's next turn: a connection opened in the same turn (libcurl's, for
    the transfer that waited for this one's place) never makes one over the cap."""
    if not can_count():
        pytest.skip("needs Linux's sock_diag netlink to count connections")
    srv.route("/quiet", stall_after(srv, BIG_HEAD + BIG[:100]))

    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            [gone] = c.get("/quiet")
            await c.until(lambda: len(gone.body) == 100)
            assert established(srv.port) == 1
            c.pool._origins[c.key].conns[0]._shut()
            assert established(srv.port) == 0  # (no await in between)

    run(go)


@pytest.mark.parametrize("end", ["shut", "pool-close"])
def test_a_connection_ended_while_it_connects_is_shut_before_its_place_is_free(
    srv: Server, end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection ended after the kernel connected it but before asyncio handed it its
    transport is shut in the kernel when its place in the caps is freed. Before, asyncio
    closed that socket a turn or more later, and a connection opened for the freed place
    (libcurl's, or another of the pool's) made one over the cap meanwhile."""
    if not can_count():
        pytest.skip("needs Linux's sock_diag netlink to count connections")

    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            [hop] = c.get("/a")
            [conn] = c.pool._origins[c.key].conns
            for _ in range(50):  # step the loop by hand: connected, no transport yet
                if conn.transport is None and established(srv.port) == 1:
                    break
                await asyncio.sleep(0)
            else:
                pytest.fail("never caught the connection between connect and transport")
            seen = established_when_freed(c, srv.port, monkeypatch)
            if end == "shut":
                conn._shut()
            else:
                c.pool.close()
            assert seen == [0]
            if end == "shut":  # its request went to a fresh connection
                assert await c.codes([hop]) == [0]
                assert bytes(hop.body) == want("/a")

    run(go)


def established_when_freed(c: Client, port: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The kernel's count of connections to ``port`` at each moment the pool frees a
    connection's place (filled in as places are freed)."""
    seen: list[int] = []
    closed = c.pool.closed

    def counted(freed: h1conn.Conn) -> None:
        if freed in freed.origin.conns:  # (its place is freed by this call)
            seen.append(established(port))
        closed(freed)

    monkeypatch.setattr(c.pool, "closed", counted)
    return seen


@pytest.mark.parametrize("end", ["shut", "retire", "pool-close"])
def test_an_open_connection_is_shut_before_its_place_is_free(
    srv: Server, end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way a connection ends shuts its socket before the pool frees its place
    (whose freeing may open the next connection at once). Before, retiring an idle one
    or shutting one freed the place first, and closing the pool never shut it."""
    if not can_count():
        pytest.skip("needs Linux's sock_diag netlink to count connections")

    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            assert await c.codes(c.get("/a")) == [0]
            [conn] = c.pool._origins[c.key].conns
            assert established(srv.port) == 1
            seen = established_when_freed(c, srv.port, monkeypatch)
            if end == "shut":
                conn.shut()
            elif end == "retire":
                conn.retire()
            else:
                c.pool.close()
            assert seen == [0]

    run(go)


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
            assert await c.codes(made) == [0] * len(made)
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
            assert await c.codes([short, whole]) == [WRITE, 0]
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
            assert await c.codes([h]) == [RECV]
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


def test_the_hop_takes_the_headers_the_connection_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipelined answer's headers are made once, by the connection that read its head:
    the hop, its Head and the sink get that object (no second pass over the lines)."""
    from omniget.engine.transports import hop as hop_module
    from omniget.engine.transports.base import Head, Headers

    def again(*args: object) -> Headers:
        raise AssertionError("the hop read the head's lines again")

    monkeypatch.setattr(hop_module, "Headers", again)

    class Sink:
        def __init__(self) -> None:
            self.heads: list[Head] = []
            self.data = b""

        def on_head(self, head: Head) -> None:
            self.heads.append(head)

        def on_data(self, data: bytes) -> None:
            self.data += bytes(data)

    sink = Sink()
    loop = asyncio.new_event_loop()
    try:
        hop = hop_module.Hop(sink, "http://127.0.0.1:1/x", loop.create_future())
        pool = PipelinePool(loop, max_conns=1, connect_timeout=1, stall_timeout=0)
        conn = h1conn.Conn(pool, h1queue.Origin("h:1", (("127.0.0.1",), 1)))
        conn.queue.append(h1queue.Pending(hop, b""))
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"e\"\r\n"
            b"set-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabc"
        )
        conn.rbuf[: len(answer)] = answer
        conn.buffer_updated(len(answer))  # (as the transport would, without a socket)
        assert hop.fut.done() and hop.fut.result() == (0, "") and conn.answered == 1
    finally:
        loop.close()
    headers = hop.headers
    assert sink.data == b"abc" and sink.heads[0].headers is headers
    assert headers.pairs() == [
        ("Content-Length", "3"), ("ETag", '"e"'), ("set-cookie", "a=1"), ("Set-Cookie", "b=2")
    ]  # fmt: skip
    assert list(headers) == ["content-length", "etag", "set-cookie"]
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"] and headers["set-cookie"] == "b=2"
    assert sink.heads[0].content_length == 3 and sink.heads[0].etag == '"e"'


def test_a_head_reaches_its_requester_whole_and_becomes_lines_when_read(srv: Server) -> None:
    # (nothing reads a pipelined answer's lines on the usual path: splitting each head
    # into them cost every small file ~5 K instructions)
    head = b"HTTP/1.1 200 OK\r\nX-Odd: a\x0bb\x1cc\r\nContent-Length: 3\r\n\r\nabc"
    srv.route("/odd", send(head))

    odd, a = fetch_one_conn(srv, "/odd", "/a")
    assert odd.head_block == b"HTTP/1.1 200 OK\r\nX-Odd: a\x0bb\x1cc\r\nContent-Length: 3\r\n"
    lines = [b"HTTP/1.1 200 OK\r\n", b"X-Odd: a\x0bb\x1cc\r\n", b"Content-Length: 3\r\n", b"\r\n"]
    assert h1queue.head_lines(odd.head_block) == lines
    assert a.head_block is not None and h1queue.head_lines(a.head_block) == head_of(want("/a"))

    loop = asyncio.new_event_loop()
    try:
        real = hops.Hop(_Quiet(), "http://h/x", loop.create_future())
        real.head_block = odd.head_block
        assert real.raw == lines and real.head_block is None
        assert real.raw == lines  # (split once)
    finally:
        loop.close()


class _Quiet:
    def on_head(self, head: object) -> None: ...

    def on_data(self, data: bytes) -> None: ...
