"""HTTP(S) transport on libcurl's multi interface, event-driven on asyncio.

One :class:`CurlTransport` owns one ``CurlMulti`` (see :mod:`.curlloop`): every fetch on it
shares libcurl's connection and DNS caches. Each redirect hop is its own libcurl transfer,
because we follow redirects ourselves: the scheme allow-list, loop detection and the rule
that credentials stay with their origin are ours to enforce, not libcurl's.

Body bytes go from libcurl's write callback straight into ``sink.on_data``: no copies, no
per-chunk asyncio work.

Small plain-HTTP GETs to an origin that keeps connections are pipelined beside libcurl
(:mod:`.pipeline`); what that path cannot take, or gives back, runs through libcurl. The
connections libcurl kept to such an origin are shut once the pool opens its own there
(:mod:`.kept`), so the per-host cap counts every open connection.

HTTPS GETs without a Range, beside another request to the same host, offer HTTP/2; while
the host answers them over HTTP/2 with small bodies, libcurl multiplexes them on its
connections (the https twin of pipelining). A lone download stays on HTTP/1.1. Ranged
requests, and every request to an origin whose answers are large, stay on HTTP/1.1: one
connection per transfer, so a server that caps each connection still gets split across several.

A hop's answer side (head, redirect or final answer, body into the sink) is :mod:`.hop`;
what a request sends (URL, credentials, header lines, a pipelined request's bytes) is
:mod:`.outgoing`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import re
from collections.abc import AsyncGenerator, Callable
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import pycurl

from ...errors import RemoteError
from ...settings import NetworkSettings
from ..scheduler import UNIT, host_of
from .base import SECRET_HEADERS, Gate, Head, Request, Sink, origin, safe_url
from .curlerrors import ProxyPath, curl_error
from .curlloop import WEIRD_REPLY, CurlLoop
from .hop import Hop
from .kept import KeptConnections
from .outgoing import (
    URL_SAFE,
    Ask,
    check_headers,
    clean_url,
    cookie_jar,
    light,
    netrc_exists,
    netrc_hosts,
    no_http_proxy,
    no_proxy_list,
    no_proxy_match,
    parse_user,
    pipe_request,
    pipeable,
    range_lines,
    split_userinfo,
    tls_key,
)
from .pipeline import DEPTH, FALLBACK, SMALL_BODY, PipelinePool, pipeline_key
from .trust import ca_locations, ca_trust

log = logging.getLogger(__name__)

__all__ = ["CurlTransport", "ca_locations"]

# Dropped on a hop to another origin (Host because it names the old one).
_SENSITIVE = SECRET_HEADERS | {"host"}
_USERINFO = r"//[^/?#@]*@"  # (to show a URL urllib cannot parse)
_OURS = frozenset({pycurl.E_WRITE_ERROR, pycurl.E_ABORTED_BY_CALLBACK})
_TO_PIPE = -4  # a hop that goes pipelined after all (decided when its slot came)
#: ``admit(start, fut)``: may a libcurl transfer start now (else ``start`` is called later)
Admit = Callable[[Callable[[], None], "asyncio.Future[Any]"], bool]
_H1: int = pycurl.CURL_HTTP_VERSION_1_1
_H2: int = pycurl.CURL_HTTP_VERSION_2TLS  # HTTP/2 when TLS negotiates it, else HTTP/1.1


class CurlTransport:
    """The HTTP(S) transport. Many fetches run at once on one instance; it binds to the
    running event loop on first use."""

    schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    #: ``fetch`` takes a gate not yet granted and starts the request from the grant.
    starts_on_grant: ClassVar[bool] = True

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
        self._cainfo, self._capath, self._ca_from = ca_trust(settings)
        # an https:// proxy: the environment's CAs or the system's (--ca-cert is for
        # servers, as curl's --cacert; libcurl's own default is the pycurl wheel's path)
        self._proxy_ca = (self._cainfo, self._capath)
        if settings.ca_cert:
            self._proxy_ca = ca_locations(dataclasses.replace(settings, ca_cert=None))
        self._user = parse_user(settings.user)
        self._user_origin = origin(settings.user_origin) if settings.user_origin else None
        self._jar = cookie_jar(settings.cookies_file)
        self._headers = check_headers(settings.headers, every_request=True)
        # what follows a pipelined request's line, for those headers, by host
        self._pipe_heads: dict[str, str] = {}
        # libcurl reads the netrc file on every request: skip that when there is none
        self._netrc = settings.netrc and netrc_exists(settings.netrc_file)
        self._netrc_hosts: frozenset[str] | None = None  # None: every host (or unread)
        self._pipes: PipelinePool | None = None
        self._loop_end: AsyncGenerator[None, None] | None = None  # (see _watch_loop_end)
        self._held: Callable[[str], int] | None = None
        # libcurl's transfers to plain-HTTP origins, and the connections it kept there
        self._on_curl: dict[str, set[pycurl.Curl]] = {}
        self._kept = KeptConnections()
        # plain-HTTP origin, or "tls " + https host -> hops running (others first)
        self._busy: dict[str, int] = {}
        self._may_pipeline = no_http_proxy(settings.proxy)
        #: a plain-HTTP URL's pool key (None: the pool never takes it): with a proxy,
        #: only those of the hosts no_proxy sends direct (libcurl's rule)
        self._pipe_key: Callable[[str], str | None] = pipeline_key
        exempt = no_proxy_list() if not self._may_pipeline and settings.proxy != "" else None
        if exempt is not None:
            self._may_pipeline = True
            self._pipe_key = functools.partial(_direct_key, exempt, {})
        # https host -> multiplex light GETs (True: small answers over HTTP/2 lately)
        self._h2: dict[str, bool] = {}
        self._h2_hosts: set[str] = set()  # https hosts seen answering over HTTP/2

    def count_held(self, held: Callable[[str], int] | None) -> None:
        """``held(host)``: whole connections the engine holds to a host for requests
        libcurl carries; pipelined connections stay within the per-host cap beside them."""
        self._held = held
        if self._pipes is not None:
            self._pipes.held = held

    def pipelined(self, url: str) -> int:
        """The scheduler's parts of a connection (of UNIT) that a GET of ``url`` without
        a Range takes now: 1 as an HTTP/2 stream, UNIT / DEPTH pipelined over HTTP/1.1,
        0 when it would not share a connection."""
        if url[:8].lower() == "https://":
            return 1 if self._h2.get(host_of(url), False) else 0
        pipes = self._pipes  # (a plain-HTTP URL's pool key is its host: pipeline_key)
        if url[:7].lower() == "http://" and pipes is not None and pipes.shares(host_of(url)):
            return UNIT // DEPTH
        return 0

    async def fetch(self, request: Request, sink: Sink, gate: Gate | None = None) -> Head:
        """Fetch ``request`` into ``sink``, following redirects; return the final head.
        With ``gate``, the first request is set up now and starts when the gate is granted."""
        core = self._bind()
        url, creds = clean_url(request.url), self._user
        if creds is not None and self._user_origin is not None and origin(url) != self._user_origin:
            creds = None  # --user is for one server
        if not url[:8].lower().startswith(("http://", "https://")) or "@" in url:
            parts = urlsplit(url)
            if parts.scheme.lower() not in self.schemes:
                scheme = parts.scheme or "(none)"
                raise RemoteError(f"refused URL scheme {scheme}: {safe_url(url)}")
            # Credentials in the URL go to its origin only, and never into a head or message.
            url, url_creds = split_userinfo(url, parts)
            creds = url_creds or creds
        headers = self._headers
        if request.headers:
            headers = {**headers, **check_headers(tuple(request.headers.items()))}
        secret: frozenset[str] | None = None  # dropped on a hop to another origin
        method = request.method.upper()
        body = request.body
        first: tuple[str, str, int | None] | None = None  # set on the first redirect
        seen: set[tuple[str, str, str]] | None = None  # hops so far, once redirected
        limit = self.settings.max_redirects
        while True:
            same = first is None or origin(url) == first
            if same:
                hop_headers = headers
            else:
                if secret is None:
                    secret = _SENSITIVE.union(h.lower() for h in request.secret_headers)
                hop_headers = {k: v for k, v in headers.items() if k not in secret}
            # (a Cookie header only from the request's own, or the jar)
            cookie = (
                self._cookie(url, hop_headers)
                if self._jar is not None or "cookie" in hop_headers
                else None
            )
            if seen is not None:
                key = (method, url, cookie or "")
                if key in seen:
                    raise RemoteError(f"redirect loop at {safe_url(url)}")
                if len(seen) > limit:
                    raise RemoteError(
                        f"too many redirects (more than {limit}) from {safe_url(request.url)}"
                    )
                seen.add(key)
            ask = Ask(request, url, method, body, hop_headers, cookie, creds if same else None)
            hop = await self._run_hop(core, ask, sink, gate)
            gate = None
            if hop.location is None:
                assert hop.head is not None
                return hop.head
            if first is None:
                first = origin(url)
                seen = {(method, url, cookie or "")}
            url = self._next_url(url, hop.location)
            if (hop.status == 303 and method != "HEAD") or (
                hop.status in (301, 302) and method == "POST"
            ):
                method, body = "GET", None
                headers = {
                    k: v for k, v in headers.items() if k not in ("content-type", "content-length")
                }

    async def aclose(self) -> None:
        """Abort running transfers (they raise TransientError) and free libcurl's handles."""
        self.close()

    def close(self) -> None:
        """:meth:`aclose` from outside the event loop: its transfers end now, and none
        that was queued goes out when the loop runs again."""
        self._closed = True
        core, self._core = self._core, None
        pipes, self._pipes = self._pipes, None
        if pipes is not None:
            pipes.close()
        if core is not None:
            core.close()
        for easy in self._pool:
            easy.close()
        self._pool.clear()

    # -- one hop --

    async def _run_hop(
        self, core: CurlLoop, ask: Ask, sink: Sink, gate: Gate | None = None
    ) -> Hop:
        request, url, method = ask.request, ask.url, ask.method
        hop: Hop | None = None
        code, message, how = 0, "", ""
        pipes = self._pipes
        key = self._pipe_key(url)
        busy = self._busy
        data: bytes | None = None
        count = key  # what _busy counts this hop under: its pipeline key, or its https host
        if count is None and url[:8].lower() == "https://":
            count = tls_key(url)
        if count is not None:
            busy[count] = busy.get(count, 0) + 1
        try:
            ranged = request.range is not None or request.if_range is not None
            if (
                key is not None
                and pipes is not None
                and ask.creds is None
                and pipeable(request, method, ask.body)
            ):  # (a netrc login for the host keeps it unconfirmed: see _maybe_pipeline)
                fixed = self._pipe_heads if ask.headers is self._headers else None
                data = pipe_request(
                    request, url, ask.headers, ask.cookie, self.settings.user_agent, fixed
                )

            while True:
                taken = (
                    0 if data is None or pipes is None or key is None
                    else pipes.takes(key, busy[key] > 1, ranged)
                )  # fmt: skip
                if taken:
                    assert pipes is not None and key is not None and data is not None
                    hop = piped = Hop(sink, url, core.loop.create_future())
                    how = " (pipelined)" if taken == 2 else " (kept connection)"
                    if gate is None or gate.granted:
                        pipes.submit(key, data, piped)
                    else:
                        send = functools.partial(pipes.submit, key, data, piped)
                        gate.on_grant(send)
                    code, message = await piped.fut
                    if code != FALLBACK:
                        break
                    data, gate, how = None, None, ""  # no byte of answer: libcurl asks
                # (a request still waiting for its slot may go pipelined once granted)
                switch = None
                if data is not None and gate and not gate.granted:
                    switch = functools.partial(self._pipe_now, pipes, key, data, ranged)
                hop, code, message = await self._curl_hop(core, ask, sink, gate, switch)
                if hop.redo:  # an encoding not decoded here (br, zstd): libcurl's turn
                    ask, data = dataclasses.replace(ask, curl_decodes=True), None
                elif code != _TO_PIPE:
                    break
                gate = None
            if code == 0 and key is not None and pipes is not None and ask.creds is None:
                self._maybe_pipeline(pipes, hop, url, ranged, key)
        finally:
            if count is not None:
                busy[count] -= 1
        if log.isEnabledFor(logging.DEBUG):
            rng = f" bytes={request.range.header()[6:]}" if request.range is not None else ""
            if any(ln.startswith(b"HTTP/2") for ln in hop.raw):
                how = " (HTTP/2)"
            if hop.error is not None:  # the sink refused the answer; libcurl's code says so
                why = f" (stopped: {hop.error})"
            else:
                why = f" (curl {code}: {message})" if code and not hop.stopped else ""
            log.debug(
                "%s %s%s -> %s%s%s", method, safe_url(url), rng, hop.status or "no answer", why, how
            )
        if hop.error is not None:
            raise hop.error
        if code != 0 and not (hop.stopped and code in _OURS):
            raise curl_error(
                code, message, url, fresh=hop.fresh, proxy=hop.proxy, ca_from=self._ca_from
            )
        if not hop.decided:  # no body: the head is decided at the end
            hop.decide()
            if hop.error is not None:
                raise hop.error
        if self._jar is not None:
            from .cookies import store_cookies

            store_cookies(self._jar, hop.headers, url)
        return hop

    async def _curl_hop(
        self,
        core: CurlLoop,
        ask: Ask,
        sink: Sink,
        gate: Gate | None,
        switch: Callable[[], bool] | None = None,
    ) -> tuple[Hop, int, str]:
        """One libcurl transfer. ``switch``: asked when the gate is granted; True ends the
        hop with :data:`_TO_PIPE` unstarted (it goes pipelined instead). Such a hop, to an
        origin the pool has not refused, gets its libcurl handle only if it does not
        switch (the first files of a run all wait for their slots so, until the origin
        is known: a handle set up for each went unused)."""
        request, url = ask.request, ask.url
        hop = Hop(sink, url, core.loop.create_future(), request.rate)
        hop.decode_here = not ask.curl_decodes
        hop.curl_decodes = ask.curl_decodes
        light_tls = url[:8].lower() == "https://" and light(request, ask.method, ask.body)
        if light_tls:
            hop.note = self._note_h2
        elif self._pipes is not None and ask.creds is None:
            hop.note = self._note_large
        # a plain-HTTP origin the pool may take over: see kept.py
        key = self._pipe_key(url) if self._pipes is not None else None
        handle: list[pycurl.Curl] = []  # (made by set_up, now or when the slot comes)
        special = [True]  # (until configured: a failed set-up resets the handle)

        def set_up() -> pycurl.Curl:
            easy = self._pool.pop() if self._pool else self._base(pycurl.Curl())
            handle.append(easy)
            if request.rate is not None:
                hop.easy = easy
            if key is not None:
                self._on_curl.setdefault(key, set()).add(easy)
            special[0] = self._configure(easy, hop, ask)
            return easy

        try:
            admit = None if self._pipes is None else functools.partial(self._admit, key)
            report = key is not None
            if gate is None or gate.granted:
                _start(core, set_up(), hop, None, None, report, admit)
            elif switch is not None and key is not None and self._may_switch(key):
                gate.on_grant(functools.partial(_set_up_and_start, core, set_up, hop, switch,
                                                report, admit))  # fmt: skip
            else:
                easy = set_up()
                version = None  # HTTP/2 or not: known better when the slot comes
                if light_tls:
                    version = functools.partial(self._http_version, hop, True)
                gate.on_grant(
                    lambda: _start(core, easy, hop, switch, version, report, admit)
                )
            try:
                code, message = await hop.fut
            finally:
                made = handle[0] if handle else None  # (None: it went pipelined unmade)
                if made is not None:
                    core.remove(made)  # a no-op unless cancelled mid-transfer
                if hop.resume is not None:
                    hop.resume.cancel()
                hop.easy = None
                if key is not None:
                    self._kept_after(core, made, key)
                if self._pipes is not None and self._pipes.starved:
                    self._pipes.kick()  # this transfer's connection counted against the cap
            if made is not None:
                if hop.h1_answer and made.getinfo(pycurl.NUM_CONNECTS) > 0:
                    self._no_h2(hop.url)  # asked on a new connection: this host has no HTTP/2
                if code in (WEIRD_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL):  # (see curl_error)
                    hop.fresh = made.getinfo(pycurl.NUM_CONNECTS) > 0
                elif code > 0 and code not in _OURS:
                    hop.proxy = _proxy_of(made)
        finally:
            if handle:
                self._release(handle[0], special[0])
        return hop, code, message

    # -- pipelining --

    def _kept_after(self, core: CurlLoop, easy: pycurl.Curl | None, key: str) -> None:
        """A libcurl transfer to the plain-HTTP origin ``key`` ended (or, ``easy`` None,
        went pipelined before it had a handle): note the connection libcurl kept, and
        shut it at once if the pool already holds connections there."""
        if easy is not None:
            running = self._on_curl.get(key)
            if running is not None:
                running.discard(easy)
                if not running:
                    del self._on_curl[key]
            fd = core.kept.pop(easy, -1)
            if fd >= 0:
                self._kept.note(key, fd)
        pipes = self._pipes
        if pipes is not None and pipes.has_connections(key):
            self._shut_kept(key)  # (with any spared for this transfer before it started)

    def _may_switch(self, key: str) -> bool:
        """A request to ``key`` waiting for its slot may go pipelined when it comes: the
        pool has not refused the origin (it may not know it yet)."""
        pipes = self._pipes
        return pipes is not None and (pipes.usable(key) or not pipes.known(key))

    def _curl_active(self) -> int:
        """libcurl's connections: in use now (HTTP/2 streams share one) or about to be
        (transfers just added), and those it kept to plain-HTTP origins, noted or not yet
        (its idle https ones are not known)."""
        core = self._core
        if core is None:
            return len(self._kept)
        return len(self._kept) + core.sockets + core.starting + len(core.kept)

    def _curl_at(self, key: str) -> int:
        """libcurl's connections to the plain-HTTP origin ``key``: its running transfers'
        (those still waiting for their slot or for room hold none), and those it kept
        after a transfer that has just ended (the pool's ``opening`` shuts them once
        noted: see :meth:`_kept_after`)."""
        core = self._core
        if core is None:
            return 0
        return sum(
            1 for easy in self._on_curl.get(key, ()) if core.running(easy) or easy in core.kept
        )

    def _admit(self, key: str | None, start: Callable[[], None], fut: asyncio.Future[Any]) -> bool:
        """May a libcurl transfer start now under the run's and the host's connection
        caps, beside the pool's connections? False: the pool calls ``start`` once a
        connection frees up (see :meth:`PipelinePool.admit`)."""
        pipes = self._pipes
        assert pipes is not None  # (asked only beside a pool)
        if key is not None and self._kept.has(key):
            in_use, unconnected = self._curl_sockets(key)
            if self._kept.idle(key, in_use) > unconnected:
                return True  # (it will take a connection libcurl kept there)
        return pipes.admit(start, fut, key)

    def _shed(self) -> bool:
        """Shut one of libcurl's kept connections that no transfer uses."""
        return self._kept.shed(self._curl_sockets(*self._on_curl)[0])

    def _shut_kept(self, key: str) -> None:
        """Shut libcurl's idle connections to ``key``: the pool has (or opens) its own."""
        if self._kept.has(key):
            self._kept.shut(key, *self._curl_sockets(key))

    def _curl_sockets(self, *keys: str) -> tuple[set[int], int]:
        """The sockets libcurl's running transfers to these origins use, and how many of
        those transfers libcurl has not run yet (they may take a kept one; one it has run
        without a socket is opening its own). Transfers still waiting for their slot are
        not counted: they may go to the pool."""
        core = self._core
        in_use: set[int] = set()
        unconnected = 0
        for key in keys:
            for easy in self._on_curl.get(key, ()):
                if core is None or not core.running(easy):
                    continue
                try:
                    fd = easy.getinfo(pycurl.ACTIVESOCKET)
                except pycurl.error:
                    continue
                if fd >= 0:
                    in_use.add(fd)
                elif core.unrun(easy):
                    unconnected += 1
        return in_use, unconnected

    def _pipe_now(
        self, pipes: PipelinePool | None, key: str | None, data: bytes | None, ranged: bool
    ) -> bool:
        """A request to ``key`` (the bytes ``data``) goes through the pool now."""
        return (
            data is not None
            and pipes is not None
            and key is not None
            and pipes.takes(key, self._busy[key] > 1, ranged) > 0
        )

    def _maybe_pipeline(
        self,
        pipes: PipelinePool,
        hop: Hop,
        url: str,
        ranged: bool = False,
        key: str | None = None,
    ) -> None:
        """Send plain GETs to ``url``'s origin over our own connections from now on if
        libcurl's answer came over a persistent HTTP/1.1 connection (with plain CRLF
        lines): pipelined after a small answer, one at a time after a large one. An
        answer that ended at EOF leaves the origin to libcurl. The size of a ``ranged``
        answer says nothing of the origin's files: it never confirms pipelining."""
        key = self._pipe_key(url) if key is None else key  # (``key``: url's, if known)
        head = hop.head
        if key is None or head is None or head.status >= 300:
            return
        size = head.content_length
        if size is None:
            if "chunked" not in head.headers.get("transfer-encoding", ""):
                pipes.pause(key)
            return
        if pipes.answered(key, size <= SMALL_BODY, ranged):
            return
        settle = pipes.confirm if size <= SMALL_BODY and not ranged else pipes.one_by_one
        status = next((ln for ln in reversed(hop.raw) if ln.startswith(b"HTTP/")), b"")
        if (
            status.startswith(b"HTTP/1.1 ")
            and all(ln.endswith(b"\r\n") for ln in hop.raw)
            and not any("close" in v.lower() for v in hop.headers.get_all("connection"))
            and self._no_netrc_entry(key)
        ):
            settle(key)

    def _note_large(self, hop: Hop) -> None:
        """Told at the final head of a plain-HTTP request: a large answer from an origin
        not yet known settles it one by one now, not at the end of the body, so the
        requests that split this file already go over our own connections."""
        pipes, head, key = self._pipes, hop.head, self._pipe_key(hop.url)
        size = None if head is None else head.content_length
        if pipes is None or key is None or size is None or size <= SMALL_BODY:
            return
        if not pipes.known(key):  # (as ranged: settles it one by one, never pipelined)
            self._maybe_pipeline(pipes, hop, hop.url, ranged=True)

    def _http_version(self, hop: Hop, light: bool) -> int:
        """HTTP/2 is offered (ALPN) for a light https GET beside another request to its
        host, unless the host's answers are large or it does not speak HTTP/2; everything
        else (a lone download among them) is HTTP/1.1."""
        url = hop.url
        hop.offered_h2 = (
            light
            and url[:8].lower() == "https://"
            and self._h2.get(host_of(url), True)
            and self._busy.get(tls_key(url), 0) > 1
        )
        return _H2 if hop.offered_h2 else _H1

    def _note_h2(self, hop: Hop) -> None:
        """Multiplex light GETs to the hop's https host while its answers come over HTTP/2
        and are small; large answers (or no HTTP/2) send them back to HTTP/1.1. Told at
        each final head of a light https GET, before its body."""
        head = hop.head
        if head is None or head.status >= 300:
            return
        host = host_of(hop.url)
        status = next((ln for ln in reversed(hop.raw) if ln.startswith(b"HTTP/")), b"")
        if status.startswith(b"HTTP/2"):
            self._h2_hosts.add(host)
        size = head.content_length
        if host not in self._h2_hosts:
            # HTTP/1.1 though offered: a new connection says "no HTTP/2", a kept one
            # nothing (libcurl asked at the transfer's end: not from inside a callback)
            hop.h1_answer = hop.offered_h2
        elif size is not None:
            self._h2[host] = size <= SMALL_BODY

    def _no_h2(self, url: str) -> None:
        host = host_of(url)
        if host not in self._h2_hosts:
            self._h2[host] = False

    def _no_netrc_entry(self, key: str) -> bool:
        """No netrc login for this host (libcurl would send one; pipelining would not)."""
        if not self._netrc:
            return True
        if self._netrc_hosts is None:
            self._netrc_hosts = netrc_hosts(self.settings.netrc_file)
        hosts = self._netrc_hosts
        host = key.rsplit(":", 1)[0] if key.rsplit(":", 1)[-1].isdigit() else key
        return hosts is not None and host not in hosts

    def _configure(self, easy: pycurl.Curl, hop: Hop, ask: Ask) -> bool:
        """Set this hop's options on a pooled handle (which has :meth:`_base` already).
        True when it set more than the usual GET's options (reset it after use)."""
        request, url, method, body = ask.request, ask.url, ask.method, ask.body
        headers, cookie, creds = ask.headers, ask.cookie, ask.creds
        opt = easy.setopt
        opt(pycurl.URL, url)
        opt(pycurl.WRITEFUNCTION, hop.on_write)
        opt(pycurl.HEADERFUNCTION, hop.raw.append)
        opt(pycurl.HTTP_VERSION, self._http_version(hop, light(request, method, body)))
        special = False
        if request.max_speed:
            opt(pycurl.MAX_RECV_SPEED_LARGE, int(request.max_speed))
            special = True
        if creds is not None:
            if creds.password is None and self._netrc:
                # a user without a password: libcurl looks one up in netrc, as curl does,
                # only for a user named in the URL (not for CURLOPT_USERNAME)
                scheme, _, rest = url.partition("://")
                opt(pycurl.URL, f"{scheme}://{quote(creds.user, safe='')}@{rest}")
            else:
                opt(pycurl.USERNAME, creds.user.encode())
                opt(pycurl.PASSWORD, (creds.password or "").encode())
            special = True
        if ask.curl_decodes:
            opt(pycurl.HTTP_CONTENT_DECODING, 1)
            special = True

        # an empty value removes the header (libcurl's own too, as curl's -H "Name:")
        lines = [f"{n}: {v}" if v else f"{n}:" for k, (n, v) in headers.items() if k != "cookie"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        lines += range_lines(request, headers)
        lines.append("Expect:")  # no 100-continue round trip before a body
        # (bytes: pycurl takes a str as ASCII only; beyond it, UTF-8 as curl sends its argv)
        opt(pycurl.HTTPHEADER, [line.encode() for line in lines])

        if method == "HEAD":
            opt(pycurl.NOBODY, 1)
            special = True
        elif body is not None or method == "POST":
            data = body or b""
            opt(pycurl.POSTFIELDSIZE_LARGE, len(data))
            opt(pycurl.POSTFIELDS, data)
            if method != "POST":
                opt(pycurl.CUSTOMREQUEST, method)
            special = True
        elif method != "GET":
            opt(pycurl.CUSTOMREQUEST, method)
            special = True
        return special

    def _base(self, easy: pycurl.Curl) -> pycurl.Curl:
        """The options every request shares; they stay on a pooled handle between uses."""
        s = self.settings
        opt = easy.setopt
        opt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        opt(pycurl.NOSIGNAL, 1)
        opt(pycurl.TCP_NODELAY, 1)
        opt(pycurl.BUFFERSIZE, self.buffer_size)
        # (HTTP_VERSION is per hop: see _configure)
        # Ask for identity bytes; an encoding forced on us anyway is undone by the hop
        # (decode.py: libcurl does not check that the encoded stream ended).
        opt(pycurl.ACCEPT_ENCODING, "identity")
        opt(pycurl.HTTP_CONTENT_DECODING, 0)
        opt(pycurl.CONNECTTIMEOUT_MS, max(1, int(s.connect_timeout * 1000)))
        opt(pycurl.USERAGENT, s.user_agent.encode())  # a User-Agent header line replaces it
        if s.proxy is not None:  # else libcurl applies the *_proxy variables
            opt(pycurl.PROXY, s.proxy)
        if s.insecure:
            for name in ("SSL_VERIFYPEER", "SSL_VERIFYHOST"):
                opt(getattr(pycurl, name), 0)
                opt(getattr(pycurl, "PROXY_" + name), 0)
        else:
            if self._cainfo:
                opt(pycurl.CAINFO, os.fsencode(self._cainfo))
            if self._capath:
                opt(pycurl.CAPATH, os.fsencode(self._capath))
            cainfo, capath = self._proxy_ca
            if cainfo:
                opt(pycurl.PROXY_CAINFO, os.fsencode(cainfo))
            if capath:
                opt(pycurl.PROXY_CAPATH, os.fsencode(capath))
        if s.resolve:
            opt(pycurl.RESOLVE, list(s.resolve))
        # (file names as bytes: pycurl takes a str as ASCII only)
        if self._netrc:  # looked up per hop, for that hop's host
            opt(pycurl.NETRC, pycurl.NETRC_OPTIONAL)
            if s.netrc_file:
                opt(pycurl.NETRC_FILE, os.fsencode(s.netrc_file))
        return easy

    def _release(self, easy: pycurl.Curl, special: bool) -> None:
        if self._closed or len(self._pool) >= max(1, self.max_total_connections):
            easy.close()
            return
        if special:  # drop the hop's extra options; connections live in the multi
            easy.reset()
            self._base(easy)
        self._pool.append(easy)

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
        if self._pipes is not None:
            self._pipes.close()
        s = self.settings
        self._pipes = None
        if self._may_pipeline:
            self._pipes = PipelinePool(
                loop,
                max_conns=self.max_host_connections,
                connect_timeout=s.connect_timeout,
                stall_timeout=s.stall_timeout,
                resolve=s.resolve,
                max_total=self.max_total_connections,
            )
            self._pipes.held = self._held
            self._pipes.opening = self._shut_kept
            self._pipes.others = self._curl_active
            self._pipes.shed = self._shed
            self._pipes.curl_at = self._curl_at
            self._watch_loop_end(self._pipes)
        self._kept.clear()
        self._core = CurlLoop(
            loop,
            max_host_connections=self.max_host_connections,
            max_total_connections=self.max_total_connections,
            stall_timeout=self.settings.stall_timeout,
            low_speed_limit=self.settings.low_speed_limit,
        )
        return self._core

    def _watch_loop_end(self, pipes: PipelinePool) -> None:
        """Close ``pipes``' connections when asyncio.run (or a Runner) ends their loop:
        it first closes the async generators left open on the loop, this one among them.
        (Else a transport kept for later runs leaves them to a closed loop.)"""
        watch = self._close_at_loop_end(pipes)
        try:
            watch.asend(None).send(None)  # (to its yield: the loop knows it from now on)
        except StopIteration:
            pass
        self._loop_end = watch

    async def _close_at_loop_end(self, pipes: PipelinePool) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            pipes.close()
            if self._pipes is pipes:
                self._pipes = None

    def _next_url(self, current: str, location: str) -> str:
        raw = location.encode("latin-1", "replace")  # header bytes, as sent
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = quote(raw, safe=URL_SAFE)
        try:
            target = clean_url(urljoin(current, text))
            parts = urlsplit(target)
            parts.port  # noqa: B018 (raises for a port out of range)
        except ValueError as exc:  # (a port out of range, a bad IPv6 address)
            shown = re.sub(_USERINFO, "//", text)
            raise RemoteError(
                f"unusable redirect to {shown} (from {safe_url(current)}): {exc}"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            raise RemoteError(
                f"refused redirect to {scheme or 'an unknown'} URL {safe_url(target)} "
                f"(from {safe_url(current)})"
            )
        if parts.username is not None or parts.password is not None:
            # as curl: a server's ``user:password@`` is not sent (nor kept in the URL)
            target = split_userinfo(target, parts)[0]
        return target.partition("#")[0]

    def _cookie(self, url: str, headers: dict[str, tuple[str, str]]) -> str | None:
        """The Cookie header for ``url``: the request's own plus the jar's for that URL."""
        given = headers.get("cookie")
        values = [given[1]] if given and given[1] else []
        if self._jar is not None:
            from .cookies import cookie_header

            if from_jar := cookie_header(self._jar, url):
                values.append(from_jar)
        return "; ".join(values) if values else None


def _direct_key(no_proxy: str, known: dict[str, bool], url: str) -> str | None:
    """:func:`pipeline_key` for a URL whose host ``no_proxy`` sends direct past the
    proxy, else None (``known``: the answer by key, worked out once)."""
    key = pipeline_key(url)
    if key is None:
        return None
    direct = known.get(key)
    if direct is None:
        host, colon, port = key.rpartition(":")
        if not colon or not port.isdigit() or host.endswith(":"):
            host = key  # (no port)
        direct = known[key] = no_proxy_match(host, no_proxy)
    return key if direct else None


def _proxy_of(easy: pycurl.Curl) -> ProxyPath | None:
    """The proxy a failed transfer went through (None: none)."""
    used = getattr(pycurl, "USED_PROXY", None)  # (libcurl 8.7+)
    try:
        tunnel = int(easy.getinfo(pycurl.HTTP_CONNECTCODE))
        tls_failed = easy.getinfo(pycurl.PROXY_SSL_VERIFYRESULT) != 0
        via = bool(easy.getinfo(used)) if used is not None else tunnel > 0 or tls_failed
    except pycurl.error:
        return None
    return ProxyPath(tunnel, tls_failed) if via else None


def _set_up_and_start(
    core: CurlLoop,
    set_up: Callable[[], pycurl.Curl],
    hop: Hop,
    switch: Callable[[], bool],
    report_socket: bool,
    admit: Admit | None,
) -> None:
    """:func:`_start` for a hop whose handle is set up only now, from the grant, and only
    if it stays with libcurl."""
    if hop.fut.done():  # cancelled while it waited
        return
    if switch():
        hop.finish(_TO_PIPE, "")
        return
    try:
        easy = set_up()
    except Exception as exc:
        hop.fut.set_exception(exc)
        return
    _start(core, easy, hop, switch, None, report_socket, admit)


def _start(
    core: CurlLoop,
    easy: pycurl.Curl,
    hop: Hop,
    switch: Callable[[], bool] | None = None,
    version: Callable[[], int] | None = None,
    report_socket: bool = False,
    admit: Admit | None = None,
) -> None:
    """Start a transfer set up earlier, now that its slot is granted (from the grant).
    ``admit``: asked before it starts; False means it is called back when there is room."""
    if hop.fut.done():  # cancelled while it waited
        return
    if switch is not None and switch():
        hop.finish(_TO_PIPE, "")
        return
    if admit is not None:
        later = functools.partial(_start, core, easy, hop, switch, version, report_socket)
        if not admit(later, hop.fut):
            return
    try:
        if version is not None:
            easy.setopt(pycurl.HTTP_VERSION, version())
        core.add(easy, hop.finish, report_socket)
    except Exception as exc:
        hop.fut.set_exception(exc)
