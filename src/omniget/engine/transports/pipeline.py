"""Our own HTTP/1.1 connections for plain-HTTP GETs, beside libcurl: pipelined while an
origin's answers are small, one request at a time while they are large.

At 20 ms of round trip a connection that waits for each answer before asking again moves
one small file per round trip; the per-host cap (4 by default) would then cap a run of many
small files at 200 files/s. Sending up to :data:`DEPTH` requests on each connection before
the answers come keeps the cap on connections and removes the wait (libcurl no longer
pipelines). Large answers go one at a time per connection, read in large blocks: libcurl
hands its write callback at most 16 KiB, which costs a Python call and a ``pwrite`` per
16 KiB.

Only the easy case goes this way: ``http://`` GETs without a body, credentials, a proxy or
a speed limit, to an origin that has already answered libcurl over a persistent HTTP/1.1
connection (a large answer settles that at its head, so the ranged requests that split its
file come here too; they go only to an origin sent one by one, as each holds a whole
connection). Everything else stays with libcurl, and so does any request this
module gives back: a request that got no byte of answer when something went wrong (the
server closed early, said ``Connection: close``, used an encoding we do not decode, or
sent a large body ahead of it) finishes with :data:`FALLBACK` and the transport runs it
again through libcurl. An origin whose server does not keep connections is not sent to
again in this run; one whose answers end at EOF goes back to libcurl until a small answer
comes.

Connections count against the per-host cap (less what libcurl holds there) and the run's
cap (together with libcurl's connections in use and those it kept). To open one over the
run's cap, an idle connection of another origin is closed, or one libcurl kept is shed;
failing that, the origin waits until a connection goes idle or closes. Once the pool holds
connections, a libcurl transfer that may open one asks the same (:meth:`PipelinePool.admit`)
and, failing that, its start waits the same way, ahead of the pool's own origins.

One connection's side (sending, parsing answers, delivering bodies) is :mod:`.h1conn`.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ...settings import resolve_parts
from ..scheduler import host_of
from .curlloop import CLOSED
from .h1conn import SMALL_BODY, Conn
from .h1queue import FALLBACK, Exchange, Origin, Pending, give_back

__all__ = ["DEPTH", "FALLBACK", "SMALL_BODY", "PipelinePool", "pipeline_key"]

#: Requests in flight on one connection.
DEPTH = 8
TRIES = 3  # sends of one request before it is given back to libcurl
_REFUSED, _ONE_BY_ONE, _PIPELINED = range(3)  # what an origin gets from the pool


class PipelinePool:
    """Pipelined connections per origin (``host[:port]`` as the scheduler names hosts)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_conns: int,
        connect_timeout: float,
        stall_timeout: float,
        resolve: Iterable[str] = (),
        max_total: int = 0,
    ) -> None:
        self.loop = loop
        self.max_conns = max(1, max_conns)
        #: Connections of the whole run (0: no cap): ours plus :attr:`others`.
        self.max_total = max(0, max_total)
        #: Connections the engine has open beside this pool (libcurl's), if known.
        self.others: Callable[[], int] | None = None
        #: Closes one of those that is idle; False if none is.
        self.shed: Callable[[], bool] | None = None
        #: libcurl's running transfers to an origin (a connection each), if known.
        self.curl_at: Callable[[str], int] | None = None
        self._total = 0  # our connections, every origin
        self._starved: dict[str, Origin] = {}  # origins with requests and no connection
        # starts of libcurl transfers (and their origins) waiting for room, in order
        self._deferred: deque[tuple[Callable[[], None], asyncio.Future[Any], str | None]] = (
            deque()
        )
        self._quiet = False
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self._resolve = _resolve_table(resolve)
        #: Whole connections the engine holds to a host for other requests, if known.
        self.held: Callable[[str], int] | None = None
        #: Told of an origin just before a connection to it is opened.
        self.opening: Callable[[str], None] | None = None
        self._state: dict[str, int] = {}  # origin -> _PIPELINED, _ONE_BY_ONE or _REFUSED
        self.splice = hasattr(os, "splice") and hasattr(os, "pipe2")  # (Linux) see h1socket.py
        self._origins: dict[str, Origin] = {}
        self._closed = False

    # ----- which origins ------------------------------------------------------------

    def usable(self, key: str) -> bool:
        """Requests to ``key`` may go through this pool (pipelined or one by one)."""
        return self._state.get(key, _REFUSED) != _REFUSED

    def shares(self, key: str) -> bool:
        """Requests to ``key`` are pipelined: several on one connection at once."""
        return self._state.get(key) == _PIPELINED

    def takes(self, key: str, others: bool, ranged: bool) -> int:
        """Whether a GET to ``key`` goes through this pool now: the origin is usable, and
        ``others`` (another request to it runs) or the pool holds connections there (one
        at a time, libcurl's kept connection is as fast and no second one is opened); a
        ``ranged`` one only to an origin sent one by one (it holds a whole connection).
        0: no; else 2 if requests to ``key`` are pipelined, 1 if sent one by one."""
        state = self._state.get(key, _REFUSED)
        if state == _REFUSED or (ranged and state == _PIPELINED):
            return 0
        if not others:
            o = self._origins.get(key)
            if o is None or not o.conns:
                return 0
        return 2 if state == _PIPELINED else 1

    def answered(self, key: str, small: bool, ranged: bool) -> bool:
        """A request to a known origin got a persistent answer with a length (``small``:
        at most SMALL_BODY): pipeline after a small one, one by one after a large one (a
        ``ranged`` answer says nothing of the origin's files). False when ``key`` is not
        known (the caller looks at the answer first)."""
        state = self._state.get(key)
        if state is None:
            return False
        if not ranged and state != _REFUSED:
            self._state[key] = _PIPELINED if small else _ONE_BY_ONE
        return True

    def has_connections(self, key: str) -> bool:
        o = self._origins.get(key)
        return o is not None and bool(o.conns)

    def known(self, key: str) -> bool:
        return key in self._state

    def confirm(self, key: str) -> None:
        """The origin answered a small request over a persistent HTTP/1.1 connection:
        pipeline to it (unless refused)."""
        if self._state.get(key) != _REFUSED:
            self._state[key] = _PIPELINED

    def one_by_one(self, key: str) -> None:
        """Its answers are large (with a known length, over a kept connection): send one
        request at a time per connection, until a small answer confirms pipelining again.
        (Large answers queued behind one another cost the kernel more, and a request
        behind a large body waits for all of it.)"""
        if self._state.get(key) != _REFUSED:
            self._state[key] = _ONE_BY_ONE

    def pause(self, key: str) -> None:
        """Its answers end at EOF: leave them to libcurl until a small answer confirms
        the origin again."""
        if self.usable(key):
            del self._state[key]

    def refuse(self, key: str) -> None:
        """Never send to ``key`` through this pool again in this run; give back what
        waits for it."""
        self._state[key] = _REFUSED
        o = self._origins.get(key)
        if o is not None:
            while o.waiting:
                give_back(o.waiting.popleft())

    # ----- requests -------------------------------------------------------------------

    def submit(self, key: str, data: bytes, hop: Exchange) -> None:
        """Send ``data`` (a whole request) to ``key``; the answer goes to ``hop``."""
        p = Pending(hop, data)
        if self._closed or self._state.get(key, _REFUSED) == _REFUSED:
            give_back(p)
            return
        o = self._origins.get(key)
        if o is None:
            o = self._origins[key] = Origin(key, self._address(key))
        o.waiting.append(p)
        self._pump(o)

    def _pump(self, o: Origin) -> None:
        """Hand waiting requests out: to an idle connection, else to a new one while the
        host's connection cap allows, else to the least busy connection with room."""
        depth = DEPTH if self._state.get(o.key) == _PIPELINED else 1
        while o.waiting:
            if o.waiting[0].hop.fut.done():  # (dropped by its requester)
                o.waiting.popleft()
                continue
            conn = None  # the first of the least busy connections with room
            for c in o.conns:  # (room: fewer than depth in flight, and not closing)
                n = len(c.queue)
                if n < depth and not c.closing and (conn is None or n < len(conn.queue)):
                    conn = c
            if (
                (conn is None or conn.queue)
                and len(o.conns) < self.max_conns  # (the cap: never more than that)
                and len(o.conns) < self._cap(o.key)
                and self._room(o)
            ):
                if self.opening is not None:
                    self.opening(o.key)
                conn = Conn(self, o)
                o.conns.append(conn)
                self._total += 1
                self._starved.pop(o.key, None)
                conn.open()
            elif conn is None:
                if self._shut_a_drain(o):
                    continue  # (its place is free now)
                if not o.conns:  # the run's cap: wait for a connection to free up
                    self._starved[o.key] = o
                return
            conn.send(o.waiting.popleft())

    def _shut_a_drain(self, o: Origin) -> bool:
        """Close a connection of ``o`` that only reads answers their requesters dropped:
        it holds no slot of the engine's, so a request that needs its place takes it
        rather than wait for the rest of those answers. True if one was closed."""
        for conn in o.conns:
            if conn.queue and all(p.dropped for p in conn.queue):
                self._quiet = True  # (closed() must not pump o from inside _pump(o))
                try:
                    conn.shut()
                finally:
                    self._quiet = False
                return True
        return False

    def admit(
        self, start: Callable[[], None], fut: asyncio.Future[Any], key: str | None = None
    ) -> bool:
        """May the engine open a connection beside ours (a libcurl transfer, to ``key``)
        now? The run's cap counts both, and so does the host's: room is made as for one
        of ours. False: ``start`` is called once there is room (unless ``fut`` is done by
        then)."""
        run = not self.max_total or not self._total or (not self._deferred and self._room(None))
        if run and self._host_room(key):
            return True
        self._deferred.append((start, fut, key))
        return False

    def _host_room(self, key: str | None) -> bool:
        """A libcurl transfer to ``key`` fits under the host's cap beside our connections
        there and libcurl's running transfers (``curl_at``: a connection each). Idle ones
        of ours close to make room at once; else busy ones take no more requests and close
        after their answers, and the transfer waits for that."""
        o = self._origins.get(key) if key is not None else None
        if o is None or not o.conns or self.curl_at is None:
            return True
        assert key is not None
        over = len(o.conns) + self.curl_at(key) + 1 - self.max_conns
        for conn in list(o.conns):
            if over <= 0:
                return True
            if not conn.queue and not conn.closing:
                self._quiet = True  # (closed() must not pump or kick from in here)
                try:
                    conn.retire()
                finally:
                    self._quiet = False
                over -= 1
        if over <= 0:
            return True
        closing = sum(c.closing for c in o.conns)
        for conn in o.conns:
            if closing >= over:
                break
            if not conn.closing:
                conn.closing = True  # (it closes once its last answer is in)
                closing += 1
        return False

    def _room(self, o: Origin | None) -> bool:
        """Another connection fits under the run's cap, if need be once an idle one of
        another origin is closed."""
        if not self.max_total or self._room_now():
            return True
        if o is not None and self._deferred:
            return False  # libcurl's transfers waiting for room go first
        for other in list(self._origins.values()):
            if other is o or other.waiting:
                continue
            for conn in other.conns:
                if not conn.queue and not conn.closing:
                    self._quiet = True  # (closed() must not pump o from inside _pump(o))
                    try:
                        conn.retire()
                    finally:
                        self._quiet = False
                    return self._room_now()
        while self.shed is not None and self.shed():
            if self._room_now():
                return True
        return False

    def idle(self, conn: Conn) -> None:
        """``conn`` has nothing in flight: close it if a request waits for a connection."""
        if self.starved and not conn.origin.waiting and not conn.closing:
            conn.retire()

    def kick(self) -> None:
        """Connections may have freed up elsewhere: serve what waits for one."""
        deferred = self._deferred
        while deferred:
            start, fut, key = deferred[0]
            if not fut.done():
                if self._closed or not self._room(None) or not self._host_room(key):
                    break
                start()
            deferred.popleft()
        for o in list(self._starved.values()):
            if self._closed:
                return
            self._starved.pop(o.key, None)
            self._pump(o)  # (back among the starved if there is still no room)

    def _room_now(self) -> bool:
        others = self.others() if self.others is not None else 0
        return self._total + others < self.max_total

    @property
    def starved(self) -> bool:
        return bool(self._starved or self._deferred)

    def _cap(self, key: str) -> int:
        """Connections this pool may hold to ``key``: the host's cap less the whole
        connections the engine holds there for other requests (libcurl's), or less
        libcurl's running transfers there (light ones hold a connection each), if more."""
        held = self.held(key) if self.held is not None else 0
        o = self._origins.get(key)
        if held and o is not None and not self.shares(key):
            # one by one, each of our requests holds a whole connection of the engine's
            # (not one its requester dropped: that slot is the engine's again)
            held -= sum(not p.dropped for p in o.waiting) + sum(
                not p.dropped for c in o.conns for p in c.queue
            )
        curl = self.curl_at(key) if self.curl_at is not None else 0
        # (a light transfer of libcurl's holds a connection too; when libcurl's fill the
        # cap, ours wait for one of them to end: see kick)
        least = 0 if curl >= self.max_conns else 1
        return max(least, min(self.max_conns, self.max_conns - max(held, curl)))

    def requeue(self, o: Origin, pending: Iterable[Pending]) -> None:
        """Requests that got no answer go back to the front of the queue (or to libcurl)."""
        back = []
        for p in pending:
            if p.dropped:
                continue
            p.tries += 1
            if p.tries >= TRIES or not self.usable(o.key) or self._closed:
                give_back(p)
            else:
                back.append(p)
        o.waiting.extendleft(reversed(back))

    def closed(self, conn: Conn) -> None:
        o = conn.origin
        if conn in o.conns:
            o.conns.remove(conn)
            self._total -= 1
        if not self._closed and not self._quiet:
            if self._deferred:  # (they hold their slots already: they go first)
                self.kick()
            self._pump(o)
            if self.starved:
                self.kick()

    def close(self) -> None:
        """End every connection; what is in flight finishes with :data:`CLOSED`."""
        self._closed = True
        if self.loop.is_closed():  # (an earlier asyncio.run's: nothing runs on it now)
            for o in self._origins.values():
                for conn in o.conns:
                    conn.drop()
            self._origins.clear()
            self._deferred.clear()
            return
        while self._deferred:  # (they start, or fail, where they are)
            start, fut, _ = self._deferred.popleft()
            if not fut.done():
                start()
        for o in self._origins.values():
            while o.waiting:
                give_back(o.waiting.popleft())
            for conn in list(o.conns):
                conn.abort(CLOSED, "transport closed")
        self._origins.clear()

    def _address(self, key: str) -> tuple[tuple[str, ...], int]:
        """The addresses to connect to for ``key`` (a ``--resolve`` entry's, raced as
        libcurl races them: see h1socket.interleave), or its host name, and the port."""
        host, sep, port = key.rpartition(":")
        if not sep or not port.isdigit() or host.endswith(":"):  # no port (or bare IPv6)
            host, port = key, "80"
        host, number = host.strip("[]"), int(port)
        table = self._resolve
        return table.get((host, number)) or table.get(("*", number), (host,)), number



def _resolve_table(entries: Iterable[str]) -> dict[tuple[str, int], tuple[str, ...]]:
    """curl-style ``HOST:PORT:ADDR[,ADDR]`` (a leading ``+`` allowed, ``-`` removals skipped;
    HOST ``*``: every host without its own entry, as in libcurl)."""
    table: dict[tuple[str, int], tuple[str, ...]] = {}
    for entry in entries:
        if entry.startswith("-"):
            continue
        host, port, addrs = resolve_parts(entry)
        found = tuple(a.strip().strip("[]") for a in addrs.split(",") if a.strip())
        if host and port.isdigit() and found:
            table[(host.lower(), int(port))] = found
    return table



def pipeline_key(url: str) -> str | None:
    """The pool key of a plain-HTTP URL (the scheduler's host name), or None."""
    return host_of(url) if url[:7].lower() == "http://" else None
