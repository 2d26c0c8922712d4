"""Part-file syncs still under way when a file or the run ends (checkpoints.py): a run
waits for them, for at most SYNC_WAIT seconds, so that what a sync made durable is
recorded as synced (what a rerun after a reboot trusts); one still going after that is
left unrecorded, and says nothing when it returns after the run (its journal closed).

Each run here syncs once: checkpoints only at the file's end (when it fails or stops),
and a sync at each checkpoint. The sync waits for the test's word on a worker thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.engine._syncs import run_contexts, sync_at_each_checkpoint, written_and_synced
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import checkpoints
from omniget.engine.core import Engine
from omniget.engine.events import Event, Failed, Warned
from omniget.engine.journal import Journal
from omniget.engine.report import Report
from omniget.engine.spans import Interval
from omniget.model import Item
from omniget.settings import Settings

KiB = 1024
#: The run's end after its last file takes a few loop turns: a run still going this many
#: turns after its last file's Failed event waits for something (the sync).
TURNS = 500


def one_sync(state: Path) -> Settings:
    """No checkpoint until the file's end, and a sync at that one."""
    return Settings(state_dir=state, split=1, retries=0, fsync_seconds=0.0,
                    checkpoint_bytes=1 << 30, checkpoint_seconds=3600.0)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Part-file syncs wait until this is set (set at the test's end in any case)."""
    go = threading.Event()
    sync = checkpoints._sync_and_close

    def held(fd: int) -> bool:
        go.wait(60)
        return sync(fd)

    monkeypatch.setattr(checkpoints, "_sync_and_close", held)
    try:
        yield go
    finally:
        go.set()


def release_when_waiting(
    runs: list[asyncio.Task[Report]], waits: list[asyncio.Task[None]], gate: threading.Event
) -> Callable[[Event], None]:
    """An event handler: once the file fails, ``gate`` (the held sync) is set if the run
    (``runs[0]``) is still going TURNS loop turns later, seen waiting for that sync."""

    async def release_if_waiting() -> None:
        for _ in range(TURNS):
            if runs[0].done():
                return  # (it did not wait: the sync stays held until the test ends)
            await asyncio.sleep(0)
        gate.set()

    def on_event(ev: Event) -> None:
        if isinstance(ev, Failed):
            waits.append(asyncio.get_running_loop().create_task(release_if_waiting()))

    return on_event


def run_until_synced(
    url: str, tmp_path: Path, gate: threading.Event, *,
    held: Callable[[], object] | None = None,
) -> tuple[Report, list[Interval], list[Interval]]:
    """Run one file until it ends with a sync under way (``held``: stopped, as by Ctrl+C,
    once this returns); the sync returns only once the run is seen waiting for it. The
    journal's spans (written, synced) as the run returned."""
    state = tmp_path / "state"

    async def go() -> tuple[Report, list[Interval], list[Interval]]:
        cancel = asyncio.Event()
        runs: list[asyncio.Task[Report]] = []
        waits: list[asyncio.Task[None]] = []

        on_event = release_when_waiting(runs, waits, gate)

        engine = Engine(one_sync(state), on_event=on_event)
        try:
            runs.append(asyncio.create_task(
                engine.run([Item(url)], tmp_path / "out", cancel=cancel)))
            if held is not None:
                await asyncio.to_thread(held)
                cancel.set()
            report = await runs[0]
            return (report, *written_and_synced(state))  # (as the run returned)
        finally:
            gate.set()
            await asyncio.gather(*waits)
            await engine.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run waits for its syncs long enough for any loaded machine to get to them."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 60.0, raising=False)


def test_a_sync_under_way_when_a_file_fails_is_recorded_before_the_run_returns(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, gate: threading.Event
) -> None:
    path = httpd.new_path("f.bin")
    httpd.add(path, payload(1024 * KiB, 5))
    report, written, synced = run_until_synced(
        httpd.url(path, reset=900 * KiB, times=1), tmp_path, gate)
    assert report.failed == 1
    assert written == synced == [(0, 900 * KiB)]


def test_a_sync_under_way_when_a_file_is_stopped_is_recorded_before_the_run_returns(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, gate: threading.Event
) -> None:
    path = httpd.new_path("s.bin")
    httpd.add(path, payload(1024 * KiB, 6))
    url = httpd.url(path, hold="h", stall_after=300 * KiB)
    try:
        report, written, synced = run_until_synced(
            url, tmp_path, gate, held=lambda: httpd.held("h"))
    finally:
        httpd.release("h")
    assert report.interrupted == report.failed == 1
    assert written == synced and written and written[0][0] == 0


def test_a_sync_that_outlasts_the_runs_wait_is_left_unrecorded_and_says_nothing(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, gate: threading.Event,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The disk does not answer: the run returns after its wait; the sync returns once the
    journal is closed (download() closes it), and records nothing, warns of nothing."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05, raising=False)
    close = Journal.close

    def closed(self: Journal) -> None:
        close(self)
        gate.set()  # (the sync returns now)

    monkeypatch.setattr(Journal, "close", closed)
    path = httpd.new_path("g.bin")
    httpd.add(path, payload(1024 * KiB, 7))
    state = tmp_path / "state"
    events: list[Event] = []
    with caplog.at_level(logging.WARNING):
        report = download([httpd.url(path, reset=900 * KiB, times=1)], tmp_path / "out",
                          settings=one_sync(state), on_event=events.append)
    assert report.failed == 1 and gate.is_set()
    assert [r.getMessage() for r in caplog.records] == []
    assert [e for e in events if isinstance(e, Warned)] == []
    assert written_and_synced(state) == ([(0, 900 * KiB)], [])


def test_an_engine_closed_during_a_run_closes_its_journal_once_the_runs_syncs_are_back(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, gate: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aclose() stops the run, whose stopped file syncs as it ends: aclose waits for the
    run's end (its wait for that sync) before it closes the journal."""
    path = httpd.new_path("c.bin")
    httpd.add(path, payload(1024 * KiB, 8))
    url = httpd.url(path, hold="h", stall_after=300 * KiB)
    state = tmp_path / "state"

    async def go() -> tuple[bool, Report]:
        runs: list[asyncio.Task[Report]] = []
        waits: list[asyncio.Task[None]] = []

        on_event = release_when_waiting(runs, waits, gate)

        engine = Engine(one_sync(state), on_event=on_event)
        try:
            runs.append(asyncio.create_task(engine.run([Item(url)], tmp_path / "out")))
            assert await asyncio.to_thread(httpd.held, "h")
            await engine.aclose()
            ended = runs[0].done()  # (as aclose returned)
            return ended, await runs[0]
        finally:
            gate.set()
            await asyncio.gather(*waits)

    try:
        with caplog.at_level(logging.WARNING):
            ended, report = asyncio.run(go())
    finally:
        httpd.release("h")
    assert ended and report.interrupted == 1
    assert [r.getMessage() for r in caplog.records] == []
    written, synced = written_and_synced(state)
    assert written == synced and written and written[0][0] == 0


def test_a_sync_that_returns_after_a_later_one_never_rolls_the_synced_spans_back(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync at every checkpoint (every 64 KiB); the first is held until the file failed
    and no other sync is under way. What it made durable (the first 64 KiB) is less
    than what the file's last checkpoint wrote: the journal ends with the last one as
    synced, not the first (before, the first was recorded last and won). Syncs of one
    file run one at a time."""
    path = httpd.new_path("o.bin")
    httpd.add(path, payload(1024 * KiB, 9))
    state = tmp_path / "state"
    settings = sync_at_each_checkpoint(state)
    first = threading.Event()
    lock = threading.Lock()
    calls: list[int] = []
    under_way = [0, 0]  # now, most at once
    sync = checkpoints._sync_and_close

    def held_first(fd: int) -> bool:
        with lock:
            calls.append(fd)
            mine = len(calls) == 1
            under_way[0] += 1
            under_way[1] = max(under_way)
        try:
            if mine:
                first.wait(60)
            return sync(fd)
        finally:
            with lock:
                under_way[0] -= 1

    monkeypatch.setattr(checkpoints, "_sync_and_close", held_first)
    contexts = run_contexts(monkeypatch)

    async def go() -> Report:
        runs: list[asyncio.Task[Report]] = []
        waits: list[asyncio.Task[None]] = []

        async def release_when_alone() -> None:
            # (the run waits for its syncs; the first is the only one under way)
            syncs = contexts[0].syncs
            for _ in range(6000):
                if syncs is None or len(syncs) <= 1:
                    break
                await asyncio.sleep(0.01)
            for _ in range(TURNS):
                await asyncio.sleep(0)
            first.set()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Failed):
                waits.append(asyncio.get_running_loop().create_task(release_when_alone()))

        engine = Engine(settings, on_event=on_event)
        try:
            runs.append(asyncio.create_task(engine.run(
                [Item(httpd.url(path, reset=900 * KiB, times=1))], tmp_path / "out")))
            return await runs[0]
        finally:
            first.set()
            await asyncio.gather(*waits)
            await engine.aclose()

    report = asyncio.run(go())
    assert report.failed == 1
    assert len(calls) >= 2
    written, synced = written_and_synced(state)
    assert written == synced == [(0, 900 * KiB)]
    assert under_way[1] == 1
