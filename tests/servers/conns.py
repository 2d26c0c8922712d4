"""Counting a client's open connections to a test server as the kernel has them.

A server thread notices a client's close only at its next send (after a drip's pause, or
later under load), so a server-side request log overlaps requests that were not open at
once; the kernel's own table does not."""

from __future__ import annotations

import socket
import struct
import threading
import time
from socket import AF_INET, AF_INET6

import pytest

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED = 1


def established(port: int) -> int:
    """Client sockets in this network namespace with an open (ESTABLISHED) connection to
    ``port`` on this host, as the kernel has them: a connection counts until its client
    closes or shuts it, however late a server thread notices.

    Asked over netlink (sock_diag) for established sockets only: the kernel walks its
    table once into one answer. ``/proc/net/tcp`` is read a page at a time, and a
    socket closed after its line was read plus one opened in a later line both count
    (seen: 8 for 4 on a busy machine with ~1,000 TIME_WAIT lines)."""
    return sum(_established_ports(family).count(port) for family in (AF_INET, AF_INET6))


def _established_ports(family: int) -> list[int]:
    """The remote ports of this family's established TCP sockets."""
    request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED)
    head = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, DUMP, 1, 0)
    ports: list[int] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.sendall(head + request)
        while True:
            data = nl.recv(1 << 20)
            at = 0
            while at + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, at)
                if kind == NLMSG_DONE:
                    return ports
                if kind == NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag refused the dump")
                # inet_diag_msg: family, state, timer, retrans, then sport, dport (big-endian)
                ports.append(struct.unpack_from(">H", data, at + 16 + 6)[0])
                at += (length + 3) & ~3


def can_count() -> bool:
    """Whether this machine lets :func:`established` ask the kernel."""
    try:
        _established_ports(AF_INET)
    except OSError:
        return False
    return True


class PeakConnections:
    """Samples :func:`established` on a thread while in use; ``peak`` is the most seen."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakConnections:
        if not can_count():
            pytest.skip("needs Linux's sock_diag netlink to count connections")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, established(self.port))
            time.sleep(0.002)
