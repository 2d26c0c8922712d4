"""A raw-socket HTTP/1.1 test server that misbehaves on request.

Start it in-process (``HTTPServer().start()``, or the ``httpd`` fixtures in
``tests/conftest.py``) or as a process::

    python -m tests.servers.httpd --root DIR --port 0 [--tls-dir DIR] [--no-log]

which prints the port on the first line of stdout and serves until SIGTERM/SIGINT.
One thread per connection, keep-alive, HEAD, single ``Range`` (``a-b``, ``a-``, ``-n``;
multiple ranges are ignored with a 200), 416 with ``Content-Range: bytes */SIZE``,
``Accept-Ranges``, strong ``ETag``, ``Last-Modified``, ``If-Range`` (ETag or date; on a
mismatch the full body with 200). Files come from ``server.add(path, data, ...)``,
``server.handle(path, fn)`` (dynamic routes) and an optional ``root`` directory.

Every request is logged (``server.requests``: method, target, path, query, headers with
case-insensitive lookup, connection id, port, times, status, body bytes sent). A server
shared by many tests gives each its own port, log and counters (``next_test``).

Query vocabulary (one URL = one behaviour; unknown parameters are ignored)
------------------------------------------------------------------------
Counting:

``k=TOKEN``
    names the counter for this URL's requests (default: the request target, path + query).
    Every request (HEAD included) increments it; request *n* is "active" when
    ``n <= times``.
``times=N|always``
    faults apply only to the first N requests of the counter (default ``always``).

Faults (only while active):

``status=CODE``
    answer CODE (3xx-5xx, e.g. 500 502 503 504 429 404 403 410) with a short text body;
    after ``times`` requests the file is served normally (or 404 if there is none).
``retry_after=S`` / ``retry_after=date:S``
    with ``status``: a ``Retry-After`` of S seconds, or an HTTP-date S seconds from now.
``body=html``
    an HTML page (``text/html``) instead of the file, status 200 or ``status``.
``redirect=URL-OR-PATH``
    a 302 to it verbatim (any scheme); ``redirect_status=301|303|307|308`` changes the code.
``loop=1``
    redirect to this very target forever; ``loop=hop`` adds ``hop=N+1`` each time instead
    (a chain of distinct URLs that never ends).
``delay=S``
    wait S seconds before the status line.
``reset=K``
    send K body bytes, wait until they left the socket, then close with a TCP RST.
``truncate=K``
    Content-Length of the full answer, but only K bytes, then a normal close (FIN).
``chunked_truncate=K``
    (with ``chunked=1``) stop after K body bytes, without the terminating zero chunk (K
    may be the whole length: every byte, then a close instead of the last chunk).
``badrange=1``
    a 206 whose ``Content-Range`` starts at the wrong offset (and whose bytes come from
    that wrong offset: the answer is self-consistent, just not what was asked).
``drip=BPS``
    send the body at about BPS bytes per second (never faster: time the server was held
    up is not made up in a burst); ``drip_after=K``: its first K bytes at once.
``stall=S``
    send the head and ``stall_after=K`` body bytes (default min(half, 16 KiB)), stay
    silent for S seconds, then send the rest.
``corrupt=1``
    flip one byte (the middle one of the body sent); the length is unchanged.
``hold=NAME``
    send the head and ``stall_after=K`` body bytes (default as for ``stall``), then wait
    until the test calls ``server.release(NAME)`` (``server.held(NAME)`` waits for an
    answer to get there); then the rest.

Modes (every request; ``times`` does not limit them):

``etag_change=1``
    request *n* gets version n-1 of the file: other bytes (same length), ETag
    ``"...-vN"`` and Last-Modified +N s. With ``times=T`` the version stops at T (so
    ``etag_change=1&times=1``: the file changes once, after the first request).
    ``server.variant(path, n)`` returns version n's bytes.
``noetag=1`` / ``weaketag=1``
    no ETag (Last-Modified alone), or a weak one (``W/"..."``).
``norange=1``
    ignore Range (always 200 with the full body; no Accept-Ranges).
``chunked=1``
    ``Transfer-Encoding: chunked`` (no Content-Length).
``nolength=1``
    a close-delimited body: no Content-Length, ``Connection: close``.
``gzip=1``
    ``Content-Encoding: gzip`` whatever the request asked, Content-Length of the gzip
    body, Range ignored, ETag ``"...-gzip"``.
``cd=NAME`` / ``cdstar=NAME`` / ``cdraw=VALUE``
    ``Content-Disposition: attachment; filename="NAME"`` (raw, unescaped, UTF-8 bytes),
    ``filename*=UTF-8''<percent-encoded NAME>``; both give both parameters; ``cdraw``
    sends VALUE as the whole header.
``digest=1``
    ``Repr-Digest: sha-256=:B64:`` of the whole representation (also on 206) and
    ``Content-MD5`` on 200; ``digest=legacy``: ``Digest: SHA-256=B64``; ``digest=bad``:
    the same headers with wrong values.
``auth=USER:PASS``
    require that Basic Authorization, else 401 with ``WWW-Authenticate``.

Other names: a client's ``--resolve`` entry ``server.resolve("files.test")`` makes
``server.url(path, host="files.test")`` reach this server. For TLS see ``tests.servers.tls``.

Addresses: 127.0.0.1 by default; ``host="::1"`` listens on the IPv6 loopback instead (its
URLs say ``[::1]``), ``dual=True`` on both loopbacks at one port (``host`` names the one the
URLs use). Each logged request says which address took it (``local``). Where ::1 cannot be
bound (a machine without IPv6), ``ipv6_loopback()`` is False: skip such a test.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlencode

from .faults import Handler, Hold, Resource, build_reply, text_reply
from .send import send_reply
from .tls import answer_plain
from .wire import BadRequest, LoggedRequest, Reader, http_date, parse_head

#: (Linux's; elsewhere None, and wait_closed() cannot see the kernel's accept queue)
TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)

__all__ = ["HTTPServer", "LoggedRequest", "Resource", "ipv6_loopback", "main"]

_V6: list[bool] = []  # (the answer of ipv6_loopback, once known)


def ipv6_loopback() -> bool:
    """Whether a server can listen on ::1 here (CI machines may have no IPv6)."""
    if not _V6:
        try:
            with socket.create_server(("::1", 0), family=socket.AF_INET6):
                _V6.append(True)
        except OSError:
            _V6.append(False)
    return _V6[0]


def bracketed(host: str) -> str:
    """``host`` as a URL's authority has it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class HTTPServer:
    """The test server. ``start()`` binds (port 0 = any free port); ``stop()`` ends it."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        log: bool = True,
        dual: bool = False,
    ) -> None:
        self.root = root.resolve() if root is not None else None
        self.host = host
        self.dual = dual
        self.tls = tls
        #: With ``tls``: what a client that begins no TLS handshake gets before the close
        #: (None: what the ssl module does, a reset; ``tls.JSSE_ALERT``: Java's answer).
        self.plain_answer: bytes | None = None
        self.scheme = "https" if tls else "http"
        self.logging = log
        self.handshake_failures: list[str] = []
        self._want_port = port
        self._files: dict[str, Resource] = {}
        self._handlers: dict[str, Handler] = {}
        self._counts: dict[str, int] = {}
        self._holds: dict[str, Hold] = {}
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._paths = itertools.count(1)
        self._stopping = threading.Event()
        self._conns: dict[int, socket.socket] = {}
        self._conn_epochs: dict[int, int] = {}  # (each open connection's: see wait_closed)
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []
        # Each test on a shared server has a port of its own (see next_test): the
        # listeners of the test before this one, which close what they accept unread.
        self._retired: list[socket.socket] = []
        self._epoch = 0  # (next_test's count: the epoch of a connection is its listener's)
        self._here = threading.local()  # .epoch: the connection a server thread serves
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> HTTPServer:
        self._listeners = self._bind(self._want_port)
        self.port = self._listeners[0].getsockname()[1]
        self._accept_on(self._listeners, self._epoch)
        return self

    def _bind(self, port: int) -> list[socket.socket]:
        hosts = [self.host]
        if self.dual:
            hosts.append("::1" if _family(self.host) == socket.AF_INET else "127.0.0.1")
        for attempt in itertools.count():
            try:
                return _listen(hosts, port)
            except OSError:  # (the second family's port was taken: another pair)
                if len(hosts) == 1 or port or attempt >= 20:
                    raise
        raise AssertionError("unreachable")

    def _accept_on(self, listeners: list[socket.socket], epoch: int) -> None:
        port = listeners[0].getsockname()[1]
        self._threads = [t for t in self._threads if t.is_alive()]
        for sock in listeners:
            t = threading.Thread(
                target=self._accept_loop, args=(sock, epoch), name=f"httpd-{port}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def next_test(self) -> None:
        """Begin a test on a shared server (the per-test fixtures call it): a new port
        for it, the earlier test's connections shut, and ``reset()``. What an earlier
        test's client sends late (a request read only now, a retry's new connection to
        the old port) is never logged, counted or answered: a server thread serving a
        connection from before touches no file, handler, counter or log of this test
        (it ends the connection instead), and the old port, kept until the next test,
        closes what it accepts unread (closed, another server could get that port)."""
        if self._want_port or not self._listeners:
            self.reset()  # (a fixed port: as before)
            return
        listeners = self._bind(0)
        with self._lock:
            self._epoch += 1
            epoch = self._epoch
            gone, self._retired = self._retired, self._listeners
            self._listeners = listeners
            self.port = listeners[0].getsockname()[1]
            conns = list(self._conns.values())
        self._accept_on(listeners, epoch)
        for listener in gone:
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.reset()

    def stop(self) -> None:
        self._stopping.set()
        for listener in self._listeners + self._retired:
            listener.close()
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> HTTPServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------------

    def add(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = None,
        last_modified: float | str | None = None,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``data`` at ``path`` (``/a/b.bin``); returns its URL. ``etag`` is quoted
        for you when it is not; ``last_modified`` is a Unix time or an HTTP-date."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if etag is None:
            etag = hashlib.sha1(data).hexdigest()[:20]
        if not etag.startswith('"'):
            etag = f'"{etag}"'
        mtime = time.time() - 86400 if last_modified is None else last_modified
        if isinstance(mtime, str):
            lm, ts = mtime, time.time()
        else:
            lm, ts = http_date(mtime), float(mtime)
        res = Resource(
            size=len(data),
            etag=etag,
            last_modified=lm,
            mtime=ts,
            content_type=content_type,
            headers=tuple((headers or {}).items()),
            data=bytes(data),
        )
        with self._lock:
            self._files[path] = res
        return self.url(path)

    def handle(self, path: str, fn: Handler) -> str:
        """Answer ``path`` (any method) with ``fn(request) -> (status, headers, body)``."""
        with self._lock:
            self._handlers[path] = fn
        return self.url(path)

    def remove(self, path: str) -> None:
        with self._lock:
            self._files.pop(path, None)
            self._handlers.pop(path, None)

    def variant(self, path: str, version: int) -> bytes:
        """The bytes of ``path`` as version ``version`` (see ``etag_change``)."""
        res = self.lookup(path)
        if res is None:
            raise KeyError(path)
        return res.variant(version)

    def new_path(self, name: str = "file.bin") -> str:
        """A path no other test on this server uses: ``/u<N>/<name>``."""
        return f"/u{next(self._paths)}/{name}"

    def reset(self) -> None:
        """Forget files, handlers, counters and the log (the per-test fixtures call this)."""
        with self._lock:
            self._files.clear()
            self._handlers.clear()
            self._counts.clear()
            for hold in self._holds.values():  # (an answer a failed test left held)
                hold.go.set()
            self._holds.clear()
            self._log.clear()
            self.handshake_failures.clear()

    def held(self, name: str, timeout: float = 30.0) -> bool:
        """Wait until an answer is held at ``hold=NAME``; False if none is in time."""
        return self.hold(name).reached.wait(timeout)

    def release(self, name: str) -> None:
        """Let the answers held at ``hold=NAME`` (and any later one) go on."""
        self.hold(name).go.set()

    # -- addresses -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{bracketed(self.host)}:{self.port}"

    def url(self, path: str, *, host: str | None = None, **query: object) -> str:
        """``url("/a.bin", status=503, times=2)`` -> ``http://127.0.0.1:PORT/a.bin?status=...``
        (an IPv6 ``host`` in brackets, given with them or not)."""
        name = bracketed(host or self.host)
        base = f"{self.scheme}://{name}:{self.port}{quote(path)}"
        return f"{base}?{urlencode({k: str(v) for k, v in query.items()})}" if query else base

    def resolve(self, host: str = "files.test") -> str:
        """A curl ``--resolve`` entry sending ``host`` on this port to this server."""
        return f"{bracketed(host)}:{self.port}:{bracketed(self.host)}"

    # -- the log -----------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def connection_ids(self, path: str | None = None) -> list[int]:
        """Distinct connection ids, in first-use order (of requests to ``path`` if given)."""
        reqs = self.requests if path is None else self.requests_to(path)
        return list(dict.fromkeys(r.conn_id for r in reqs))

    def wait_closed(self, timeout: float = 30.0) -> bool:
        """Wait until no connection of this test is open (False if one still is then;
        an earlier test's, shut by next_test, may keep its thread a while). A client that
        has ended (its process reaped, killed or not) may have sent a request a server
        thread has not read yet: logged only then, after a ``clear_log()`` made at once.
        Once its connections are closed here, each request it sent is logged or lost."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._epoch not in self._conn_epochs.values() and not self._queued():
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def _queued(self) -> int:
        """(Under the lock.) Connections the kernel has taken that no accept() has yet:
        Linux says it in a listener's TCP_INFO (``tcpi_unacked``); 0 where it cannot."""
        if TCP_INFO is None:
            return 0
        queued = 0
        for listener in self._listeners:
            with contextlib.suppress(OSError):  # (closed by stop())
                info = listener.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 104)
                queued += struct.unpack_from("I", info, 24)[0]  # (8 bytes, 4 words in)
        return queued

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until every logged request has been answered (``finished`` set)."""
        deadline = time.monotonic() + timeout
        while any(r.finished is None for r in self.requests):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- Catalog (for build_reply) ---------------------------------------------------

    def lookup(self, path: str) -> Resource | None:
        with self._lock:
            self._same_test()
            res = self._files.get(path)
        if res is not None or self.root is None:
            return res
        file = (self.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.root) or not file.is_file():
            return None
        st = file.stat()
        return Resource(
            size=st.st_size,
            etag=f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"',
            last_modified=http_date(st.st_mtime),
            mtime=st.st_mtime,
            file=file,
        )

    def handler(self, path: str) -> Handler | None:
        with self._lock:
            self._same_test()
            return self._handlers.get(path)

    def hit(self, key: str) -> int:
        with self._lock:
            self._same_test()
            self._counts[key] = n = self._counts.get(key, 0) + 1
            return n

    def hold(self, name: str) -> Hold:
        with self._lock:
            self._same_test()
            return self._holds.setdefault(name, Hold())

    def _same_test(self) -> None:
        """(Under the lock.) Called on a server thread whose connection an earlier test
        opened (see next_test): end that connection, here and now."""
        if getattr(self._here, "epoch", self._epoch) != self._epoch:
            raise ConnectionAbortedError("a connection from an earlier test")

    # -- connections -------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, epoch: int) -> None:
        ready = select.poll()
        ready.register(listener, select.POLLIN)
        while not self._stopping.is_set():
            if not ready.poll(200):
                continue
            # Taken from the kernel's queue and counted as open in one step: no moment
            # when wait_closed() sees a connection in neither place.
            with self._lock:
                try:
                    sock, peer = listener.accept()
                except BlockingIOError:
                    continue
                except OSError:
                    return
                late = epoch != self._epoch
                if not late:
                    cid = next(self._ids)
                    self._conns[cid] = sock
                    self._conn_epochs[cid] = epoch
            if late:  # (a port retired by next_test)
                sock.close()
                continue
            t = threading.Thread(
                target=self._serve, args=(sock, cid, epoch, peer[1]), daemon=True
            )
            t.start()

    def _serve(self, sock: socket.socket, cid: int, epoch: int, peer: int) -> None:
        self._here.epoch = epoch
        try:
            sock.settimeout(60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                if answer_plain(sock, self.plain_answer):
                    return
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError) as e:
                    with self._lock:
                        if epoch == self._epoch:
                            self.handshake_failures.append(str(e))
                    return
                with self._lock:
                    self._conns[cid] = sock
            reader = Reader(sock)
            while not self._stopping.is_set() and self._one(sock, reader, cid, peer):
                pass
        except (OSError, BadRequest, ValueError):
            pass
        finally:
            with self._lock:
                self._conns.pop(cid, None)
                self._conn_epochs.pop(cid, None)
            with contextlib.suppress(OSError):
                sock.close()

    def _one(self, sock: socket.socket, reader: Reader, cid: int, peer: int) -> bool:
        """Serve one request; False when the connection must end."""
        raw = reader.read_head()
        if raw is None:
            return False
        method, target, version, headers = parse_head(raw)
        req = LoggedRequest(method, target, version, headers, cid, self.port)
        req.local = sock.getsockname()[0]
        req.peer = peer
        with self._lock:
            self._same_test()
            if self.logging:
                self._log.append(req)
        if headers.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            req.body = reader.read_chunked()
        elif (length := headers.get("content-length", "0").strip()).isdigit():
            req.body = reader.read_exact(int(length))
        conn = headers.get("connection", "").lower()
        keep = "close" not in conn and (version == "HTTP/1.1" or "keep-alive" in conn)
        try:
            reply = build_reply(req, self)
        except ValueError as e:  # a bad fault parameter: say so loudly
            reply = text_reply(400, str(e))
        try:
            return send_reply(sock, req, reply, keep, self._stopping)
        finally:
            if req.finished is None:  # (an answer sent whole was recorded before its end)
                req.finished = time.monotonic()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listen(hosts: list[str], port: int) -> list[socket.socket]:
    """Listening sockets on each of ``hosts``, all at one port (``port``, or the one the
    first got)."""
    socks: list[socket.socket] = []
    try:
        for host in hosts:
            host = host.strip("[]")
            sock = socket.create_server((host, port), family=_family(host), backlog=128)
            socks.append(sock)
            sock.setblocking(False)  # (accept() once poll() says so: see _accept_loop)
            port = sock.getsockname()[1]
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.servers.httpd", description=__doc__)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--root", type=Path, help="serve this directory")
    ap.add_argument("--host", default="127.0.0.1", help="127.0.0.1, or ::1 for IPv6")
    ap.add_argument("--dual", action="store_true", help="listen on 127.0.0.1 and ::1 both")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    ap.add_argument("--tls-dir", type=Path, help="serve HTTPS; write ca.pem etc. into this dir")
    ap.add_argument("--no-log", action="store_true", help="keep no request log (long runs)")
    args = ap.parse_args(argv)
    tls = None
    if args.tls_dir is not None:
        from .tls import make_tls

        args.tls_dir.mkdir(parents=True, exist_ok=True)
        tls = make_tls(args.tls_dir).server_context()
    server = HTTPServer(
        root=args.root, host=args.host, port=args.port, tls=tls, log=not args.no_log,
        dual=args.dual,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        print(server.port, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
