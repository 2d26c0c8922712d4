"""What the test HTTP server answers: resources, Range logic and query-driven faults.

The vocabulary is documented in :mod:`tests.servers.httpd`. This module decides the reply
(status, headers, body, and how to misbehave while sending it); ``httpd`` puts it on the wire.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast
from urllib.parse import quote, urlencode

from .wire import LoggedRequest, http_date

__all__ = [
    "FileBody", "Handler", "Hold", "Reply", "Resource", "build_reply", "phrase", "text_reply",
]

#: A dynamic route: request -> (status, headers, body).
Handler = Callable[
    [LoggedRequest], tuple[int, Mapping[str, str] | Sequence[tuple[str, str]], bytes]
]

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Something went wrong</title></head>\n"
    b"<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>\n"
)


@dataclass(frozen=True)
class Resource:
    """A served file: bytes in memory or a path on disk, with its validators."""

    size: int
    etag: str
    last_modified: str
    mtime: float
    content_type: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()
    data: bytes | None = None
    file: Path | None = None
    _cache: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.file is not None
        return self.file.read_bytes()

    def variant(self, version: int) -> bytes:
        """The bytes served as version ``version`` under ``etag_change`` (0 = the original)."""
        if version == 0:
            return self.read()
        shift = (version - 1) % 255 + 1
        table = bytes((i + shift) % 256 for i in range(256))
        return self.read().translate(table)

    def cached(self, key: object, make: Callable[[], object]) -> object:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


@dataclass(frozen=True)
class FileBody:
    """``length`` bytes of ``path`` from ``start`` (streamed, sendfile when possible)."""

    path: Path
    start: int
    length: int


@dataclass(eq=False)
class Hold:
    """A ``hold=NAME`` point: answers wait there until the test lets them go."""

    reached: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)


@dataclass
class Reply:
    """A response and the way to (mis)send it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | memoryview | FileBody = b""
    head_only: bool = False  # HEAD: the GET headers, no body
    chunked: bool = False
    close: bool = False  # close the connection after this answer
    cut: int | None = None  # send only this many body bytes, then end the connection
    reset: bool = False  # end a cut answer with RST instead of FIN
    drip: float | None = None  # body bytes per second
    drip_after: int = 0  # body bytes sent at once before the drip
    stall: float = 0.0  # seconds of silence after ``stall_after`` body bytes
    stall_after: int = 0
    delay: float = 0.0  # seconds before the status line
    hold: Hold | None = None  # wait for it after ``stall_after`` body bytes

    @property
    def body_length(self) -> int:
        return self.body.length if isinstance(self.body, FileBody) else len(self.body)


class Catalog(Protocol):
    """What ``build_reply`` needs from the server."""

    def lookup(self, path: str) -> Resource | None: ...

    def handler(self, path: str) -> Handler | None: ...

    def hit(self, key: str) -> int: ...

    def hold(self, name: str) -> Hold: ...


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def text_reply(status: int, message: str, extra: Sequence[tuple[str, str]] = ()) -> Reply:
    body = f"{status} {phrase(status)}: {message}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return Reply(status, [*headers, *extra], body)


def _int(q: Mapping[str, str], name: str) -> int | None:
    if name not in q:
        return None
    try:
        return int(q[name])
    except ValueError:
        raise ValueError(f"{name}={q[name]!r} is not an integer") from None


def _float(q: Mapping[str, str], name: str) -> float:
    try:
        return float(q.get(name) or 0)
    except ValueError:
        raise ValueError(f"{name}={q[name]!r} is not a number") from None


def _flag(q: Mapping[str, str], name: str) -> bool:
    return q.get(name, "0") not in ("", "0", "no", "false")


def _times(q: Mapping[str, str]) -> int | None:
    value = q.get("times", "always")
    return None if value == "always" else int(value)


def _retry_after(value: str) -> str:
    if value.startswith("date:"):
        return http_date(time.time() + float(value[5:]))
    return value


def _sha(data: bytes, algo: str) -> str:
    return base64.b64encode(hashlib.new(algo, data).digest()).decode()


