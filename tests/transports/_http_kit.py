"""What the CurlTransport test modules share: a recording sink and one-call runners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from omniget.engine.transports.base import Head, Request, StopTransfer
from omniget.engine.transports.http import CurlTransport
from omniget.settings import NetworkSettings

BODY = bytes(range(256)) * 400  # 100 KiB


class Sink:
    """Collects what the transport hands over; can raise on cue."""

    def __init__(
        self,
        *,
        stop_after: int | None = None,
        head_error: BaseException | None = None,
        data_error: BaseException | None = None,
    ) -> None:
        self.heads: list[Head] = []
        self.data = bytearray()
        self.chunks = 0
        self.events: list[str] = []
        self.stop_after = stop_after
        self.head_error = head_error
        self.data_error = data_error

    def on_head(self, head: Head) -> None:
        self.events.append("head")
        self.heads.append(head)
        if self.head_error is not None:
            raise self.head_error

    def on_data(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data
        self.chunks += 1
        if self.data_error is not None:
            raise self.data_error
        if self.stop_after is not None and len(self.data) >= self.stop_after:
            raise StopTransfer


def run(
    fn: Callable[[CurlTransport], Awaitable[Any]],
    settings: NetworkSettings | None = None,
    **kw: Any,
) -> Any:
    async def main() -> Any:
        transport = CurlTransport(settings or NetworkSettings(), **kw)
        try:
            return await fn(transport)
        finally:
            await transport.aclose()

    return asyncio.run(main())


def get(url: str, settings: NetworkSettings | None = None, **req: Any) -> tuple[Head, Sink]:
    sink = Sink()

    async def go(t: CurlTransport) -> Head:
        return await t.fetch(Request(url, **req), sink)

    head = run(go, settings)
    return head, sink
