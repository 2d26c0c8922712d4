"""libcurl easy handles for the HTTP transport (:mod:`.http`): the options every request
shares, a hop's own, the pool that keeps handles between uses, and starting a transfer set
up earlier once its slot is granted."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pycurl

from ...settings import NetworkSettings
from .curlerrors import ProxyPath
from .curlloop import CurlLoop
from .hop import Hop
from .outgoing import Ask, light, range_lines
from .trust import ca_locations, ca_trust, missing_ca

__all__ = ["TO_PIPE", "Admit", "Handles", "proxy_of", "set_up_and_start", "start"]

TO_PIPE = -4  # a hop that goes pipelined after all (decided when its slot came)
#: ``admit(start, fut)``: may a libcurl transfer start now (else ``start`` is called later)
Admit = Callable[[Callable[[], None], "asyncio.Future[Any]"], bool]


class Handles:
    """A transport's libcurl easy handles: :meth:`base` sets the options every request
    shares, :meth:`configure` a hop's own; :meth:`take` and :meth:`release` keep set-up
    handles between uses."""

    def __init__(
        self,
        settings: NetworkSettings,
        *,
        buffer_size: int,
        max_total_connections: int,
        netrc: bool,
    ) -> None:
        self.settings = settings
        self.max_total_connections = max_total_connections
        self.buffer_size = buffer_size
        self._pool: list[pycurl.Curl] = []
        self._closed = False
        self._cainfo, self._capath, self.ca_from = ca_trust(settings)
        #: a variable naming CA certificates that are not there: said for https:// URLs
        self.missing_ca = missing_ca(settings)
        # an https:// proxy: the environment's CAs or the system's (--ca-cert is for
        # servers, as curl's --cacert; libcurl's own default is the pycurl wheel's path)
        self._proxy_ca = (self._cainfo, self._capath)
        if settings.ca_cert:
            self._proxy_ca = ca_locations(dataclasses.replace(settings, ca_cert=None))
        self._netrc = netrc

    def take(self) -> pycurl.Curl:
        """A pooled handle, or a new one with :meth:`base`'s options."""
        return self._pool.pop() if self._pool else self.base(pycurl.Curl())

    def configure(
        self, easy: pycurl.Curl, hop: Hop, ask: Ask, version: Callable[[Hop, bool], int]
    ) -> bool:
        """Set this hop's options on a pooled handle (which has :meth:`base` already).
        True when it set more than the usual GET's options (reset it after use).
        ``version(hop, light)``: the HTTP version to ask for."""
        request, url, method, body = ask.request, ask.url, ask.method, ask.body
        headers, cookie, creds = ask.headers, ask.cookie, ask.creds
        opt = easy.setopt
        opt(pycurl.URL, url)
        opt(pycurl.WRITEFUNCTION, hop.on_write)
        opt(pycurl.HEADERFUNCTION, hop.raw.append)
        opt(pycurl.HTTP_VERSION, version(hop, light(request, method, body)))
        special = False
        if request.max_speed:
            opt(pycurl.MAX_RECV_SPEED_LARGE, int(request.max_speed))
            special = True
        if request.rate is not None:  # (the budget lets a read through whole)
            opt(pycurl.BUFFERSIZE, rate_buffer(request.rate.rate, self.buffer_size))
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
        if ask.fresh:  # (HTTP/2 too: a new connection, not a stream on a shared one)
            opt(pycurl.FRESH_CONNECT, 1)
            special = True
        if ask.proxy_auth is not None:  # (to a proxy only, a CONNECT's too: see base)
            name, value = ask.proxy_auth
            opt(pycurl.PROXYHEADER, [(f"{name}: {value}" if value else f"{name}:").encode()])
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

    def base(self, easy: pycurl.Curl) -> pycurl.Curl:
        """The options every request shares; they stay on a pooled handle between uses."""
        s = self.settings
        opt = easy.setopt
        opt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        opt(pycurl.NOSIGNAL, 1)
        opt(pycurl.TCP_NODELAY, 1)
        opt(pycurl.BUFFERSIZE, self.buffer_size)
        # (HTTP_VERSION is per hop: see configure)
        # Ask for identity bytes; an encoding forced on us anyway is undone by the hop
        # (decode.py: libcurl does not check that the encoded stream ended).
        opt(pycurl.ACCEPT_ENCODING, "identity")
        opt(pycurl.HTTP_CONTENT_DECODING, 0)
        opt(pycurl.CONNECTTIMEOUT_MS, max(1, int(s.connect_timeout * 1000)))
        opt(pycurl.USERAGENT, s.user_agent.encode())  # a User-Agent header line replaces it
        # HTTPHEADER's lines go to the server only (inside a CONNECT's tunnel), PROXYHEADER's
        # to a proxy only (libcurl's default since 7.42.1: said, not assumed)
        opt(pycurl.HEADEROPT, pycurl.HEADER_SEPARATE)
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

    def release(self, easy: pycurl.Curl, special: bool) -> None:
        if self._closed or len(self._pool) >= max(1, self.max_total_connections):
            easy.close()
            return
        if special:  # drop the hop's extra options; connections live in the multi
            easy.reset()
            self.base(easy)
        self._pool.append(easy)

    def close(self) -> None:
        """Close the pooled handles; those released from now on are closed too."""
        self._closed = True
        for easy in self._pool:
            easy.close()
        self._pool.clear()


