"""PipelinePool (transports/pipeline.py) on its own, against raw sockets on 127.0.0.1: how
requests share connections, what happens when the server ends them or goes silent, and
connecting, closing and refusing an origin. The kit is in ``_pool_kit.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from omniget.engine.transports import pipeline
from omniget.engine.transports.curlloop import CLOSED, STALLED
from omniget.engine.transports.pipeline import DEPTH, FALLBACK, pipeline_key

from ._pool_kit import (
    RECV,
    WRITE,
    Client,
    Hop,
    conns_of,
    fetch_one_conn,
    hang,
    head_of,
    ok,
    rq,
    run,
    send,
    slices,
    stall_after,
    want,
)
from ._server import Req, Server, held, static
from ._virtual import VirtualLoop, run_virtual, set_in_thread

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


def other_server() -> Server:
    server = Server()
    for i in range(8):
        server.route(f"/f{i}", static(want(f"/f{i}")))
    return server


def test_the_run_cap_closes_idle_connections_of_other_origins(srv: Server) -> None:
    """Under the run's cap (here 2, as the per-host cap) a new origin gets connections by
    closing the idle ones of an origin that is done; before, each origin kept its own
    (50 hosts of small files held 200 connections open)."""
    with other_server() as other:

        async def go() -> None:
            async with Client(srv.port, max_conns=2) as c:
                c.pool.max_total = 2
                assert await c.codes(c.get(*(f"/f{i}" for i in range(6)))) == [0] * 6
                assert srv.open == 2  # idle, kept for more requests to this origin
                key = f"127.0.0.1:{other.port}"
                c.pool.confirm(key)
                hops = [Hop(c.loop) for _ in range(6)]
                for i, hop in enumerate(hops):
                    c.pool.submit(key, rq(f"/f{i}"), hop)
                assert await c.codes(hops) == [0] * 6
                await c.until(lambda: srv.open == 0)

        run(go)
        assert other.connections == 2


def test_an_origin_waits_for_a_connection_under_the_run_cap(srv: Server) -> None:
    """Every connection the cap allows is busy: the new origin's requests wait until one
    goes idle, which then closes and makes room."""
    with other_server() as other:
        busy = threading.Event()  # (not a time: the connection stays busy until set)
        srv.route("/slow", held(b"slow", busy))

        async def go() -> None:
            async with Client(srv.port, max_conns=1) as c:
                c.pool.max_total = 1
                slow = c.get("/slow")
                await c.until(lambda: srv.connections == 1)
                key = f"127.0.0.1:{other.port}"
                c.pool.confirm(key)
                hop = Hop(c.loop)
                c.pool.submit(key, rq("/f3"), hop)
                await asyncio.sleep(0.05)
                assert other.connections == 0 and c.pool.starved
                busy.set()
                assert await c.codes([*slow, hop]) == [0, 0]
                assert bytes(hop.body) == want("/f3")
                assert not c.pool.starved

        run(go)
        assert srv.connections == 1 and other.connections == 1


def test_libcurls_idle_connections_are_shed_for_the_run_cap(srv: Server) -> None:
    """Connections the engine holds beside the pool count against the run's cap; idle
    ones are shed to make room."""
    shed: list[int] = []

    async def go() -> None:
        async with Client(srv.port, max_conns=2) as c:
            c.pool.max_total = 3
            elsewhere = [2]

            def drop() -> bool:
                if not elsewhere[0]:
                    return False
                elsewhere[0] -= 1
                shed.append(1)
                return True

            c.pool.others = lambda: elsewhere[0]
            c.pool.shed = drop
            assert await c.codes(c.get(*(f"/f{i}" for i in range(6)))) == [0] * 6

    run(go)
    assert srv.connections == 2 and len(shed) == 1


def test_another_transfer_waits_for_room_under_the_run_cap(srv: Server) -> None:
    """A connection opened beside the pool (libcurl's, for a new origin's first request)
    counts against the run's cap too: while every connection is busy its start waits, and
    it goes once one goes idle (which closes to make room). Before, libcurl opened it at
    once: twice the cap at worst."""
    busy = threading.Event()  # (not a time: the connection stays busy until set)
    srv.route("/slow", held(b"slow", busy))
    started: list[float] = []

    async def go() -> None:
        async with Client(srv.port, max_conns=1) as c:
            c.pool.max_total = 1
            c.pool.others = lambda: len(started)
            slow = c.get("/slow")
            await c.until(lambda: srv.connections == 1)
            gone = c.loop.create_future()
            gone.cancel()  # a transfer cancelled while it waited is not started
            assert not c.pool.admit(lambda: started.append(-1.0), gone)
            fut = c.loop.create_future()
            assert not c.pool.admit(lambda: started.append(time.monotonic()), fut)
            assert c.pool.starved and not started
            begun = time.monotonic()
            busy.set()
            assert await c.codes(slow) == [0]
            await c.until(lambda: bool(started))
            assert started[0] >= begun and not c.pool.starved
            assert c.pool.has_connections(f"127.0.0.1:{srv.port}") is False
            fut.set_result(None)
            # the cap is full (with the started transfer): the pool's own requests wait
            hop = Hop(c.loop)
            c.pool.submit(f"127.0.0.1:{srv.port}", rq("/f1"), hop)
            await asyncio.sleep(0.05)
            assert not hop.fut.done() and c.pool.starved
            started.clear()  # it ended
            c.pool.kick()
            assert await c.codes([hop]) == [0]

    run(go)
    assert srv.connections == 2


def test_another_transfer_starts_at_once_with_room_or_without_our_connections(
    srv: Server,
) -> None:
    async def go() -> None:
        async with Client(srv.port, max_conns=2) as c:
            c.pool.max_total = 2
            fut = c.loop.create_future()

            def never() -> None:
                raise AssertionError("started later: it should have gone at once")

            assert c.pool.admit(never, fut)  # no connection of ours yet: libcurl caps itself
            assert await c.codes(c.get("/f1")) == [0]
            assert c.pool.admit(never, fut)  # one of ours, one free
            c.pool.others = lambda: 1
            assert c.pool.admit(never, fut)  # full, but ours is idle: it closes
            await c.until(lambda: srv.open == 0)
            assert not c.pool.has_connections(f"127.0.0.1:{srv.port}")

    run(go)


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


def test_a_connection_draining_a_dropped_answer_counts_against_the_host_cap(
    srv: Server,
) -> None:
    """The host's cap counts the engine's connections (``held``) less the pool's own
    requests: a request its requester dropped holds no slot of the engine's any more, yet
    its connection is open, reading the rest. A request that needs that place shuts it
    rather than open one more: before, the tail of a split file (a quiet span's bytes
    moved to a fresh connection) went one over ``-N``."""
    body = b"x" * 5000  # (under DRAIN_MAX: its rest would be read and dropped)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    srv.route("/slow", stall_after(srv, head + body[:100]))  # (the rest never comes)

    async def go() -> None:
        async with Client(srv.port, max_conns=2, stall_timeout=600, confirm=False) as c:
            c.pool.one_by_one(c.key)  # (large answers: one request per connection)
            live: list[Hop] = []
            # the engine holds one connection there through libcurl, one per live request
            c.pool.held = lambda key: 1 + sum(not h.fut.done() for h in live)
            [gone] = live[:] = [Hop(c.loop, cancel_after=1)]
            c.pool.submit(c.key, rq("/slow"), gone)
            await c.until(lambda: gone.fut.done())
            conns = c.pool._origins[c.key].conns
            assert len(conns) == 1
            nxt = Hop(c.loop)
            live.append(nxt)
            c.pool.submit(c.key, rq("/a"), nxt)
            assert len(conns) <= 1  # the cap less libcurl's one
            assert await c.codes([nxt]) == [0]  # (not after the rest: it never comes)
            assert bytes(nxt.body) == want("/a")

    run(go)
    assert srv.connections == 2


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


# ----- stalls -------------------------------------------------------------------------
# On a virtual clock (_virtual.py): time stands still while the server sends, then goes
# from timer to timer once it is silent, so a stall is seen exactly when the pool says,
# and an answer that a loaded machine served late is never taken for a stall.

HEAD_1000 = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
#: a stall is seen within this many timeouts of the last byte (checked four times a timeout)
WITHIN = 1.25


def test_stall_mid_body(srv: Server) -> None:
    # (not _server.wait_then_close: it announces more than SMALL_BODY, which pauses)
    srv.route("/stall", stall_after(srv, HEAD_1000 + b"x" * 100))

    async def go(loop: VirtualLoop) -> tuple[list[Hop], float]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            hops = c.get("/stall", "/b")
            await hops[0].has(100)
            last = loop.time()
            await loop.fly(hops[0].fut.done)
            silent = loop.time() - last
            assert await c.codes(hops) == [STALLED, 0]
            assert c.pool.usable(c.key)  # bytes came: a slow answer, not a bad server
            return hops, silent

    (st, b), silent = run_virtual(go)
    assert 0.2 <= silent <= 0.2 * WITHIN + 1e-9, silent
    assert st.body == b"x" * 100 and "0.2 s" in st.message
    assert bytes(b.body) == want("/b") and 2 in conns_of(srv, "/b")


def test_a_stall_is_seen_about_one_timeout_after_the_last_byte(srv: Server) -> None:
    # A byte just after a check used to be seen at the next one: silent for twice the
    # timeout (--timeout 20 waited up to 40 s) before the stall was seen. Here the bytes
    # come just after the first check was set (virtual time stands still meanwhile).
    srv.route("/late", stall_after(srv, HEAD_1000 + b"x" * 100))
    timeout = 0.4

    async def go(loop: VirtualLoop) -> float:
        async with Client(srv.port, max_conns=1, stall_timeout=timeout) as c:
            [h] = c.get("/late")
            await h.has(100)
            last = loop.time()
            await loop.fly(h.fut.done)
            assert await c.codes([h]) == [STALLED]
            return loop.time() - last

    silent = run_virtual(go)
    assert timeout <= silent <= timeout * WITHIN + 1e-9, silent


def test_stall_after_an_answer_began_does_not_refuse(srv: Server) -> None:
    srv.route("/big", stall_after(srv, HEAD_1000 + b"x" * 100))

    async def go(loop: VirtualLoop) -> list[Hop]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            [a] = c.get("/a")
            [bg] = c.get("/big")
            hops = [a, bg, *c.get("/c")]
            await bg.has(100)
            await loop.fly(bg.fut.done)
            assert await c.codes(hops) == [0, STALLED, 0]
            assert c.pool.usable(c.key)
            return hops

    _a, bg, cc = run_virtual(go)
    assert bg.raw[1] == b"Content-Length: 1000\r\n" and bytes(bg.body) == b"x" * 100
    assert bytes(cc.body) == want("/c") and 2 in conns_of(srv, "/c")


def test_a_stall_draining_a_dropped_answer_does_not_refuse(srv: Server) -> None:
    """The requester of the answer that then stalls ended it at its first byte: its
    connection, reading the rest to drop it, stalls, and the request behind goes to a
    fresh connection."""
    sent = threading.Event()
    srv.route("/big", stall_after(srv, HEAD_1000 + b"x" * 100, sent))

    async def go(loop: VirtualLoop) -> list[Hop]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            [a] = c.get("/a")
            [bg] = c.get("/big", abort_after=1)
            hops = [a, bg, *c.get("/c")]
            assert await c.codes([a, bg]) == [0, WRITE]
            [conn] = c.pool._origins[c.key].conns
            await set_in_thread(sent)  # (bytes read late would only delay the stall)
            await loop.fly(lambda: conn.done)
            assert await c.codes(hops) == [0, WRITE, 0]
            assert c.pool.usable(c.key)
            return hops

    _a, bg, cc = run_virtual(go)
    assert bg.raw[1] == b"Content-Length: 1000\r\n" and bytes(bg.body) == b"x" * len(bg.body)
    assert bytes(cc.body) == want("/c") and 2 in conns_of(srv, "/c")


def test_no_byte_at_all_stalls_without_refusing(srv: Server) -> None:
    asked = threading.Event()
    srv.route("/hang", hang(srv, asked))

    async def go(loop: VirtualLoop) -> None:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            [h] = c.get("/hang")
            await set_in_thread(asked)
            await loop.fly(h.fut.done)
            assert await c.codes([h]) == [STALLED]
            assert h.raw == []
            assert c.pool.usable(c.key)

    run_virtual(go)
    assert conns_of(srv, "/hang") == [1]  # failed, not sent again


def test_server_ignoring_pipelined_requests_is_refused(srv: Server) -> None:
    asked = threading.Event()
    srv.route("/hang", hang(srv, asked))

    async def go(loop: VirtualLoop) -> list[Hop]:
        async with Client(srv.port, max_conns=1, stall_timeout=0.2) as c:
            hops = c.get("/a", "/hang", "/c")
            await hops[0].has(len(want("/a")))
            await set_in_thread(asked)
            await loop.fly(hops[1].fut.done)
            assert await c.codes(hops) == [0, STALLED, FALLBACK]
            assert not c.pool.usable(c.key)
            return hops

    a, hg, cc = run_virtual(go)
    assert bytes(a.body) == want("/a")
    assert hg.raw == [] and cc.raw == []
    assert conns_of(srv, "/hang") == [1] and srv.connections == 1


def test_slow_but_steady_body_does_not_stall(srv: Server) -> None:
    """A body whose bytes come 0.04 s apart takes longer than the 0.15 s stall timeout
    in all, and never stalls."""
    body = bytes(range(200)) * 4
    pieces = slices(body, (100,))
    more = threading.Semaphore(0)

    def slow(req: Req, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 800\r\n\r\n" + pieces[0])
        for piece in pieces[1:]:
            assert more.acquire(timeout=30)
            sock.sendall(piece)

    srv.route("/slow", slow)

    async def go(loop: VirtualLoop) -> Hop:
        async with Client(srv.port, max_conns=1, stall_timeout=0.15) as c:
            [h] = c.get("/slow")
            for n in range(1, len(pieces)):
                await h.has(100 * n)
                await loop.jump(0.04)
                more.release()
            assert await c.codes([h]) == [0]
            assert loop.time() >= 0.04 * (len(pieces) - 1) > 0.15
            return h

    assert bytes(run_virtual(go).body) == body


# ----- connecting, closing, refusing --------------------------------------------------


def test_connection_refused_gives_every_request_back(refused_port: int) -> None:
    async def go() -> None:
        async with Client(refused_port, max_conns=1) as c:
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
            assert c.pool._address(c.key) == (("127.0.0.1", "127.0.0.2"), p)
            assert c.pool._address("other.test") == (("other.test",), 80)
            assert c.pool._address(f"[::1]:{p}") == (("::1",), p)
            [h] = c.get("/a")
            assert await c.codes([h]) == [0]
            return h

    assert bytes(run(go).body) == want("/a")
    assert srv.paths() == ["/a"]


def test_a_connection_sends_each_request_at_once(srv: Server) -> None:
    """Nagle off (TCP_NODELAY), as asyncio's own connections have it: the pool's socket
    was made without naming TCP, asyncio left Nagle on, and each request written
    behind another waited for an ACK (a round trip at 20 ms RTT: S5p took 1.6x)."""

    async def go() -> int:
        async with Client(srv.port, max_conns=1) as c:
            [h] = c.get("/a")
            assert await c.codes([h]) == [0]
            [conn] = c.pool._origins[c.key].conns
            assert conn.socket is not None
            return conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    assert run(go) != 0


def test_a_wildcard_resolve_entry_routes_every_name_at_its_port(srv: Server) -> None:
    # libcurl takes "*:PORT:ADDR" for any host at PORT: the pool must not ask the DNS
    p = srv.port
    resolve = (f"*:{p}:127.0.0.1", f"exact.test:{p}:127.0.0.2", "*:1:127.0.0.3")

    async def go() -> Hop:
        async with Client(p, key=f"files.test:{p}", resolve=resolve) as c:
            assert c.pool._address(c.key) == (("127.0.0.1",), p)
            assert c.pool._address(f"exact.test:{p}") == (("127.0.0.2",), p)  # its own first
            assert c.pool._address("files.test") == (("files.test",), 80)  # another port
            [h] = c.get("/a")
            assert await c.codes([h]) == [0]  # (files.test has no address in the DNS)
            return h

    assert bytes(run(go).body) == want("/a")
    assert srv.paths() == ["/a"]


def test_a_name_without_a_resolve_entry_goes_through_the_resolver(srv: Server) -> None:
    async def go() -> Hop:
        async with Client(srv.port, key=f"localhost:{srv.port}") as c:
            assert c.pool._address(c.key) == (("localhost",), srv.port)
            [h] = c.get("/a")
            assert await c.codes([h]) == [0]
            return h

    assert bytes(run(go).body) == want("/a")


def test_an_ipv6_origin_is_connected() -> None:
    try:
        v6 = Server(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with v6:
        v6.route("/a", static(want("/a")))

        async def go() -> Hop:
            async with Client(v6.port, key=f"[::1]:{v6.port}") as c:
                [h] = c.get("/a")
                assert await c.codes([h]) == [0]
                return h

        assert bytes(run(go).body) == want("/a")
        assert v6.paths() == ["/a"]


def test_a_connect_past_its_timeout_gives_its_requests_back_and_closes_its_socket() -> None:
    """A server whose backlog is full never answers the handshake: after the connect
    timeout the requests go back to libcurl, and the socket that was connecting is
    closed by then."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        port = full.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # (fills the backlog)

            async def go() -> None:
                assert len(own_sockets_to(port)) == 1  # (the one filling the backlog)
                async with Client(port, max_conns=1, connect_timeout=0.2) as c:
                    start = c.loop.time()
                    hops = c.get("/a", "/b")
                    for _ in range(3):
                        await asyncio.sleep(0)
                    assert len(own_sockets_to(port)) == 2  # (connecting)
                    assert await c.codes(hops) == [FALLBACK, FALLBACK]
                    assert c.loop.time() - start >= 0.2
                    assert not c.pool.has_connections(c.key)
                    assert len(own_sockets_to(port)) == 1

            run(go)


def own_sockets_to(port: int) -> set[int]:
    """Inodes of this process's open TCP sockets whose remote port is ``port``, whatever
    their state (a count of all open fds also saw other tests' sockets being collected)."""
    own = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            own.add(int(link[8:-1]))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and int(fields[9]) in own:
                    found.add(int(fields[9]))
    return found


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
