"""A part-file sync that fails because the disk could not take the data (checkpoints.py):
EIO (write-back failed: on Linux the pages are marked clean, and once evicted a read gives
what is on the disk), ENOSPC or EDQUOT. The file's bytes are not trusted even in this
boot: the file fails (StorageError, exit 7), is not put in place, and its record keeps
only what was synced before (a rerun fetches the rest). It fails at its next checkpoint,
or at its end, before it is checked and renamed. Other errors (EINVAL: a file
system that cannot sync) leave the file going on, with nothing more recorded as synced."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.engine._syncs import (
    nth_sync,
    recorded_syncs,
    run_contexts,
    sync_at_each_checkpoint,
    written_and_synced,
)
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.report import Report
from omniget.engine.spans import Interval, length
from omniget.errors import StorageError
from omniget.model import Digest, Item, Piece

KiB = 1024
SIZE = 4096 * KiB  # (more than the body's chunks, 1 MiB at most, bring at once)


def run_with_second_sync_failing(
    httpd: HTTPServer, url: str | Item, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    code: int, pieces: list[list[int]] | None = None,
) -> tuple[Report, list[list[Interval]]]:
    """Run ``url`` (held at hold=h) with the file's second sync failing with ``code``;
    the body goes on once that failure is back on the loop. The report, and the spans
    of each sync recorded (and in ``pieces``, its pieces)."""
    def fails(sync: Callable[[int], bool], fd: int) -> bool:
        os.close(fd)
        raise OSError(code, os.strerror(code))

    calls = nth_sync(monkeypatch, 2, fails)
    recorded = recorded_syncs(monkeypatch, pieces)
    contexts = run_contexts(monkeypatch)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, [url], tmp_path / "out", settings=sync_at_each_checkpoint(
            tmp_path / "state"))
        try:
            assert httpd.held("h")

            def failed_and_back() -> bool:
                # (a sync leaves ctx.syncs in its callback, on the loop: none is under way
                # once the second is back, and none starts after a failed one)
                if len(calls) < 2:
                    return False
                syncs = contexts[0].syncs
                return syncs is None or not syncs

            wait_for(failed_and_back, timeout=60)
        finally:
            httpd.release("h")
            report = run.result(120)
    monkeypatch.undo()
    return report, recorded


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EDQUOT])
def test_a_sync_the_disk_failed_fails_the_file_and_keeps_only_what_was_synced(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, code: int,
) -> None:
    path = httpd.new_path(f"e{code}.bin")
    body = payload(SIZE, 40 + code)
    httpd.add(path, body)
    # (the rest dripped: it cannot all be in the socket's buffer for one read of
    # libcurl's, as on a loaded machine, before the next checkpoint could fail the file)
    url = httpd.url(path, hold="h", stall_after=600 * KiB, drip=16_000_000,
                    drip_after=600 * KiB)
    report, recorded = run_with_second_sync_failing(httpd, url, tmp_path, monkeypatch, code)
    assert report.failed == 1 and report.exit_code == 7
    assert report.fetched < SIZE  # (it failed at its next checkpoint, not at its end)
    [result] = report.results
    assert isinstance(result.error, StorageError)
    assert "the disk reported an error" in str(result.error)
    out = tmp_path / "out" / f"e{code}.bin"
    assert not out.exists()
    # the first sync's spans, and no more: written (this boot's view) is cut back too
    assert len(recorded) == 1 and recorded[0] and recorded[0][0][0] == 0
    written, synced = written_and_synced(tmp_path / "state")
    assert written == synced == recorded[0]

    # a rerun fetches what was not synced, and ends with the right bytes
    again = download([url], tmp_path / "out", settings=sync_at_each_checkpoint(tmp_path / "state"))
    assert again.exit_code == 0 and again.ok == 1
    assert out.read_bytes() == body
    assert again.fetched == SIZE - length(recorded[0])


def test_a_sync_that_fails_otherwise_leaves_the_file_going_on(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EINVAL (a file system that cannot sync this file): the file goes on and ends in
    place; nothing after the failed sync is recorded as synced."""
    path = httpd.new_path("inval.bin")
    body = payload(SIZE, 39)
    httpd.add(path, body)
    url = httpd.url(path, hold="h", stall_after=600 * KiB)
    report, recorded = run_with_second_sync_failing(
        httpd, url, tmp_path, monkeypatch, errno.EINVAL)
    assert report.exit_code == 0 and report.ok == 1
    assert (tmp_path / "out" / "inval.bin").read_bytes() == body
    assert len(recorded) == 1


def test_a_file_of_pieces_keeps_only_the_pieces_synced_before(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four pieces, one at a time, a sync as each is done; the third is held until the
    second sync (of the second piece) failed: the file fails as that piece is done, and
    its record keeps the piece the first sync made durable."""
    blobs = [payload(64 * KiB, 50 + i) for i in range(4)]
    urls, paths = [], []
    for i, blob in enumerate(blobs):
        path = httpd.new_path(f"p{i}.bin")
        httpd.add(path, blob)
        paths.append(path)
        urls.append(httpd.url(path, hold="h", stall_after=32 * KiB) if i == 2
                    else httpd.url(path))
    item = Item(urls[0], path="f.bin", pieces=tuple(
        Piece(url, size=len(blob), digest=Digest("md5", hashlib.md5(blob).hexdigest()))
        for url, blob in zip(urls, blobs, strict=True)
    ))
    synced: list[list[int]] = []
    report, _ = run_with_second_sync_failing(
        httpd, item, tmp_path, monkeypatch, errno.EIO, synced)
    assert report.exit_code == 7 and "the disk reported an error" in str(
        report.results[0].error)
    assert not (tmp_path / "out" / "f.bin").exists()
    assert synced == [[0]]
    state = tmp_path / "state"
    with Journal(state / FILENAME) as journal:
        [(key, _)] = journal.unfinished()
        assert sorted(journal.pieces(key)) == sorted(synced[0])
    with Journal(state / FILENAME, boot="the next boot") as journal:
        assert sorted(journal.pieces(key)) == sorted(synced[0])

    httpd.clear_log()
    again = download([item], tmp_path / "out", settings=sync_at_each_checkpoint(state))
    assert again.exit_code == 0
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"".join(blobs)
    assert [i for i in range(4) if httpd.requests_to(paths[i])] == [1, 2, 3]