_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.I)
UNSATISFIABLE = (-1, -1)


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)``, ``UNSATISFIABLE``, or None (ignore: bad or multiple ranges)."""
    m = _RANGE.fullmatch(value)
    if not m or not (m.group(1) or m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else size - 1
        if m.group(2) and last < start:
            return None
        if start >= size:
            return UNSATISFIABLE
        return start, min(last, size - 1) + 1
    n = int(m.group(2))
    if n == 0 or size == 0:
        return UNSATISFIABLE
    return max(0, size - n), size


def if_range_matches(value: str, etag: str, last_modified: str) -> bool:
    """If-Range: a strong ETag compared exactly, or a date equal to Last-Modified."""
    value = value.strip()
    if value.startswith(("W/", '"')):
        return not value.startswith("W/") and value == etag
    return value == last_modified


def _version_etag(etag: str, version: int) -> str:
    return etag if version == 0 else f'{etag[:-1]}-v{version}"'


def _disposition(q: Mapping[str, str]) -> str | None:
    if "cdraw" in q:
        return q["cdraw"]
    parts = ["attachment"]
    if "cd" in q:
        parts.append(f'filename="{q["cd"]}"')
    if "cdstar" in q:
        parts.append(f"filename*=UTF-8''{quote(q['cdstar'], safe='')}")
    return "; ".join(parts) if len(parts) > 1 else None


def _fault_reply(req: LoggedRequest, q: Mapping[str, str]) -> Reply | None:
    """Redirects, loops, error statuses and HTML pages (only while the fault is active)."""
    if "loop" in q:
        if q["loop"] == "hop":
            hop = int(q.get("hop", "0")) + 1
            location = f"{req.target.partition('?')[0]}?{urlencode({**q, 'hop': str(hop)})}"
        else:
            location = req.target
        status = _int(q, "redirect_status") or 302
        return text_reply(status, "loop", [("Location", location)])
    if "redirect" in q:
        status = _int(q, "redirect_status") or 302
        return text_reply(status, f"see {q['redirect']}", [("Location", q["redirect"])])
    code = _int(q, "status")
    html = q.get("body") == "html"
    if code is None or code == 200:
        if not html:
            return None
        code = 200
    status = code
    if status in (204, 304) or not 200 <= status <= 599:
        raise ValueError(f"status={status} is not supported")
    extra = [("Retry-After", _retry_after(q["retry_after"]))] if "retry_after" in q else []
    if html:
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(HTML_PAGE))),
        ]
        return Reply(status, [*headers, *extra], HTML_PAGE)
    return text_reply(status, "injected", extra)


def build_reply(req: LoggedRequest, cat: Catalog) -> Reply:
    """Decide the answer to ``req`` (see the vocabulary in ``tests.servers.httpd``)."""
    q = req.query
    n = cat.hit(f"k:{q['k']}" if "k" in q else f"t:{req.target}")
    times = _times(q)
    active = times is None or n <= times
    reply = _decide(req, cat, q, n, times, active)
    reply.head_only = req.method == "HEAD"
    if active:
        reply.delay = _float(q, "delay")
    return reply


def _decide(
    req: LoggedRequest,
    cat: Catalog,
    q: Mapping[str, str],
    n: int,
    times: int | None,
    active: bool,
) -> Reply:
    if "auth" in q:
        want = "Basic " + base64.b64encode(q["auth"].encode()).decode()
        if req.headers.get("authorization") != want:
            return text_reply(401, "login", [("WWW-Authenticate", 'Basic realm="omniget-test"')])
    if active and (fault := _fault_reply(req, q)) is not None:
        return fault
    handler = cat.handler(req.path)
    if handler is not None:
        status, headers, body = handler(req)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        return _transport(Reply(status, pairs, body), q, active, len(body), cat)
    res = cat.lookup(req.path)
    if res is None:
        return text_reply(404, f"no such file {req.path}")
    if req.method not in ("GET", "HEAD"):
        return text_reply(405, "only GET and HEAD", [("Allow", "GET, HEAD")])
    return _file_reply(req, res, q, n, times, active, cat)


def _file_reply(
    req: LoggedRequest,
    res: Resource,
    q: Mapping[str, str],
    n: int,
    times: int | None,
    active: bool,
    cat: Catalog,
) -> Reply:
    version = 0
    if _flag(q, "etag_change"):
        version = n - 1 if times is None else min(n - 1, times)
    etag = _version_etag(res.etag, version)
    last_modified = res.last_modified if version == 0 else http_date(res.mtime + version)
    zipped = _flag(q, "gzip")
    corrupt = active and _flag(q, "corrupt")
    digest = q.get("digest")
    data: bytes | None = res.data
    if version or zipped or corrupt or digest:
        data = res.variant(version)
    headers = [("Content-Type", res.content_type)]
    if zipped:
        assert data is not None
        raw = data
        data = cast(bytes, res.cached(("gz", version), lambda: gzip.compress(raw, 1, mtime=0)))
        etag = f'{etag[:-1]}-gzip"'
        headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    size = res.size if data is None else len(data)
    norange = _flag(q, "norange")
    if not norange and not zipped:
        headers.append(("Accept-Ranges", "bytes"))
    if _flag(q, "weaketag"):
        etag = f"W/{etag}"  # (no If-Range validator: Last-Modified is)
    if not _flag(q, "noetag"):
        headers.append(("ETag", etag))
    headers += [("Last-Modified", last_modified), *res.headers]
    if (cd := _disposition(q)) is not None:
        headers.append(("Content-Disposition", cd))

    status, start, end = 200, 0, size
    rng = req.headers.get("range")
    if_range = req.headers.get("if-range")
    use_range = bool(rng) and not norange and not zipped
    if use_range and if_range is not None and not if_range_matches(if_range, etag, last_modified):
        use_range = False
    if use_range and rng is not None and (span := parse_range(rng, size)) is not None:
        if span == UNSATISFIABLE:
            return text_reply(416, "range not satisfiable", [("Content-Range", f"bytes */{size}")])
        status, (start, end) = 206, span
        if active and _flag(q, "badrange"):
            shift = max(1, min(1024, size // 4))
            wrong = start - shift if start >= shift else start + shift
            if wrong >= size:
                wrong = (start + 1) % size
            start, end = wrong, min(size, wrong + (end - start))
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))

    if digest:
        assert data is not None
        whole = data if digest != "bad" else data + b"\0"
        key = (version, zipped, digest)
        sha256 = cast(str, res.cached(("sha256", *key), lambda: _sha(whole, "sha256")))
        if digest == "legacy":
            headers.append(("Digest", f"SHA-256={sha256}"))
        else:
            headers.append(("Repr-Digest", f"sha-256=:{sha256}:"))
            if status == 200:
                md5 = cast(str, res.cached(("md5", *key), lambda: _sha(whole, "md5")))
                headers.append(("Content-MD5", md5))

    body: bytes | memoryview | FileBody
    if data is None:
        assert res.file is not None
        body = FileBody(res.file, start, end - start)
    elif corrupt and end > start:
        flipped = bytearray(data[start:end])
        flipped[len(flipped) // 2] ^= 0xFF
        body = bytes(flipped)
    else:
        body = memoryview(data)[start:end]
    reply = Reply(status, headers, body)
    return _transport(reply, q, active, end - start, cat)


def _transport(
    reply: Reply, q: Mapping[str, str], active: bool, length: int, cat: Catalog
) -> Reply:
    """Framing (chunked, close-delimited) and sending faults (cut, reset, drip, stall)."""
    reply.headers = [(k, v) for k, v in reply.headers if k.lower() != "content-length"]
    if _flag(q, "chunked"):
        reply.chunked = True
        reply.headers.append(("Transfer-Encoding", "chunked"))
    elif _flag(q, "nolength"):
        reply.close = True
    else:
        reply.headers.append(("Content-Length", str(length)))
    if not active:
        return reply
    for name, reset in (("reset", True), ("truncate", False), ("chunked_truncate", False)):
        cut = _int(q, name)
        # (a chunked body cut at its length: every byte, but no terminating chunk)
        if cut is not None and (cut < length or (cut == length and reply.chunked)):
            reply.cut, reply.reset = cut, reset
    if "drip" in q:
        reply.drip = max(1.0, _float(q, "drip"))
        reply.drip_after = _int(q, "drip_after") or 0
    if "stall" in q or "hold" in q:
        reply.stall = _float(q, "stall")
        after = _int(q, "stall_after")
        reply.stall_after = min(length // 2, 16384) if after is None else min(after, length)
    if "hold" in q:
        reply.hold = cat.hold(q["hold"])
    return reply
