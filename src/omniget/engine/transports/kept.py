"""libcurl's kept connections to the origins our pipelined pool takes over.

After a plain-HTTP transfer libcurl keeps its connection for the next request. Once the
pool (:mod:`.pipeline`) opens connections of its own to that origin, requests go there and
libcurl's connection would sit idle beside them until the run ends: one more connection
than the per-host cap for a server that counts connections, and one more for each libcurl
transfer that ran at once before the origin was settled (``-N 4`` showed 8 open).

So the transport notes the socket of each connection libcurl keeps after a transfer to a
plain-HTTP origin, and shuts the idle ones (``shutdown``, not ``close``: the descriptor is
libcurl's) when the pool opens a connection there, or when libcurl finishes another transfer
there while the pool holds some. A connection stays while a libcurl transfer to that origin
is about to pick one (it has none yet). libcurl finds a shut connection dead before it
would reuse it, and looks further or opens a new one.

They also count against the run's connection cap: when the pool needs a connection and the
cap is reached, one of them is shut (:meth:`KeptConnections.shed`).

A socket number can be reused once libcurl closes its connection, so a noted socket is
shut only while its local and remote addresses are still the ones noted.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Container
from typing import Any

__all__ = ["KeptConnections"]

_Ends = tuple[Any, Any]  # (local address, remote address)


class KeptConnections:
    """Sockets of connections libcurl kept, by origin (the pool's key)."""

    def __init__(self) -> None:
        self._by_origin: dict[str, dict[int, _Ends]] = {}

    def note(self, key: str, fd: int) -> None:
        """libcurl kept the connection on ``fd`` after a transfer to ``key``."""
        ends = _ends(fd)
        if ends is not None:
            self._by_origin.setdefault(key, {})[fd] = ends

    def has(self, key: str) -> bool:
        return key in self._by_origin

    def idle(self, key: str, in_use: Container[int]) -> int:
        """How many of ``key``'s noted connections are not on ``in_use`` sockets."""
        return sum(fd not in in_use for fd in self._by_origin.get(key, ()))

    def shut(self, key: str, in_use: Container[int] = (), spare: int = 0) -> int:
        """Shut ``key``'s noted connections but those on ``in_use`` sockets (libcurl's
        running transfers) and ``spare`` more (for libcurl's transfers about to pick
        one); return how many were shut."""
        noted = self._by_origin.get(key)
        if not noted:
            return 0
        done = 0
        for fd in list(noted):
            if fd in in_use:
                continue
            if spare > 0:
                spare -= 1
                continue
            done += self._forget(key, fd)
        return done

    def __len__(self) -> int:
        return sum(map(len, self._by_origin.values()))

    def shed(self, in_use: Container[int]) -> bool:
        """Forget one noted connection not on an ``in_use`` socket, shutting it if it is
        still the one noted; False if there is none."""
        for key, noted in self._by_origin.items():
            for fd in noted:
                if fd not in in_use:
                    self._forget(key, fd)
                    return True
        return False

    def _forget(self, key: str, fd: int) -> bool:
        """Forget a noted connection; shut it if it is still the one noted."""
        noted = self._by_origin[key]
        ends = noted.pop(fd)
        if not noted:
            del self._by_origin[key]
        return _shutdown_if(fd, ends)

    def clear(self) -> None:
        self._by_origin.clear()


def _sock(fd: int) -> socket.socket | None:
    """A socket object on a duplicate of ``fd`` (closing it leaves ``fd`` open)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        return socket.socket(fileno=dup)
    except OSError:  # not a socket (any more)
        os.close(dup)
        return None


def _ends(fd: int) -> _Ends | None:
    s = _sock(fd)
    if s is None:
        return None
    with s:
        try:
            return s.getsockname(), s.getpeername()
        except OSError:
            return None


def _shutdown_if(fd: int, ends: _Ends) -> bool:
    s = _sock(fd)
    if s is None:
        return False
    with s:
        try:
            if (s.getsockname(), s.getpeername()) != ends:
                return False  # another connection got the number
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
    return True
