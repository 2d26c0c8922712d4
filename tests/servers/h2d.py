"""An HTTPS test server that speaks HTTP/2 (the ``h2`` package, sans-IO) and misbehaves
per path or per connection, as real HTTP/2 servers can.

TLS offers ``h2`` and ``http/1.1`` by ALPN; a client that picks HTTP/1.1 (libcurl's
first, lone request does) gets a plain keep-alive HTTP/1.1 answer with the same faults
where they have an HTTP/1.1 form (a reset stream closes the connection). Both serve
``GET`` with one ``Range`` (``a-b``, ``a-``), ``Content-Length`` and a strong ``ETag``.
One asyncio loop on a thread runs every connection; each HTTP/2 stream is a task of its
own, so one stream stalls while the others flow. ::

    with H2Server(tls_files) as srv:
        url = srv.add("/a.bin", data, Fault(rst=REFUSED_STREAM, times=1))

Per path (:class:`Fault`, for the path's first ``times`` requests): a reset stream
(``rst``: RST_STREAM with that error code, before the head or after ``rst_after`` body
bytes), an error status (``status``, with ``retry_after``), a body shorter than its
Content-Length ending the stream normally (``short``), a stall (``stall`` seconds of
silence before the head, or after ``stall_after`` body bytes), a slow body (``drip``);
and what is no fault but comes rarely: a 103 head first (``early``), trailer fields
after the body (``trailers``).
A path never added is a 404.

Per connection (the server's arguments): ``max_streams`` (SETTINGS_MAX_CONCURRENT_STREAMS;
streams past it are refused with REFUSED_STREAM, as nginx does), ``goaway_after`` (a
GOAWAY, with ``goaway_code``, naming the N-th request's stream as the last one taken: the
ones in flight up to it are answered, later ones never, then the connection closes;
``goaway_cut``: it closes at once instead, the N-th unanswered too, on the first
connection to take N requests only, as a server that restarts), ``drop_after`` (at the
N-th request, half of its body, then the connection closes with every stream open),
``freeze_after`` (the first HTTP/2 connection to take N requests goes silent at the N-th,
and stays open: nothing more is sent on it), ``broken`` (every connection that took
``h2`` by ALPN fails it at once: ``"preface"`` answers in HTTP/1.1 where its SETTINGS
belong, ``"goaway"`` sends a GOAWAY taking no stream and closes; ``max_streams=0`` is
the third such server: every stream refused).

``requests`` logs every request (connection number, protocol, path, what it got:
the status, or ``rst``, ``short``, ``stall``, ``refused``, ``unanswered``, ``dropped``,
``frozen``); ``connections`` counts the connections accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .tls import TLSFiles

__all__ = [
    "HTTP_1_1_REQUIRED",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "REFUSED_STREAM",
    "Fault",
    "H2Server",
    "Served",
]

# error codes of RST_STREAM and GOAWAY
NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
HTTP_1_1_REQUIRED = int(h2.errors.ErrorCodes.HTTP_1_1_REQUIRED)
CHUNK = 8 * 1024


@dataclass(frozen=True)
class Fault:
    """What a path's first ``times`` requests get (None: all of them)."""

    rst: int | None = None  # RST_STREAM with this error code
    rst_after: int | None = None  # ... after the head and this many body bytes (None: no head)
    status: int | None = None  # an error status with a short body
    retry_after: int | None = None  # with ``status``: a Retry-After of so many seconds
    short: int | None = None  # the full Content-Length, only this many bytes, then the end
    stall: float = 0.0  # seconds of silence after the head and ``stall_after`` bytes
    stall_after: int = 0  # (-1: before the head)
    drip: float = 0.0  # seconds between the body's 512-byte pieces
    early: bool = False  # a 103 (Early Hints) head before the answer's (HTTP/2 only)
    trailers: bool = False  # the body ends with trailer fields (HTTP/2 only)
    times: int | None = None


class Served(NamedTuple):
    """One request: on which connection, how, and what it got."""

    conn: int
    protocol: str  # "h2" or "http/1.1"
    stream: int  # 0 over HTTP/1.1
    path: str
    range: str | None
    outcome: str  # "200", "206", "404", "503", ... "rst", "refused", "unanswered", "dropped"


