"""A tiny threaded HTTP/1.1 server for transport tests: raw sockets, keep-alive, per-path
handlers that write exactly the bytes a test wants, and a record of every request."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.servers.tls import answer_plain


@dataclass
class Req:
    method: str
    target: str  # as sent: origin-form, or absolute-form through a proxy
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    conn: int  # connection number, from 1
    raw_headers: list[tuple[str, str]] = field(default_factory=list)


#: A handler answers one request; return False to close the connection afterwards.
Handler = Callable[[Req, socket.socket], "bool | None"]


def reply(
    sock: socket.socket,
    status: int = 200,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    length: bool = True,
    pace: float = 0.0,
) -> None:
    """Send a whole answer; ``pace``: seconds to wait after each 256 KiB of body."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if not pace:
        sock.sendall(head + body)
        return
    sock.sendall(head)
    for i in range(0, len(body), 256 << 10):
        sock.sendall(body[i : i + (256 << 10)])
        time.sleep(pace)


def static(body: bytes, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Handler:
    fixed = list(headers)

    def handle(req: Req, sock: socket.socket) -> None:
        if req.method == "HEAD":
            reply(sock, status, b"", [*fixed, ("Content-Length", str(len(body)))], length=False)
        else:
            reply(sock, status, body, fixed)

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    def handle(req: Req, sock: socket.socket) -> None:
        reply(sock, status, b"moved", [("Location", location)])

    return handle


def ranged(data: bytes, etag: str = '"v1"', pace: float = 0.0) -> Handler:
    """Serve ``data`` honouring ``Range: bytes=a-b`` (and If-Range against ``etag``);
    ``pace`` as in :func:`reply`."""

    def handle(req: Req, sock: socket.socket) -> None:
        rng = req.headers.get("range", "")
        if_range = req.headers.get("if-range")
        base = [("ETag", etag), ("Accept-Ranges", "bytes")]
        if rng.startswith("bytes=") and (if_range is None or if_range == etag):
            first, _, last = rng[6:].partition("-")
            a = int(first)
            b = int(last) if last else len(data) - 1
            part = data[a : b + 1]
            cr = ("Content-Range", f"bytes {a}-{a + len(part) - 1}/{len(data)}")
            reply(sock, 206, part, [*base, cr], pace=pace)
        else:
            reply(sock, 200, data, base, pace=pace)

    return handle


class Server:
    """``with Server() as srv: srv.route("/x", static(b"hi")); srv.url("/x")``."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls = tls
        #: With ``tls``: what a client that begins no TLS handshake gets before the close
        #: (None: what the ssl module does, a reset; see ``tests.servers.tls.JSSE_ALERT``).
        self.plain: bytes | None = None
        self.routes: dict[str, Handler] = {}
        self.requests: list[Req] = []
        self.connections = 0
        self.open = 0  # connections not yet closed (by either side)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family, backlog=128)
        self.host = host
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def origin(self) -> str:
        return self.url("")

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def close(self) -> None:
        self.stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def drop(self) -> None:
        """Shut the connections open now (a kept one's next request opens another); the
        listener stays."""
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open += 1
                number = self.connections
                self._socks.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        sock: socket.socket = conn
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                if answer_plain(conn, self.plain):
                    return
                sock = self.tls.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._socks.append(sock)
            rfile = sock.makefile("rb")
            while not self.stopping.is_set():
                req = self._read_request(rfile, number)
                if req is None:
                    return
                with self._lock:
                    self.requests.append(req)
                handler = self.routes.get(req.path)
                if handler is None:
                    reply(sock, 404, b"no such path")
                    keep = True
                else:
                    keep = handler(req, sock) is not False
                if not keep or req.headers.get("connection", "").lower() == "close":
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                self.open -= 1

    @staticmethod
    def _read_request(rfile: object, number: int) -> Req | None:
        readline = rfile.readline  # type: ignore[attr-defined]
        line = readline(65536)
        while line in (b"\r\n", b"\n"):
            line = readline(65536)
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        raw: list[tuple[str, str]] = []
        while True:
            h = readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            raw.append((name.strip(), value.strip()))
        headers = {k.lower(): v for k, v in raw}
        body = b""
        n = int(headers.get("content-length", "0") or 0)
        if n:
            body = rfile.read(n)  # type: ignore[attr-defined]
        parts = urlsplit(target)
        return Req(method, target, parts.path, parts.query, headers, body, number, raw)


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_then_close(server: Server, seconds: float) -> Handler:
    """Send a head and a few body bytes, then go silent (a stall)."""

    def handle(req: Req, sock: socket.socket) -> bool:
        reply(sock, 200, b"", [("Content-Length", "1000000")], length=False)
        sock.sendall(b"x" * 100)
        server.stopping.wait(seconds)
        return False

    return handle


def held(body: bytes, until: threading.Event) -> Handler:
    """Answer ``body`` once ``until`` is set (by the test)."""

    def handle(req: Req, sock: socket.socket) -> None:
        assert until.wait(30)
        reply(sock, 200, body)

    return handle


def delayed(body: bytes, seconds: float) -> Handler:
    def handle(req: Req, sock: socket.socket) -> None:
        time.sleep(seconds)
        reply(sock, 200, body)

    return handle
