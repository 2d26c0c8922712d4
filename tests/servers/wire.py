"""HTTP/1.1 wire helpers for the test servers: request parsing and the request log entry."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["BadRequest", "CIHeaders", "LoggedRequest", "Reader", "http_date"]

MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    """The peer sent something that is not an HTTP/1.x request."""


def http_date(ts: float | None = None) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return email.utils.formatdate(time.time() if ts is None else ts, usegmt=True)


class CIHeaders(Mapping[str, str]):
    """Case-insensitive headers in arrival order; ``[name]`` gives the first value."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = list(pairs)

    def __getitem__(self, name: str) -> str:
        low = name.lower()
        for k, v in self._pairs:
            if k.lower() == low:
                return v
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._pairs:
            if k.lower() not in seen:
                seen.add(k.lower())
                yield k

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._pairs})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self._pairs)

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self._pairs if k.lower() == low]

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"CIHeaders({self._pairs!r})"


@dataclass
class LoggedRequest:
    """One request as the server saw it, plus what it answered.

    ``started`` / ``finished`` are ``time.monotonic()`` values (head read / answer sent);
    ``wall`` is ``time.time()`` at ``started``. ``sent`` counts body bytes written.
    """

    method: str
    target: str
    version: str
    headers: CIHeaders
    conn_id: int
    port: int
    started: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)
    body: bytes = b""
    status: int | None = None
    sent: int = 0
    finished: float | None = None
    local: str = ""  # the server's address that took the connection (127.0.0.1, ::1)
    peer: int = 0  # the client's port on that connection (a proxy's upstream socket's)
    path: str = field(init=False)
    raw_query: str = field(init=False)
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = unquote(parts.path) or "/"
        self.raw_query = parts.query
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def host(self) -> str | None:
        return self.headers.get("host")


class Reader:
    """Buffered reads of request heads and bodies from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> bytes | None:
        """The bytes up to and including the blank line; None on a clean EOF between requests."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("request head too large")
            if not self._fill():
                if self.buf.strip():
                    raise BadRequest("EOF inside a request head")
                return None

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise BadRequest("EOF inside a request body")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD or not self._fill():
                raise BadRequest("bad chunked body")
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.read_line().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.read_line():  # trailers
                    pass
                return bytes(out)
            out += self.read_exact(size)
            self.read_line()


def parse_head(raw: bytes) -> tuple[str, str, str, CIHeaders]:
    """``(method, target, version, headers)`` from a request head."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as e:  # pragma: no cover - latin-1 decodes everything
        raise BadRequest(str(e)) from e
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {lines[0]!r}")
    method, target, version = parts
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"bad header line {line!r}")
        pairs.append((name, value.strip()))
    if target.startswith(("http://", "https://")):  # absolute-form
        p = urlsplit(target)
        target = (p.path or "/") + (f"?{p.query}" if p.query else "")
    return method, target, version, CIHeaders(pairs)
