"""The refresh hook renews expired URLs; one that never gives a working URL is asked a
bounded number of times, however long each try takes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.engine.test_engine_memory import make, run

from omniget import AuthRequired
from omniget.engine.core import Engine
from omniget.engine.retry import FakeClock
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.model import Item, Piece


def always_expired(
    tmp_path: Path, pieces: bool = False
) -> tuple[Engine, list[Item], Callable[[Item], Awaitable[Item]], Item]:
    """An engine on a fake clock, an item whose URL is refused (403), and a refresh hook
    that takes 5 s and gives a new URL refused too; the hook's calls."""
    mem = MemoryTransport()
    calls: list[Item] = []

    def expired(n: int) -> Item:
        url = f"http://cdn.test/x{n}"
        mem.on(url, lambda req, k: MemResponse(403, b"expired"))
        return Item(url, filename="o.bin", pieces=(Piece(url),) if pieces else ())

    eng, _ = make(tmp_path, mem)
    clock = eng.clock
    assert isinstance(clock, FakeClock)

    async def refresh(item: Item) -> Item:
        calls.append(item)
        clock.advance(5.0)
        return expired(len(calls))

    return eng, calls, refresh, expired(0)


@pytest.mark.parametrize("pieces", [False, True], ids=["plain", "piece"])
def test_a_refresh_that_always_gives_an_expired_url_is_bounded(
    tmp_path: Path, pieces: bool
) -> None:
    """Each refresh gives a new URL that is refused too, and a second passes between them
    (a slow server): the file was refreshed forever (the one bound was "not twice within
    a second")."""
    eng, calls, refresh, item = always_expired(tmp_path, pieces)
    eng.refresh = refresh
    report = run(eng, [item], tmp_path, within=20)
    [result] = report.results
    assert isinstance(result.error, AuthRequired)
    assert 1 <= len(calls) <= 3


def test_a_stream_whose_refresh_always_gives_an_expired_url_is_bounded(tmp_path: Path) -> None:
    eng, calls, refresh, item = always_expired(tmp_path)

    async def go() -> None:
        try:
            await asyncio.wait_for(eng.stream(item, lambda b: None, refresh=refresh), 20)
        finally:
            await eng.aclose()

    with pytest.raises(AuthRequired):
        asyncio.run(go())
    assert 1 <= len(calls) <= 3
