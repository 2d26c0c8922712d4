"""A file's part-file syncs (checkpoints.py) as the file ends.

A file that fails or is stopped gets one last sync of its part file, whatever
``fsync_seconds``, so its record calls synced what its last checkpoint wrote: a rerun
after a power loss does not fetch those bytes again. The run waits for it as for any sync
under way at its end (SYNC_WAIT at most). A file with nothing new since its last sync
gets none, and a finished file none either.

A file whose last sync is still under way as it passed its checks waits for that sync
before it is put in place: a sync that fails (the disk lost the bytes) fails the file,
exit 7, instead of a file reported finished and verified whose bytes may be gone."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine._syncs import (
    Sync,
    nth_sync,
    recorded_syncs,
    slow_sync_after_place,
    sync_at_each_checkpoint,
    written_and_synced,
)
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import checkpoints, finish
from omniget.engine.core import Engine
from omniget.engine.durable import read_mark
from omniget.engine.events import Event, Failed, Finished, Warned
from omniget.engine.existing import LOST_WHY
from omniget.engine.job import FileJob
from omniget.engine.report import Report
from omniget.errors import StorageError
from omniget.model import Digest, Item
from omniget.settings import Settings

KiB = 1024
#: Loop turns a job is given to put its file in place once its checks passed.
TURNS = 500


def no_sync_due(state: Path) -> Settings:
    """One connection, no retries, a checkpoint every 64 KiB, and no sync due in the run."""
    return Settings(state_dir=state, split=1, retries=0, fsync_seconds=3600.0,
                    checkpoint_bytes=64 * KiB, checkpoint_seconds=3600.0)


@pytest.fixture(autouse=True)
def long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run waits for its syncs long enough for any loaded machine to get to them."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 60.0)


def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every part-file sync of the run (the real one each time)."""
    return nth_sync(monkeypatch, 0, lambda sync, fd: sync(fd))


