"""Under a run-wide ``limit_rate`` a file is not split: its connections would share one
budget, so more of them cannot make it come faster (they only cost the server more).
``split`` given explicitly is kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.engine import Engine
from omniget.engine.events import Event
from omniget.engine.retry import FakeClock
from omniget.model import Item
from omniget.settings import NetworkSettings, Settings

KiB = 1024
SIZE = 2048 * KiB  # 32 split sizes: an adaptive run takes several connections at once


def fetch(url: str, tmp_path: Path, **kw: object) -> list[Event]:
    events: list[Event] = []
    settings = Settings(state_dir=tmp_path / "state", min_split_size=64 * KiB,
                        network=NetworkSettings(stall_timeout=5.0, connect_timeout=5.0),
                        **kw)  # type: ignore[arg-type]

    async def go() -> None:
        eng = Engine(settings, clock=FakeClock(), on_event=events.append)
        try:
            report = await eng.run([Item(url)], tmp_path / "out")
        finally:
            await eng.aclose()
        assert report.exit_code == 0, report.failures

    asyncio.run(go())
    return events


@pytest.mark.parametrize(
    ("settings", "many"),
    [({"limit_rate": 4 * 1024 * KiB}, False), ({"limit_rate": 4 * 1024 * KiB, "split": 3}, True)],
)
def test_a_file_is_not_split_under_a_run_wide_rate_unless_split_is_given(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    settings: dict[str, int], many: bool,
) -> None:
    data = payload(SIZE, 7)
    path = httpd.new_path("big.bin")
    url = httpd.add(path, data)
    fetch(url, tmp_path, **settings)
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    gets = [r for r in httpd.requests_to(path) if r.method == "GET"]
    assert (len(gets) > 1) is many, [r.header("range") for r in gets]
