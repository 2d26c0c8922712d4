"""A pipelined connection's socket beside the reads asyncio makes for it (:mod:`.h1conn`
parses those): opening it, splicing large bodies from it, watching it for stalls and
shutting it down. Each function takes the connection.

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
import functools
import itertools
import os
import socket
from typing import TYPE_CHECKING, Any

import pycurl

from ...hosts import split_zone
from .curlloop import STALLED
from .h1answer import ended_by_requester

if TYPE_CHECKING:
    from .h1conn import Conn

__all__ = ["can_splice", "close_pipe", "dial", "interleave", "shut_down", "splice", "watch"]

#: Bodies with at least this much left are spliced (see the module's doc) when they can be.
SPLICE_MIN = 64 << 10
STALL_CHECKS = 4  # looks for a stall this many times per stall timeout
PIPE_SIZE = 1 << 20  # asked of each connection's pipe (Linux caps it at pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_Try = tuple[int, tuple[Any, ...]]  # (family, socket address): one address to try

#: Seconds an address has to connect before the next is tried beside it (libcurl's
#: happy eyeballs timeout, 200 ms by default).
NEXT_ADDRESS_AFTER = 0.2


# ----- connecting ------------------------------------------------------------------


async def dial(conn: Conn, end: float) -> socket.socket:
    """A socket connected to the origin, made here so that the connection's ``_end`` can
    shut it while it connects (asyncio would close its own a turn or more after being
    cancelled). Several addresses (a ``--resolve`` entry's, or a name's) are raced as
    libcurl races them (:func:`_race`); a lone one has the time left until ``end``."""
    hosts, port = conn.origin.addr
    loop = conn.pool.loop
    tries = interleave([a for host in hosts for a in await _addresses(loop, host, port)])
    if len(tries) > 1:
        return await _race(conn, tries)
    if not tries:
        raise OSError(f"no address for {hosts[0]}")
    [(family, addr)] = tries
    # (IPPROTO_TCP named: asyncio turns Nagle off only for a socket that says so, and
    # requests written one by one would wait for ACKs, a round trip each)
    sock = conn.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(end - loop.time()):
            await loop.sock_connect(sock, addr)
        return sock
    except BaseException:  # (cancelled: _end shut it)
        sock.close()  # (a failure: asyncio watches it no more, that ran before we resumed)
        raise


def interleave(tries: list[_Try]) -> list[_Try]:
    """``tries`` in the order they are raced, as libcurl orders a host's addresses (RFC
    8305, section 4): IPv6 first, then the families by turns, each family's addresses in
    their order; what one family has left over goes last. (In the order given, dead
    addresses of one family ahead of the other's each held it up.)"""
    six = [t for t in tries if t[0] == socket.AF_INET6]
    if not six or len(six) == len(tries):
        return tries
    four = [t for t in tries if t[0] != socket.AF_INET6]
    pairs = itertools.zip_longest(six, four)
    return [t for pair in pairs for t in pair if t is not None]


async def _race(conn: Conn, tries: list[_Try]) -> socket.socket:
    """Connect to the first of ``tries`` that answers, as libcurl's happy eyeballs do: the
    next address is tried as soon as one fails, or beside those still connecting once
    they had :data:`NEXT_ADDRESS_AFTER` (an address that drops the SYN holds up the
    others that long, not half the connect timeout); the first connected wins (of two
    at once, the one tried first), the rest are dropped. The caller's timeout bounds the
    whole."""
    loop = conn.pool.loop
    racing: dict[asyncio.Task[None], socket.socket] = {}
    left = iter(tries)
    more = True
    error: BaseException = OSError("no address answered")
    try:
        while True:
            step = next(left, None) if more else None
            if step is not None:
                family, addr = step
                sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.setblocking(False)
                racing[loop.create_task(loop.sock_connect(sock, addr))] = sock
                conn.socket = sock
                conn.dialing = tuple(racing.values())
            else:
                more = False
            if not racing:
                raise error
            done, _ = await asyncio.wait(
                racing, timeout=NEXT_ADDRESS_AFTER if more else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in [t for t in racing if t in done]:  # (in the order tried)
                sock = racing.pop(task)
                failed = task.exception()
                if failed is None:
                    conn.socket = sock
                    return sock
                error = failed
                sock.close()  # (asyncio watches it no more: that ran before the task ended)
    finally:
        conn.dialing = ()
        for task, sock in racing.items():  # (the losers, or all when cancelled)
            shut_down(sock, socket.SHUT_RDWR)  # (one still connecting is dropped now)
            task.cancel()
            # closed once asyncio watches it no more (its number could go to another)
            task.add_done_callback(functools.partial(_close, sock))


def _close(sock: socket.socket, _task: object) -> None:
    sock.close()


async def _addresses(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[_Try]:
    """(family, address) to try for ``host``: an IP address as it is (no resolver
    thread), a name as the resolver orders it."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, (host, port))]
    if "%" in host:  # an IPv6 address with a zone id: the resolver takes no %25NAME
        return [(socket.AF_INET6, _scoped(host, port))]
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, addr) for family, _type, _proto, _name, addr in infos]


def _scoped(host: str, port: int) -> tuple[str, int, int, int]:
    """The socket address of ``ADDRESS%25ZONE`` (or ``%ZONE``), as libcurl connects to
    it: the zone an interface's index or name; one naming no interface is left out
    (a link-local address with one is refused before: see sources/http.py)."""
    address, zone = split_zone(host)
    zone = zone or ""  # (an empty one has no interface either)
    socket.inet_pton(socket.AF_INET6, address)  # (OSError if it is none)
    try:
        scope = int(zone) if zone.isdigit() else socket.if_nametoindex(zone)
    except OSError:
        scope = 0
    return address, port, 0, scope


# ----- splicing large bodies ------------------------------------------------------


def can_splice(conn: Conn) -> bool:
    """The rest of this body may skip user space (see the module's doc)."""
    if conn.left < SPLICE_MIN or conn.decoder is not None or conn.drain:
        return False
    if not conn.pool.splice:  # refused on another connection since this one opened
        conn.sock = -1
        return False
    p = conn.queue[0]
    if p.dropped or p.hop.pipe_room() < SPLICE_MIN:
        return False
    if conn.pipe is None:
        try:
            # (non-blocking: a pipe holding less than said fails instead of hanging)
            conn.pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # out of descriptors: read through user space
            return False
        try:
            conn.pipe_size = fcntl.fcntl(conn.pipe[1], _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            conn.pipe_size = 64 << 10  # the default size
    return True


def splice(conn: Conn) -> bool:
    """One byte of body came through asyncio: put it in the pipe, splice what the
    socket holds after it, and hand the lot to the requester. False: the byte was
    left for the usual path."""
    assert conn.pipe is not None
    conn.splicing = False
    p = conn.queue[0]
    want = min(conn.left, p.hop.pipe_room(), conn.pipe_size)
    if want < 1 or p.dropped or not conn.pool.splice:
        return False
    rfd, wfd = conn.pipe
    got = os.write(wfd, conn.view[:1])  # (an empty pipe always takes it)
    if want > 1:
        try:
            got += os.splice(conn.sock, wfd, want - 1, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            pass  # only the one byte was there
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                conn.fail_head(pycurl.E_RECV_ERROR, "connection closed during the answer")
                return True
            conn.pool.splice = False  # this kernel or socket refuses: read as before
            conn.sock = -1
    conn.left -= got
    if p.hop.on_pipe(rfd, got) == 0:  # the sink ended it
        close_pipe(conn)  # (it may have left bytes in the pipe)
        ended_by_requester(conn, p)
    elif conn.left == 0:
        conn.complete()
    elif conn.sock >= 0:
        conn.splicing = can_splice(conn)
    return True


def close_pipe(conn: Conn) -> None:
    if conn.pipe is not None:
        for fd in conn.pipe:
            os.close(fd)
        conn.pipe = None


# ----- stalls -------------------------------------------------------------------


def watch(conn: Conn) -> None:
    if conn.timer is None and conn.pool.stall_timeout > 0:
        conn.rx_seen = conn.rx
        conn.quiet = 0
        _check_later(conn)


def _check_later(conn: Conn) -> None:
    # checked STALL_CHECKS times per timeout: a stall is seen within 1.25 timeouts of
    # the last byte (checked once per timeout, a byte just after a check made it 2)
    step = conn.pool.stall_timeout / STALL_CHECKS
    conn.timer = conn.pool.loop.call_later(step, _check, conn)


def _check(conn: Conn) -> None:
    conn.timer = None
    if conn.done or not conn.queue:
        return
    if conn.rx != conn.rx_seen:
        watch(conn)
        return
    conn.quiet += 1
    if conn.quiet < STALL_CHECKS:
        _check_later(conn)
        return
    head = conn.queue[0]
    if not head.got and conn.answered:
        conn.pool.refuse(conn.origin.key)  # answers one request, then ignores the rest
    if not head.got:
        head.got = True  # (fail it, do not resend it)
    conn.fail_head(STALLED, f"no data for {conn.pool.stall_timeout:g} s")


# ----- shutting down --------------------------------------------------------------


def shut_down(sock: socket.socket, how: int) -> None:
    """End ``sock``'s connection in the kernel now (a FIN; one still connecting is
    dropped): asyncio closes the socket only on a later turn of the loop, and the caps
    count it as closed already."""
    try:
        sock.shutdown(how)
    except OSError:  # (not connected, or closed already)
        pass