def test_a_file_that_fails_is_synced_once_as_it_ends(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, no sync was due (fsync_seconds): the record called 900 KiB written and
    none of it synced, and a rerun after a reboot fetched it all again."""
    path = httpd.new_path("f.bin")
    httpd.add(path, payload(1024 * KiB, 61))
    calls = counted(monkeypatch)
    recorded = recorded_syncs(monkeypatch)
    state = tmp_path / "state"
    report = download([httpd.url(path, reset=900 * KiB, times=1)], tmp_path / "out",
                      settings=no_sync_due(state))
    assert report.failed == 1 and report.exit_code != 0
    assert len(calls) == 1 and recorded == [[(0, 900 * KiB)]]
    assert written_and_synced(state) == ([(0, 900 * KiB)], [(0, 900 * KiB)])


def test_a_file_stopped_is_synced_once_as_it_ends(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = httpd.new_path("s.bin")
    httpd.add(path, payload(1024 * KiB, 62))
    url = httpd.url(path, hold="h", stall_after=300 * KiB)
    calls = counted(monkeypatch)
    state = tmp_path / "state"

    async def go() -> Report:
        cancel = asyncio.Event()
        engine = Engine(no_sync_due(state))
        try:
            run = asyncio.create_task(engine.run([Item(url)], tmp_path / "out", cancel=cancel))
            assert await asyncio.to_thread(httpd.held, "h")
            cancel.set()
            return await run
        finally:
            await engine.aclose()

    try:
        report = asyncio.run(go())
    finally:
        httpd.release("h")
    assert report.interrupted == report.failed == 1
    assert len(calls) == 1
    written, synced = written_and_synced(state)
    assert written == synced and written and written[0] == (0, 300 * KiB)


def test_a_file_synced_at_its_last_checkpoint_or_without_bytes_gets_no_more_syncs(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync at each checkpoint: the failed file's last checkpoint synced already (one
    sync, no second as it ends). A 404 wrote nothing and a finished file is in place:
    neither is synced."""
    path = httpd.new_path("c.bin")
    httpd.add(path, payload(1024 * KiB, 63))
    fine = httpd.new_path("fine.bin")
    httpd.add(fine, payload(300 * KiB, 64))
    calls = counted(monkeypatch)
    settings = Settings(state_dir=tmp_path / "state", split=1, retries=0, fsync_seconds=0.0,
                        checkpoint_bytes=1 << 30, checkpoint_seconds=3600.0, jobs=1)
    report = download([httpd.url(path, reset=900 * KiB, times=1), httpd.url("/missing.bin"),
                       httpd.url(fine)], tmp_path / "out", settings=settings)
    assert report.failed == 2 and report.ok == 1
    assert len(calls) == 1


def test_a_finished_file_gets_no_sync_of_its_part_file(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a file's finish costs: no part-file sync (its mark and the run's one sync of
    the filesystem make it durable: durable.py), however many files."""
    urls = []
    for i in range(5):
        path = httpd.new_path(f"n{i}.bin")
        httpd.add(path, payload(200 * KiB, 70 + i))
        urls.append(httpd.url(path))
    calls = counted(monkeypatch)
    report = download(urls, tmp_path / "out", settings=no_sync_due(tmp_path / "state"))
    assert report.ok == 5 and calls == []


def test_a_last_sync_that_fails_after_the_files_checks_keeps_it_from_its_place(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file's sync at its first checkpoint is held until its checks (size, digest)
    passed, and the file is in place or the job was given TURNS loop turns to put it
    there; then the sync fails with EIO (the disk lost the bytes). Before, the file was in
    place by then: reported finished and verified (exit 0), its mark cleared by the run's
    sync of the filesystem (which does not report the file's lost write-back), and a
    rerun skipped it. Now the file waits for that sync: it fails, exit 7, is not put in
    place, and its record keeps only what was synced (nothing)."""
    body = payload(1024 * KiB, 65)
    path = httpd.new_path("late.bin")
    httpd.add(path, body)
    go = threading.Event()

    def held_then_lost(sync: Callable[[int], bool], fd: int) -> bool:
        go.wait(60)
        os.close(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    calls = nth_sync(monkeypatch, 1, held_then_lost)
    out = tmp_path / "out" / "late.bin"
    releases: list[asyncio.Task[None]] = []
    verify = finish._verify

    async def release() -> None:
        for _ in range(TURNS):
            if out.exists():
                break
            await asyncio.sleep(0)
        go.set()

    async def verified(job: FileJob) -> str | None:
        got = await verify(job)
        releases.append(asyncio.get_running_loop().create_task(release()))
        return got

    monkeypatch.setattr(finish, "_verify", verified)
    state = tmp_path / "state"
    settings = Settings(state_dir=state, split=1, retries=0, fsync_seconds=0.0,
                        checkpoint_bytes=64 * KiB, checkpoint_seconds=3600.0)
    item = Item(httpd.url(path), digest=Digest("md5", hashlib.md5(body).hexdigest()))
    try:
        report = download([item], tmp_path / "out", settings=settings)
    finally:
        go.set()
    assert calls and releases
    [result] = report.results
    assert (result.status, result.verified) == ("failed", None), (result.status, result.verified)
    assert report.exit_code == 7
    assert isinstance(result.error, StorageError)
    assert "the disk reported an error" in str(result.error)
    assert not out.exists() and read_mark(str(out)) is None
    assert written_and_synced(state) == ([], [])


def _slow_sync_run(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, then: Sync,
) -> tuple[Report, list[Event], Path, bytes, str]:
    """A run of slow_sync_after_place's file: the report, the events, the file's path,
    its bytes and its URL."""
    body = payload(1024 * KiB, 66)
    settings, out, url, calls = slow_sync_after_place(httpd, body, tmp_path, monkeypatch, then)
    events: list[Event] = []
    report = download([url], out.parent, settings=settings, on_event=events.append)
    assert calls
    return report, events, out, body, url


def test_a_sync_that_fails_after_its_file_was_put_in_place_fails_the_file(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file's sync slower than SYNC_WAIT: the file is put in place, marked, and
    reported finished; then the sync fails with EIO while the run still waits for it at
    its end. Before, a warning said so but the file's result stayed ok, exit 0 (a
    script's ``omniget ... && publish`` published a file the disk may not hold). Now it
    fails, exit 7, with a Failed event that says it takes back its Finished one; it stays
    in place with a mark that has a rerun fetch it again (on this boot too, where its
    bytes read back from memory would pass any check), and the same command does so."""

    def lost(sync: Callable[[int], bool], fd: int) -> bool:
        os.close(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    report, events, out, body, url = _slow_sync_run(httpd, payload, tmp_path, monkeypatch, lost)
    [result] = report.results
    assert (result.status, report.ok, report.failed, report.exit_code) == ("failed", 0, 1, 7)
    assert isinstance(result.error, StorageError)
    why = str(result.error)
    assert "after it was put in place" in why and "run the same command again" in why, why
    ends = [ev for ev in events if isinstance(ev, Finished | Failed)]
    assert [type(ev) for ev in ends] == [Finished, Failed]
    assert isinstance(ends[1], Failed) and ends[1].after_finished
    assert ends[1].error is result.error and ends[0].path == ends[1].path == out
    assert not [ev for ev in events if isinstance(ev, Warned)]
    mark = read_mark(str(out))
    assert mark is not None and mark.lost and mark.size == len(body)
    assert out.read_bytes() == body  # (what this boot reads: the disk may hold other bytes)

    monkeypatch.undo()  # the same command again, its syncs as they come
    again: list[Event] = []
    rerun = download([url], out.parent, settings=sync_at_each_checkpoint(tmp_path / "state"),
                     on_event=again.append)
    [result] = rerun.results
    assert (result.status, result.fetched, rerun.exit_code) == ("ok", len(body), 0)
    said = [ev.message for ev in again if isinstance(ev, Warned)]
    assert len(said) == 1 and said[0].startswith(LOST_WHY), said
    assert out.read_bytes() == body
    mark = read_mark(str(out))
    assert mark is None or not mark.lost


def test_a_slow_sync_that_returns_well_after_its_file_was_put_in_place_clears_its_mark(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same slow sync, returning well: no warning, and the file's mark is cleared by
    the run's sync of its filesystem, which comes after it."""
    report, events, out, body, _ = _slow_sync_run(
        httpd, payload, tmp_path, monkeypatch, lambda sync, fd: sync(fd)
    )
    assert report.results[0].status == "ok" and out.read_bytes() == body
    assert not [ev for ev in events if isinstance(ev, Warned)]
    assert read_mark(str(out)) is None
