"""A part file deleted by hand ("to start over") while its resume record stays: the next
run makes a fresh part file, and the journal must not go on claiming the old file's bytes
for it. ext4 hands a freed inode number out again at once, so the new part file often has
the number the record names; a run killed before its first checkpoint then left a record
that a third run trusted: the old byte ranges "resumed" over a file that never had them
(holes of zeros, the right size, nothing to tell them by without a digest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.journal import Journal
from omniget.engine.report import Report
from omniget.model import Item
from omniget.settings import Settings

KiB = 1024
HALF = 512 * KiB


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def recorded(state: Path) -> int:
    """Bytes the journal in ``state`` claims for unfinished files."""
    with Journal.in_dir(state) as j:
        return sum(e - s for key, _ in j.unfinished() for s, e in j.spans(key))


def test_a_fresh_part_file_inherits_no_bytes_from_the_record_of_a_deleted_one(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(1024 * KiB, 77)
    path = httpd.new_path("f.bin")
    httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    part = out / "f.bin.omniget-part"

    def item(hold: str) -> Item:  # (one key for both runs: the same source id)
        url = httpd.url(path, hold=hold, stall_after=HALF)
        return Item(url, filename="f.bin", source_id="f")

    # run 1: half the file in, recorded at once, then stopped (Ctrl+C, say)
    cancel = threading.Event()
    first: list[Report] = []
    settings = Settings(state_dir=state, split=1, retries=0, checkpoint_bytes=1)
    run = threading.Thread(
        target=lambda: first.append(download([item("one")], out, settings=settings, cancel=cancel))
    )
    run.start()
    try:
        assert httpd.held("one")
        wait_for(lambda: recorded(state) == HALF)
    finally:
        cancel.set()
        run.join(30)
        httpd.release("one")
    assert first[0].interrupted == 1 and part.exists()

    part.unlink()  # the user starts over

    # run 2: a fresh part file, held half-way before its first checkpoint
    second: list[Report] = []
    quiet = Settings(state_dir=state, split=1, retries=0, checkpoint_seconds=3600.0,
                     checkpoint_bytes=64 << 20)
    run = threading.Thread(
        target=lambda: second.append(download([item("two")], out, settings=quiet))
    )
    run.start()
    try:
        assert httpd.held("two")
        wait_for(part.exists)
        # what a kill now would leave: no bytes claimed for the new part file (before,
        # run 1's half, under the record's inode number, which the new file may have)
        assert recorded(state) == 0
    finally:
        httpd.release("two")
        run.join(30)
    assert second[0].succeeded, second[0].failures
    assert (out / "f.bin").read_bytes() == data


def test_a_fresh_part_file_inherits_no_bytes_from_an_earlier_urls_record(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The same, with the file's link renewed between the runs (another URL, so another
    record): a record whose part file is gone is the one a later run would take over by
    the part file's inode number (see resume.moved_here)."""
    data = payload(1024 * KiB, 78)
    path = httpd.new_path("f.bin")
    httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    part = out / "f.bin.omniget-part"

    def item(hold: str) -> Item:  # (each hold its own URL: a renewed link)
        return Item(httpd.url(path, hold=hold, stall_after=HALF), filename="f.bin")

    cancel = threading.Event()
    first: list[Report] = []
    settings = Settings(state_dir=state, split=1, retries=0, checkpoint_bytes=1)
    run = threading.Thread(
        target=lambda: first.append(download([item("one")], out, settings=settings, cancel=cancel))
    )
    run.start()
    try:
        assert httpd.held("one")
        wait_for(lambda: recorded(state) == HALF)
    finally:
        cancel.set()
        run.join(30)
        httpd.release("one")
    assert first[0].interrupted == 1 and part.exists()

    part.unlink()

    second: list[Report] = []
    quiet = Settings(state_dir=state, split=1, retries=0, checkpoint_seconds=3600.0,
                     checkpoint_bytes=64 << 20)
    run = threading.Thread(
        target=lambda: second.append(download([item("two")], out, settings=quiet))
    )
    run.start()
    try:
        assert httpd.held("two")
        wait_for(part.exists)
        assert recorded(state) == 0
    finally:
        httpd.release("two")
        run.join(30)
    assert second[0].succeeded, second[0].failures
    assert (out / "f.bin").read_bytes() == data
