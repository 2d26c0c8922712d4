"""The pool tests' kit (test_pipeline_pool.py, test_h1conn.py): a raw-socket server whose
handlers write exactly the bytes a test wants, fake per-request objects (:class:`Hop`) that
record what the pool hands them, and a :class:`Client` holding a pool on the running loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pycurl

from omniget.engine.transports import curlloop
from omniget.engine.transports.base import Headers
from omniget.engine.transports.h1queue import head_lines
from omniget.engine.transports.pipeline import PipelinePool

from ._server import Handler, Req, Server, reset

T = TypeVar("T")

RECV: int = pycurl.E_RECV_ERROR
WRITE: int = pycurl.E_WRITE_ERROR
BAD_ENCODING: int = pycurl.E_BAD_CONTENT_ENCODING
WEIRD = curlloop.WEIRD_REPLY

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


def send(
    *parts: bytes, pause: float = 0.0, end: str = "keep", go: threading.Event | None = None
) -> Handler:
    """Write ``parts`` (``pause`` seconds apart; with ``go``, the rest once the test sets
    it, e.g. when the client took the first), then keep the connection (``keep``), close
    it (``close``), half-close it and linger (``linger``) or reset it (``reset``)."""

    def handle(req: Req, sock: socket.socket) -> bool | None:
        for i, part in enumerate(parts):
            if go is not None and i:
                go.wait(10)  # (a test that never sets it fails on its own timeout first)
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


def hang(srv: Server, silent: threading.Event | None = None) -> Handler:
    """Read the request and never answer (until the server stops); ``silent`` is set
    once the request is read."""
    return stall_after(srv, b"", silent)


def stall_after(srv: Server, data: bytes, silent: threading.Event | None = None) -> Handler:
    """Send ``data``, then go silent (until the server stops); ``silent`` is set once
    ``data`` is sent."""

    def handle(req: Req, sock: socket.socket) -> bool:
        if data:
            sock.sendall(data)
        if silent is not None:
            silent.set()
        srv.stopping.wait(10)
        return False

    return handle


def conns_of(srv: Server, path: str) -> list[int]:
    return [r.conn for r in srv.requests if r.path == path]


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
        self.head_block: bytes | None = None
        self.parsed: tuple[int, Headers] | None = None
        self.fut: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.body = bytearray()
        self.writes = 0
        self.empty_writes = 0
        self.late_writes = 0  # after the request finished
        self.abort_after = abort_after
        self.cancel_after = cancel_after
        self.views = True  # (it copies what it gets at once)
        self.url = "http://127.0.0.1/"  # (no name a gzip file has: answers are decoded)
        self.kinds: set[type] = set()
        self.wrote = asyncio.Event()  # set at every write and at the end

    @property
    def raw(self) -> list[bytes]:
        """The head's lines, as the transport's hop makes them when read."""
        return [] if self.head_block is None else head_lines(self.head_block)

    async def has(self, n: int) -> None:
        """Wait (no timer: on a virtual clock too) until ``n`` body bytes came."""
        while len(self.body) < n:
            assert not self.fut.done(), (self.fut, len(self.body))
            self.wrote.clear()
            await self.wrote.wait()

    def on_write(self, data: bytes | memoryview) -> int | None:
        self.kinds.add(type(data))
        if self.fut.done():
            self.late_writes += 1
            return None
        if not data:
            self.empty_writes += 1
        self.writes += 1
        self.body += data
        self.wrote.set()
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
        self.wrote.set()  # (wakes has())

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

    # (deadlines a hang reaches, not a loaded machine's server threads: 2 to 3 s were)
    async def codes(self, hops: list[Hop], timeout: float = 30.0) -> list[int]:
        await asyncio.wait_for(asyncio.gather(*(h.fut for h in hops)), timeout)
        for h in hops:
            assert h.late_writes == 0 and h.empty_writes == 0
        return [h.code for h in hops]

    async def until(self, pred: Callable[[], bool], timeout: float = 30.0) -> None:
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
