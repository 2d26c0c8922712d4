"""A yardstick, not a client: the least a Python program must do to fetch a URL list.

HTTP/1.1 pipelining over a few keep-alive connections on asyncio (no libcurl, no tasks per
file): each answer's body goes to ``NAME.part``, renamed when complete. No retries, no
redirects, no names from the server, no resume, no checks beyond Content-Length: only
``http://`` URLs of one server that answers every request with a Content-Length body.
Bodies go through user space (``recv`` then ``write``; omniget splices large ones), so it
is a floor for the per-file cost of many small files (S3), not for bulk bytes (S4).

bench/run.py runs it as the ``py-floor`` row (with omniget's interpreter) so that the
tables show how far omniget's engine is from what one Python thread can do at all. It is
never a peer: the targets compare omniget with the native tools only.

Usage: python bench/floor.py URL_LIST OUT_DIR [--connections 4] [--depth 8]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections import deque
from collections.abc import Iterator
from urllib.parse import urlsplit


class Conn(asyncio.Protocol):
    """One connection: up to ``depth`` requests in flight, answers parsed as they come."""

    def __init__(self, urls: Iterator[str], out: str, depth: int, done: asyncio.Future[None]):
        self.urls, self.out, self.depth, self.done = urls, out, depth, done
        self.names: deque[str] = deque()  # the requests in flight, oldest first
        self.buf = b""
        self.left = -1  # body bytes still due for the current answer; -1: reading a head
        self.fd = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.ask()

    def ask(self) -> None:
        """Top the pipeline up; close when nothing is left to ask or to read."""
        assert self.transport is not None
        out = []
        while len(self.names) < self.depth:
            url = next(self.urls, None)
            if url is None:
                break
            parts = urlsplit(url)
            self.names.append(parts.path.rpartition("/")[2] or "index.html")
            out.append(
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "User-Agent: floor\r\nAccept: */*\r\n\r\n".encode()
            )
        if out:
            self.transport.write(b"".join(out))
        elif not self.names:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        view, pos, n = memoryview(buf), 0, len(buf)
        while pos < n:
            if self.left < 0:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                self.start_answer(buf[pos:end])
                pos = end + 4
                if self.left < 0:
                    continue  # an empty body: that answer is complete already
            take = min(self.left, n - pos)
            os.write(self.fd, view[pos : pos + take])  # (a regular file takes it all)
            self.left -= take
            pos += take
            if self.left == 0:
                self.end_answer()
        self.buf = buf[pos:] if pos < n else b""

    def start_answer(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)[1]
        if status != b"200":
            raise SystemExit(f"floor: {self.names[0]}: HTTP {status.decode()}")
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise SystemExit(f"floor: {self.names[0]}: no Content-Length")
        self.left = length
        path = f"{self.out}/{self.names[0]}.part"
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if length == 0:
            self.end_answer()

    def end_answer(self) -> None:
        name = self.names.popleft()
        os.close(self.fd)
        os.replace(f"{self.out}/{name}.part", f"{self.out}/{name}")
        self.left, self.fd = -1, -1
        self.ask()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.names:
            self.done.set_exception(SystemExit(f"floor: connection lost before {self.names[0]}"))
        else:
            self.done.set_result(None)


async def fetch_all(urls: list[str], out: str, connections: int, depth: int) -> None:
    first = urlsplit(urls[0])
    if first.scheme != "http" or any(urlsplit(u).netloc != first.netloc for u in urls):
        raise SystemExit("floor: only http:// URLs of one server")
    loop = asyncio.get_running_loop()
    pending = iter(urls)  # shared: a connection takes the next URL when it has room
    waits = []
    for _ in range(min(connections, len(urls))):
        done: asyncio.Future[None] = loop.create_future()
        make = functools.partial(Conn, pending, out, depth, done)
        await loop.create_connection(make, first.hostname or "", first.port or 80)
        waits.append(done)
    await asyncio.gather(*waits)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url_list")
    p.add_argument("out_dir")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--depth", type=int, default=8)
    a = p.parse_args()
    with open(a.url_list) as f:
        urls = [line.strip() for line in f if line.strip()]
    if urls:
        os.makedirs(a.out_dir, exist_ok=True)
        asyncio.run(fetch_all(urls, a.out_dir, a.connections, a.depth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
