"""Part-file syncs (checkpoints.py) run on threads of their own, not in asyncio's default
executor: a slow disk's syncs do not hold up what runs there, the hashing of a
finished file and the journal's clean-up when an engine closes; nor download(), whose
asyncio.run waits for that executor's threads as it ends.

The default executor here has one thread (what a few slow syncs make of its six on a
2-core machine): a sync held in it would hold every other call behind it. The held sync
waits for the word that the other call ran (for a minute at most)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import checkpoints, finish
from omniget.engine.core import Engine
from omniget.engine.events import Event, Finished
from omniget.engine.journal import Journal
from omniget.engine.report import Report
from omniget.model import Digest, Item
from omniget.settings import Settings

KiB = 1024
WAIT = 30.0


class HeldSync:
    """The run's first part-file sync waits for ``go`` (twice WAIT seconds at most: the
    test gives up waiting first): ``held`` is set once it waits, ``back`` once it
    returned, ``freed`` (set just before ``back``) whether ``go`` came in time,
    ``threads`` the threads that syncs ran on."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.go = threading.Event()
        self.back = threading.Event()
        self.freed: bool | None = None
        self.threads: list[str] = []
        self.pruned = False  # (the second test's: the journal pruned while it was held)
        self._lock = threading.Lock()


@pytest.fixture
def sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSync]:
    held = HeldSync()
    real = checkpoints._sync_and_close

    def first_held(fd: int) -> bool:
        with held._lock:
            first = not held.threads
            held.threads.append(threading.current_thread().name)
        if first:
            held.held.set()
            held.freed = held.go.wait(2 * WAIT)
            held.back.set()
        return real(fd)

    monkeypatch.setattr(checkpoints, "_sync_and_close", first_held)
    try:
        yield held
    finally:
        held.go.set()


async def one_default_thread() -> ThreadPoolExecutor:
    """Give the running loop a default executor of one thread, and a pool of the test's
    own to wait on threading events in (not that executor: it may be the one held)."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
    return ThreadPoolExecutor(2, thread_name_prefix="test-wait")


async def waited(pool: ThreadPoolExecutor, call: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(pool, call, *args)


def test_a_held_sync_does_not_hold_up_a_finished_files_hash(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, sync: HeldSync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """File a syncs at its first checkpoint (held); file b, held by its server until then,
    finishes and is hashed on a thread (as a large one is, or one fetched out of
    order): it finishes while a's sync is still held."""
    monkeypatch.setattr(finish, "HASH_IN_THREAD", 0)
    monkeypatch.setattr(finish, "_stream_digest", lambda *_: None)
    a, b = httpd.new_path("a.bin"), httpd.new_path("b.bin")
    httpd.add(a, payload(1024 * KiB, 41))
    small = payload(32 * KiB, 42)
    httpd.add(b, small)
    items = [
        Item(httpd.url(a, hold="a", stall_after=300 * KiB)),
        Item(httpd.url(b, hold="b", stall_after=16 * KiB),
             digest=Digest("sha256", hashlib.sha256(small).hexdigest())),
    ]
    settings = Settings(state_dir=tmp_path / "state", split=1, jobs=2, fsync_seconds=0.0,
                        checkpoint_bytes=64 * KiB, checkpoint_seconds=3600.0)

    async def go() -> tuple[bool, Report]:
        pool = await one_default_thread()
        b_done = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Finished) and ev.path is not None and ev.path.name == "b.bin":
                b_done.set()

        engine = Engine(settings, on_event=on_event)
        run = asyncio.create_task(engine.run(items, tmp_path / "out"))
        try:
            assert await waited(pool, sync.held.wait, WAIT)
            httpd.release("b")
            try:
                await asyncio.wait_for(b_done.wait(), WAIT)
            except TimeoutError:
                pass
            finished = b_done.is_set() and not sync.back.is_set()
            sync.go.set()
            httpd.release("a")
            return finished, await run
        finally:
            sync.go.set()
            httpd.release("a")
            httpd.release("b")
            await engine.aclose()
            pool.shutdown()

    finished, report = asyncio.run(go())
    assert finished, "b's hash waited for a's sync"
    assert report.ok == 2, report.failures
    assert sync.back.wait(WAIT) and sync.freed is True
    assert sync.threads and all(name.startswith("omniget-sync") for name in sync.threads)


def test_a_held_sync_does_not_hold_up_the_journals_clean_up_at_close(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, sync: HeldSync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file fails, its last sync held past the run's wait for it (SYNC_WAIT); the
    engine's close prunes the journal on a thread: it runs while that sync is held, and
    frees it."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)
    prune = Journal.prune

    def pruned(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return prune(self, *args, **kwargs)
        finally:
            if not sync.back.is_set():
                sync.pruned = True
            sync.go.set()

    monkeypatch.setattr(Journal, "prune", pruned)
    path = httpd.new_path("f.bin")
    httpd.add(path, payload(1024 * KiB, 43))
    settings = Settings(state_dir=tmp_path / "state", split=1, retries=0, fsync_seconds=0.0,
                        checkpoint_bytes=1 << 30, checkpoint_seconds=3600.0)

    async def go() -> Report:
        pool = await one_default_thread()
        engine = Engine(settings)
        try:
            report = await engine.run([Item(httpd.url(path, reset=900 * KiB, times=1))],
                                      tmp_path / "out")
            assert await waited(pool, sync.held.wait, WAIT)
            await engine.aclose()
            return report
        finally:
            sync.go.set()
            await engine.aclose()
            pool.shutdown()

    report = asyncio.run(go())
    assert report.failed == 1
    assert sync.pruned, "the journal's clean-up waited for the sync"
    assert sync.back.wait(WAIT) and sync.freed is True  # (set once its thread runs again)


def test_download_returns_after_the_runs_wait_for_its_syncs_not_after_the_syncs(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, sync: HeldSync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file fails, its last sync held: download() returns once the run has waited
    SYNC_WAIT for it. Before, the sync was in the default executor, which asyncio.run
    waits for as it ends: download() returned only when the disk answered."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)
    path = httpd.new_path("d.bin")
    httpd.add(path, payload(1024 * KiB, 44))
    settings = Settings(state_dir=tmp_path / "state", split=1, retries=0, fsync_seconds=0.0,
                        checkpoint_bytes=1 << 30, checkpoint_seconds=3600.0)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, [httpd.url(path, reset=900 * KiB, times=1)],
                          tmp_path / "out", settings=settings)
        try:
            assert sync.held.wait(WAIT)
            report = run.result(WAIT)
            back = sync.back.is_set()
        finally:
            sync.go.set()
    assert report.failed == 1 and not back
