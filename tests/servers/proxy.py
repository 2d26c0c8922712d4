"""A forwarding HTTP proxy for tests: ``CONNECT`` tunnels (bytes relayed both ways) and
absolute-form requests (sent on to the origin in origin form, one request per client
connection). It logs every request head it is sent, and drops ``Proxy-Authorization``
and ``Proxy-Connection`` before forwarding, as a proxy that takes them does: what an
origin server sees of them came from the client past the proxy (inside a tunnel, or
straight to it).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from .wire import CIHeaders

__all__ = ["Proxy", "ProxyRequest"]

_HOP = ("proxy-authorization", "proxy-connection", "connection", "keep-alive")


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    target: str  # as sent: host:port for CONNECT, an absolute URL otherwise
    headers: CIHeaders


class Proxy:
    """``with Proxy() as p:`` a proxy at ``p.url``; ``p.log``: the heads it was sent."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._log: list[ProxyRequest] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def log(self) -> list[ProxyRequest]:
        with self._lock:
            return list(self._log)

    def __enter__(self) -> Proxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head, rest = _read_head(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            pairs = [(n, v.strip()) for n, _, v in (ln.partition(":") for ln in lines[1:] if ln)]
            with self._lock:
                self._log.append(ProxyRequest(method, target, CIHeaders(pairs)))
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                with socket.create_connection((host, int(port))) as up:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if rest:
                        up.sendall(rest)
                    _relay(client, up)
                return
            url = urlsplit(target)
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            kept = [(n, v) for n, v in pairs if n.lower() not in _HOP]
            out = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept)
            out += "Connection: close\r\n\r\n"
            with socket.create_connection((url.hostname or "", url.port or 80)) as up:
                up.sendall(out.encode("latin-1") + rest)
                while data := up.recv(65536):
                    client.sendall(data)


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _relay(a: socket.socket, b: socket.socket) -> None:
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
