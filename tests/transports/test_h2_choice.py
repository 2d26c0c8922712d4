"""Whether a host's light https GETs are offered HTTP/2 (multiplexed as streams), as its
answers say: driven through the transport's notes, with no server and no timing."""

from __future__ import annotations

import asyncio

from omniget.engine.transports.base import Head, Headers
from omniget.engine.transports.hop import Hop
from omniget.engine.transports.http import CurlTransport
from omniget.settings import NetworkSettings

URL = "https://files.test/d/a.bin"
SMALL, LARGE = 4 << 10, 24 << 20


class _Sink:
    def on_head(self, head: Head) -> None: ...

    def on_data(self, data: bytes) -> None: ...


def _answers(t: CurlTransport, loop: asyncio.AbstractEventLoop, *sizes: int) -> None:
    """Tell ``t`` of final heads of light GETs to URL's host, answered over HTTP/2."""
    for size in sizes:
        hop = Hop(_Sink(), URL, loop.create_future())
        hop.raw.append(b"HTTP/2 200\r\n")
        hop.head = Head(200, URL, Headers([("content-length", str(size))]))
        t._note_h2(hop)


def _shares(*sizes: int) -> list[int]:
    """After each answer of ``sizes``: 1 if a light GET to the host goes as a stream."""
    loop = asyncio.new_event_loop()
    try:
        t = CurlTransport(NetworkSettings(netrc=False))
        seen = []
        for size in sizes:
            _answers(t, loop, size)
            seen.append(t.pipelined(URL))
        return seen
    finally:
        loop.close()


def test_a_large_answer_among_small_ones_leaves_light_gets_on_http2() -> None:
    # a host with many small files and one large (a split file's first GET, its answer
    # coming between theirs): the small ones stay streams (the last answer alone decided
    # it: the large one sent them to HTTP/1.1 until a small one came back)
    assert _shares(SMALL, SMALL, SMALL, LARGE) == [1, 1, 1, 1]
    assert _shares(SMALL, SMALL, LARGE, SMALL, LARGE, SMALL) == [1, 1, 1, 1, 1, 1]


def test_a_large_answer_first_waits_for_small_ones_to_outnumber_it() -> None:
    assert _shares(LARGE, SMALL, SMALL, SMALL) == [0, 0, 1, 1]


def test_a_run_of_large_answers_sends_light_gets_back_to_http11() -> None:
    assert _shares(SMALL, SMALL, LARGE, LARGE) == [1, 1, 1, 0]
    # however many small answers came before: the lean is bounded, so a host that
    # turned to large files is noticed after a few of them
    assert _shares(*[SMALL] * 50, *[LARGE] * 4) == [1] * 53 + [0]
    assert _shares(*[SMALL] * 50, *[LARGE] * 9, SMALL) == [1] * 53 + [0] * 6 + [0]
