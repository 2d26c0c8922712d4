"""A SOCKS5 proxy for tests (RFC 1928, CONNECT only; no login, or a user name and password
as RFC 1929 has them). It logs what each client asked to reach: an IPv4 address (the
client resolved the name: ``socks5://``) or a host name (the proxy resolves it:
``socks5h://``; every name is 127.0.0.1 here), and relays bytes both ways.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .listener import Listener

__all__ = ["SocksProxy", "SocksRequest"]


@dataclass(frozen=True)
class SocksRequest:
    kind: str  # "ipv4", "name" or "ipv6": the address type the client sent
    host: str
    port: int
    login: tuple[str, str] | None  # the user name and password it gave, if any


class SocksProxy(Listener):
    """``with SocksProxy() as p:`` a SOCKS5 proxy at ``p.url`` (``p.url_h`` for
    ``socks5h://``); ``p.log``: what it was asked to reach. With ``login``, a client must
    give that user name and password."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.url = f"socks5://127.0.0.1:{self.port}"
        self.url_h = f"socks5h://127.0.0.1:{self.port}"
        self._login = login
        self._log: list[SocksRequest] = []

    @property
    def log(self) -> list[SocksRequest]:
        with self._lock:
            return list(self._log)

    def _serve(self, client: socket.socket, conn: int) -> None:
        with client:
            try:
                self._one(client)
            except OSError:  # (the client hung up; ConnectionError: mid-request)
                pass

    def _one(self, client: socket.socket) -> None:
        from .proxy import relay

        ver, n = _exact(client, 2)
        methods = _exact(client, n)
        login = None
        if self._login is not None:
            if 2 not in methods:
                client.sendall(b"\x05\xff")
                return
            client.sendall(b"\x05\x02")
            _, ulen = _exact(client, 2)
            user = _exact(client, ulen).decode()
            (plen,) = _exact(client, 1)
            login = (user, _exact(client, plen).decode())
            ok = login == self._login
            client.sendall(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return
        else:
            if ver != 5 or 0 not in methods:
                client.sendall(b"\x05\xff")
                return
            client.sendall(b"\x05\x00")
        _, cmd, _, atyp = _exact(client, 4)
        if atyp == 1:
            kind, host = "ipv4", socket.inet_ntoa(_exact(client, 4))
        elif atyp == 3:
            (size,) = _exact(client, 1)
            kind, host = "name", _exact(client, size).decode()
        else:
            kind, host = "ipv6", socket.inet_ntop(socket.AF_INET6, _exact(client, 16))
        (port,) = struct.unpack("!H", _exact(client, 2))
        with self._lock:
            self._log.append(SocksRequest(kind, host, port, login))
        if cmd != 1 or kind == "ipv6":
            client.sendall(b"\x05\x07\x00\x01" + bytes(6))
            return
        try:
            up = socket.create_connection(("127.0.0.1", port))
        except OSError:
            client.sendall(b"\x05\x05\x00\x01" + bytes(6))
            return
        with up:
            client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1")
                           + struct.pack("!H", port))
            relay(client, up)


def _exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError("closed mid-request")
        data += more
    return data
