"""A loopback listener that serves each client connection on a thread of its own: the
shape the test proxies share (tests/servers/proxy.py, socks.py)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

__all__ = ["Canned", "Listener"]


class Listener:
    """``with`` it: accepts on ``port`` (127.0.0.1) until the block ends, each client
    given to :meth:`_serve` on a thread with its number (1, 2, ... in order of
    acceptance). ``_lock`` guards what subclasses keep."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._closed = False
        self._conns = 0

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        self._sock.close()

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        with self._lock:
            return self._conns

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns += 1
                conn = self._conns
            threading.Thread(target=self._serve, args=(client, conn), daemon=True).start()

    def _serve(self, client: socket.socket, conn: int) -> None:
        raise NotImplementedError


class Canned(Listener):
    """A proxy that reads one request head and sends ``answer``, then closes."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket, conn: int) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    return
                head += data
            client.sendall(self.answer)