#: libcurl's smallest receive buffer (CURLOPT_BUFFERSIZE).
MIN_BUFFER = 1024


def rate_buffer(rate: int, largest: int) -> int:
    """The receive buffer of a transfer under a ``rate`` bytes/s budget: a tenth of a
    second's worth (1 KiB at the least), so that no one read goes far past the budget
    (a whole small file read at once came at full speed, its debt never paid)."""
    return max(MIN_BUFFER, min(largest, rate // 10))


def proxy_of(easy: pycurl.Curl) -> ProxyPath | None:
    """The proxy a failed transfer went through (None: none)."""
    used = getattr(pycurl, "USED_PROXY", None)  # (libcurl 8.7+)
    try:
        tunnel = int(easy.getinfo(pycurl.HTTP_CONNECTCODE))
        tls_failed = easy.getinfo(pycurl.PROXY_SSL_VERIFYRESULT) != 0
        refused = int(easy.getinfo(_PROXY_ERROR)) if _PROXY_ERROR is not None else 0
        via = bool(easy.getinfo(used)) if used is not None else (
            tunnel > 0 or tls_failed or refused > 0)
        connected = float(easy.getinfo(pycurl.CONNECT_TIME)) > 0
    except pycurl.error:
        return None
    return ProxyPath(tunnel, tls_failed, refused, connected) if via else None


_PROXY_ERROR = getattr(pycurl, "PROXY_ERROR", None)  # (libcurl 7.73+)


def set_up_and_start(
    core: CurlLoop,
    set_up: Callable[[], pycurl.Curl],
    hop: Hop,
    switch: Callable[[], bool],
    report_socket: bool,
    admit: Admit | None,
) -> None:
    """:func:`start` for a hop whose handle is set up only now, from the grant, and only
    if it stays with libcurl."""
    if hop.fut.done():  # cancelled while it waited
        return
    if switch():
        hop.finish(TO_PIPE, "")
        return
    try:
        easy = set_up()
    except Exception as exc:
        hop.fut.set_exception(exc)
        return
    start(core, easy, hop, switch, None, report_socket, admit)


def start(
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
        hop.finish(TO_PIPE, "")
        return
    if admit is not None:
        later = functools.partial(start, core, easy, hop, switch, version, report_socket)
        if not admit(later, hop.fut):
            return
    try:
        if version is not None:
            easy.setopt(pycurl.HTTP_VERSION, version())
        core.add(easy, hop.finish, report_socket)
    except Exception as exc:
        hop.fut.set_exception(exc)
