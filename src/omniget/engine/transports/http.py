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
connections (the https twin of pipelining). A lone download stays on HTTP/1.1 (but with
one connection per host, nothing to split over, a light GET offers HTTP/2 alone too). Ranged
requests, and every request to an origin whose answers are large, stay on HTTP/1.1: one
connection per transfer, so a server that caps each connection still gets split across several.

A hop's answer side (head, redirect or final answer, body into the sink) is :mod:`.hop`;
what a request sends (URL, credentials, header lines, a pipelined request's bytes) is
:mod:`.outgoing`. Which connection a request goes over (pipelined, HTTP/2 or libcurl's own,
and libcurl's connections under the caps) is :mod:`.sharing`; libcurl's easy handles (their
options, their pool, a transfer started from its slot's grant) are :mod:`.easy`; where a
redirect leads is :mod:`.redirect`; the CA certificates are :mod:`.trust`, and libcurl's
result codes as omniget errors :mod:`.curlerrors`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncGenerator, Callable
from typing import ClassVar
from urllib.parse import urlsplit

import pycurl

from ...errors import AuthRequired, RemoteError, TransferError, UsageError
from ...masks import mask_proxy
from ...settings import NetworkSettings
from .base import (
    PROXY_LOGIN,
    SECRET_HEADERS,
    Gate,
    Head,
    Request,
    Sink,
    origin,
    proxy_login,
    safe_url,
)
from .curlerrors import PROXY_STATUSES, curl_error, proxy_answer
from .curlloop import STALLED, WEIRD_REPLY, CurlLoop
from .decode import codings
from .easy import TO_PIPE, Handles, proxy_of, set_up_and_start, start
from .hop import Hop, Misdirected, parse_head
from .kept import KeptConnections
from .outgoing import (
    Ask,
    check_headers,
    clean_url,
    cookie_jar,
    light,
    netrc_exists,
    no_http_proxy,
    no_proxy_list,
    parse_user,
    pipe_request,
    pipeable,
    proxy_env,
    proxy_for,
    proxy_source,
    split_userinfo,
    tls_key,
)
from .pipeline import FALLBACK, PipelinePool, pipeline_key
from .redirect import next_url
from .sharing import ConnectionSharing, direct_key
from .trust import ca_locations

log = logging.getLogger(__name__)

__all__ = ["CurlTransport", "ca_locations"]

# Dropped on a hop to another origin (Host because it names the old one).
_SENSITIVE = SECRET_HEADERS | {"host"}
_OURS = frozenset({pycurl.E_WRITE_ERROR, pycurl.E_ABORTED_BY_CALLBACK})
# how an offered HTTP/2 fails before any answer on a server that only says it speaks it
# (a preface that is no HTTP/2, a GOAWAY that takes no stream, every stream refused)
_H2_FAILED = frozenset(
    {
        pycurl.E_HTTP2,
        92,  # CURLE_HTTP2_STREAM
        pycurl.E_RECV_ERROR,
        pycurl.E_SEND_ERROR,
        pycurl.E_GOT_NOTHING,
        STALLED,
    }
)


def _no_key(url: str) -> None:
    """No plain-HTTP URL goes to the pool (a proxy takes them all)."""


class CurlTransport(ConnectionSharing):
    """The HTTP(S) transport. Many fetches run at once on one instance; it binds to the
    running event loop on first use. Its choices of connection, and what it tells the
    scheduler of them (:meth:`count_held`, :meth:`pipelined`), are in :mod:`.sharing`."""

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
        self._closed = False
        self._user = parse_user(settings.user)
        self._user_origin = origin(settings.user_origin) if settings.user_origin else None
        self._jar = cookie_jar(settings.cookies_file)
        self._headers = check_headers(settings.headers, every_request=True)
        #: a Proxy-Authorization header given: the proxy's, never an origin server's
        self._proxy_auth = self._headers.pop("proxy-authorization", None)
        # what follows a pipelined request's line, for those headers, by host
        self._pipe_heads: dict[str, str] = {}
        # libcurl reads the netrc file on every request: skip that when there is none
        self._netrc = settings.netrc and netrc_exists(settings.netrc_file)
        self._handles = Handles(
            settings,
            buffer_size=buffer_size,
            max_total_connections=max_total_connections,
            netrc=self._netrc,
        )
        self._netrc_hosts: frozenset[str] | None = None  # None: every host (or unread)
        self._pipes: PipelinePool | None = None
        self._loop_end: AsyncGenerator[None, None] | None = None  # (see _watch_loop_end)
        self._held: Callable[[str], int] | None = None
        # libcurl's transfers to plain-HTTP origins, and the connections it kept there
        self._on_curl: dict[str, set[pycurl.Curl]] = {}
        self._kept = KeptConnections()
        # plain-HTTP origin, or "tls " + https host -> hops running (others first)
        self._busy: dict[str, int] = {}
        self._may_pipeline = True
        #: a plain-HTTP URL's pool key (None: the pool never takes it): with a proxy,
        #: only those of the hosts no_proxy sends direct (libcurl's rule)
        self._pipe_key: Callable[[str], str | None] = pipeline_key
        self._proxy_env = proxy_env()
        self._route()
        # https host -> multiplex light GETs (True: its answers over HTTP/2 lean small)
        self._h2: dict[str, bool] = {}
        self._h2_lean: dict[str, int] = {}  # https host -> small answers less large ones
        self._h2_hosts: set[str] = set()  # https hosts seen answering over HTTP/2

    def _route(self) -> None:
        """Which plain-HTTP URLs the pool may take, as libcurl routes them now (see
        ``_pipe_key``); the pool is made only if some may go there."""
        proxy = self.settings.proxy
        self._may_pipeline = no_http_proxy(proxy)
        self._pipe_key = pipeline_key if self._may_pipeline else _no_key
        exempt = no_proxy_list() if not self._may_pipeline and proxy != "" else None
        if exempt is not None:
            self._may_pipeline = True
            self._pipe_key = functools.partial(direct_key, exempt, {})

    async def fetch(self, request: Request, sink: Sink, gate: Gate | None = None) -> Head:
        """Fetch ``request`` into ``sink``, following redirects; return the final head.
        With ``gate``, the first request is set up now and starts when the gate is granted."""
        if (now := proxy_env()) != self._proxy_env:
            # (libcurl reads them at each request: a program set one between runs)
            self._proxy_env = now
            self._route()
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
        headers, proxy_auth = self._headers, self._proxy_auth
        if request.headers:
            headers = {**headers, **check_headers(tuple(request.headers.items()))}
            proxy_auth = headers.pop("proxy-authorization", proxy_auth)
        proxy = proxy_for(url, self.settings.proxy) if proxy_auth is not None else None
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
            if self._handles.missing_ca is not None and url[:8].lower() == "https://":
                raise UsageError(self._handles.missing_ca)  # (libcurl's words blame the URL)
            ask = Ask(request, url, method, body, hop_headers, cookie, creds if same else None)
            if proxy_auth is not None and (first is None or proxy_for(url, self.settings.proxy)
                                           == proxy):  # (kept while the proxy is the same)
                ask.proxy_auth = proxy_auth
            try:
                hop = await self._run_hop(core, ask, sink, gate)
            except Misdirected:  # once more, on a connection of its own (RFC 9110 15.5.20)
                log.debug("421 from %s: asked again on a new connection", safe_url(url))
                hop = await self._run_hop(core, dataclasses.replace(ask, fresh=True), sink)
            gate = None
            if hop.location is None:
                assert hop.head is not None
                if request.rate is not None and (owed := request.rate.owed()) > 0:
                    await asyncio.sleep(owed)  # (its last read paced as the others)
                return hop.head
            if first is None:
                first = origin(url)
                seen = {(method, url, cookie or "")}
            url = next_url(url, hop.location, self.schemes)
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
        self._handles.close()

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
                and not ask.fresh
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
                elif code != TO_PIPE:
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
            raise self._refusal(hop, url)
        if code != 0 and not (hop.stopped and code in _OURS):
            named, proxy_from = "", ""
            if (found := self._proxy_named(url)) is not None:
                proxy_from = found[1]
                named = found[0] if hop.proxy is not None else ""
            raise curl_error(
                code, message, url, fresh=hop.fresh, proxy=hop.proxy,
                ca_from=self._handles.ca_from, named=named, proxy_from=proxy_from,
                coding=_coding(hop, code),
            )
        if not hop.decided:  # no body: the head is decided at the end
            hop.decide()
            if hop.error is not None:
                raise self._refusal(hop, url)
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
        hop with :data:`.easy.TO_PIPE` unstarted (it goes pipelined instead). Such a hop, to an
        origin the pool has not refused, gets its libcurl handle only if it does not
        switch (the first files of a run all wait for their slots so, until the origin
        is known: a handle set up for each went unused)."""
        request, url = ask.request, ask.url
        hop = Hop(sink, url, core.loop.create_future(), request.rate)
        hop.decode_here = not ask.curl_decodes
        hop.curl_decodes = ask.curl_decodes
        hop.misdirect_again = not ask.fresh
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
            easy = self._handles.take()
            handle.append(easy)
            if request.rate is not None:
                hop.easy, hop.held = easy, core.held
            if key is not None:
                self._on_curl.setdefault(key, set()).add(easy)
            special[0] = self._handles.configure(easy, hop, ask, self._http_version)
            return easy

        try:
            admit = None if self._pipes is None else functools.partial(self._admit, key)
            report = key is not None
            if gate is None or gate.granted:
                start(core, set_up(), hop, None, None, report, admit)
            elif switch is not None and key is not None and self._may_switch(key):
                gate.on_grant(functools.partial(set_up_and_start, core, set_up, hop, switch,
                                                report, admit))  # fmt: skip
            else:
                easy = set_up()
                version = None  # HTTP/2 or not: known better when the slot comes
                if light_tls:
                    version = functools.partial(self._http_version, hop, True)
                gate.on_grant(
                    lambda: start(core, easy, hop, switch, version, report, admit)
                )
            try:
                code, message = await hop.fut
            finally:
                made = handle[0] if handle else None  # (None: it went pipelined unmade)
                if made is not None:
                    core.remove(made)  # a no-op unless cancelled mid-transfer
                if hop.resume is not None:
                    hop.resume.cancel()
                if made is not None:
                    core.held.discard(made)
                hop.easy = None
                if key is not None:
                    self._kept_after(core, made, key)
                if self._pipes is not None and self._pipes.starved:
                    self._pipes.kick()  # this transfer's connection counted against the cap
            if made is not None:
                if hop.h1_answer and made.getinfo(pycurl.NUM_CONNECTS) > 0:
                    self._no_h2(hop.url)  # asked on a new connection: this host has no HTTP/2
                elif hop.offered_h2 and code in _H2_FAILED and not hop.raw:
                    # no answer at all: from a host never heard over HTTP/2, its retry goes
                    # over HTTP/1.1 (offered again, a broken HTTP/2 failed every retry)
                    self._no_h2(hop.url)
                if code in (WEIRD_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL):  # (see curl_error)
                    hop.fresh = made.getinfo(pycurl.NUM_CONNECTS) > 0
                elif code > 0 and code not in _OURS:
                    hop.proxy = proxy_of(made)
        finally:
            if handle:
                self._handles.release(handle[0], special[0])
        return hop, code, message

    # -- helpers --

    def _refusal(self, hop: Hop, url: str) -> BaseException:
        """The error the sink raised at ``hop``'s head. A 502, 503 or 504 to an http://
        request through a proxy says whose it was (see :func:`.curlerrors.proxy_answer`);
        an https:// one is the server's, in a tunnel (a proxy's own, to the CONNECT, is
        :func:`.curlerrors.curl_error`'s). The proxy is the one libcurl takes for ``url``
        (as :func:`.outgoing.proxy_source` finds it)."""
        error = hop.error
        assert error is not None
        if (isinstance(error, TransferError) and hop.status in PROXY_STATUSES
                and url[:5].lower() == "http:" and (found := self._proxy_named(url))):
            proxy_answer(error, hop.headers, f"{found[0]} ({found[1]})")
        if (isinstance(error, AuthRequired) and hop.status == 407
                and error.message.endswith(PROXY_LOGIN)
                and (found := self._proxy_named(url))):  # (check_status knows no settings)
            error.message = error.message[: -len(PROXY_LOGIN)] + proxy_login(found[1])
        return error

    def _proxy_named(self, url: str) -> tuple[str, str] | None:
        """The proxy ``url`` goes through, as errors name it: its URL (password masked),
        and where it was set (``--proxy``, ``set in config file ...``, ``http_proxy``);
        None: it goes direct."""
        found = proxy_source(url, self.settings.proxy)
        if found is None:
            return None
        where = self.settings.proxy_from if found[0] == "--proxy" else found[0]
        return mask_proxy(found[1]), where

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
            connect_timeout=self.settings.connect_timeout,
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

    def _cookie(self, url: str, headers: dict[str, tuple[str, str]]) -> str | None:
        """The Cookie header for ``url``: the request's own plus the jar's for that URL."""
        given = headers.get("cookie")
        values = [given[1]] if given and given[1] else []
        if self._jar is not None:
            from .cookies import cookie_header

            if from_jar := cookie_header(self._jar, url):
                values.append(from_jar)
        return "; ".join(values) if values else None


def _coding(hop: Hop, code: int) -> str:
    """The codings of a failed answer's Content-Encoding, when libcurl could not undo
    them ('' otherwise: its head is read only then)."""
    if code != pycurl.E_BAD_CONTENT_ENCODING:
        return ""
    _, pairs = parse_head(hop.raw)
    return codings([v for k, v in pairs if k.lower() == "content-encoding"])
