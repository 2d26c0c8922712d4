"""One pipelined HTTP/1.1 connection of :class:`~.pipeline.PipelinePool`: it sends the
requests it is given at once and parses the answers as they come, in order.

Answers are fed into the same per-request object libcurl feeds (the head, made into raw
header lines when they are read, then body chunks through ``on_write``), so redirects,
status checks and sinks work unchanged.
Each connection reads into one buffer of :data:`READ_SIZE` and parses it in place; a
requester that says it reads its bytes only during the call (``views``) gets slices of that
buffer, any other a copy.

Beside this module: :mod:`.h1queue` (the requests and their queues, shared with the pool),
:mod:`.h1answer` (what an answer's head sets for its body, its connection and its origin,
and an answer its requester ends or drops), :mod:`.h1fields` (what an answer head's header
lines say) and :mod:`.h1socket` (opening the socket, splicing large bodies from it past
user space, stall checks, shutting it down).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import TYPE_CHECKING

import pycurl

from .curlloop import TLS_REPLY, WEIRD_REPLY
from .decode import DecodeError, Decoder, end_of
from .h1answer import (
    _BODY,
    _CHUNK,
    _CHUNK_END,
    _CHUNK_LINE,
    _HEAD,
    _TO_EOF,
    _TRAILER,
    SMALL_BODY,
    ended_by_requester,
    head,
)
from .h1queue import Pending, give_back
from .h1socket import can_splice, close_pipe, dial, shut_down, splice, watch

if TYPE_CHECKING:
    from .h1queue import Origin
    from .pipeline import PipelinePool

__all__ = ["SMALL_BODY", "Conn"]

#: Most bytes of a head or a chunk line, and of all heads of one answer (its interim
#: ones' too), each counted up to its blank line.
MAX_HEAD = 64 << 10
#: Read buffer of one connection: answers are parsed in place, bodies written from it.
READ_SIZE = 512 << 10
HEAD_READ = 16 << 10  # read size for the head of an answer expected to be large

_HEX = frozenset(b"0123456789abcdefABCDEF")
#: The first byte of a TLS record (change_cipher_spec, alert, handshake, application_data):
#: no HTTP answer starts with one.
_TLS_TYPES = frozenset(range(20, 24))


class Conn(asyncio.BufferedProtocol):
    """One pipelined connection: requests go out at once, answers come back in order."""

    def __init__(self, pool: PipelinePool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Pending] = deque()  # sent (or to send on connect), in order
        self.closing = False  # takes no more requests
        self.done = False
        self.answered = 0
        self.rbuf = bytearray(READ_SIZE)
        self.view = memoryview(self.rbuf)
        self.have = 0  # unparsed bytes at the front of rbuf
        self.state = _HEAD
        self.left = 0  # body or chunk bytes still to come
        self.keep = True  # the current answer lets the connection live on
        self.early = 0  # bytes of the current answer's interim heads (see h1answer)
        self.early_lines = 0  # and their header lines
        self.drain = False  # the current answer's body is read and dropped
        self.decoder: Decoder | None = None
        self.encoded = False  # the decoder has seen body bytes
        self.rx = 0
        self.rx_seen = -1
        self.quiet = 0  # stall checks in a row that saw no read
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[None] | None = None
        #: Ours from its creation (asyncio's transport takes it over once connected):
        #: shut when the connection ends, before its place in the caps is freed.
        self.socket: socket.socket | None = None
        self.dialing: tuple[socket.socket, ...] = ()  # connecting at once (see h1socket)
        self.sock = -1  # the socket's fd, for splice
        self.pipe: tuple[int, int] | None = None  # (read end, write end), made on first use
        self.pipe_size = 0
        self.splicing = False  # the next read takes one byte: the rest of it is spliced

    # ----- sending ------------------------------------------------------------------

    def open(self) -> None:
        self.connecting = self.pool.loop.create_task(self._connect())

    async def _connect(self) -> None:
        loop = self.pool.loop
        try:
            async with asyncio.timeout(self.pool.connect_timeout):
                sock = await dial(self, loop.time() + self.pool.connect_timeout)
                await loop.create_connection(lambda: self, sock=sock)
        except (TimeoutError, OSError):
            # libcurl connects again and reports the failure in its own words
            self.connecting = None
            self._end()
            for p in self.queue:
                if not p.dropped:
                    give_back(p)
            self.queue.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.sock = sock.fileno() if sock is not None and self.pool.splice else -1
        if self.done:  # closed while connecting
            transport.abort()
            return
        if self.queue:
            transport.write(b"".join(p.data for p in self.queue))
            watch(self)

    def send(self, p: Pending) -> None:
        self.queue.append(p)
        if self.transport is not None:
            self.transport.write(p.data)
            watch(self)

    # ----- receiving ------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.splicing:
            return self.view[:1]
        if self.state == _HEAD and self.sock >= 0 and not self.pool.shares(self.origin.key):
            # large answers, one at a time: read the head in a small block, so that most
            # of the body can be spliced
            return self.view[self.have : self.have + HEAD_READ]
        return self.view[self.have :]

    def buffer_updated(self, nbytes: int) -> None:
        """Parse what arrived: heads and chunk lines are copied out, body bytes go to the
        requester as views of the read buffer (copied first unless it takes views)."""
        self.rx += 1
        if self.splicing and splice(self):
            return
        buf, view = self.rbuf, self.view
        held = self.have  # (kept from the last read: searched already for its line's end)
        n = held + nbytes
        # the connection's first bytes: a TLS record's type and version 3.x (an alert, as
        # Java's TLS server sends a plain request) is a TLS server's answer
        if (
            not self.answered and n >= 3 and self.state == _HEAD and not self.early
            and buf[0] in _TLS_TYPES and buf[1] == 3 and buf[2] <= 4
        ):
            self._tls()
            return
        self.have = 0
        pos = 0
        while pos < n and not self.done:
            st = self.state
            if st in (_BODY, _CHUNK):
                take = min(self.left, n - pos)
                chunk = view[pos : pos + take]
                pos += take
                self.left -= take
                if not self._deliver(chunk):
                    return
                if self.left == 0:
                    if st == _CHUNK:
                        self.state = _CHUNK_END
                    elif not self.complete():
                        return
            elif st == _TO_EOF:
                if not self._deliver(view[pos:n]):
                    return
                pos = n
            else:
                # (a head or line longer than MAX_HEAD is refused however its bytes came,
                # and a head sooner after interim ones: all heads of an answer are within
                # MAX_HEAD; early, their bytes, is 0 out of a head)
                mark = b"\r\n\r\n" if st == _HEAD else b"\r\n"
                most = MAX_HEAD - self.early
                start = max(pos, held - len(mark) + 1)
                held = 0
                end = buf.find(mark, start, min(n, pos + most + len(mark)))
                if end < 0:
                    if n - pos >= most + len(mark):
                        self._broken("answer head too long")
                        return
                    break
                if st == _HEAD:
                    ok = head(self, bytes(buf[pos : end + 2]))
                    pos = end + 4
                else:
                    ok = self._line(bytes(buf[pos:end]))
                    pos = end + 2
                if not ok:
                    return
        if pos < n and not self.done:  # part of a head or line: keep it at the front
            if pos:
                buf[: n - pos] = buf[pos:n]
            self.have = n - pos
        elif self.sock >= 0 and self.state == _BODY and not self.done:
            self.splicing = can_splice(self)

    def _line(self, line: bytes) -> bool:
        """A chunk-size line, the end of a chunk's data or a trailer line."""
        if self.state == _TRAILER:
            if not line:
                return self.complete()
            # (libcurl refuses the answer for these, as in a head, and folds no trailer
            # line; an LF ends a line for it: break, and libcurl reads it if asked again)
            if b":" not in line or b"\0" in line or b"\r" in line or b"\n" in line:
                self._broken("a trailer line libcurl refuses")
                return False
            return True
        if self.state == _CHUNK_END:  # (as libcurl: more data than the size said is an error)
            if line:
                self._broken("no CRLF after a chunk's data")
                return False
            self.state = _CHUNK_LINE
            return True
        size = line.split(b";", 1)[0].strip()
        if not size or len(size) > 16 or not _HEX.issuperset(size):
            self._broken("bad chunk size")
            return False
        self.left = int(size, 16)
        self.state = _CHUNK if self.left else _TRAILER
        return True

    def _deliver(self, view: memoryview) -> bool:
        if self.drain:
            return True
        p = self.queue[0]
        if p.hop.fut.done():  # (dropped by its requester)
            self.drain = True
            return True
        chunk: bytes | memoryview = view if p.hop.views else bytes(view)
        if self.decoder is not None:
            self.encoded = True
            try:
                chunk = self.decoder.decompress(view)
            except DecodeError as exc:
                self.fail_head(pycurl.E_BAD_CONTENT_ENCODING, f"bad encoded body: {exc}")
                return False
            if not chunk:
                return True
        if p.hop.on_write(chunk) == 0:  # the sink ended it (or refused the head)
            return ended_by_requester(self, p)
        return True

    def complete(self) -> bool:
        """The answer at the head of the queue is complete."""
        self._finish_answer()
        self.answered += 1
        self.state = _HEAD
        self.decoder = None
        self.drain = False
        if not self.keep:  # (refused in h1answer.head if it was the connection's first answer)
            self._shut()
            return False
        if not self.queue and self.closing:
            self._shut()
            return False
        self.pool._pump(self.origin)
        if not self.queue:
            self.pool.idle(self)
            return not self.done
        return True

    # ----- ending -------------------------------------------------------------------

    def eof_received(self) -> bool | None:
        if self.state == _TO_EOF and self.queue:
            self._complete_at_eof()
        return None

    def _complete_at_eof(self) -> None:
        self._finish_answer()
        self._shut()

    def _finish_answer(self) -> None:
        """Hand over what the decoder still holds and finish the head request."""
        p = self.queue.popleft()
        if p.hop.fut.done():  # (p.dropped, no property call: cancelled, or ended by its
            # requester: finished then)
            return
        why = None
        if self.decoder is not None and self.encoded and not self.drain:
            rest, why = end_of(self.decoder)
            if rest:
                p.hop.on_write(rest)
        if why is None:
            p.hop.finish(0, "")
        else:  # (the connection goes on: only the encoded stream inside was short)
            p.hop.finish(pycurl.E_BAD_CONTENT_ENCODING, why)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        if self.state == _TO_EOF and self.queue and exc is None:
            self._complete_at_eof()
            return
        self.fail_head(pycurl.E_RECV_ERROR, "connection closed during the answer")

    def fail_head(self, code: int, message: str) -> None:
        """End the connection; the request whose answer had begun fails with ``code``
        (unless its requester ended or dropped it: the rest was being read for nobody)."""
        if self.queue and self.queue[0].got:
            p = self.queue.popleft()
            if not p.dropped:
                p.hop.finish(code, message)
        self._shut()

    def _broken(self, what: str) -> None:
        """The server broke the protocol: never pipeline to it again."""
        self.pool.refuse(self.origin.key)
        self.fail_head(WEIRD_REPLY, what)

    def _tls(self) -> None:
        """A TLS server answered (https:// was meant): each request sent on this
        connection fails at once (every other try would get the same), and the origin
        is not sent to through the pool again."""
        self.pool.refuse(self.origin.key)
        self.abort(TLS_REPLY, "a TLS record where an HTTP answer was to come")

    def _refuse_answer(self, p: Pending) -> bool:
        """An answer we do not decode here: libcurl asks again; the rest move too."""
        self.queue.popleft()
        give_back(p)
        self._shut()
        return False

    def _stop_behind(self) -> None:
        """Requests queued behind the current answer go elsewhere; this connection ends
        after it."""
        self.closing = True
        rest = [self.queue.pop() for _ in range(len(self.queue) - 1)]
        rest.reverse()
        self.pool.requeue(self.origin, rest)
        self.pool._pump(self.origin)

    def shut(self) -> None:
        """Close now; requests still queued (no byte of answer yet) go elsewhere."""
        self._shut()

    def _shut(self) -> None:
        """Close now; requests still queued (no byte of answer yet) go elsewhere."""
        if self.done:
            return
        self.closing = True
        self._end()
        if self.transport is not None:
            self.transport.abort()
        rest = [p for p in self.queue if not p.got]
        for p in self.queue:
            if p.got and not p.dropped:
                p.hop.finish(pycurl.E_RECV_ERROR, "connection closed during the answer")
        self.queue.clear()
        self.pool.requeue(self.origin, rest)
        self.pool.closed(self)

    def retire(self) -> None:
        """Close this idle connection (nothing in flight) gracefully."""
        if self.done:
            return
        self._end()
        if self.transport is not None:
            self.transport.close()

    def abort(self, code: int, message: str) -> None:
        if self.done:
            return
        self._end()
        for p in self.queue:
            if not p.dropped:
                p.hop.finish(code, message)
        self.queue.clear()
        if self.transport is not None:
            self.transport.abort()

    def drop(self) -> None:
        """Let go of this connection when its event loop is closed, so that no call may
        go to that loop: its socket is shut down (asyncio closes it with the transport)."""
        self.done = self.closing = True
        self.splicing = False
        close_pipe(self)
        self.queue.clear()
        for sock in (self.socket, *self.dialing):
            if sock is not None:
                shut_down(sock, socket.SHUT_RDWR)
        self.transport = None

    def _end(self) -> None:
        """Take no more, shut the socket and only then free the connection's place (which
        may open the next connection at once)."""
        self.done = True
        self.closing = True
        self.splicing = False
        close_pipe(self)
        if self.socket is not None:  # (asyncio closes it a turn or more later)
            shut_down(self.socket, socket.SHUT_WR)
        for sock in self.dialing:  # (addresses tried beside it: dropped now)
            shut_down(sock, socket.SHUT_RDWR)
        if self.connecting is not None and self.transport is None:
            self.connecting.cancel()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self in self.origin.conns:
            self.pool.closed(self)
