"""One hop of an HTTP fetch on the receiving side: the head as it arrives, the decision
(a redirect to follow, or the final answer for the sink), and the body bytes into the sink.
A :class:`Hop` serves libcurl's callbacks and the pipelined connections alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import pycurl

from ...errors import IntegrityError, TransientError
from ..verify import encoded_digests
from .base import Head, Headers, PipeSink, Sink, StopTransfer, safe_url
from .decode import DECODED, DecodeError, Decoder, codings, decoder_for, end_of, to_undo
from .h1fields import FRAMING
from .h1queue import head_lines

if TYPE_CHECKING:
    from ..ratelimit import RateLimit
    from .curlerrors import ProxyPath

log = logging.getLogger(__name__)

__all__ = ["REDIRECTS", "Hop", "Misdirected", "parse_head"]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
REDIRECT_BODY_LIMIT = 64 * 1024  # a longer redirect body is cut, not read
_NO_HEADERS = Headers()


class Misdirected(TransientError):
    """A 421 (Misdirected Request): the connection it came on was not the server's for
    that origin (RFC 9110 15.5.20). The fetch asks again once, on a new connection."""


def parse_head(lines: list[bytes]) -> tuple[int, list[tuple[str, str]]]:
    """Status and header pairs of the last response block in raw header lines (1xx
    answers and a proxy's CONNECT answer come first, each with its own status line)."""
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith(b"HTTP/"):
            break
    else:
        return 0, []
    parts = lines[start].split(None, 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    pairs: list[tuple[str, str]] = []
    for text in b"".join(lines[start + 1 :]).decode("latin-1").split("\n"):
        if text[:1] in (" ", "\t") and pairs:  # obsolete line folding
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {text.strip()}")
        elif text := text.strip():
            name, _, value = text.partition(":")
            if name.endswith((" ", "\t")):  # (RFC 9112 5.1: no blank before the colon)
                name = name.rstrip()
                if name.lower() in FRAMING:  # (libcurl ignores it: so must its reader)
                    continue
            pairs.append((name, value.strip()))
    return status, pairs


class Hop:
    """One libcurl transfer: one request and its response (a redirect or the final one).
    Its ``on_write`` runs inside libcurl and must never raise."""

    # (32 attributes: more than Python 3.11 shares an instance dict's keys for once an
    # instance exists (29), so without slots the last set made each hop a dict of its own)
    __slots__ = (
        "_raw",
        "curl_decodes",
        "decided",
        "decode_here",
        "decoder",
        "deliver",
        "discarded",
        "easy",
        "encoded",
        "error",
        "fresh",
        "fut",
        "h1_answer",
        "head",
        "head_block",
        "headers",
        "held",
        "location",
        "misdirect_again",
        "note",
        "offered_h2",
        "on_data",
        "parsed",
        "pipe_sink",
        "proxy",
        "rate",
        "redo",
        "resume",
        "sink",
        "status",
        "stopped",
        "url",
        "views",
    )

    def __init__(
        self,
        sink: Sink,
        url: str,
        fut: asyncio.Future[tuple[int, str]],
        rate: RateLimit | None = None,
    ) -> None:
        self.sink = sink
        self.url = url
        self.fut = fut
        self._raw: list[bytes] = []  # (see raw)
        self.head_block: bytes | None = None  # a pipelined answer's head (see Exchange)
        self.parsed: tuple[int, Headers] | None = None  # (see Exchange)
        self.status = 0
        self.headers = _NO_HEADERS  # (until decided; never added to)
        self.head: Head | None = None  # the final response's head, once decided
        self.location: str | None = None  # set when this hop is a redirect
        self.decided = False
        self.deliver = False  # body bytes go to the sink
        # A sink with ``takes_views`` reads body bytes only while called: it may get views
        # of the pipelined connection's read buffer. Every other sink gets bytes.
        self.views: bool = getattr(sink, "takes_views", False)
        # (no typing.cast below: a call each, twice per request)
        self.on_data: Callable[[bytes | memoryview], None]
        self.on_data = sink.on_data  # type: ignore[assignment]
        # A sink with ``on_pipe`` may take body bytes from a pipe (a pipelined connection
        # splices them there from its socket, see h1socket.py).
        piped = hasattr(sink, "on_pipe")
        self.pipe_sink: PipeSink | None = sink if piped else None  # type: ignore[assignment]
        self.stopped = False  # ended on purpose (StopTransfer, a cut redirect body)
        self.fresh = False  # a malformed or non-HTTP head came on a connection opened for it
        self.proxy: ProxyPath | None = None  # a failed libcurl transfer's proxy, if any
        self.error: BaseException | None = None  # raised by the sink
        self.discarded = 0
        self.rate = rate
        self.easy: pycurl.Curl | None = None  # set while paused for the rate limit
        #: its loop's transfers paused on purpose (CurlLoop.held: no stall while so)
        self.held: set[pycurl.Curl] | None = None
        self.resume: asyncio.TimerHandle | None = None
        self.note: Callable[[Hop], None] | None = None  # told of the final head first
        self.offered_h2 = False  # HTTP/2 was offered (ALPN) for this transfer
        self.h1_answer = False  # an offered HTTP/2 was answered over HTTP/1.1 (see _note_h2)
        # libcurl hands over the body as sent: a Content-Encoding is undone here
        self.decode_here = False
        self.curl_decodes = False  # libcurl undoes the encoding (br, ...): unchecked end
        self.decoder: Decoder | None = None
        self.encoded = False  # the decoder has seen body bytes
        self.redo = False  # an encoding not decoded here: ask again, libcurl decoding
        #: a 421 is not the sink's yet: the request goes again on a new connection
        self.misdirect_again = True

    @property
    def raw(self) -> list[bytes]:
        """The header lines as they came, each with its CRLF: appended by libcurl's header
        callback, or made from a pipelined answer's head the first time they are read."""
        block = self.head_block
        if block is not None:
            self.head_block = None
            self._raw += head_lines(block)
        return self._raw

    def on_write(self, data: bytes | memoryview) -> int | None:
        if not self.deliver:  # (the head is complete: decide once, then deliver)
            if not self.decided and not self.decide():
                return 0
            if self.location is not None:
                self.discarded += len(data)
                if self.discarded > REDIRECT_BODY_LIMIT:
                    self.stopped = True
                    return 0
                return None
            self.deliver = True
        if self.rate is not None:
            wait = self.rate.take(len(data))
            if wait > 0 and self.easy is not None:
                # libcurl keeps the bytes and hands them over again once resumed
                self.resume = self.fut.get_loop().call_later(wait, self.unpause)
                if self.held is not None:
                    self.held.add(self.easy)
                return pycurl.WRITEFUNC_PAUSE  # type: ignore[no-any-return]
        if self.decoder is not None:
            self.encoded = True
            try:
                data = self.decoder.decompress(data)
            except DecodeError as exc:  # (its own checksum failed, or garbage)
                self.error = IntegrityError(
                    f"could not decode the body ({safe_url(self.url)}): {exc}"
                )
                return 0
            if not data:
                return None
        try:  # (as _to_sink, without a call per chunk)
            self.on_data(data)
        except StopTransfer:
            self.stopped = True
            return 0
        except BaseException as exc:
            self.error = exc
            return 0
        return None

    def _to_sink(self, call: Callable[..., object], *args: object) -> int | None:
        """Body bytes to the sink (``call``: its on_data or on_pipe); 0 (a short count:
        libcurl aborts the transfer with CURLE_WRITE_ERROR) when it stops or fails."""
        try:
            call(*args)
        except StopTransfer:
            self.stopped = True
            return 0
        except BaseException as exc:
            self.error = exc
            return 0
        return None

    def pipe_room(self) -> int:
        """Body bytes the sink takes straight from a pipe now (0: hand it bytes)."""
        if not self.deliver or self.rate is not None or self.pipe_sink is None:
            return 0
        return self.pipe_sink.pipe_room()

    def on_pipe(self, pipe: int, count: int) -> int | None:
        """``count`` body bytes (at most ``pipe_room()``) wait in ``pipe``; like
        ``on_write``, 0 ends the transfer."""
        assert self.pipe_sink is not None
        return self._to_sink(self.pipe_sink.on_pipe, pipe, count)

    def unpause(self) -> None:
        self.resume = None
        if self.held is not None and self.easy is not None:
            self.held.discard(self.easy)
        if self.easy is not None and not self.fut.done():
            try:
                self.easy.pause(pycurl.PAUSE_CONT)  # (may hand the kept bytes over at once)
            except pycurl.error as exc:
                if not self.stopped and self.error is None:
                    self.error = TransientError(f"could not resume a paused transfer: {exc}")

    def decide(self) -> bool:
        """The head is complete: note a redirect or hand the head to the sink.
        False when the sink refused it (``stopped`` or ``error`` says how)."""
        self.decided = True
        parsed, self.parsed = self.parsed, None
        if parsed is not None:
            self.status, self.headers = parsed
        else:
            self.status, pairs = parse_head(self.raw)
            self.headers = Headers(pairs)
        if self.status == 0:
            self.error = TransientError(f"no HTTP response head ({safe_url(self.url)})")
            return False
        if self.status == 421 and self.misdirect_again:
            self.error = Misdirected(f"HTTP 421 from {safe_url(self.url)}", status=421)
            return False
        # (fields looked up in the table of lower-case names: no Headers call, each
        # lowering the name again, per answer)
        last = self.headers._last
        if self.status in REDIRECTS and (field := last.get("location")) and field[1]:
            self.location = field[1].strip()
            return True
        # (every line: two are one list of codings; most answers have none)
        encoding = codings(self.headers.get_all("content-encoding")) if (
            "content-encoding" in last) else ""
        if encoding:  # (a gzip file labelled with its own compression is kept as it is)
            encoding = to_undo(encoding, self.headers, self.url)
        if self.decode_here and encoding:  # (an identity body, as most: no decoder)
            sums = encoded_digests(self.headers, status=self.status)
            try:
                self.decoder = decoder_for(encoding, sums)
            except KeyError:
                self.redo = self.stopped = True
                return False
        self.head = Head(
            status=self.status,
            url=self.url,
            headers=self.headers,
            decoded=encoding not in ("", "identity"),
            framed=self._framed(encoding),
        )
        if self.note is not None:
            try:
                self.note(self)
            except Exception:  # (inside libcurl: never raise; the note is only advice)
                log.debug("HTTP/2 bookkeeping failed for %s", safe_url(self.url), exc_info=True)
        try:
            self.sink.on_head(self.head)
        except StopTransfer:
            self.stopped = True
            return False
        except BaseException as exc:
            self.error = exc
            return False
        return True

    def _framed(self, encoding: str) -> bool:
        """Whether the body's end will be its own (see :attr:`Head.framed`): not in a
        coding libcurl undoes, which never checks that the coded stream ended."""
        if self.curl_decodes:
            return False
        return encoding in DECODED or self._delimited()

    def _delimited(self) -> bool:
        """Whether the answer's bytes end by their own framing (a length, chunks, an
        HTTP/2 or /3 stream), not with the connection."""
        last = self.headers._last
        if "content-length" in last:
            return True
        field = last.get("transfer-encoding")
        if field is not None and "chunked" in field[1].lower():
            return True
        line = next((ln for ln in reversed(self.raw) if ln.startswith(b"HTTP/")), b"HTTP/1.")
        return not line.startswith(b"HTTP/1.")  # HTTP/2 and /3 streams end on purpose

    def finish(self, code: int, message: str) -> None:
        head = self.head
        if (
            code == pycurl.E_RECV_ERROR
            and head is not None
            and not head.framed
            and "unexpected eof" in message.lower()
            and not self._delimited()  # (a coded body with a length is cut, not ended)
        ):
            # A TLS connection closed with no close_notify (OpenSSL's "unexpected eof
            # while reading"): for a body that ends with its connection, the close ends
            # it, as over plain http (unverified, unless a digest checks it). Each try
            # fetched the whole file again, to fail alike.
            code, message = 0, ""
        if code == 0 and self.decoder is not None and self.encoded and self.deliver:
            rest, why = end_of(self.decoder)
            self.decoder = None
            if rest:  # (past any rate limit: the transfer is over)
                self._to_sink(self.on_data, rest)
            if why is not None:
                code, message = pycurl.E_BAD_CONTENT_ENCODING, why
        if not self.fut.done():
            self.fut.set_result((code, message))