@dataclass
class _File:
    data: bytes
    fault: Fault | None
    etag: str = field(init=False)

    def __post_init__(self) -> None:
        self.etag = '"' + hashlib.sha1(self.data).hexdigest()[:16] + '"'


class H2Server:
    """``start()`` binds a free port on 127.0.0.1 (or ``host``: ``::1`` for IPv6);
    ``stop()`` ends every connection."""

    def __init__(
        self,
        tls: TLSFiles,
        *,
        max_streams: int | None = None,
        goaway_after: int | None = None,
        goaway_code: int = 0,
        goaway_cut: bool = False,
        drop_after: int | None = None,
        freeze_after: int | None = None,
        broken: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.max_streams = max_streams
        self.goaway_after = goaway_after
        self.goaway_code = goaway_code
        self.goaway_cut = goaway_cut
        self.drop_after = drop_after
        self.freeze_after = freeze_after
        self.broken = broken
        self.requests: list[Served] = []
        self.connections = 0
        self.froze = False  # a connection went silent (freeze_after)
        self.cut = False  # a connection was closed after its GOAWAY (goaway_cut)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(tls.cert_path, tls.key_path)
        self._ctx.set_alpn_protocols(["h2", "http/1.1"])
        self._files: dict[str, _File] = {}
        self._counts: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- the test's side --

    def start(self) -> H2Server:
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._serve, self.host, 0, ssl=self._ctx)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def down() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self._call(down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> H2Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, path: str, data: bytes, fault: Fault | None = None) -> str:
        """Serve ``data`` at ``path`` (faulty as ``fault`` says); its URL."""
        self._files[path] = _File(data, fault)
        return self.url(path)

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{path}"

    def served(self, path: str) -> list[Served]:
        return [r for r in self.requests if r.path == path]

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- serving --

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.connections += 1
        conn = self.connections
        tls = writer.get_extra_info("ssl_object")
        try:
            h2 = tls is not None and tls.selected_alpn_protocol() == "h2"
            if h2 and self.broken is not None:
                await self._broken(conn, writer)
            elif h2:
                await _H2Conn(self, conn, reader, writer).run()
            else:
                await self._h1(conn, reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # (cancelled: the server stops; asyncio's stream callback frowns on that)
        finally:
            writer.transport.abort()

    async def _broken(self, conn: int, writer: asyncio.StreamWriter) -> None:
        """An HTTP/2 connection failed at once (``broken``), no request answered."""
        self.requests.append(Served(conn, "h2", 0, "", None, f"broken {self.broken}"))
        if self.broken == "preface":
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        else:
            config = h2.config.H2Configuration(client_side=False)
            h2c = h2.connection.H2Connection(config)
            h2c.initiate_connection()
            writer.write(h2c.data_to_send())
            writer.write(GoAwayFrame(0, last_stream_id=0, error_code=NO_ERROR).serialize())
        await writer.drain()

    def _answer(
        self, path: str, rng: str | None
    ) -> tuple[Fault | None, int, list[tuple[str, str]], bytes]:
        """What a request for ``path`` gets: its fault, status, headers and body."""
        self._counts[path] = n = self._counts.get(path, 0) + 1
        file = self._files.get(path)
        if file is None:
            return None, 404, [("content-length", "10")], b"not found\n"
        fault = file.fault
        if fault is not None and fault.times is not None and n > fault.times:
            fault = None
        if fault is not None and fault.status is not None:
            headers = [("content-length", "6")]
            if fault.retry_after is not None:
                headers.append(("retry-after", str(fault.retry_after)))
            return fault, fault.status, headers, b"error\n"
        data, size = file.data, len(file.data)
        headers = [("accept-ranges", "bytes"), ("etag", file.etag)]
        status, body = 200, data
        if rng and rng.startswith("bytes=") and "," not in rng:
            first, _, last = rng[6:].partition("-")
            if first.isdigit() and int(first) < size:
                end = min(int(last), size - 1) if last.isdigit() else size - 1
                status, body = 206, data[int(first) : end + 1]
                headers.append(("content-range", f"bytes {first}-{end}/{size}"))
        headers.append(("content-length", str(len(body))))
        return fault, status, headers, body

    async def _h1(
        self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            pairs = (ln.partition(":") for ln in lines[1:] if ln)
            rng = {k.strip().lower(): v.strip() for k, _, v in pairs}.get("range")
            fault, status, headers, body = self._answer(path, rng)
            self.requests.append(Served(conn, "http/1.1", 0, path, rng, _outcome(fault, status)))
            if fault is not None and fault.rst is not None and fault.rst_after is None:
                return
            stall = 0.0 if fault is None else fault.stall
            at = 0 if fault is None else max(0, fault.stall_after)
            if stall and fault is not None and fault.stall_after < 0:
                await asyncio.sleep(stall)  # (no head either)
                stall = 0.0
            out = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            writer.write(out.encode() + b"\r\n")
            cut = _cut(fault, len(body))
            if stall:
                writer.write(body[:at])
                await writer.drain()
                await asyncio.sleep(stall)
            if fault is not None and fault.drip:
                for piece in range(at if stall else 0, cut, 512):
                    await writer.drain()
                    await asyncio.sleep(fault.drip)
                    writer.write(body[piece : min(cut, piece + 512)])
            else:
                writer.write(body[at if stall else 0 : cut])
            await writer.drain()
            if cut < len(body):
                return


def _outcome(fault: Fault | None, status: int) -> str:
    """What the log says a request got."""
    if fault is not None and fault.rst is not None:
        return "rst"
    if fault is not None and fault.short is not None:
        return "short"
    if fault is not None and fault.stall:
        return "stall"
    return str(status)


def _cut(fault: Fault | None, size: int) -> int:
    """How much of a body of ``size`` bytes is sent."""
    if fault is None:
        return size
    if fault.rst is not None and fault.rst_after is not None:
        return min(size, fault.rst_after)
    if fault.short is not None:
        return min(size, fault.short)
    return size


class _H2Conn:
    """One HTTP/2 connection: frames in, a task per stream, frames out."""

    def __init__(
        self, server: H2Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server, self.n, self.reader, self.writer = server, n, reader, writer
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config)
        self.window = asyncio.Event()
        self.streams: dict[int, asyncio.Task[None]] = {}
        self.taken = 0  # requests received on this connection
        self.last: int | None = None  # the last stream taken once a GOAWAY went out
        self.closing = asyncio.Event()
        self.frozen = False  # nothing more is sent (the connection is alive but silent)

    async def run(self) -> None:
        h2c, limit = self.h2, self.server.max_streams
        if limit is not None:  # advertised, but enforced here (h2 would end the connection)
            codes = h2.settings.SettingCodes
            h2c.local_settings = h2.settings.Settings(
                client=False, initial_values={codes.MAX_CONCURRENT_STREAMS: limit}
            )
        h2c.initiate_connection()
        if limit is not None:
            h2c.local_settings = h2.settings.Settings(client=False)
        self.flush()
        reading = asyncio.ensure_future(self.reader.read(65536))
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            while True:
                await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
                if closing.done():
                    return
                data = reading.result()
                if not data:
                    return
                for event in h2c.receive_data(data):
                    self.on_event(event)
                self.flush()
                reading = asyncio.ensure_future(self.reader.read(65536))
        finally:
            reading.cancel()
            closing.cancel()
            for task in self.streams.values():
                task.cancel()

    def flush(self) -> None:
        out = self.h2.data_to_send()
        if out and not self.frozen:
            self.writer.write(out)

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.on_request(event)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.set()
        elif isinstance(event, h2.events.StreamReset):
            task = self.streams.pop(event.stream_id, None)
            if task is not None:
                task.cancel()

    def on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        fields = {str(k): str(v) for k, v in event.headers or ()}
        path, rng = fields.get(":path", "/"), fields.get("range")
        log = self.server.requests
        if self.last is not None and sid > self.last:  # after our GOAWAY: never answered
            log.append(Served(self.n, "h2", sid, path, rng, "unanswered"))
            return
        limit = self.server.max_streams
        if limit is not None and len(self.streams) >= limit:
            log.append(Served(self.n, "h2", sid, path, rng, "refused"))
            self.h2.reset_stream(sid, REFUSED_STREAM)
            return
        self.taken += 1
        srv = self.server
        if self.frozen or (srv.freeze_after == self.taken and not srv.froze):
            self.flush()
            self.frozen = srv.froze = True
            log.append(Served(self.n, "h2", sid, path, rng, "frozen"))
            return
        if srv.drop_after is not None and self.taken == srv.drop_after:
            log.append(Served(self.n, "h2", sid, path, rng, "dropped"))
            self.stream(sid, self.drop(sid, path, rng))
            return
        if srv.goaway_after == self.taken and not (srv.goaway_cut and srv.cut):
            self.last = sid
            self.flush()
            goaway = GoAwayFrame(0, last_stream_id=sid, error_code=srv.goaway_code)
            self.writer.write(goaway.serialize())
            if srv.goaway_cut:  # and closed at once, the streams it kept unanswered
                srv.cut = True
                log.append(Served(self.n, "h2", sid, path, rng, "unanswered"))
                self.closing.set()
                return
        self.stream(sid, self.answer(sid, path, rng))

    def stream(self, sid: int, coro: Coroutine[Any, Any, None]) -> None:
        task = self.server._spawn(coro)
        self.streams[sid] = task
        task.add_done_callback(lambda _: self.done(sid, task))

    def done(self, sid: int, task: asyncio.Task[None]) -> None:
        if self.streams.get(sid) is task:
            del self.streams[sid]
        if self.last is not None and not any(s <= self.last for s in self.streams):
            self.closing.set()  # every stream the GOAWAY kept is answered

    async def drop(self, sid: int, path: str, rng: str | None) -> None:
        _, status, headers, body = self.server._answer(path, rng)
        self.h2.send_headers(sid, [(":status", str(status)), *headers])
        await self.send(sid, body[: len(body) // 2], end=False)
        await self.writer.drain()
        self.closing.set()

    async def answer(self, sid: int, path: str, rng: str | None) -> None:
        fault, status, headers, body = self.server._answer(path, rng)
        self.server.requests.append(Served(self.n, "h2", sid, path, rng, _outcome(fault, status)))
        try:
            if fault is not None and fault.rst is not None and fault.rst_after is None:
                self.h2.reset_stream(sid, fault.rst)
                self.flush()
                return
            if fault is not None and fault.stall and fault.stall_after < 0:
                await asyncio.sleep(fault.stall)  # (no head either)
            if fault is not None and fault.early:
                self.h2.send_headers(sid, [(":status", "103"), ("link", "</x.css>; rel=preload")])
            self.h2.send_headers(sid, [(":status", str(status)), *headers])
            cut = _cut(fault, len(body))
            if fault is not None and fault.stall and fault.stall_after >= 0:
                await self.send(sid, body[: fault.stall_after], end=False)
                await asyncio.sleep(fault.stall)
                await self.send(sid, body[fault.stall_after : cut], end=True)
            elif fault is not None and fault.drip:
                for at in range(0, cut, 512):
                    await asyncio.sleep(fault.drip)
                    await self.send(sid, body[at : min(cut, at + 512)], end=at + 512 >= cut)
            elif fault is not None and fault.rst is not None:
                await self.send(sid, body[:cut], end=False)
                self.h2.reset_stream(sid, fault.rst)
                self.flush()
            elif fault is not None and fault.trailers:
                await self.send(sid, body[:cut], end=False)
                self.h2.send_headers(sid, [("x-checksum", "trailer")], end_stream=True)
                self.flush()
            else:
                await self.send(sid, body[:cut], end=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass  # the client reset it

    async def send(self, sid: int, data: bytes, *, end: bool) -> None:
        h2c = self.h2
        while data:
            window = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size, CHUNK)
            if window <= 0:
                self.window.clear()
                self.flush()
                await self.window.wait()
                continue
            h2c.send_data(sid, data[:window])
            data = data[window:]
            self.flush()
            await self.writer.drain()
        if end:
            h2c.end_stream(sid)
        self.flush()

