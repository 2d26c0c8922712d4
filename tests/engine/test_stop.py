"""A run stopped by its ``cancel``: whether it was cut short (files left out or cut off)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.core import Engine
from omniget.engine.events import Event, Finished
from omniget.engine.report import Report
from omniget.model import Item
from omniget.settings import Settings


def test_a_cancel_after_the_last_file_ended_stops_nothing(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    urls = [httpd.add(f"/s{i}.bin", b"x" * (100 + i)) for i in range(3)]
    cancel = threading.Event()
    seen: list[Path | None] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, Finished):
            seen.append(ev.path)
            if len(seen) == 3:
                cancel.set()

    report = download(urls, tmp_path / "o", settings=Settings(state_dir=tmp_path / "s", jobs=1),
                      on_event=on_event, cancel=cancel)
    assert cancel.is_set() and report.ok == 3 and not report.stopped


def test_a_cancel_before_the_end_of_the_list_stops_the_run(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    urls = [httpd.add(f"/t{i}.bin", b"y" * (100 + i)) for i in range(40)]

    async def go() -> Report:
        cancel = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Finished):
                cancel.set()

        engine = Engine(Settings(state_dir=tmp_path / "s", jobs=1), on_event=on_event)
        try:
            return await engine.run([Item(u) for u in urls], tmp_path / "o", cancel=cancel)
        finally:
            await engine.aclose()

    report = asyncio.run(go())
    assert len(report.results) < 40 and report.stopped
