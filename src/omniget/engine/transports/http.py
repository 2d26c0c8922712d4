"""HTTP(S) transport on libcurl's multi interface, event-driven on asyncio.

One :class:`CurlTransport` owns one ``CurlMulti`` (see :mod:`.curlloop`): every fetch on it
shares libcurl's connection and DNS caches. Each redirect hop is its own libcurl transfer,
because we follow redirects ourselves: the scheme allow-list, loop detection and the rule
that credentials stay with their origin are ours to enforce, not libcurl's.

Body bytes go from libcurl's write callback straight into ``sink.on_data``: no copies, no
per-chunk asyncio work.
"""

from __future__ import annotations

import asyncio
import email.message
import os
import ssl
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from http.cookiejar import LoadError, MozillaCookieJar
from typing import ClassVar
from urllib.parse import quote, unquote, urljoin, urlsplit

import pycurl

from ...errors import RemoteError, TransientError, UsageError
from ...settings import NetworkSettings
from .base import Head, Headers, Request, Sink, StopTransfer, origin, safe_url
from .curlloop import CLOSED, CurlLoop

__all__ = ["CurlTransport"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SENSITIVE = frozenset({"authorization", "cookie", "proxy-authorization"})
_REDIRECT_BODY_LIMIT = 64 * 1024  # larger redirect bodies are cut, not read
_STALLED = -2  # our own result code: the stall watchdog ended the transfer
# Characters kept as they are when a redirect target is percent-encoded.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"

_TLS_TRUST = frozenset(
    {
        pycurl.E_PEER_FAILED_VERIFICATION,
        pycurl.E_SSL_ISSUER_ERROR,
        pycurl.E_SSL_INVALIDCERTSTATUS,
        pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
    }
)
_TRANSIENT = frozenset(
    {
        pycurl.E_COULDNT_CONNECT,
        pycurl.E_OPERATION_TIMEDOUT,
        pycurl.E_PARTIAL_FILE,
        pycurl.E_RECV_ERROR,
        pycurl.E_SEND_ERROR,
        pycurl.E_GOT_NOTHING,
        pycurl.E_HTTP2,
        92,  # CURLE_HTTP2_STREAM
        95,  # CURLE_HTTP3
        96,  # CURLE_QUIC_CONNECT_ERROR
        97,  # CURLE_PROXY
        pycurl.E_SSL_CONNECT_ERROR,
    }
)
_KNOWN_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


def ca_locations(settings: NetworkSettings) -> tuple[str | None, str | None]:
    """``(cainfo, capath)`` to give libcurl, ``(None, None)`` for its own default.

    ``settings.ca_cert``, else ``SSL_CERT_FILE`` / ``CURL_CA_BUNDLE``, else the system's
    bundle. The system store is always named explicitly: a pycurl wheel carries its own
    OpenSSL whose compiled-in CA path is often another distribution's.
    """
    if settings.ca_cert:
        if os.path.isdir(settings.ca_cert):
            return None, settings.ca_cert
        return settings.ca_cert, None
    for name in ("SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value, None
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, *_KNOWN_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return candidate, None
    capath = os.environ.get("SSL_CERT_DIR") or paths.capath
    if capath and os.path.isdir(capath):
        return None, capath
    return None, None


@dataclass(frozen=True)
class _Creds:
    user: str
    password: str


def _split_userinfo(url: str) -> tuple[str, _Creds | None]:
    """The URL without ``user:password@`` and the credentials it carried."""
    p = urlsplit(url)
    if p.username is None and p.password is None:
        return url, None
    host = p.netloc.rpartition("@")[2]
    creds = _Creds(unquote(p.username or ""), unquote(p.password or ""))
    return p._replace(netloc=host).geturl(), creds


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def _map_error(code: int, message: str, url: str) -> Exception:
    """A libcurl result code as an omniget error (one line, no credentials)."""
    where = safe_url(url)
    detail = _one_line(message)
    suffix = f": {detail}" if detail else ""
    if code == _STALLED:
        return TransientError(f"transfer stalled ({where}){suffix}")
    if code == CLOSED:
        return TransientError(f"transport closed during transfer ({where})")
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        host = urlsplit(url).hostname or "?"
        return RemoteError(f"could not resolve host {host}")
    if code == pycurl.E_COULDNT_RESOLVE_PROXY:
        return RemoteError(f"could not resolve proxy for {where}{suffix}")
    if code in _TLS_TRUST:
        return RemoteError(
            f"TLS certificate not trusted for {where}{suffix}; "
            "pass --ca-cert FILE to trust its CA, or --insecure to skip verification"
        )
    if code == pycurl.E_SSL_CACERT_BADFILE:
        return RemoteError(
            f"could not load the CA certificates for {where}{suffix}; check --ca-cert FILE"
        )
    if code in (pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL):
        return RemoteError(f"unusable URL {where}{suffix}")
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return TransientError(f"timed out ({where}){suffix}")
    if code == pycurl.E_PARTIAL_FILE:
        return TransientError(f"body cut short ({where}){suffix}")
    if code == pycurl.E_COULDNT_CONNECT:
        return TransientError(f"could not connect ({where}){suffix}")
    if code in _TRANSIENT:
        return TransientError(f"connection failed ({where}){suffix}")
    if code == pycurl.E_BAD_CONTENT_ENCODING:
        return TransientError(f"could not decode the body ({where}){suffix}")
    return TransientError(f"transfer failed, curl error {code} ({where}){suffix}")


class _CookieResponse:
    """Just enough of a urllib response for ``CookieJar.extract_cookies``."""

    def __init__(self, headers: Headers) -> None:
        self._msg = email.message.Message()
        for name in ("Set-Cookie", "Set-Cookie2"):
            for value in headers.get_all(name):
                self._msg[name] = value

    def info(self) -> email.message.Message:
        return self._msg


class _Hop:
    """One libcurl transfer: one request and its response (a redirect or the final one)."""

    def __init__(self, sink: Sink, url: str, fut: asyncio.Future[tuple[int, str]]) -> None:
        self.sink = sink
        self.url = url
        self.fut = fut
        self.status = 0
        self.pairs: list[tuple[str, str]] = []
        self.headers = Headers()
        self.head: Head | None = None  # the final response's head, once decided
        self.location: str | None = None  # set when this hop is a redirect
        self.decided = False
        self.deliver = False  # body bytes go to the sink
        self.on_data = sink.on_data
        self.stopped = False  # ended on purpose (StopTransfer, cut redirect body)
        self.error: BaseException | None = None  # raised by the sink
        self.discarded = 0
        self.watchdog: asyncio.TimerHandle | None = None
        self.samples: deque[tuple[float, int]] = deque(maxlen=5)

    # libcurl callbacks: they must never raise (pycurl would print a traceback).

    def on_header(self, line: bytes) -> None:
        if self.decided:
            return  # trailers of a chunked body
        text = line.decode("latin-1").rstrip("\r\n")
        if text.startswith("HTTP/"):
            # A new response block (1xx, a proxy's CONNECT answer, then the real one).
            parts = text.split(None, 2)
            try:
                self.status = int(parts[1])
            except (IndexError, ValueError):
                self.status = 0
            self.pairs = []
        elif not text:
            return
        elif text[0] in " \t" and self.pairs:  # obsolete line folding
            name, value = self.pairs[-1]
            self.pairs[-1] = (name, f"{value} {text.strip()}")
        else:
            name, _, value = text.partition(":")
            self.pairs.append((name.strip(), value.strip()))

    def on_write(self, data: bytes) -> int | None:
        if self.deliver:
            try:
                self.on_data(data)
            except StopTransfer:
                self.stopped = True
                return 0
            except BaseException as exc:
                self.error = exc
                return 0
            return None
        return self._first_write(data)

    def _first_write(self, data: bytes) -> int | None:
        if not self.decided and not self.decide():
            return 0
        if self.location is not None:
            self.discarded += len(data)
            if self.discarded > _REDIRECT_BODY_LIMIT:
                self.stopped = True
                return 0
            return None
        self.deliver = True
        return self.on_write(data)

    def decide(self) -> bool:
        """The response head is complete: note a redirect or hand the head to the sink.
        False when the sink refused it (``stopped`` or ``error`` says how)."""
        self.decided = True
        self.headers = Headers(self.pairs)
        location = self.headers.get("location")
        if self.status in _REDIRECTS and location:
            self.location = location.strip()
            return True
        encoding = self.headers.get("content-encoding", "").strip().lower()
        head = Head(
            status=self.status,
            url=self.url,
            headers=self.headers,
            decoded=encoding not in ("", "identity"),
        )
        self.head = head
        try:
            self.sink.on_head(head)
        except StopTransfer:
            self.stopped = True
            return False
        except BaseException as exc:
            self.error = exc
            return False
        return True

    def finish(self, code: int, message: str) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if not self.fut.done():
            self.fut.set_result((code, message))


class CurlTransport:
    """The HTTP(S) transport. Many fetches run at once on one instance."""

    schemes: ClassVar[tuple[str, ...]] = ("http", "https")

    def __init__(
        self,
        settings: NetworkSettings,
        *,
        max_host_connections: int = 4,
        max_total_connections: int = 16,
        buffer_size: int = 1 << 20,
    ) -> None:
        self.settings = settings
        self.max_host_connections = max_host_connections
        self.max_total_connections = max_total_connections
        self.buffer_size = buffer_size
        self._core: CurlLoop | None = None
        self._pool: list[pycurl.Curl] = []
        self._closed = False
        self._cainfo, self._capath = ca_locations(settings)
        self._user = self._parse_user(settings.user)
        self._jar = self._load_cookies(settings.cookies_file)
        self._headers = self._check_headers(settings.headers)

    # -- public API --

    async def fetch(self, request: Request, sink: Sink) -> Head:
        """Fetch ``request`` into ``sink``; return the final response head."""
        core = self._bind()
        scheme = urlsplit(request.url).scheme.lower()
        if scheme not in self.schemes:
            raise RemoteError(f"refused URL scheme {scheme or '(none)'}: {safe_url(request.url)}")
        url, url_creds = _split_userinfo(request.url)
        first = origin(url)
        creds = url_creds or self._user
        headers = {**self._headers, **self._check_headers(tuple(request.headers.items()))}
        secret = _SENSITIVE | {h.lower() for h in request.secret_headers}
        method = request.method.upper()
        body = request.body
        shown = request.url  # hop 0 reports the URL as given
        seen: set[tuple[str, str, str]] = set()
        for hops in range(self.settings.max_redirects + 2):
            same = origin(url) == first
            hop_headers = {k: v for k, v in headers.items() if same or k not in secret}
            cookie = self._cookie_header(url, hop_headers)
            key = (method, url, cookie or "")
            if key in seen:
                raise RemoteError(f"redirect loop at {safe_url(url)}")
            seen.add(key)
            if hops > self.settings.max_redirects:
                raise RemoteError(
                    f"too many redirects (more than {self.settings.max_redirects}) "
                    f"from {safe_url(request.url)}"
                )
            hop = await self._run_hop(
                core, request, sink, url, shown, method, body, hop_headers, cookie,
                creds if same else None,
            )
            if hop.location is None:
                assert hop.head is not None
                return hop.head
            url = self._next_url(url, hop.location)
            shown = url
            if (hop.status == 303 and method != "HEAD") or (
                hop.status in (301, 302) and method == "POST"
            ):
                method, body = "GET", None
                headers.pop("content-type", None)
                headers.pop("content-length", None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Abort running transfers and free every libcurl handle."""
        self._closed = True
        core, self._core = self._core, None
        if core is not None:
            core.close()
        for easy in self._pool:
            easy.close()
        self._pool.clear()

    # -- one hop --

    async def _run_hop(
        self,
        core: CurlLoop,
        request: Request,
        sink: Sink,
        url: str,
        shown: str,
        method: str,
        body: bytes | None,
        headers: dict[str, tuple[str, str]],
        cookie: str | None,
        creds: _Creds | None,
    ) -> _Hop:
        loop = core.loop
        hop = _Hop(sink, shown, loop.create_future())
        easy = self._pool.pop() if self._pool else pycurl.Curl()
        try:
            self._configure(easy, hop, request, url, method, body, headers, cookie, creds)
            core.add(easy, hop.finish)
            self._arm_watchdog(core, easy, hop)
            try:
                code, message = await hop.fut
            finally:
                if hop.watchdog is not None:
                    hop.watchdog.cancel()
                core.remove(easy)  # a no-op unless cancelled mid-transfer
        finally:
            self._release(easy)
        if hop.error is not None:
            raise hop.error
        if code != 0 and not (
            hop.stopped and code in (pycurl.E_WRITE_ERROR, pycurl.E_ABORTED_BY_CALLBACK)
        ):
            raise _map_error(code, message, url)
        if not hop.decided:  # an empty body: the head is decided at the end
            if hop.status == 0:
                raise TransientError(f"no HTTP response ({safe_url(url)})")
            hop.decide()
            if hop.error is not None:
                raise hop.error
        if self._jar is not None:
            self._jar.extract_cookies(
                _CookieResponse(hop.headers),  # type: ignore[arg-type]
                urllib.request.Request(url),
            )
        return hop

    def _configure(
        self,
        easy: pycurl.Curl,
        hop: _Hop,
        request: Request,
        url: str,
        method: str,
        body: bytes | None,
        headers: dict[str, tuple[str, str]],
        cookie: str | None,
        creds: _Creds | None,
    ) -> None:
        s = self.settings
        opt = easy.setopt
        opt(pycurl.URL, url)
        opt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        opt(pycurl.NOSIGNAL, 1)
        opt(pycurl.TCP_NODELAY, 1)
        opt(pycurl.BUFFERSIZE, self.buffer_size)
        # HTTP/1.1: one connection per span, as the scheduler's per-host limits assume.
        opt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        opt(pycurl.WRITEFUNCTION, hop.on_write)
        opt(pycurl.HEADERFUNCTION, hop.on_header)
        # Ask for identity bytes, but let libcurl decode an encoding forced on us anyway.
        opt(pycurl.ACCEPT_ENCODING, "identity")
        opt(pycurl.HTTP_CONTENT_DECODING, 1)
        opt(pycurl.CONNECTTIMEOUT_MS, max(1, int(s.connect_timeout * 1000)))
        if request.max_speed:
            opt(pycurl.MAX_RECV_SPEED_LARGE, int(request.max_speed))
        if s.proxy is not None:
            opt(pycurl.PROXY, s.proxy)
        if s.insecure:
            opt(pycurl.SSL_VERIFYPEER, 0)
            opt(pycurl.SSL_VERIFYHOST, 0)
            opt(pycurl.PROXY_SSL_VERIFYPEER, 0)
            opt(pycurl.PROXY_SSL_VERIFYHOST, 0)
        else:
            if self._cainfo:
                opt(pycurl.CAINFO, self._cainfo)
            if self._capath:
                opt(pycurl.CAPATH, self._capath)
        if s.resolve:
            opt(pycurl.RESOLVE, list(s.resolve))
        if s.netrc:
            opt(pycurl.NETRC, pycurl.NETRC_OPTIONAL)
            if s.netrc_file:
                opt(pycurl.NETRC_FILE, s.netrc_file)
        if creds is not None:
            opt(pycurl.USERNAME, creds.user)
            opt(pycurl.PASSWORD, creds.password)

        lines = [f"{n}: {v}" if v else f"{n};" for n, v in headers.values()]
        if cookie:
            lines = [ln for ln in lines if not ln.lower().startswith(("cookie:", "cookie;"))]
            lines.append(f"Cookie: {cookie}")
        if request.range is not None and "range" not in headers:
            lines.append(f"Range: {request.range.header()}")
        if request.if_range and "if-range" not in headers:
            lines.append(f"If-Range: {request.if_range}")
        if "user-agent" not in headers:
            opt(pycurl.USERAGENT, s.user_agent)
        lines.append("Expect:")  # no 100-continue round trip before a body
        opt(pycurl.HTTPHEADER, lines)

        if method == "HEAD":
            opt(pycurl.NOBODY, 1)
        elif body is not None:
            opt(pycurl.POSTFIELDS, body)
            opt(pycurl.POSTFIELDSIZE_LARGE, len(body))
            if method != "POST":
                opt(pycurl.CUSTOMREQUEST, method)
        elif method == "POST":
            opt(pycurl.POSTFIELDS, b"")
            opt(pycurl.POSTFIELDSIZE_LARGE, 0)
        elif method != "GET":
            opt(pycurl.CUSTOMREQUEST, method)

    def _release(self, easy: pycurl.Curl) -> None:
        if self._closed or len(self._pool) >= max(1, self.max_total_connections):
            easy.close()
            return
        easy.reset()  # drops options and callbacks; connections live in the multi
        self._pool.append(easy)

    # -- stall watchdog: libcurl's LOW_SPEED_TIME takes whole seconds only --

    def _arm_watchdog(self, core: CurlLoop, easy: pycurl.Curl, hop: _Hop) -> None:
        window = self.settings.stall_timeout
        if window <= 0:
            return
        tick = window / 4

        def check() -> None:
            hop.watchdog = None
            if hop.fut.done():
                return
            try:
                moved = (
                    easy.getinfo(pycurl.SIZE_DOWNLOAD_T)
                    + easy.getinfo(pycurl.SIZE_UPLOAD_T)
                    + easy.getinfo(pycurl.HEADER_SIZE)
                )
            except pycurl.error:
                return
            now = time.monotonic()
            hop.samples.append((now, int(moved)))
            first_t, first_n = hop.samples[0]
            span = now - first_t
            limit = max(1, self.settings.low_speed_limit)
            if len(hop.samples) == hop.samples.maxlen and (moved - first_n) < limit * span:
                core.remove(easy)
                hop.finish(_STALLED, f"less than {limit} B/s for {span:.1f} s")
                return
            hop.watchdog = core.loop.call_later(tick, check)

        hop.samples.append((time.monotonic(), 0))
        hop.watchdog = core.loop.call_later(tick, check)

    # -- helpers --

    def _bind(self) -> CurlLoop:
        if self._closed:
            raise RuntimeError("CurlTransport is closed")
        loop = asyncio.get_running_loop()
        core = self._core
        if core is not None and core.loop is loop:
            return core
        if core is not None:
            if core.active and not core.loop.is_closed():
                raise RuntimeError("CurlTransport is in use by another event loop")
            core.close()
        self._core = CurlLoop(
            loop,
            max_host_connections=self.max_host_connections,
            max_total_connections=self.max_total_connections,
        )
        return self._core

    def _next_url(self, current: str, location: str) -> str:
        target = urljoin(current, quote(location, safe=_URL_SAFE))
        scheme = urlsplit(target).scheme.lower()
        if scheme not in self.schemes:
            raise RemoteError(
                f"refused redirect to {scheme or 'an unknown'} URL {safe_url(target)} "
                f"(from {safe_url(current)})"
            )
        return target.partition("#")[0]

    def _cookie_header(self, url: str, headers: dict[str, tuple[str, str]]) -> str | None:
        given = headers.get("cookie")
        jar_value = None
        if self._jar is not None:
            req = urllib.request.Request(url)
            self._jar.add_cookie_header(req)
            jar_value = req.unredirected_hdrs.get("Cookie")
        values = [v for v in (given[1] if given else None, jar_value) if v]
        return "; ".join(values) if values else None

    @staticmethod
    def _parse_user(user: str | None) -> _Creds | None:
        if not user:
            return None
        name, _, password = user.partition(":")
        return _Creds(name, password)

    @staticmethod
    def _load_cookies(path: str | None) -> MozillaCookieJar | None:
        if not path:
            return None
        jar = MozillaCookieJar(path)
        try:
            jar.load(ignore_discard=True, ignore_expires=True)
        except (OSError, LoadError) as exc:
            raise UsageError(f"cannot read cookies file {path}: {_one_line(str(exc))}") from exc
        # Expiry 0 marks a session cookie in curl's and browsers' exports; keep those.
        for cookie in jar:
            if cookie.expires == 0:
                cookie.expires = None
                cookie.discard = True
        jar.clear_expired_cookies()
        return jar

    @staticmethod
    def _check_headers(pairs: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            if any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
                raise UsageError(f"invalid header {name!r}: no line breaks or ':' in names")
            out[name.lower()] = (name, value)
        return out

