"""A part file deleted by hand ("to start over") while its resume record stays: the next
run makes a fresh part file, and the journal must not go on claiming the old file's bytes
for it. ext4 hands a freed inode number out again at once, so the new part file often has
the number the record names; a run killed before its first checkpoint then left a record
that a third run trusted: the old byte ranges "resumed" over a file that never had them
(holes of zeros, the right size, nothing to tell them by without a digest). Seen with the
command: kill -TERM half-way, rm the part file, kill -9 0.3 s into the next run, run
again: 5 of 5 files wrong, with exit 0 (same URL, and a renewed one)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.report import Report
from omniget.model import Item
from omniget.settings import Settings

KiB = 1024
HALF = 512 * KiB


def stopped_half_way(httpd: HTTPServer, item: Item, out: Path, state: Path, half: int) -> Report:
    """``item`` (a URL of ``httpd`` held at ``hold="one"``, stalled after ``half`` bytes)
    downloaded until ``half`` bytes are recorded, then stopped as by Ctrl+C: its report."""
    cancel = threading.Event()
    got: list[Report] = []
    settings = Settings(state_dir=state, split=1, retries=0, checkpoint_bytes=1)
    run = threading.Thread(
        target=lambda: got.append(download([item], out, settings=settings, cancel=cancel))
    )
    run.start()
    try:
        assert httpd.held("one")
        wait_for(lambda: recorded(state) == half)
    finally:
        cancel.set()
        run.join(30)
        httpd.release("one")
    return got[0]


@pytest.mark.parametrize(
    "second_run",
    [
        "same URL",  # this file's own record
        "renewed URL",  # an earlier URL's record at the same output path
        "other folder",  # this file's record in another output folder
    ],
)
def test_a_fresh_part_file_inherits_no_bytes_from_a_record_of_a_deleted_one(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, second_run: str
) -> None:
    data = payload(1024 * KiB, 77)
    path = httpd.new_path("f.bin")
    httpd.add(path, data)
    state = tmp_path / "state"
    out = tmp_path / "out"
    out2 = tmp_path / "out2" if second_run == "other folder" else out

    def item(hold: str) -> Item:
        url = httpd.url(path, hold=hold, stall_after=HALF)
        if second_run == "renewed URL":
            return Item(url, filename="f.bin")  # (each hold its own URL, so its own record)
        return Item(url, filename="f.bin", source_id="f")  # (one record for both runs)

    # run 1: half the file in, recorded at once, then stopped (Ctrl+C, say)
    assert stopped_half_way(httpd, item("one"), out, state, HALF).interrupted == 1
    (out / "f.bin.omniget-part").unlink()  # the user starts over

    # run 2: a fresh part file, held half-way before its first checkpoint
    second: list[Report] = []
    quiet = Settings(state_dir=state, split=1, retries=0, checkpoint_seconds=3600.0,
                     checkpoint_bytes=64 << 20)
    run = threading.Thread(
        target=lambda: second.append(download([item("two")], out2, settings=quiet))
    )
    run.start()
    try:
        assert httpd.held("two")
        wait_for((out2 / "f.bin.omniget-part").exists)
        # what a kill now would leave: no bytes claimed that the new part file may be
        # taken for (before, run 1's half, under an inode number it may have)
        assert recorded(state) == 0
    finally:
        httpd.release("two")
        run.join(30)
    assert second[0].succeeded, second[0].failures
    assert (out2 / "f.bin").read_bytes() == data
