"""A forwarding HTTP proxy for tests: ``CONNECT`` tunnels (bytes relayed both ways) and
absolute-form requests (each sent on to the origin in origin form on a connection of its
own; the client's connection is kept for its next request, as a real proxy keeps it, when
the answer has a Content-Length). It logs every request head it is sent, with the client
connection it came on, and drops ``Proxy-Authorization`` and ``Proxy-Connection`` before
forwarding, as a proxy that takes them does: what an origin server sees of them came from
the client past the proxy (inside a tunnel, or straight to it). Every host name it is given
is 127.0.0.1 (``files.test``, say: what a client's ``--resolve`` does on its side).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from .listener import Listener
from .wire import CIHeaders

__all__ = ["Proxy", "ProxyRequest", "relay"]

_HOP = ("proxy-authorization", "proxy-connection", "connection", "keep-alive")


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    target: str  # as sent: host:port for CONNECT, an absolute URL otherwise
    headers: CIHeaders
    conn: int = 0  # the client connection it came on (1, 2, ... in order of acceptance)
    upstream: int = 0  # a CONNECT's: the port of the proxy's end of its tunnel (0: none)


class Proxy(Listener):
    """``with Proxy() as p:`` a proxy at ``p.url``; ``p.log``: the heads it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log: list[ProxyRequest] = []

    @property
    def log(self) -> list[ProxyRequest]:
        with self._lock:
            return list(self._log)

    def _serve(self, client: socket.socket, conn: int) -> None:
        with client:
            try:
                self._requests(client, conn)
            except OSError:  # (the client hung up mid-answer, or the server did)
                pass

    def _requests(self, client: socket.socket, conn: int) -> None:
        """The requests on one client connection, until it ends."""
        buf = b""
        while True:
            head, buf = _read_head(client, buf)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            pairs = [(n, v.strip()) for n, _, v in (ln.partition(":") for ln in lines[1:]
                                                      if ln)]
            up = None
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                with contextlib.suppress(OSError):
                    up = socket.create_connection((_address(host), int(port)))
            with self._lock:
                self._log.append(ProxyRequest(method, target, CIHeaders(pairs), conn,
                                              up.getsockname()[1] if up else 0))
            if method == "CONNECT":
                if up is None:
                    client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                with up:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if buf:
                        up.sendall(buf)
                    relay(client, up)
                return
            if not self._forward(client, method, target, pairs):
                return

    def _forward(
        self, client: socket.socket, method: str, target: str, pairs: list[tuple[str, str]]
    ) -> bool:
        """Send one absolute-form request on and its answer back; True if the client's
        connection may take another (the answer's end was known by its length)."""
        url = urlsplit(target)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        kept = [(n, v) for n, v in pairs if n.lower() not in _HOP]
        out = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept)
        out += "Connection: close\r\n\r\n"  # (GETs only: a request body is not relayed)
        with socket.create_connection((_address(url.hostname or ""), url.port or 80)) as up:
            up.sendall(out.encode("latin-1"))
            head, body = _read_head(up, b"")
            if head is None:
                return False
            lines = head.decode("latin-1").split("\r\n")
            fields = [(n.strip().lower(), v.strip())
                      for n, _, v in (ln.partition(":") for ln in lines[1:])]
            length = next((int(v) for n, v in fields if n == "content-length"), None)
            status = int(lines[0].split(" ", 2)[1])
            if method == "HEAD" or status in (204, 304):
                length = 0
            answer = [lines[0]] + [ln for ln in lines[1:]
                                   if ln.partition(":")[0].strip().lower() not in _HOP]
            if length is None:
                answer.append("Connection: close")
            client.sendall(("\r\n".join(answer) + "\r\n\r\n").encode("latin-1"))
            left = None if length is None else length
            while left is None or left > 0:
                if body:
                    part = body if left is None else body[:left]
                    client.sendall(part)
                    if left is not None:
                        left -= len(part)
                if left == 0:
                    break
                body = up.recv(65536)
                if not body:
                    return False
        return length is not None


def _address(host: str) -> str:
    """Where ``host`` is: itself for an address, 127.0.0.1 for a name."""
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return host


def _read_head(sock: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """The next head on ``sock`` (``buf``: bytes read already) and what followed it."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def relay(a: socket.socket, b: socket.socket) -> None:
    """Bytes both ways until each side has ended what it sends."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()
