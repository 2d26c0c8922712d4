"""The one small protocol every transport implements (HTTP and a memory double now; FTP later).

A transport moves the bytes of one request into a :class:`Sink`:

1. it calls ``sink.on_head(head)`` once, when the final response head is known (after
   redirects); the sink may raise to refuse the response before any body byte is taken;
2. it calls ``sink.on_data(chunk)`` for each body chunk, in order; the sink may raise
   :class:`StopTransfer` to end the transfer early on purpose (the transfer then counts as
   done), or any other exception to abort it (that exception is re-raised by ``fetch``);
3. ``fetch`` returns the head when the body is complete.

The engine asks for a connection slot (a :class:`Gate`) before each request. A transport
that sets ``starts_on_grant = True`` also accepts ``fetch(request, sink, gate=gate)`` with a
gate not yet granted: it sets the request up at once and starts it from the grant itself
(see :func:`fetch_when_granted`); others are called only once the gate is granted.

Transports raise only :mod:`omniget.errors` types: foreign exceptions are mapped here at
the edge. Callbacks run on the event loop thread.
"""

from __future__ import annotations

import datetime
import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import field
from typing import Protocol, TypeVar, cast, overload
from urllib.parse import unquote, urlsplit

from ..._frozen import frozen_dataclass, plain_dataclass
from ...errors import (
    LONGEST_RETRY_AFTER,
    AuthRequired,
    RemoteError,
    RemoteNotFound,
    TransientError,
    UsageError,
)
from ...masks import mask_secrets
from ...model import ENGINE_HEADERS, ByteRange
from ..ratelimit import RateLimit

__all__ = [
    "ENGINE_HEADERS",
    "PROXY_LOGIN",
    "SECRET_HEADERS",
    "Gate",
    "Head",
    "Headers",
    "PipeSink",
    "Request",
    "Sink",
    "StopTransfer",
    "Transport",
    "check_status",
    "duration",
    "fetch_when_granted",
    "origin",
    "parse_retry_after",
    "proxy_login",
    "safe_url",
    "skip_prefix",
    "transport_for",
]

#: Headers that are secrets: never sent to another origin than the request's own, and
#: masked in what the CLI shows. A request's ``secret_headers`` add to them.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


class StopTransfer(Exception):
    """Raised by a sink to end a transfer early on purpose."""


