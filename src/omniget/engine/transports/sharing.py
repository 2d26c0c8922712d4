"""Which connection a request of the HTTP transport (:mod:`.http`) goes over: pipelined on
the pool's own connections to a plain-HTTP origin (:mod:`.pipeline`), multiplexed over
HTTP/2 to an https host, or a libcurl transfer of its own; and libcurl's connections
(running, or kept after a transfer: :mod:`.kept`) counted beside the pool's under the
per-host and total caps.

:class:`ConnectionSharing` is a part of :class:`.http.CurlTransport`, not a class of its
own: its methods are the pool's callbacks and the hops' notes, and they read and update
the transport's state (its loop and pool, rebound to each event loop; the hops running
per origin).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pycurl

from ...hosts import host_key
from ...settings import NetworkSettings
from ..scheduler import UNIT, host_of
from .curlloop import CurlLoop
from .hop import Hop
from .kept import KeptConnections
from .outgoing import netrc_hosts, no_proxy_match, tls_key
from .pipeline import DEPTH, SMALL_BODY, PipelinePool, pipeline_key

__all__ = ["ConnectionSharing", "direct_key"]

_H1: int = pycurl.CURL_HTTP_VERSION_1_1
_H2: int = pycurl.CURL_HTTP_VERSION_2TLS  # HTTP/2 when TLS negotiates it, else HTTP/1.1
#: how far a host's answers may lean to small (up) or large (down): see _note_h2
_LEAN = 4


class ConnectionSharing:
    """The transport's choices of connection (a mixin of :class:`.http.CurlTransport`,
    which sets these attributes)."""

    settings: NetworkSettings
    max_host_connections: int
    _core: CurlLoop | None
    _pipes: PipelinePool | None
    _netrc: bool
    _netrc_hosts: frozenset[str] | None
    _on_curl: dict[str, set[pycurl.Curl]]
    _kept: KeptConnections
    _busy: dict[str, int]
    _pipe_key: Callable[[str], str | None]
    _h2: dict[str, bool]
    _h2_lean: dict[str, int]
    _h2_hosts: set[str]
    _held: Callable[[str], int] | None

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
        """Shut one of libcurl's kept connections that no transfer uses. None is spared
        for libcurl's transfers not yet run (as :meth:`_shut_kept` spares them): the run's
        count (:meth:`_curl_active`) holds each of those as a connection of its own
        (``core.starting``) beside the kept ones, and libcurl finds a shut connection dead
        and never reuses it, so such a transfer opens the connection it was counted for."""
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
        host, or to any host when one connection is all a host gets (nothing to split
        over), unless the host's answers lean to large ones or it does not speak HTTP/2;
        everything else (a lone download among them) is HTTP/1.1."""
        url = hop.url
        hop.offered_h2 = (
            light
            and url[:8].lower() == "https://"
            and self._h2.get(host_of(url), True)
            and (self._busy.get(tls_key(url), 0) > 1 or self.max_host_connections == 1)
        )
        return _H2 if hop.offered_h2 else _H1

    def _note_h2(self, hop: Hop) -> None:
        """Multiplex light GETs to the hop's https host while its answers come over HTTP/2
        and lean to small ones; a host whose answers lean to large ones (or that has no
        HTTP/2) gets them over HTTP/1.1. Told at each final head of a light https GET,
        before its body.

        Each small answer counts one up, each large one down, within ``_LEAN`` either
        way, and the GETs go as streams while the count is above zero: a large file
        among a host's small ones (the first GET of a file it then splits) leaves them
        streams, a few large answers in a row send them back. (The last answer alone
        decided it: a large one sent the small files beside it to HTTP/1.1, each on a
        connection of its own, until a small one came back: how many went so was a
        matter of timing.)"""
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
            lean = self._h2_lean.get(host, 0) + (1 if size <= SMALL_BODY else -1)
            lean = self._h2_lean[host] = max(-_LEAN, min(_LEAN, lean))
            self._h2[host] = lean > 0

    def _no_h2(self, url: str) -> None:
        host = host_of(url)
        if host not in self._h2_hosts:
            self._h2[host] = False

    def _no_netrc_entry(self, key: str) -> bool:
        """No netrc login for this host (libcurl would send one; pipelining would not)."""
        if not self._netrc:
            return True
        if self._netrc_hosts is None:
            found = netrc_hosts(self.settings.netrc_file)
            # (keyed as hosts are: libcurl finds "machine ::1" for http://[::1]/)
            self._netrc_hosts = found and frozenset(
                host_key(f"[{h}]" if ":" in h else h) for h in found
            )
        hosts = self._netrc_hosts
        host = key.rsplit(":", 1)[0] if key.rsplit(":", 1)[-1].isdigit() else key
        return hosts is not None and host not in hosts


def direct_key(no_proxy: str, known: dict[str, bool], url: str) -> str | None:
    """:func:`pipeline_key` for a URL whose host ``no_proxy`` sends direct past the
    proxy, else None (``known``: the answer by host as written, worked out once). The
    host is matched as the URL writes it, as libcurl matches it: two spellings of one
    key (127.0.0.1 and [::ffff:127.0.0.1]) may go different ways."""
    key = pipeline_key(url)
    if key is None:
        return None
    written = url[7:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    direct = known.get(written)
    if direct is None:
        host, colon, port = written.rpartition(":")
        if not colon or not port.isdigit() or host.endswith(":"):
            host = written  # (no port)
        # libcurl reads a host such as 127.1, 0x7f.1, 0177.0.0.1 or 2130706433 as the
        # IPv4 address 127.0.0.1 and matches that against no_proxy: such a host stays
        # with libcurl, which picks its path itself
        direct = known[written] = not _numeric(host) and no_proxy_match(host, no_proxy)
    return key if direct else None


_NUMERIC = frozenset("0123456789abcdefxABCDEFX.")


def _numeric(host: str) -> bool:
    """``host`` may be an IPv4 address in a form other than a.b.c.d (as libcurl reads
    URLs: parts in decimal, octal or hex, fewer than four)."""
    if not host[:1].isdigit() or not _NUMERIC.issuperset(host):
        return False
    import ipaddress

    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False
