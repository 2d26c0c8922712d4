"""The fingerprints a checkpoint records of its spans' last bytes (what a rerun reads
back to tell its part file still holds them; see tests/integration/test_part_content.py
for a part file changed between two runs): after a reboot the synced spans are checked
by their own, which are of bytes already on the disk; and a file that finishes before its
first checkpoint reads nothing back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import checkpoints
from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.events import Event, Warned
from omniget.engine.journal import FILENAME, Journal, Print, handle
from omniget.engine.prints import prints
from omniget.engine.spans import Interval
from omniget.settings import Settings

KiB = 1024


def test_after_a_reboot_the_synced_spans_are_checked_by_their_own_prints(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A power loss kept only the bytes synced to the disk: those after them read back as
    zeros. The rerun resumes after the synced ones (their prints are of those bytes, not
    of the last ones written, which would have told it to start over)."""
    data = payload(1536 * KiB, 91)
    path = httpd.new_path("r.bin")
    httpd.add(path, data)
    # (held just before the cut until the first sync is recorded: the syncs after it
    # fail, the one at the cut among them)
    url = httpd.url(path, reset=900 * KiB, hold="h", stall_after=890 * KiB, times=1)
    out, state = tmp_path / "out", tmp_path / "state"
    syncs: list[int] = []
    sync = checkpoints._sync_and_close
    lock = threading.Lock()

    def one_sync(fd: int) -> bool:  # (then they fail: not recorded as synced)
        with lock:  # (syncs run on worker threads)
            syncs.append(fd)
            first = len(syncs) == 1
        return sync(fd) and first

    def synced_spans() -> list[Interval]:
        with Journal(state / FILENAME, boot="after the power loss") as journal:
            return [span for key, _ in journal.unfinished() for span in journal.spans(key)]

    monkeypatch.setattr(checkpoints, "_sync_and_close", one_sync)
    settings = Settings(state_dir=state, split=1, retries=0, fsync_seconds=0.0,
                        checkpoint_bytes=64 * KiB)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(download, [url], out, settings=settings)
        try:
            assert httpd.held("h")
            wait_for(lambda: bool(synced_spans()))
        finally:
            httpd.release("h")
        assert first.result().failed == 1
    with Journal(state / FILENAME, boot="after the power loss") as journal:
        [(key, _)] = journal.unfinished()
        [(begin, synced)] = journal.spans(key)
    assert begin == 0 and 0 < synced < 900 * KiB and len(syncs) > 1
    part = out / f"r.bin{PART_SUFFIX}"
    with open(part, "r+b") as f:  # (what the power loss took)
        f.seek(synced)
        f.write(bytes(900 * KiB - synced))
    monkeypatch.setattr(handle, "_BOOT", "after the power loss")
    httpd.clear_log()
    events: list[Event] = []
    report = download([url], out, settings=Settings(state_dir=state, split=1),
                      on_event=events.append)
    assert report.ok == 1, report.failures
    assert (out / "r.bin").read_bytes() == data
    assert [e.message for e in events if isinstance(e, Warned)] == []
    assert [r.header("range") for r in httpd.requests_to(path)] == [
        f"bytes={synced}-{len(data) - 1}"
    ]


def test_files_done_before_their_first_checkpoint_read_nothing_back(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[list[Interval]] = []

    def counted(fd: int, spans: list[Interval]) -> list[Print] | None:
        read.append(spans)
        return prints(fd, spans)

    monkeypatch.setattr(checkpoints, "prints", counted)
    urls = [httpd.add(httpd.new_path(f"s{i}.bin"), payload(20 * KiB, i)) for i in range(20)]
    report = download(urls, tmp_path / "out", settings=Settings(state_dir=tmp_path / "state"))
    assert report.ok == 20, report.failures
    assert read == []
    # (and one with checkpoints: read at each)
    url = httpd.add(httpd.new_path("big.bin"), payload(2048 * KiB, 99))
    settings = Settings(state_dir=tmp_path / "state", split=1, checkpoint_bytes=256 * KiB)
    assert download([url], tmp_path / "out", settings=settings).ok == 1
    assert len(read) >= 4
