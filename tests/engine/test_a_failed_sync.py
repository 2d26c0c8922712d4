"""A part-file sync that fails (checkpoints.py): on Linux a failed fdatasync marks the
dirty pages it could not write back clean, so those bytes may never reach the disk and
the next fdatasync of the file returns 0. After one failed sync of a file, no later sync
in the run adds anything to what its record calls synced (what a rerun after a reboot
trusts); what it calls written (this boot's view) goes on as before."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.engine._syncs import nth_sync, recorded_syncs, sync_at_each_checkpoint
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.events import Event, Failed
from omniget.engine.journal import FILENAME, Journal

KiB = 1024


def test_after_a_failed_sync_no_later_sync_of_the_file_adds_to_its_synced_spans(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync at every checkpoint (64 KiB). The first sync returns well and is recorded;
    the second is held until the file failed (its last checkpoint made a sync wait for
    it), then fails. The journal's synced spans stay the first sync's: the syncs after
    the failed one record nothing (they would have recorded all 900 KiB)."""
    path = httpd.new_path("f.bin")
    httpd.add(path, payload(1024 * KiB, 31))
    # (held at 600 KiB until the second sync is under way: the file's later checkpoints,
    # its last at the cut among them, come while it is)
    url = httpd.url(path, reset=900 * KiB, hold="h", stall_after=600 * KiB, times=1)
    state = tmp_path / "state"
    settings = sync_at_each_checkpoint(state)
    failed = threading.Event()

    def fails_late(sync: Callable[[int], bool], fd: int) -> bool:
        failed.wait(60)
        sync(fd)
        return False  # (as a sync that failed otherwise than with EIO: see DATA_LOST)

    calls = nth_sync(monkeypatch, 2, fails_late)
    recorded = recorded_syncs(monkeypatch)

    def on_event(ev: Event) -> None:
        if isinstance(ev, Failed):
            failed.set()

    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, [url], tmp_path / "out", settings=settings,
                          on_event=on_event)
        try:
            assert httpd.held("h")
            wait_for(lambda: len(calls) >= 2)
        finally:
            httpd.release("h")
            try:
                report = run.result(120)
            finally:
                failed.set()
    assert report.failed == 1
    assert len(recorded) == 1 and recorded[0] and recorded[0][0][0] == 0
    with Journal(state / FILENAME) as journal:
        [(key, _)] = journal.unfinished()
        assert journal.spans(key) == [(0, 900 * KiB)]  # (written: this boot's view)
    with Journal(state / FILENAME, boot="the next boot") as journal:
        assert journal.spans(key) == recorded[0]
