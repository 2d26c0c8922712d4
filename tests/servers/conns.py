"""Counting a client's open connections to a test server as the kernel has them.

A server thread notices a client's close only at its next send (after a drip's pause, or
later under load), so a server-side request log overlaps requests that were not open at
once; the kernel's own table does not."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from socket import AF_INET, AF_INET6

import pytest

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED = 1


def established(port: int) -> int:
    """Client sockets in this network namespace with an open (ESTABLISHED) connection to
    ``port`` on this host at one moment, as the kernel has them: a connection counts
    until its client closes or shuts it, however late a server thread notices.

    Asked over netlink (sock_diag) for the established sockets to ``port`` only, IPv4
    then IPv6, twice in a row; a socket counts if both walks saw it. One walk is no
    snapshot: the kernel locks one bucket of its table at a time and may pause between
    buckets (milliseconds on a busy machine), and the IPv6 table is walked after the
    IPv4 one, so a socket closed once walked and one opened where the walk had yet to go
    both counted (seen 5 for 4). A socket is established for one stretch of its life:
    one seen in two walks in a row was open all the time between them, so the count is
    true at the moment the first walk ended (a connection shorter than a walk may go
    unseen)."""
    return len(_walk(port) & _walk(port))


def _walk(port: int) -> set[bytes]:
    """The cookies (the kernel's id of a socket, never reused) of the established TCP
    sockets to ``port``, from one walk of the IPv4 table and one of the IPv6 table."""
    # inet_diag_msg: family, state, timer, retrans, then the inet_diag_sockid: sport,
    # dport, src (16), dst (16), interface (4), cookie (8)
    dport = struct.pack(">H", port)
    return {
        m[44:52]
        for family in (AF_INET, AF_INET6)
        for a in _answers(family, port)
        for m in a
        if m[6:8] == dport
    }


def _dump_ports(family: int, port: int) -> list[int]:
    """The remote ports of this family's established TCP sockets to ``port`` (0: to
    any port)."""
    return [struct.unpack_from(">H", m, 6)[0] for a in _answers(family, port) for m in a]


def _answers(family: int, port: int) -> Iterator[list[bytes]]:
    """The kernel's answers (netlink datagrams) to a dump of this family's established
    TCP sockets to ``port`` (0: any), each as its messages' payloads, up to the one that
    ends the dump. The kernel walks on to make the next answer when this one is read."""
    # inet_diag_req_v2, then its inet_diag_sockid (sport, dport, src, dst, if, cookie):
    # in a dump, the kernel skips sockets whose remote port is not a dport set here
    request = (
        struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED)
        + struct.pack(">HH", 0, port)
        + bytes(44)
    )
    head = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, DUMP, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.sendall(head + request)
        while True:
            data = nl.recv(1 << 20)
            messages: list[bytes] = []
            at = 0
            while at + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, at)
                if kind == NLMSG_DONE:
                    yield messages
                    return
                if kind == NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag refused the dump")
                messages.append(data[at + 16 : at + length])
                at += (length + 3) & ~3
            yield messages


def can_count() -> bool:
    """Whether this machine lets :func:`established` ask the kernel."""
    try:
        _dump_ports(AF_INET, 1)
    except OSError:
        return False
    return True


class PeakConnections:
    """Samples :func:`established` on a thread while in use; ``peak`` is the most seen.

    Sampling is no proof that a connection was seen: a run that opened and closed its
    connections while a loaded machine gave the sampler no turn leaves ``peak`` at 0.
    :meth:`settle`, called at a moment the client's connections are open (from the
    client's own thread, an event handler, say: they stay open meanwhile), counts them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self.walks = 0  # counts done
        self._settled = False
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakConnections:
        if not can_count():
            pytest.skip("needs Linux's sock_diag netlink to count connections")
        self._thread.start()
        self._count_from_now()  # (counting from now on)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def settle(self, timeout: float = 30.0, *, once: bool = False) -> None:
        """Wait until a count begun after this call is done: a connection open all the
        while is in ``peak`` then. ``once``: not again after a first settle (a run of
        hundreds of files counts at its first)."""
        if once and self._settled:
            return
        self._settled = True
        self._count_from_now(timeout)

    def _count_from_now(self, timeout: float = 30.0) -> None:
        with self._done:
            after = self.walks + 2  # (the count under way may have begun before)
            self._done.wait_for(lambda: self.walks >= after or self._stop.is_set(), timeout)

    def _sample(self) -> None:
        while not self._stop.is_set():
            seen = established(self.port)
            with self._done:
                self.peak = max(self.peak, seen)
                self.walks += 1
                self._done.notify_all()
            time.sleep(0.002)
