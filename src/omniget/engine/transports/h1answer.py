"""What an answer does to its pipelined connection (:mod:`.h1conn`): its head, read
(with :mod:`.h1fields`), sets how its body is read and whether the connection lives on,
and may pause its origin's pipelining, send it one request at a time or refuse it, and
move the requests queued behind a large body; an answer its requester ends or drops has
a short rest read and dropped (:data:`DRAIN_MAX`), a longer one closes the connection.
Each function takes the connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pycurl

from ..verify import encoded_digests
from .decode import decoder_for, to_undo
from .h1fields import BAD_CODING, line_fault, read_fields, status_line
from .h1queue import Pending

if TYPE_CHECKING:
    from .h1conn import Conn

__all__ = ["BIG_BODY", "DRAIN_MAX", "MAX_FIELDS", "SMALL_BODY", "ended_by_requester", "head"]

#: A body larger than this stops the requests queued behind it (they move elsewhere).
BIG_BODY = 2 << 20
#: Pipelining pays for answers up to this size; after a larger one, its origin gets one
#: request at a time per connection.
SMALL_BODY = 256 << 10
#: Left of an aborted answer's body that is read and dropped to keep the connection.
DRAIN_MAX = 64 << 10
#: Header lines of one answer's heads, its interim ones' included (libcurl 8 refuses
#: more than 5000 fields, and past 300 KiB of heads).
MAX_FIELDS = 5000

# What the connection reads next (Conn.state; _CHUNK_END: the CRLF after a chunk's data)
_HEAD, _BODY, _CHUNK_LINE, _CHUNK, _CHUNK_END, _TRAILER, _TO_EOF = range(7)


def head(conn: Conn, block: bytes) -> bool:
    """Parse one answer head (``block`` ends with the last line's CRLF)."""
    if not conn.queue:
        conn._broken("an answer nobody asked for")
        return False
    p = conn.queue[0]
    # as text (latin-1: one character per byte); its lines are made only if read
    text = block.decode("latin-1")
    got = status_line(block, text)
    if isinstance(got, str):
        conn._broken(got)
        return False
    status, rest = got
    v11 = block[7] == 49  # (HTTP/1.1)
    if 100 <= status < 200:
        if status == 101:
            conn._broken("unexpected protocol switch")
            return False
        fault = line_fault(rest)  # (what libcurl refuses in any head)
        if fault:
            conn._broken(fault)
            return False
        return _bound(conn, block)  # an interim answer: the real one follows
    # (its bytes are within its search's window; more than MAX_FIELDS lines take
    # three bytes each at least)
    if conn.early or len(block) > 3 * MAX_FIELDS:
        if not _bound(conn, block):
            return False
        conn.early = conn.early_lines = 0
    read = read_fields(rest)
    if isinstance(read, str):
        if read == BAD_CODING:  # (libcurl reads it)
            return conn._refuse_answer(p)
        conn._broken(read)
        return False
    headers, length, chunked, connection, encoding = read
    # faulty framing (RFC 9112 6.1, 6.3), maybe response splitting: read as chunked,
    # as libcurl does, and nothing more from this connection
    faulty = chunked and (length is not None or not v11)
    decoder = None
    if encoding:  # (an identity body, as most, asks nothing more)
        encoding = to_undo(encoding, headers, p.hop.url)
    if encoding:
        try:
            decoder = decoder_for(encoding, encoded_digests(headers, status=status))
        except KeyError:
            return conn._refuse_answer(p)
    conn.keep = "close" not in connection and (v11 or "keep-alive" in connection)
    if status in (204, 304):
        conn.state, length = _BODY, 0
    elif chunked:
        conn.state, length = _CHUNK_LINE, None
    elif length is not None:
        conn.state = _BODY
    else:
        conn.state = _TO_EOF
        conn.keep = False
    if conn.state == _TO_EOF:
        conn.pool.pause(conn.origin.key)
    elif (length or 0) > SMALL_BODY:
        conn.pool.one_by_one(conn.origin.key)
    if not conn.keep and not conn.answered and conn.state != _TO_EOF:
        conn.pool.refuse(conn.origin.key)  # the server does not keep connections
    if faulty:
        conn.keep = False
    if not conn.keep or conn.state == _TO_EOF or (length or 0) > BIG_BODY:
        conn._stop_behind()  # (a large body would hold the rest up)
    conn.left = length or 0
    conn.decoder = decoder
    conn.encoded = False  # the decoder has seen body bytes
    conn.drain = False
    short = conn.state == _BODY and conn.left <= DRAIN_MAX  # (its rest may be drained)
    if not p.hop.fut.done():  # (not p.dropped: no property call, once per answer)
        p.got = True
        p.hop.head_block = block
        p.hop.parsed = (status, headers)
        if not short:  # dropped in the middle: close at once (see _dropped)
            p.hop.fut.add_done_callback(lambda fut: _dropped(conn, p, fut))
    elif short:
        conn.drain = True
    else:  # a long answer nobody wants any more: not read to its end
        conn._shut()
        return False
    if conn.state == _BODY and conn.left == 0:
        return conn.complete()
    return True


def _bound(conn: Conn, block: bytes) -> bool:
    """Count ``block`` (a head, up to its blank line) with the interim heads before
    it: past MAX_FIELDS header lines in all, the server broke the protocol (an
    endless run of 1xx answers would keep the request alive for ever; their bytes,
    MAX_HEAD in all, are held by the search for each head's end). True if the
    answer goes on."""
    conn.early += len(block) - 2
    conn.early_lines += block.count(b"\r\n") - 1
    if conn.early_lines > MAX_FIELDS:
        conn._broken("too many header lines")
        return False
    return True


def _dropped(conn: Conn, p: Pending, fut: asyncio.Future[tuple[int, str]]) -> None:
    """``p``'s requester cancelled it while its long answer came (a quiet span whose
    bytes went to a fresh connection): close now, as for a receiver that ends one, so
    the rest is not read for nobody and the connection's place is free at once."""
    first = not conn.done and bool(conn.queue) and conn.queue[0] is p
    if fut.cancelled() and first and not (conn.state == _BODY and conn.left <= DRAIN_MAX):
        conn._shut()


def ended_by_requester(conn: Conn, p: Pending) -> bool:
    """The requester ended its answer early: drop the rest of a short body to keep the
    connection, else close it. True if the connection goes on."""
    conn.queue.popleft()
    p.hop.finish(pycurl.E_WRITE_ERROR, "ended by the receiver")
    if conn.state == _BODY and conn.left <= DRAIN_MAX:
        drop = Pending(p.hop, b"")  # placeholder: read and drop the rest
        drop.got = True
        conn.queue.appendleft(drop)
        conn.drain = True
        return True
    conn._shut()
    return False
