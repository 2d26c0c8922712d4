"""A transport double serving bytes from memory, for engine and source tests.

It answers Range and If-Range like a real server, records every request, fails loudly
on a URL nobody registered, and lets a test script any answer with a handler.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...errors import TransientError
from .base import Head, Headers, Request, Sink, StopTransfer

__all__ = ["MemResponse", "MemoryTransport"]


@dataclass
class MemResponse:
    """A canned answer of the in-memory transport."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Send this many body bytes, then fail like a reset connection.
    reset_after: int | None = None


Handler = Callable[[Request, int], MemResponse | None]  # (request, nth call for this URL)


class MemoryTransport:
    schemes = ("http", "https", "mem")

    def __init__(self, *, chunk: int = 64 * 1024, ranges: bool = True) -> None:
        self.chunk = chunk
        self.ranges = ranges
        self.files: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.handlers: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self.calls: dict[str, int] = {}

    def add(self, url: str, data: bytes, *, etag: str | None = None, **headers: str) -> None:
        hdrs = {"etag": etag or f'"{hashlib.md5(data).hexdigest()}"', **headers}
        self.files[url] = (data, hdrs)

    def on(self, url: str, handler: Handler) -> None:
        """Script the answers for ``url``: the handler returns a response, or None for
        the default (the registered file)."""
        self.handlers[url] = handler

    def _answer(self, req: Request, n: int) -> MemResponse:
        handler = self.handlers.get(req.url)
        if handler is not None:
            res = handler(req, n)
            if res is not None:
                return res
        if req.url not in self.files:
            raise AssertionError(f"unexpected request to {req.url}")
        data, hdrs = self.files[req.url]
        rng = req.range
        if_range_ok = req.if_range is None or req.if_range == hdrs.get("etag")
        if rng is None or not self.ranges or not if_range_ok:
            return MemResponse(
                200, data, {**hdrs, "accept-ranges": "bytes" if self.ranges else "none"}
            )
        end = len(data) if rng.end is None else min(rng.end, len(data))
        if rng.start >= len(data):
            return MemResponse(416, b"", {"content-range": f"bytes */{len(data)}"})
        cr = f"bytes {rng.start}-{end - 1}/{len(data)}"
        return MemResponse(
            206, data[rng.start : end], {**hdrs, "content-range": cr, "accept-ranges": "bytes"}
        )

    async def fetch(self, request: Request, sink: Sink) -> Head:
        self.requests.append(request)
        n = self.calls.get(request.url, 0)
        self.calls[request.url] = n + 1
        await asyncio.sleep(0)
        res = self._answer(request, n)
        headers = Headers(res.headers.items())
        if "content-length" not in {k.lower() for k in res.headers}:
            headers.add("content-length", str(len(res.body)))
        head = Head(res.status, request.url, headers)
        try:
            sink.on_head(head)
            sent = 0
            body = res.body
            limit = len(body) if res.reset_after is None else min(res.reset_after, len(body))
            while sent < limit:
                piece = body[sent : min(limit, sent + self.chunk)]
                sink.on_data(piece)
                sent += len(piece)
                await asyncio.sleep(0)
            if limit < len(body):
                raise TransientError(f"connection reset after {limit} bytes")
        except StopTransfer:
            pass
        return head

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MemoryTransport files={len(self.files)} requests={len(self.requests)}>"
