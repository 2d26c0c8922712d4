"""The requests of the pipelined path, as :class:`~.pipeline.PipelinePool` and its
connections (:mod:`.h1conn`) share them: what a requester is (:class:`Exchange`), one
request in a queue (:class:`Pending`), one origin's queue and connections (:class:`Origin`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from .base import Headers

if TYPE_CHECKING:
    from .h1conn import Conn

__all__ = ["FALLBACK", "Exchange", "Origin", "Pending", "give_back", "head_lines"]

#: Finish code: the request got no byte of answer; run it through libcurl instead.
FALLBACK = -3


def head_lines(block: bytes) -> list[bytes]:
    """A head's lines as libcurl hands them over, each with its CRLF, and the empty line
    that ends it; ``block``: the head up to its last line's CRLF. Only CRLF ends a line
    (a lone CR or LF stays inside it)."""
    lines = block.splitlines(keepends=True)
    if len(lines) != block.count(b"\r\n"):  # (a lone CR or LF inside a line)
        lines = [line + b"\r\n" for line in block.split(b"\r\n")[:-1]]
    lines.append(b"\r\n")
    return lines


class Exchange(Protocol):
    """What a pipelined request reports to (the transport's per-request :class:`~.hop.Hop`)."""

    #: The answer's head as it came, set here: its lines are made from it only when
    #: read (see :func:`head_lines`; the usual answer never needs them)
    head_block: bytes | None
    #: (status, headers) of that head, parsed here once
    parsed: tuple[int, Headers] | None
    fut: asyncio.Future[tuple[int, str]]
    views: bool  # on_write may get a view of the read buffer (valid during the call)
    url: str  # what was asked for (a gzip file's name keeps its bytes as they come)

    def on_write(self, data: bytes | memoryview) -> int | None: ...

    def pipe_room(self) -> int: ...

    def on_pipe(self, pipe: int, count: int) -> int | None: ...

    def finish(self, code: int, message: str) -> None: ...


class Pending:
    __slots__ = ("data", "got", "hop", "tries")

    def __init__(self, hop: Exchange, data: bytes) -> None:
        self.hop = hop
        self.data = data
        self.got = False  # any byte of its answer arrived
        self.tries = 0

    @property
    def dropped(self) -> bool:  # cancelled by its requester
        return self.hop.fut.done()


class Origin:
    __slots__ = ("addr", "conns", "key", "waiting")

    def __init__(self, key: str, addr: tuple[tuple[str, ...], int]) -> None:
        self.key = key
        self.addr = addr
        self.conns: list[Conn] = []
        self.waiting: deque[Pending] = deque()


def give_back(p: Pending) -> None:
    p.hop.finish(FALLBACK, "")
