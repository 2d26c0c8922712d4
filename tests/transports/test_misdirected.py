"""HTTP 421 (Misdirected Request): the connection that carried the request was the wrong
one for it (RFC 9110 15.5.20). The request is asked again once, over a connection opened
for it (never a kept, pipelined or shared one); a second 421 is the answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from omniget.engine.transports.base import Request
from omniget.engine.transports.http import CurlTransport

from ._http_kit import Sink, run
from ._server import Req, Server, reply, static


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        yield server


def misdirected_on_kept(srv: Server) -> None:
    """``/b`` answers 421 on a connection that carried a request before, 200 on a new one."""

    def handle(req: Req, sock: socket.socket) -> None:
        earlier = [r for r in srv.requests if r.conn == req.conn and r is not req]
        if earlier:
            reply(sock, 421, b"not here")
        else:
            reply(sock, 200, b"right place")

    srv.route("/b", handle)


@pytest.mark.parametrize("first", [1, 3], ids=["one-before", "pipelined-before"])
def test_a_421_on_a_kept_connection_is_asked_again_on_a_new_one(srv: Server, first: int) -> None:
    srv.route("/a", static(b"a"))
    misdirected_on_kept(srv)

    async def go(t: CurlTransport) -> tuple[Sink, list[Sink]]:
        firsts = [Sink() for _ in range(first)]
        for s in firsts:  # (a few in a row: the origin may be pipelined by now)
            await t.fetch(Request(srv.url("/a")), s)
        sink = Sink()
        await t.fetch(Request(srv.url("/b")), sink)
        return sink, firsts

    sink, _ = run(go)
    assert [h.status for h in sink.heads] == [200]  # (the 421 never reached the sink)
    assert bytes(sink.data) == b"right place"
    asked = [r for r in srv.requests if r.path == "/b"]
    assert len(asked) == 2
    assert asked[1].conn not in {r.conn for r in srv.requests if r is not asked[1]}


def test_a_second_421_on_a_new_connection_is_the_answer(srv: Server) -> None:
    srv.route("/a", static(b"a"))
    srv.route("/c", static(b"never here", status=421))

    async def go(t: CurlTransport) -> Sink:
        await t.fetch(Request(srv.url("/a")), Sink())
        sink = Sink()
        await t.fetch(Request(srv.url("/c")), sink)
        return sink

    sink = run(go)
    assert [h.status for h in sink.heads] == [421]
    asked = [r for r in srv.requests if r.path == "/c"]
    assert len(asked) == 2  # once more, not again and again
    assert asked[1].conn not in {r.conn for r in srv.requests if r is not asked[1]}


def test_a_421_after_a_redirect_asks_that_hop_again(srv: Server) -> None:
    def moved(req: Req, sock: socket.socket) -> None:
        reply(sock, 302, b"", [("Location", "/b")])

    srv.route("/a", static(b"a"))
    srv.route("/r", moved)
    misdirected_on_kept(srv)

    async def go(t: CurlTransport) -> Sink:
        await t.fetch(Request(srv.url("/a")), Sink())
        sink = Sink()
        await t.fetch(Request(srv.url("/r")), sink)
        return sink

    sink = run(go)
    assert bytes(sink.data) == b"right place"
    assert srv.paths().count("/r") == 1  # (the redirect is not asked again)
