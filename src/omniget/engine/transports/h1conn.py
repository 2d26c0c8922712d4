"""One pipelined HTTP/1.1 connection of :class:`~.pipeline.PipelinePool`: it sends the
requests it is given at once and parses the answers as they come, in order.

Answers are fed into the same per-request object libcurl feeds (raw header lines, then
body chunks through ``on_write``), so redirects, status checks and sinks work unchanged.
Each connection reads into one buffer of :data:`READ_SIZE` and parses it in place; a
requester that says it reads its bytes only during the call (``views``) gets slices of that
buffer, any other a copy.

A large identity body whose requester writes it to a file as it comes (``pipe_room``) skips
user space: once its head is through, each read takes one byte through asyncio and
``splice`` moves the rest from the socket into a pipe, and from the pipe into the file
(``on_pipe``). That saves one of the two copies of every byte (in a bare loop fetching
500 files of 1 MiB to ext4 here, a quarter of the system time).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import pycurl

from ..verify import encoded_digests
from .base import Headers
from .curlloop import STALLED, WEIRD_REPLY
from .decode import DecodeError, Decoder, decoder_for, end_of

if TYPE_CHECKING:
    from .pipeline import PipelinePool

__all__ = ["FALLBACK", "SMALL_BODY", "Conn", "Exchange", "Origin", "Pending", "give_back"]

#: Finish code: the request got no byte of answer; run it through libcurl instead.
FALLBACK = -3
#: A body larger than this stops the requests queued behind it (they move elsewhere).
BIG_BODY = 2 << 20
#: Pipelining pays for answers up to this size; after a larger one, its origin gets one
#: request at a time per connection.
SMALL_BODY = 256 << 10
#: Left of an aborted answer's body that is read and dropped to keep the connection.
DRAIN_MAX = 64 << 10
MAX_HEAD = 64 << 10
#: Read buffer of one connection: answers are parsed in place, bodies written from it.
READ_SIZE = 512 << 10
#: Bodies with at least this much left are spliced (see the module's doc) when they can be.
SPLICE_MIN = 64 << 10
STALL_CHECKS = 4  # looks for a stall this many times per stall timeout
HEAD_READ = 16 << 10  # read size for the head of an answer expected to be large
PIPE_SIZE = 1 << 20  # asked of each connection's pipe (Linux caps it at pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

_HEAD, _BODY, _CHUNK_LINE, _CHUNK, _TRAILER, _TO_EOF = range(6)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_BLANK = " \t\n\r\x0b\x0c"  # what bytes.strip() strips (str.strip() strips more)
#: Header names (lower case) that say how an answer's body is framed or coded.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})


#: What a head's header lines say: (headers, Content-Length, chunked, Connection and
#: Content-Encoding in lower case).
_Fields = tuple[Headers, int | None, bool, str, str]
_BAD_LENGTH, _BAD_CODING = "bad Content-Length", "a transfer coding other than chunked"


def _read_fields(rest: str) -> _Fields | str:
    """What the header lines ``rest`` (each ending with CRLF) say; :data:`_BAD_LENGTH` or
    :data:`_BAD_CODING` at the first line that makes the answer unreadable here."""
    length: int | None = None
    chunked = False
    conn = encoding = ""
    pairs: list[tuple[str, str]] = []  # (the hop's headers: parsed once, here)
    lows: list[str] = []  # their names in lower case (the Headers' keys)
    last: dict[str, tuple[str, str]] = {}  # lower-case name -> its last pair
    folded = rest[:1] in (" ", "\t") or "\r\n " in rest or "\r\n\t" in rest
    for line in rest.split("\r\n")[:-1]:
        if folded and line[:1] in (" ", "\t"):  # obsolete line folding
            if pairs:
                name_s, value_s = pairs[-1]
                pairs[-1] = last[lows[-1]] = (name_s, f"{value_s} {line.strip(_BLANK)}")
            continue
        name, _, after = line.partition(":")
        name = name.rstrip(_BLANK)  # (no leading blank: that line was a folded one)
        value = after.strip(_BLANK)
        low = name.lower()
        if name:
            pair = (name, value)
            pairs.append(pair)
            lows.append(low)
            last[low] = pair
        if low not in _FRAMING:
            continue
        if low == "content-length":
            if not (value.isascii() and value.isdigit()) or (
                length is not None and int(value) != length
            ):
                return _BAD_LENGTH
            length = int(value)
        elif low == "transfer-encoding":
            if value.lower() != "chunked":
                return _BAD_CODING
            chunked = True
        elif low == "connection":
            conn += after.lower()
        else:
            encoding = value.lower()
    return Headers(pairs, lows, last), length, chunked, conn, encoding


class Exchange(Protocol):
    """What a pipelined request reports to (the transport's per-request :class:`~.hop.Hop`)."""

    raw: list[bytes]
    #: (status, headers) of ``raw``'s head, parsed here once (None: parse ``raw``)
    parsed: tuple[int, Headers] | None
    fut: asyncio.Future[tuple[int, str]]
    views: bool  # on_write may get a view of the read buffer (valid during the call)

    def on_write(self, data: bytes | memoryview) -> int | None: ...

    def pipe_room(self) -> int: ...

    def on_pipe(self, pipe: int, count: int) -> int | None: ...

    def finish(self, code: int, message: str) -> None: ...


class Pending:
    __slots__ = ("data", "got", "hop", "tries")

    def __init__(self, hop: Exchange, data: bytes) -> None:
        self.hop = hop
        self.data = data
        self.got = False  # any byte of its answer arrived
        self.tries = 0

    @property
    def dropped(self) -> bool:  # cancelled by its requester
        return self.hop.fut.done()


class Origin:
    __slots__ = ("addr", "conns", "key", "waiting")

    def __init__(self, key: str, addr: tuple[tuple[str, ...], int]) -> None:
        self.key = key
        self.addr = addr
        self.conns: list[Conn] = []
        self.waiting: deque[Pending] = deque()



def give_back(p: Pending) -> None:
    p.hop.finish(FALLBACK, "")



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
                sock = await self._dial(loop.time() + self.pool.connect_timeout)
                await loop.create_connection(lambda: self, sock=sock)
        except (TimeoutError, OSError):
            # libcurl connects again and reports the failure in its own words
            self.connecting = None
            self._end()
            for p in self.queue:
                if not p.dropped:
                    give_back(p)
            self.queue.clear()

    async def _dial(self, end: float) -> socket.socket:
        """A socket connected to the origin (its addresses tried in order, each with its
        share of the time left until ``end``, as libcurl tries a ``--resolve`` entry's),
        made here so that :meth:`_end` can shut it while it connects (asyncio would close
        its own a turn or more after being cancelled)."""
        hosts, port = self.origin.addr
        loop = self.pool.loop
        tries = [a for host in hosts for a in await _addresses(loop, host, port)]
        error: OSError = OSError(f"no address for {hosts[0]}")
        for i, (family, addr) in enumerate(tries):
            sock = self.socket = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                async with asyncio.timeout((end - loop.time()) / (len(tries) - i)):
                    await loop.sock_connect(sock, addr)
                return sock
            except OSError as exc:  # (TimeoutError too: the next address has its turn)
                error = exc
                sock.close()  # (asyncio watches it no more: that ran before we resumed)
            except BaseException:  # cancelled: _end shut it
                sock.close()
                raise
        raise error

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
            self._watch()

    def send(self, p: Pending) -> None:
        self.queue.append(p)
        if self.transport is not None:
            self.transport.write(p.data)
            self._watch()

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
        if self.splicing and self._splice():
            return
        buf, view = self.rbuf, self.view
        n = self.have + nbytes
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
                        self.state = _CHUNK_LINE
                    elif not self._complete():
                        return
            elif st == _TO_EOF:
                if not self._deliver(view[pos:n]):
                    return
                pos = n
            else:
                end = buf.find(b"\r\n\r\n" if st == _HEAD else b"\r\n", pos, n)
                if end < 0:
                    if n - pos > MAX_HEAD:
                        self._broken("answer head too long")
                        return
                    break
                if st == _HEAD:
                    ok = self._head(bytes(buf[pos : end + 2]))
                    pos = end + 4
                else:
                    ok = self._line(bytes(buf[pos:end]))
                    pos = end + 2
                if not ok:
                    return
        if pos < n and not self.done:  # part of a head or line: keep it at the front
            buf[: n - pos] = buf[pos:n]
            self.have = n - pos
        elif self.sock >= 0 and self.state == _BODY and not self.done:
            self.splicing = self._can_splice()

    # ----- splicing large bodies ------------------------------------------------------

    def _can_splice(self) -> bool:
        """The rest of this body may skip user space (see the module's doc)."""
        if self.left < SPLICE_MIN or self.decoder is not None or self.drain:
            return False
        if not self.pool.splice:  # refused on another connection since this one opened
            self.sock = -1
            return False
        p = self.queue[0]
        if p.dropped or p.hop.pipe_room() < SPLICE_MIN:
            return False
        if self.pipe is None:
            try:
                # (non-blocking: a pipe holding less than said fails instead of hanging)
                self.pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # out of descriptors: read through user space
                return False
            try:
                self.pipe_size = fcntl.fcntl(self.pipe[1], _F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                self.pipe_size = 64 << 10  # the default size
        return True

    def _splice(self) -> bool:
        """One byte of body came through asyncio: put it in the pipe, splice what the
        socket holds after it, and hand the lot to the requester. False: the byte was
        left for the usual path."""
        assert self.pipe is not None
        self.splicing = False
        p = self.queue[0]
        want = min(self.left, p.hop.pipe_room(), self.pipe_size)
        if want < 1 or p.dropped or not self.pool.splice:
            return False
        rfd, wfd = self.pipe
        got = os.write(wfd, self.view[:1])  # (an empty pipe always takes it)
        if want > 1:
            try:
                got += os.splice(self.sock, wfd, want - 1, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                pass  # only the one byte was there
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    self._fail_head(pycurl.E_RECV_ERROR, "connection closed during the answer")
                    return True
                self.pool.splice = False  # this kernel or socket refuses: read as before
                self.sock = -1
        self.left -= got
        if p.hop.on_pipe(rfd, got) == 0:  # the sink ended it
            self._close_pipe()  # (it may have left bytes in the pipe)
            self._ended_by_requester(p)
        elif self.left == 0:
            self._complete()
        elif self.sock >= 0:
            self.splicing = self._can_splice()
        return True

    def _close_pipe(self) -> None:
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None

    def _head(self, block: bytes) -> bool:
        """Parse one answer head (``block`` ends with the last line's CRLF)."""
        if not self.queue:
            self._broken("an answer nobody asked for")
            return False
        p = self.queue[0]
        # its lines with their CRLF, and as text (latin-1: one character per byte)
        lines = block.splitlines(keepends=True)
        text = block.decode("latin-1")
        rest = text[text.find("\r\n") + 2 :]  # the header lines (the block ends with CRLF)
        if len(lines) != rest.count("\r\n") + 1:  # (a lone CR or LF inside a line: it stays)
            lines = [line + b"\r\n" for line in block.split(b"\r\n")[:-1]]
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._broken("not an HTTP/1.x answer")
            return False
        status = int(parts[1])
        if 100 <= status < 200:
            if status == 101:
                self._broken("unexpected protocol switch")
                return False
            return True  # an interim answer: the real one follows
        read = _read_fields(rest)
        if read == _BAD_LENGTH:
            self._broken("bad Content-Length")
            return False
        if isinstance(read, str):  # (a transfer coding other than chunked)
            return self._refuse_answer(p)
        headers, length, chunked, conn, encoding = read
        decoder = None
        if encoding:  # (an identity body, as most, asks nothing more)
            try:
                decoder = decoder_for(encoding, encoded_digests(headers, status=status))
            except KeyError:
                return self._refuse_answer(p)
        self.keep = "close" not in conn and (parts[0] == b"HTTP/1.1" or "keep-alive" in conn)
        if status in (204, 304):
            self.state, length = _BODY, 0
        elif chunked:
            self.state, length = _CHUNK_LINE, None
        elif length is not None:
            self.state = _BODY
        else:
            self.state = _TO_EOF
            self.keep = False
        if self.state == _TO_EOF:
            self.pool.pause(self.origin.key)
        elif (length or 0) > SMALL_BODY:
            self.pool.one_by_one(self.origin.key)
        if not self.keep and not self.answered and self.state != _TO_EOF:
            self.pool.refuse(self.origin.key)  # the server does not keep connections
        if not self.keep or self.state == _TO_EOF or (length or 0) > BIG_BODY:
            self._stop_behind()  # (a large body would hold the rest up)
        self.left = length or 0
        self.decoder = decoder
        self.encoded = False  # the decoder has seen body bytes
        self.drain = False
        short = self.state == _BODY and self.left <= DRAIN_MAX  # (its rest may be drained)
        if not p.dropped:
            p.got = True
            p.hop.raw += lines
            p.hop.raw.append(b"\r\n")
            p.hop.parsed = (status, headers)
            if not short:  # dropped in the middle: close at once (see _dropped)
                p.hop.fut.add_done_callback(lambda fut: self._dropped(p, fut))
        elif short:
            self.drain = True
        else:  # a long answer nobody wants any more: not read to its end
            self._shut()
            return False
        if self.state == _BODY and self.left == 0:
            return self._complete()
        return True

    def _line(self, line: bytes) -> bool:
        """A chunk-size line or a trailer line."""
        if self.state == _TRAILER:
            if not line:
                return self._complete()
            return True
        if not line:  # the CRLF that ends a chunk's data
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
                self._fail_head(pycurl.E_BAD_CONTENT_ENCODING, f"bad encoded body: {exc}")
                return False
            if not chunk:
                return True
        if p.hop.on_write(chunk) == 0:  # the sink ended it (or refused the head)
            return self._ended_by_requester(p)
        return True

    def _dropped(self, p: Pending, fut: asyncio.Future[tuple[int, str]]) -> None:
        """``p``'s requester cancelled it while its long answer came (a quiet span whose
        bytes went to a fresh connection): close now, as for a receiver that ends one, so
        the rest is not read for nobody and the connection's place is free at once."""
        head = not self.done and bool(self.queue) and self.queue[0] is p
        if fut.cancelled() and head and not (self.state == _BODY and self.left <= DRAIN_MAX):
            self._shut()

    def _ended_by_requester(self, p: Pending) -> bool:
        """The requester ended its answer early: drop the rest of a short body to keep the
        connection, else close it. True if the connection goes on."""
        self.queue.popleft()
        p.hop.finish(pycurl.E_WRITE_ERROR, "ended by the receiver")
        if self.state == _BODY and self.left <= DRAIN_MAX:
            drop = Pending(p.hop, b"")  # placeholder: read and drop the rest
            drop.got = True
            self.queue.appendleft(drop)
            self.drain = True
            return True
        self._shut()
        return False

    def _complete(self) -> bool:
        """The answer at the head of the queue is complete."""
        self._finish_answer()
        self.answered += 1
        self.state = _HEAD
        self.decoder = None
        self.drain = False
        if not self.keep:  # (refused in _head if it was the connection's first answer)
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
        why = None
        if self.decoder is not None and self.encoded and not self.drain and not p.dropped:
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
        self._fail_head(pycurl.E_RECV_ERROR, "connection closed during the answer")

    def _fail_head(self, code: int, message: str) -> None:
        """End the connection; the request whose answer had begun fails with ``code``."""
        if self.queue and self.queue[0].got:
            self.queue.popleft().hop.finish(code, message)
        self._shut()

    def _broken(self, what: str) -> None:
        """The server broke the protocol: never pipeline to it again."""
        self.pool.refuse(self.origin.key)
        self._fail_head(WEIRD_REPLY, what)

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
            p.hop.finish(code, message)
        self.queue.clear()
        if self.transport is not None:
            self.transport.abort()

    def drop(self) -> None:
        """Let go of this connection when its event loop is closed, so that no call may
        go to that loop: its socket is shut down (asyncio closes it with the transport)."""
        self.done = self.closing = True
        self.splicing = False
        self._close_pipe()
        self.queue.clear()
        if self.socket is not None:
            _shut_down(self.socket, socket.SHUT_RDWR)
        self.transport = None

    def _end(self) -> None:
        """Take no more, shut the socket and only then free the connection's place (which
        may open the next connection at once)."""
        self.done = True
        self.closing = True
        self.splicing = False
        self._close_pipe()
        if self.socket is not None:  # (asyncio closes it a turn or more later)
            _shut_down(self.socket, socket.SHUT_WR)
        if self.connecting is not None and self.transport is None:
            self.connecting.cancel()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self in self.origin.conns:
            self.pool.closed(self)

    # ----- stalls -------------------------------------------------------------------

    def _watch(self) -> None:
        if self.timer is None and self.pool.stall_timeout > 0:
            self.rx_seen = self.rx
            self.quiet = 0
            self._check_later()

    def _check_later(self) -> None:
        # checked STALL_CHECKS times per timeout: a stall is seen within 1.25 timeouts of
        # the last byte (checked once per timeout, a byte just after a check made it 2)
        step = self.pool.stall_timeout / STALL_CHECKS
        self.timer = self.pool.loop.call_later(step, self._check)

    def _check(self) -> None:
        self.timer = None
        if self.done or not self.queue:
            return
        if self.rx != self.rx_seen:
            self._watch()
            return
        self.quiet += 1
        if self.quiet < STALL_CHECKS:
            self._check_later()
            return
        head = self.queue[0]
        if not head.got and self.answered:
            self.pool.refuse(self.origin.key)  # answers one request, then ignores the rest
        if not head.got:
            head.got = True  # (fail it, do not resend it)
        self._fail_head(STALLED, f"no data for {self.pool.stall_timeout:g} s")


def _shut_down(sock: socket.socket, how: int) -> None:
    """End ``sock``'s connection in the kernel now (a FIN; one still connecting is
    dropped): asyncio closes the socket only on a later turn of the loop, and the caps
    count it as closed already."""
    try:
        sock.shutdown(how)
    except OSError:  # (not connected, or closed already)
        pass


async def _addresses(
    loop: asyncio.AbstractEventLoop, host: str, port: int
) -> list[tuple[int, tuple[Any, ...]]]:
    """(family, address) to try for ``host``: an IP address as it is (no resolver
    thread), a name as the resolver orders it."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, (host, port))]
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, addr) for family, _type, _proto, _name, addr in infos]
