"""The fuzz tests' side of a pipelined connection (test_h1_fuzz.py): a reference reading
of a byte stream of answers (what each request should get, by RFC 9112 and this
project's rules), and a driver that feeds the same bytes to one real
:class:`~omniget.engine.transports.h1conn.Conn` through a fake transport, in given reads.

The reference is written apart from the connection's code: where the two disagree on
what a request's body is, one of them is wrong.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from omniget.engine.transports import h1conn, h1queue
from omniget.engine.transports.base import Headers
from omniget.engine.transports.pipeline import PipelinePool

BLANK = b" \t\n\r\x0b\x0c"
HEX = frozenset(b"0123456789abcdefABCDEF")
_STATUS = re.compile(rb"HTTP/1\.([01])[ \t]([0-9]{3})(?:[ \t\r\x0b\x0c].*)?", re.S)
#: Header lines of one answer's heads (libcurl's most fields is 5000).
MAX_FIELDS = 5000
#: Fields that frame or code a body: one with a blank before its colon is refused.
FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"content-encoding"}

# ----- the reference ------------------------------------------------------------------


@dataclass
class Want:
    """What one request should get. ``kind``: ``ok`` (the whole answer: ``status`` and
    ``body``), ``bad`` (a head, then broken framing: at most ``body``, the bytes before
    the fault), ``none`` (no usable head: no byte at all), ``open`` (a head, and the body
    still coming when the bytes end on a live connection: at most ``body``) or ``skip``
    (a coded body, not judged here)."""

    kind: str
    status: int = 0
    body: bytes = b""


def _head(block: bytes) -> tuple[str, int, dict[str, Any]]:
    """("final" | "interim" | "none", status, framing) of a head (ending with CRLF)."""
    crlf = block.count(b"\r\n")
    if block.count(b"\n") != crlf:
        return "none", 0, {}  # a bare LF: LF-framed to some readers (curl's)
    if block.count(b"\r") != crlf or b"\0" in block:
        return "none", 0, {}  # a lone CR or a NUL anywhere: curl refuses the answer
    first, _, rest = block.partition(b"\r\n")
    # every header line has a colon but a folded one (a blank first) that is not the
    # head's first header line (curl: "Header without colon"), interim heads' too
    for i, line in enumerate(rest.split(b"\r\n")[:-1]):
        if b":" not in line and (i == 0 or line[:1] not in (b" ", b"\t")):
            return "none", 0, {}
    # HTTP/1.0 or 1.1, one blank (curl), a three-digit code from 100, then a blank or
    # nothing (curl takes "200OK" as 200: refusing it only sends the request to curl)
    start = _STATUS.fullmatch(first)
    if start is None or int(start[2]) < 100:
        return "none", 0, {}
    status = int(start[2])
    if 100 <= status < 200:
        return ("none", 0, {}) if status == 101 else ("interim", status, {})
    lengths: set[int] = set()
    codings: list[bytes] = []
    coded = False
    for line in rest.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):  # obsolete folding: framing is read from the
            continue  # first line alone (as libcurl reads it)
        name, colon, value = line.partition(b":")
        low = name.rstrip(BLANK).lower()
        value = value.strip(BLANK)
        if low in FRAMING and (len(low) != len(name) or not colon):
            return "none", 0, {}  # (a field curl ignores or refuses: framed otherwise)
        if low == b"content-length":
            if not value.isdigit() or len(value.lstrip(b"0")) > 18:
                return "none", 0, {}
            lengths.add(int(value))
        elif low == b"transfer-encoding":
            codings.append(value.lower())
        elif low == b"content-encoding":
            coded = True
    if len(lengths) > 1 or any(c != b"chunked" for c in codings):
        return "none", 0, {}
    # RFC 9112 6.1 and 6.3: faulty framing; read as chunked, then nothing more
    last = bool(codings) and (bool(lengths) or start[1] != b"1")
    framing: dict[str, Any] = {"coded": coded, "last": last}
    if status in (204, 304):
        framing["length"] = 0
    elif codings:
        framing["chunked"] = True
    elif lengths:
        framing["length"] = lengths.pop()
    return "final", status, framing


def _chunked(data: bytes, pos: int, end: str, most: int) -> tuple[str, bytes, int]:
    """(kind, body, position after it) of a chunked body starting at ``pos``; its lines
    are at most ``most`` bytes."""
    body = b""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol - pos > most:
            return "bad", body, pos
        if eol < 0:
            return ("open" if end == "open" else "bad"), body, len(data)
        size = data[pos:eol].split(b";", 1)[0].strip(BLANK)
        if not size or len(size) > 16 or not HEX.issuperset(size):
            return "bad", body, eol
        n = int(size, 16)
        pos = eol + 2
        if n == 0:
            break
        chunk = data[pos : pos + n]
        body += chunk
        if len(chunk) < n:
            return ("open" if end == "open" else "bad"), body, len(data)
        pos += n
        eol = data.find(b"\r\n", pos)  # (judged once a line end comes, as a line)
        if eol != pos:
            if eol < 0 and end == "open" and len(data) - pos <= most + 1:
                return "open", body, len(data)
            return "bad", body, pos
        pos += 2
    while True:  # trailer lines, up to an empty one
        eol = data.find(b"\r\n", pos)
        if eol - pos > most:
            return "bad", body, pos
        if eol < 0:
            return ("open" if end == "open" else "bad"), body, len(data)
        line, pos = data[pos:eol], eol + 2
        if not line:
            return "ok", body, pos
        if b":" not in line or any(c in line for c in b"\0\r\n"):
            return "bad", body, pos  # (curl refuses the answer, or splits the line at LF)


def reference(
    data: bytes, requests: int, end: str, most: int = h1conn.MAX_HEAD
) -> list[Want]:
    """What each of ``requests`` pipelined requests should get from ``data``, the bytes
    the connection brought before it ended (``end``: ``eof``, ``reset``, ``close``, the
    pool closed, or ``open``); a head (or a chunk's line) is at most ``most`` bytes."""
    out: list[Want] = []
    pos = 0
    size = lines = 0  # of the heads of the answer being read (its interim ones too)
    while len(out) < requests:
        eoh = data.find(b"\r\n\r\n", pos)
        if eoh < 0 or eoh - pos > most:
            break
        block = data[pos : eoh + 2]
        size += eoh - pos
        lines += block.count(b"\r\n") - 1
        if size > most or lines > MAX_FIELDS:
            break
        what, status, framing = _head(block)
        pos = eoh + 4
        if what == "interim":
            continue
        size = lines = 0
        if what == "none":
            break
        if framing["coded"]:
            return out + [Want("skip")] * (requests - len(out))
        if "length" in framing:
            n = framing["length"]
            body = data[pos : pos + n]
            pos += n
            if len(body) == n:
                out.append(Want("ok", status, body))
                continue
            out.append(Want("open" if end == "open" else "bad", status, body))
            break
        if framing.get("chunked"):
            kind, body, pos = _chunked(data, pos, end, most)
            out.append(Want(kind, status, body))
            if kind != "ok" or framing["last"]:
                break
            continue
        kind = {"eof": "ok", "reset": "bad", "close": "bad", "open": "open"}[end]
        out.append(Want(kind, status, data[pos:]))
        break
    return out + [Want("none")] * (requests - len(out))


# ----- the connection under test ---------------------------------------------------------

#: Code of a request its requester cancelled.
CANCELLED = -100


@dataclass
class Stop:
    """A requester that ends its answer (``end``: its write returns 0) or cancels it
    (``cancel``) once it holds ``at`` bytes (0: cancelled before any byte came)."""

    how: str
    at: int


class FuzzHop:
    """A requester that records what it is handed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: Stop | None) -> None:
        self.head_block: bytes | None = None
        self.parsed: tuple[int, Headers] | None = None
        self.fut: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.views = True
        self.url = "http://127.0.0.1/"
        self.body = bytearray()
        self.finishes: list[tuple[int, str]] = []
        self.late = 0  # bytes handed over after it finished
        self.stop = stop

    def on_write(self, data: bytes | memoryview) -> int | None:
        if self.fut.done():
            self.late += len(data)
        self.body += data
        if self.stop is not None and len(self.body) >= self.stop.at:
            if self.stop.how == "end":
                return 0
            self.fut.cancel()
        return None

    def pipe_room(self) -> int:
        return 0

    def on_pipe(self, pipe: int, count: int) -> int | None:
        raise AssertionError("no pipes here")

    def finish(self, code: int, message: str) -> None:
        self.finishes.append((code, message))
        if not self.fut.done():
            self.fut.set_result((code, message))

    @property
    def code(self) -> int | None:
        if not self.fut.done():
            return None
        return CANCELLED if self.fut.cancelled() else self.fut.result()[0]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.ended = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def abort(self) -> None:
        self.ended = True

    def close(self) -> None:
        self.ended = True

    def is_closing(self) -> bool:
        return self.ended

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class QuietPool(PipelinePool):
    """A pool that sends nothing on its own: requests put back stay in the origin's queue
    (where the test looks for them) instead of going out on a new connection."""

    def _pump(self, o: h1queue.Origin) -> None:
        pass


@dataclass
class Got:
    """What one request got from the connection: ``code`` None if it was put back to be
    sent again (``waiting``) or is still in flight."""

    code: int | None
    status: int | None
    body: bytes
    head: bytes | None  # the head it was handed
    waiting: bool
    finishes: int
    late: int


@dataclass
class Run:
    """How the bytes come: reads ending at ``cuts``, then the connection's ``end``
    (``eof``, ``reset``, ``open`` or ``close``: the pool is closed); ``stops`` for some
    requesters; ``large``: the origin is sent one request at a time, heads read in
    small blocks (as for large answers on a socket that may splice); ``max_head`` for
    h1conn.MAX_HEAD."""

    cuts: list[int] = field(default_factory=list)
    end: str = "eof"
    stops: dict[int, Stop] = field(default_factory=dict)
    large: bool = False
    max_head: int = h1conn.MAX_HEAD
    #: filled in: the most bytes the connection kept between two reads, and its
    #: read buffer's size at the end
    kept: int = 0
    buffer: int = 0


def drive(data: bytes, requests: int, run: Run) -> list[Got]:
    """Send ``requests`` requests on a fresh connection and feed it ``data`` as ``run``
    says: what each request got. Nothing may reach the loop's exception handler."""
    loop = asyncio.new_event_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    saved = h1conn.MAX_HEAD
    h1conn.MAX_HEAD = run.max_head
    try:
        out = _drive(loop, data, requests, run)
        loop.run_until_complete(asyncio.sleep(0))  # (callbacks the futures queued)
    finally:
        h1conn.MAX_HEAD = saved
        loop.close()
    assert not seen, seen
    return out


def _drive(loop: asyncio.AbstractEventLoop, data: bytes, requests: int, run: Run) -> list[Got]:
    pool = QuietPool(loop, max_conns=1, connect_timeout=1, stall_timeout=0)
    key = "fuzz:80"
    pool.confirm(key)
    if run.large:
        pool.one_by_one(key)
    origin = h1queue.Origin(key, (("127.0.0.1",), 80))
    pool._origins[key] = origin
    conn = h1conn.Conn(pool, origin)
    origin.conns.append(conn)
    hops = [FuzzHop(loop, run.stops.get(i)) for i in range(requests)]
    for i, hop in enumerate(hops):
        conn.send(h1queue.Pending(hop, b"GET /%d HTTP/1.1\r\n\r\n" % i))
        if hop.stop is not None and hop.stop.how == "cancel" and hop.stop.at == 0:
            hop.fut.cancel()
    transport = FakeTransport()
    conn.connection_made(transport)
    if run.large:
        conn.sock = 1 << 20  # (never used: no requester here takes pipes)
    pos = 0
    for cut in [*sorted({min(max(c, 0), len(data)) for c in run.cuts}), len(data)]:
        while pos < cut and not transport.ended:
            buf = conn.get_buffer(-1)
            n = min(len(buf), cut - pos)
            assert n > 0, "the connection offered no room to read into"
            buf[:n] = data[pos : pos + n]
            pos += n
            conn.buffer_updated(n)
            run.kept = max(run.kept, conn.have)
            loop.call_soon(loop.stop)  # (what is due runs, as between two reads)
            loop.run_forever()
    run.buffer = len(conn.rbuf)
    if transport.ended:
        conn.connection_lost(None)  # (asyncio calls it once the transport is gone)
    elif run.end == "eof":
        conn.eof_received()
        conn.connection_lost(None)
    elif run.end == "reset":
        conn.connection_lost(ConnectionResetError())
    elif run.end == "close":  # the run ends: the transport's pool is closed
        pool.close()
        conn.connection_lost(None)
    if run.end != "open" or transport.ended:
        assert not conn.queue and conn.done, "the connection ended with requests in flight"
    waiting = {id(p.hop) for p in origin.waiting}
    return [
        Got(hop.code, hop.parsed[0] if hop.parsed is not None else None, bytes(hop.body),
            hop.head_block, id(hop) in waiting, len(hop.finishes), hop.late)
        for hop in hops
    ]  # fmt: skip
