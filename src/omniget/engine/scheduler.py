"""Connection limits shared by every file of a run: a global cap and a per-host cap.

A slot is one connection's worth of permission. ``acquire`` waits; ``try_acquire`` is for
optional extra connections (a file adding a span) and never waits.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["HostLimits", "host_of"]


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, lower-cased (a cheap split: this runs once per request)."""
    netloc = url.split("/", 3)[2] if "://" in url else url
    return netloc.rpartition("@")[2].lower()


class HostLimits:
    def __init__(self, per_host: int, total: int) -> None:
        self.per_host = max(1, per_host)
        self.total = max(1, total)
        self._used: dict[str, int] = defaultdict(int)
        self._in_use = 0
        self._waiters: deque[tuple[str, asyncio.Future[None]]] = deque()

    def _free(self, host: str) -> bool:
        return self._used[host] < self.per_host and self._in_use < self.total

    def _take(self, host: str) -> None:
        self._used[host] += 1
        self._in_use += 1

    async def acquire(self, url: str) -> str:
        host = host_of(url)
        if self._free(host) and not self._waiters:
            self._take(host)
            return host
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((host, fut))
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(host)  # granted just as we were cancelled
            else:
                self._waiters.remove((host, fut))
            raise
        return host

    def try_acquire(self, url: str) -> str | None:
        host = host_of(url)
        if not self._free(host):
            return None
        self._take(host)
        return host

    def free_for(self, url: str) -> int:
        """How many more connections ``url``'s host could get right now."""
        host = host_of(url)
        return max(0, min(self.per_host - self._used[host], self.total - self._in_use))

    def release(self, host: str) -> None:
        self._used[host] -= 1
        self._in_use -= 1
        if not self._waiters:
            return
        # Wake waiters in order, skipping those whose host is still full.
        for entry in list(self._waiters):
            whost, fut = entry
            if fut.done():
                self._waiters.remove(entry)
            elif self._free(whost):
                self._take(whost)
                self._waiters.remove(entry)
                fut.set_result(None)
            if self._in_use >= self.total:
                break

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[str]:
        host = await self.acquire(url)
        try:
            yield host
        finally:
            self.release(host)

    def __repr__(self) -> str:
        used = {h: n for h, n in self._used.items() if n}
        waiting = len(self._waiters)
        return f"<HostLimits in_use={self._in_use}/{self.total} hosts={used} waiting={waiting}>"