class Headers(Mapping[str, str]):
    """Case-insensitive response headers; ``[]`` gives the last value, ``get_all`` every one."""

    __slots__ = ("_last", "_lows", "_pairs")

    def __init__(
        self,
        pairs: Iterable[tuple[str, str]] = (),
        lows: list[str] | None = None,
        last: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        """``lows``: the names of ``pairs`` in lower case, if the caller has them; a list
        ``pairs`` given with them is handed over (kept, not copied: once per answer), and
        so is ``last``, each lower-case name's last pair, if the caller built it as it went
        (a parser does: ~1.8 K instructions fewer per answer than building it again)."""
        self._pairs: list[tuple[str, str]]
        if lows is not None and isinstance(pairs, list):
            self._pairs, self._lows = pairs, lows
        else:
            self._pairs = list(pairs)
            self._lows = [k.lower() for k, _ in self._pairs] if lows is None else lows
            last = None
        if len(self._lows) != len(self._pairs):  # (told here: any keyword costs zip more)
            raise ValueError(f"{len(self._lows)} lower-case names for {len(self._pairs)} fields")
        # lower-case name -> its last (name, value): one dict built in C, no loop
        self._last: dict[str, tuple[str, str]] = (
            dict(zip(self._lows, self._pairs)) if last is None else last  # noqa: B905
        )

    def add(self, name: str, value: str) -> None:
        low = name.lower()
        self._pairs.append((name, value))
        self._lows.append(low)
        self._last[low] = (name, value)

    def pairs(self) -> list[tuple[str, str]]:
        """Every (name, value) as it came, in order."""
        return list(self._pairs)

    def __getitem__(self, name: str) -> str:
        return self._last[name.lower()][1]

    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        field = self._last.get(name.lower())
        return default if field is None else field[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._last

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def has_any(self, names: frozenset[str]) -> bool:
        """Whether any of ``names`` (lower-case) is here."""
        return not self._last.keys().isdisjoint(names)

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for (_, v), k in zip(self._pairs, self._lows, strict=True) if k == low]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


# (compiled by re on the first Content-Range, not at every start)
_CONTENT_RANGE = r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$"
_UNSATISFIED = r"\s*bytes\s+\*/(\d+)\s*$"  # (a 416's Content-Range)


@plain_dataclass
class Head:
    """A response head as the sink sees it. Sizes and range are read from the headers
    once, when it is made (treat it as read-only)."""

    status: int
    url: str  # the effective URL, after redirects
    headers: Headers = field(default_factory=Headers)
    #: True when the transport undid a Content-Encoding: the body is the identity bytes
    #: and Content-Length / Content-Range speak of the encoded bytes.
    decoded: bool = False
    #: The body's end is its own: a Content-Length, chunked framing, an HTTP/2 or /3
    #: stream end, or an encoded stream whose end is checked. False for an HTTP/1.x body
    #: that ends when the connection closes (a cut connection looks the same).
    framed: bool = True
    content_length: int | None = field(init=False, repr=False, compare=False)
    #: ``(start, end_exclusive, total_or_None)`` from Content-Range, or None.
    content_range: tuple[int, int, int | None] | None = field(
        init=False, repr=False, compare=False
    )
    #: The whole resource's size, if the head tells it.
    total_size: int | None = field(init=False, repr=False, compare=False)
    #: Its validators: the ETag and Last-Modified values, if any.
    etag: str | None = field(init=False, repr=False, compare=False)
    last_modified: str | None = field(init=False, repr=False, compare=False)
    #: The server takes byte ranges: a 206, or ``Accept-Ranges: bytes``.
    accepts_ranges: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        last = self.headers._last  # (lower-case names: no Headers.get call per name)
        field = last.get("content-length")
        v = None if field is None or "transfer-encoding" in last else field[1]
        # (with a Transfer-Encoding, the body's framing is its own: RFC 9112 6.3)
        self.content_length = int(v) if v is not None and v.strip().isdigit() else None
        field = last.get("content-range")
        m = re.match(_CONTENT_RANGE, field[1], re.I) if field is not None and field[1] else None
        cr = None
        if m:
            total = None if m.group(3) == "*" else int(m.group(3))
            lo, hi = int(m.group(1)), int(m.group(2))
            # (RFC 9110 14.4: invalid if last < first, or total <= last: no range at all)
            if lo <= hi and (total is None or hi < total):
                cr = lo, hi + 1, total
        self.content_range = cr
        size = None
        if self.decoded:
            pass
        elif self.status == 206:
            size = cr[2] if cr else None
        elif self.status == 200:
            size = self.content_length
        self.total_size = size
        # (read here, not by properties: each is asked once per file, and a property
        # call costs more than what it reads)
        field = last.get("etag")
        self.etag = None if field is None else field[1]
        field = last.get("last-modified")
        self.last_modified = None if field is None else field[1]
        field = last.get("accept-ranges")
        self.accepts_ranges = self.status == 206 or (
            field is not None and "bytes" in field[1].lower()
        )

    @property
    def unsatisfied_size(self) -> int | None:
        """The file's size a 416 gives (``Content-Range: bytes */N``), if it does."""
        field = self.headers._last.get("content-range")
        m = re.match(_UNSATISFIED, field[1], re.I) if field is not None else None
        return int(m.group(1)) if m else None


@frozen_dataclass
class Request:
    """One request. ``headers`` are sent to ``url``'s origin; on a redirect to another
    origin ``Authorization``, ``Cookie`` and every name in ``secret_headers`` are dropped."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    range: ByteRange | None = None
    method: str = "GET"
    body: bytes | None = None  # sent with POST/PUT; not re-sent after a 303
    #: Validator for If-Range (an ETag or an HTTP date): a changed resource answers 200.
    if_range: str | None = None
    secret_headers: tuple[str, ...] = ()
    #: Receive speed cap in bytes/s for this transfer (None: no cap).
    max_speed: int | None = None
    #: A budget shared with other transfers (``--limit-rate``); None: none.
    rate: RateLimit | None = None


class Sink(Protocol):
    def on_head(self, head: Head) -> None: ...

    def on_data(self, data: bytes) -> None: ...


class PipeSink(Sink, Protocol):
    """A sink that can also take body bytes waiting in a pipe (moved there by ``splice``)."""

    def pipe_room(self) -> int: ...

    def on_pipe(self, pipe: int, count: int) -> None: ...


class Transport(Protocol):
    """Moves one request's bytes into a sink. ``schemes`` lists the URL schemes it serves."""

    @property
    def schemes(self) -> tuple[str, ...]: ...

    async def fetch(self, request: Request, sink: Sink) -> Head: ...

    async def aclose(self) -> None: ...


class Gate(Protocol):
    """Permission to open one connection (the engine's :class:`~..scheduler.Ticket`)."""

    @property
    def granted(self) -> bool: ...

    def on_grant(self, callback: Callable[[], None]) -> None: ...

    async def wait(self) -> None: ...


def fetch_when_granted(
    transport: Transport, request: Request, sink: Sink, gate: Gate
) -> Awaitable[Head]:
    """``transport.fetch`` once ``gate`` is granted; a transport that can start on the
    grant itself gets the request now, so no event-loop round trip sits between a slot
    freeing up and the next request leaving. Await what it returns: the transport's own
    fetch as a rule (no coroutine of its own around it, once per request)."""
    if gate.granted:
        return transport.fetch(request, sink)
    if getattr(transport, "starts_on_grant", False):
        fetch: Callable[..., Awaitable[Head]] = transport.fetch
        return fetch(request, sink, gate=gate)
    return _fetch_once_granted(transport, request, sink, gate)


async def _fetch_once_granted(
    transport: Transport, request: Request, sink: Sink, gate: Gate
) -> Head:
    await gate.wait()
    return await transport.fetch(request, sink)


def transport_for(transports: Mapping[str, Transport], url: str) -> Transport:
    """The transport serving ``url``'s scheme; :class:`RemoteError` if none does."""
    scheme = url.partition(":")[0].lower()
    transport = transports.get(scheme)
    if transport is None:
        raise RemoteError(f"unsupported URL scheme {scheme!r} in {_safe(url)}")
    return transport


_B = TypeVar("_B", bound=bytes | memoryview)


def skip_prefix(data: _B, skip: int) -> tuple[_B, int]:
    """Drop up to ``skip`` leading bytes (a body that restarts at 0 when we needed more):
    returns what is left of ``data`` and of ``skip``."""
    if len(data) <= skip:
        return cast(_B, data[:0]), skip - len(data)
    return cast(_B, data[skip:]), 0


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with default ports filled in: two URLs share credentials
    only when these are equal."""
    p = urlsplit(url)
    scheme = p.scheme.lower()
    port = p.port or {"http": 80, "https": 443, "ftp": 21}.get(scheme)
    return scheme, (p.hostname or "").lower(), port


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # (a head is read as Latin-1: "\xb2" is a digit)
        return min(float(value), LONGEST_RETRY_AFTER)
    when = http_date(value)
    if when is None:
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when - now), LONGEST_RETRY_AFTER)


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}


@functools.lru_cache(maxsize=64)
def http_date(value: str) -> float | None:
    """An HTTP-date (Last-Modified, Retry-After) as a POSIX timestamp, or None. Takes the
    three forms RFC 9110 asks recipients to accept: ``Sun, 06 Nov 1994 08:49:37 GMT``,
    ``Sunday, 06-Nov-94 08:49:37 GMT`` and asctime's ``Sun Nov  6 08:49:37 1994``.
    (Parsed here: ``email.utils`` costs a few ms of start-up.)"""
    words = value.replace(",", " ").replace("-", " ").split()
    try:
        if len(words) == 6 and words[5].upper() in ("GMT", "UTC", "+0000"):
            _, day, month, year, clock, _ = words  # IMF-fixdate, RFC 850
        elif len(words) == 5:
            _, month, day, clock, year = words  # asctime
        else:
            return None
        y = int(year)
        if len(year) == 2:  # RFC 850: a year more than 50 years ahead is in the past
            y += 2000 if y + 2000 <= time.gmtime().tm_year + 50 else 1900
        hh, mm, ss = (int(x) for x in clock.split(":"))
        when = datetime.datetime(
            y, _MONTHS[month.lower()], int(day), hh, mm, min(ss, 59), tzinfo=datetime.UTC
        )
    except (KeyError, ValueError, OverflowError):
        return None
    return when.timestamp()


def proxy_login(where: str = "") -> str:
    """What to do about a proxy's 407, the proxy set ``where`` (``--proxy``, a variable's
    name, ``set in config file ...``; "": not known)."""
    from ...settings import named_setting

    named = named_setting("proxy", where) if where else "--proxy or *_proxy"
    return ("the proxy wants a login, or refused the one given; put its user name and "
            f"password in the proxy's URL ({named})")


#: What to do about a proxy's 407, where it was set not known.
PROXY_LOGIN = proxy_login()


#: What to do about a server's 401 (a 403 is a refusal whoever asks).
SERVER_LOGIN = (
    "the server wants a login, or refused the one given (--user USER:PASSWORD, or ~/.netrc)"
)


#: Statuses that say there is no content at all (RFC 9110 15.3.5, 15.3.6): to a
#: download, no file (an empty file is a 200 with Content-Length: 0).
NO_CONTENT = {204: "No Content", 205: "Reset Content"}


def check_status(head: Head, url: str, *, file: bool = True) -> None:
    """Raise the error a non-success status means; return for 2xx. ``file``: the answer
    should be a file's bytes, which a 204 or a 205 never is (a page's client passes
    False: an API may answer so)."""
    status = head.status
    if 200 <= status < 300 and not (file and status in NO_CONTENT):
        return
    retry_after = parse_retry_after(head.headers.get("retry-after"))
    where = f"HTTP {status} from {_safe(url)}"
    if head.url and head.url != url and not _sent_as(url, head.url):
        # the server that answered, not the first one asked (not just the URL as sent)
        where = f"HTTP {status} from {_safe(head.url)}, redirected from {_safe(url)}"
    if status in NO_CONTENT:  # (not retried: the server means it)
        where = where.replace(f"{status}", f"{status} {NO_CONTENT[status]}", 1)
        raise RemoteError(f"no file to save: the server has no content there ({where})",
                          status=status)
    if status in (404, 410):
        raise RemoteNotFound(f"not found ({where})", status=status, url=url)
    if status in (401, 403):
        login = f": {SERVER_LOGIN}" if status == 401 else ""
        raise AuthRequired(f"access refused ({where}){login}", url=url)
    if status == 407:  # (a proxy's answer, not the server's)
        raise AuthRequired(f"proxy refused the request ({where}): {PROXY_LOGIN}", url=url)
    if status == 429 or status >= 500 or status == 408:
        if retry_after:  # (said: one longer than the retries may wait fails at once)
            where += f" (Retry-After: {duration(retry_after)})"
        raise TransientError(where, retry_after=retry_after, status=status)
    if status == 421:  # (the transport asked once more first, on a new connection)
        raise RemoteError(f"misdirected request ({where}, again on a new connection)",
                          status=status)
    if status == 400 and _plain_to_tls(head):
        where += f" (if that port speaks TLS, use {as_https(_safe(head.url))})"
    raise RemoteError(where, status=status)


#: Servers whose 400 to a plain HTTP request on their TLS port says so ("The plain HTTP
#: request was sent to HTTPS port": nginx, and those built on it)
_SAY_PLAIN_TO_TLS = ("nginx", "openresty", "tengine", "angie")


def _plain_to_tls(head: Head) -> bool:
    """A 400 to an http:// request, from a server that answers so when it speaks TLS
    on that port (its other 400s to what omniget sends are rare: the hint says "if")."""
    server = head.headers.get("server", "").lower()
    return head.url[:5].lower() == "http:" and server.startswith(_SAY_PLAIN_TO_TLS)


def as_https(where: str) -> str:
    """``where`` (an http:// URL) as https:// to the same port: http://HOST/ is port 80,
    which https://HOST/ is not."""
    parts = urlsplit(where)
    try:
        implied = parts.port is None
    except ValueError:
        implied = False
    netloc = f"{parts.netloc}:80" if implied else parts.netloc
    return parts._replace(scheme="https", netloc=netloc).geturl()


def duration(seconds: float) -> str:
    """``45 s``, ``20 min``, ``3 h``, ``4 days``, ``100 years``: a wait, rounded (3599.4 s,
    an HTTP-date an hour away read a moment later: ``1 h``)."""
    for unit, size, below in (("s", 1, 120), ("min", 60, 3600), ("h", 3600, 172800),
                              ("days", 86400, 730 * 86400)):
        if round(seconds / size) * size < below:
            return f"{round(seconds / size)} {unit}"
    return f"{round(seconds / (365.25 * 86400))} years"


def _sent_as(url: str, sent: str) -> bool:
    """Whether ``sent`` is ``url`` as a request sends it (spaces and what is beyond ASCII
    percent-encoded, the scheme in lower case, the host in punycode): no redirect."""
    from .outgoing import clean_url  # (outgoing builds on this module)

    try:
        cleaned = clean_url(url)
    except UsageError:  # (a host no punycode takes: no request went to it)
        cleaned = url
    return unquote(_safe(sent)) in (unquote(_safe(url)), unquote(_safe(cleaned)))


def _safe(url: str) -> str:
    """The URL without user:password (never print secrets)."""
    p = urlsplit(url)
    if p.username is None and p.password is None:
        return url
    return p._replace(netloc=p.netloc.rpartition("@")[2]).geturl()  # (as written: [::1]:80)


def safe_url(url: str) -> str:
    """The URL without user:password, its secret query values masked: as messages and
    debug logs name it."""
    return mask_secrets(_safe(url))
