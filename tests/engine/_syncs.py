"""Spies on a run's part-file syncs (checkpoints.py), shared by the sync tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine._marks import marked_folder
from tests.servers.httpd import HTTPServer

from omniget.engine import checkpoints, core
from omniget.engine.checkpoints import PartSync
from omniget.engine.context import RunContext
from omniget.engine.job import FileJob
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.spans import Interval
from omniget.settings import Settings

KiB = 1024

#: A sync's stand-in: given the real one and the descriptor, it syncs (or not) and answers.
Sync = Callable[[Callable[[int], bool], int], bool]


def sync_at_each_checkpoint(state: Path) -> Settings:
    """One connection, no retries, a checkpoint every 64 KiB and a sync at each."""
    return Settings(state_dir=state, split=1, retries=0, fsync_seconds=0.0,
                    checkpoint_bytes=64 * KiB, checkpoint_seconds=3600.0)


def nth_sync(monkeypatch: pytest.MonkeyPatch, n: int, instead: Sync) -> list[int]:
    """The run's ``n``-th sync (from 1) is ``instead``'s, the others the real one's. The
    descriptors synced so far, in order (syncs run on worker threads)."""
    lock = threading.Lock()
    calls: list[int] = []
    sync = checkpoints._sync_and_close

    def syncing(fd: int) -> bool:
        with lock:
            calls.append(fd)
            mine = len(calls) == n
        return instead(sync, fd) if mine else sync(fd)

    monkeypatch.setattr(checkpoints, "_sync_and_close", syncing)
    return calls


def no_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every part-file sync fails, as on a file system that cannot sync (no data lost):
    nothing is recorded as synced, not even a failed or stopped file's last sync."""

    def unsynced(fd: int) -> bool:
        os.close(fd)
        return False

    monkeypatch.setattr(checkpoints, "_sync_and_close", unsynced)


def recorded_syncs(
    monkeypatch: pytest.MonkeyPatch, pieces: list[list[int]] | None = None
) -> list[list[Interval]]:
    """The spans of each sync recorded as synced, in order (and into ``pieces``, its
    pieces)."""
    recorded: list[list[Interval]] = []
    record_synced = checkpoints._record_synced

    def seen(job: FileJob, part_sync: PartSync) -> None:
        recorded.append(list(part_sync.spans))
        if pieces is not None:
            pieces.append(list(part_sync.pieces))
        record_synced(job, part_sync)

    monkeypatch.setattr(checkpoints, "_record_synced", seen)
    return recorded


def run_contexts(monkeypatch: pytest.MonkeyPatch) -> list[RunContext]:
    """The run of each sync that came due (to look at its syncs under way)."""
    contexts: list[RunContext] = []
    sync_due = checkpoints._sync_due

    def due(job: FileJob, now: float) -> None:
        contexts.append(job.ctx)
        sync_due(job, now)

    monkeypatch.setattr(checkpoints, "_sync_due", due)
    return contexts


def written_and_synced(state: Path) -> tuple[list[Interval], list[Interval]]:
    """The one unfinished file's spans as this boot reads them (written), and as the
    next boot does (synced)."""
    with Journal(state / FILENAME) as journal:
        [(key, _)] = journal.unfinished()
        written = journal.spans(key)
    with Journal(state / FILENAME, boot="the next boot") as journal:
        return written, journal.spans(key)


def slow_sync_after_place(
    httpd: HTTPServer, body: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    then: Sync,
) -> tuple[Settings, Path, str, list[int]]:
    """One file (``body``) whose part-file sync (its first) is held until the file is in
    place, its wait for it (SYNC_WAIT) over, then does ``then``; the run's end waits 60 s
    more for it. The settings that give it a sync at each checkpoint, the file's path in
    ``tmp_path / "out"`` (a marked folder), its URL, and the syncs so far."""
    url = httpd.add(httpd.new_path("later.bin"), body)
    out = marked_folder(tmp_path) / "later.bin"
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)  # (the file waits that long)
    ends = checkpoints.end_deadline
    monkeypatch.setattr(checkpoints, "end_deadline", lambda ctx: ends(ctx) + 60.0)
    monkeypatch.setattr(core, "end_deadline", checkpoints.end_deadline)

    def held_until_in_place(sync: Callable[[int], bool], fd: int) -> bool:
        for _ in range(6000):  # (60 s at most)
            if out.exists():
                break
            threading.Event().wait(0.01)
        return then(sync, fd)

    calls = nth_sync(monkeypatch, 1, held_until_in_place)
    return sync_at_each_checkpoint(tmp_path / "state"), out, url, calls
