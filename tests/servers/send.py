"""Putting a :class:`~tests.servers.faults.Reply` on the wire, misbehaving as it says."""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator

from .faults import FileBody, Reply, phrase
from .wire import LoggedRequest, http_date

__all__ = ["send_reply"]

_STEP = 256 * 1024
_TIOCOUTQ = 0x5411  # Linux: bytes not yet acknowledged by the peer
_Read = Callable[[int, int], bytes]


def send_reply(
    sock: socket.socket, req: LoggedRequest, reply: Reply, keep: bool, stop: threading.Event
) -> bool:
    """Write ``reply`` (misbehaving as it says); True when the connection may be reused.
    ``stop`` cuts every wait short when the server shuts down."""
    req.status = reply.status
    if reply.delay and stop.wait(reply.delay):
        return False
    keep = keep and not reply.close and reply.cut is None
    lines = [f"HTTP/1.1 {reply.status} {phrase(reply.status)}"]
    lines += [f"{k}: {v}" for k, v in reply.headers]
    lines += [f"Date: {http_date()}", "Server: omniget-testd"]
    lines.append("Connection: keep-alive" if keep else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    if reply.head_only or reply.status in (204, 304) or not (
        reply.body_length or reply.chunked or reply.cut is not None
    ):
        _send_end(sock, head, req, 0, body=False)  # (no body: the head is all)
        return keep
    sock.sendall(head)
    _send_body(sock, req, reply, stop)
    if reply.cut is not None:
        req.finished = time.monotonic()  # (the close ends it: recorded before)
        _abort(sock, reply.reset)
        return False
    if reply.close:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    return keep


def _send_body(
    sock: socket.socket, req: LoggedRequest, reply: Reply, stop: threading.Event
) -> None:
    total = reply.body_length
    limit = total if reply.cut is None else min(reply.cut, total)
    body = reply.body
    plain = not (reply.chunked or reply.drip or reply.stall or reply.hold)
    if plain and isinstance(body, FileBody) and not isinstance(sock, ssl.SSLSocket):
        if not limit:
            return
        with body.path.open("rb") as f:
            sent = sock.sendfile(f, body.start, limit - 1) if limit > 1 else 0
            f.seek(body.start + sent)
            last = f.read(1)
            _send_end(sock, last, req, sent + len(last), body=True)
        return
    step = _STEP if reply.drip is None else max(1, int(reply.drip / 20))
    if reply.chunked:
        step = min(step, 16384)
    t0 = time.monotonic()
    stalled = not (reply.stall or reply.hold)
    with _open_body(body) as read:
        pos = 0
        while pos < limit:
            unpaced = reply.drip is not None and pos < reply.drip_after
            end = min(limit, reply.drip_after, pos + _STEP) if unpaced else min(limit, pos + step)
            if not stalled:
                if pos >= reply.stall_after:
                    stalled = True
                    if stop.wait(reply.stall) or not _held(reply, stop):
                        return
                    dripped = max(0, pos - reply.drip_after)
                    t0 = time.monotonic() - (dripped / reply.drip if reply.drip else 0)
                else:
                    end = min(end, reply.stall_after)
            chunk = read(pos, end - pos)
            if reply.chunked:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            elif end == limit:
                _send_end(sock, chunk, req, end, body=True)
            else:
                sock.sendall(chunk)
            req.sent = pos = end
            # (no pause after the last byte, nor before drip_after)
            if reply.drip and reply.drip_after <= pos < limit:
                now = time.monotonic()
                if unpaced:  # (the drip starts here)
                    t0 = now
                dripped = pos - reply.drip_after
                # held up (a loaded machine, the process stopped): on at the rate from
                # here, not a burst making the lost time up (a test cutting a run
                # midway would find it finished)
                t0 = max(t0, now - (dripped + step) / reply.drip)
                wait = t0 + dripped / reply.drip - now
                if wait > 0 and stop.wait(wait):
                    return
    if reply.chunked and reply.cut is None:
        _send_end(sock, b"0\r\n\r\n", req, req.sent, body=False)


def _send_end(sock: socket.socket, data: bytes, req: LoggedRequest, sent: int, *,
              body: bool) -> None:
    """The answer's last write (``data``, body bytes or not): ``req`` is recorded as done
    (``sent`` body bytes, ``finished``) before the last byte leaves. Recorded after it,
    a client could have the whole answer first, and a test reading the log at once miss
    it (CI saw that of nginx's log). A last byte that fails to go is not counted."""
    sock.sendall(data[:-1])
    req.sent, req.finished = sent, time.monotonic()
    try:
        sock.sendall(data[-1:])
    except OSError:
        req.sent, req.finished = sent - (1 if body and data else 0), None
        raise


def _held(reply: Reply, stop: threading.Event) -> bool:
    """Wait at the reply's hold point (if any) until the test lets it go; False when
    the server stops first."""
    if reply.hold is None:
        return True
    reply.hold.reached.set()
    while not reply.hold.go.wait(0.05):
        if stop.is_set():
            return False
    return True


def _abort(sock: socket.socket, reset: bool) -> None:
    """End a cut answer: FIN, or RST once the bytes sent so far reached the peer."""
    with contextlib.suppress(OSError):
        if reset:
            deadline = time.monotonic() + 2
            buf = bytearray(4)
            while time.monotonic() < deadline:
                fcntl.ioctl(sock.fileno(), _TIOCOUTQ, buf)
                if struct.unpack("i", buf)[0] == 0:
                    break
                time.sleep(0.002)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def _open_body(body: bytes | memoryview | FileBody) -> Iterator[_Read]:
    """A ``read(offset, n)`` function over the body."""
    if isinstance(body, FileBody):
        with body.path.open("rb") as f:

            def read_file(pos: int, n: int) -> bytes:
                return f.read(n) if f.seek(body.start + pos) >= 0 else b""

            yield read_file
    else:
        view = memoryview(body)
        yield lambda pos, n: bytes(view[pos : pos + n])
