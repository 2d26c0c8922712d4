"""A part file's name that holds no regular file between two runs: a symbolic link (to
the earlier part file moved out of the output folder, to a file elsewhere, to /dev/null),
a FIFO, a folder. Omniget never makes such a thing there, so it is someone else's: the
file fails with one line naming it, nothing is followed out of the folder, written or
removed, and no open waits for a FIFO's writer. Before, a FIFO hung the run (an open
for reading waited for a writer; Ctrl+C only asked it to stop), and a link to the earlier
part file, moved elsewhere, was resumed through: its bytes written outside the output
folder, and the link renamed to the final name."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine.test_stale_record import stopped_half_way
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.journal import FILENAME
from omniget.errors import StorageError
from omniget.model import Item
from omniget.settings import Settings

KiB = 1024
HALF = 256 * KiB
KINDS = ["link to the part moved out", "link to a file outside", "link to /dev/null",
         "dangling link", "fifo", "folder"]


def _put(kind: str, part: Path, outside: Path) -> None:
    """Put ``kind`` at the part file's name (the part file, if any, goes first)."""
    if kind == "link to the part moved out":
        os.replace(part, outside)
    elif part.exists():
        part.unlink()
    if kind == "link to a file outside":
        outside.write_bytes(b"mine" * 1000)
    if kind.startswith("link") or kind == "dangling link":
        target = {"link to /dev/null": Path(os.devnull),
                  "dangling link": outside.parent / "nowhere"}.get(kind, outside)
        part.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(part)
    elif kind == "folder":
        part.mkdir()
        (part / "kept").write_bytes(b"a file of the user's")


def _second_run(item: Item, out: Path, state: Path) -> list[object]:
    """Run the download on a thread: it must end on its own (a hang fails the test)."""
    got: list[object] = []
    settings = Settings(state_dir=state, split=1, retries=0)
    run = threading.Thread(target=lambda: got.append(download([item], out, settings=settings)),
                           daemon=True)
    run.start()
    run.join(60)
    if run.is_alive():  # (let the thread go: open a FIFO's other end)
        part = out / "f.bin.omniget-part"
        fd = os.open(part, os.O_RDWR | os.O_NONBLOCK)
        run.join(30)
        os.close(fd)
        pytest.fail("the run waited on the part file's name")
    return got


def _check(kind: str, report: object, out: Path, outside: Path, before: bytes | None) -> None:
    from omniget.engine.report import Report

    assert isinstance(report, Report)
    assert report.failed == 1, report
    error = report.failures[0].error
    assert isinstance(error, StorageError)
    assert "f.bin.omniget-part" in str(error) and "\n" not in str(error)
    assert not (out / "f.bin").exists() and not (out / "f.bin").is_symlink()
    part = out / "f.bin.omniget-part"
    if kind == "fifo":
        assert part.is_fifo()
    elif kind == "folder":
        assert (part / "kept").read_bytes() == b"a file of the user's"
    else:
        assert part.is_symlink()
    if before is not None:
        assert outside.read_bytes() == before  # (nothing written through the link)


@pytest.mark.parametrize("unknown_part", [False, True], ids=["", "part-not-recorded"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_part_name_that_is_no_file_fails_the_resume_and_is_left_alone(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, kind: str,
    unknown_part: bool,
) -> None:
    """``unknown_part``: the record does not know its part file's inode number (an older
    omniget's), so it is taken to be the one there whatever that is."""
    data = payload(1024 * KiB, 31)
    path = httpd.new_path("f.bin")
    httpd.add(path, data)
    state, out, outside = tmp_path / "state", tmp_path / "out", tmp_path / "outside.bin"

    # run 1: half the file in and recorded, then stopped: a part file with a record
    item = Item(httpd.url(path, hold="one", stall_after=HALF), filename="f.bin",
                source_id="f")
    stopped_half_way(httpd, item, out, state, HALF)

    if unknown_part:
        with contextlib.closing(sqlite3.connect(state / FILENAME)) as db, db:
            db.execute("UPDATE files SET part = NULL")
    _put(kind, out / "f.bin.omniget-part", outside)
    before = outside.read_bytes() if outside.exists() else None
    again = Item(httpd.url(path), filename="f.bin", source_id="f")
    [report] = _second_run(again, out, state)
    _check(kind, report, out, outside, before)


@pytest.mark.parametrize("kind", KINDS[1:])
def test_a_part_name_that_is_no_file_fails_a_fresh_start_and_is_left_alone(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, kind: str
) -> None:
    data = payload(64 * KiB, 32)
    path = httpd.new_path("f.bin")
    httpd.add(path, data)
    state, out, outside = tmp_path / "state", tmp_path / "out", tmp_path / "outside.bin"
    out.mkdir()
    _put(kind, out / "f.bin.omniget-part", outside)
    before = outside.read_bytes() if outside.exists() else None
    [report] = _second_run(Item(httpd.url(path), filename="f.bin"), out, state)
    _check(kind, report, out, outside, before)


MID = ["removed", "link to a file outside", "another file", "folder moved"]


@pytest.mark.parametrize("change", MID)
def test_a_part_file_changed_while_it_is_written_never_puts_another_file_in_place(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, change: str
) -> None:
    """Before: the name was renamed into place whatever was at it then: a link to a file
    outside the output folder became the "saved" file (exit 0, the bytes fetched lost),
    and a file put there by hand was taken for the download; a moved folder said "No
    such file or directory" and "run again to resume" (a rerun fetched it all again)."""
    data = payload(1024 * KiB, 33)
    path = httpd.new_path("f.bin")
    httpd.add(path, data)
    state, out, outside = tmp_path / "state", tmp_path / "out", tmp_path / "outside.bin"
    outside.write_bytes(b"mine")
    part = out / "f.bin.omniget-part"
    settings = Settings(state_dir=state, split=1, retries=0)
    got: list[object] = []
    item = Item(httpd.url(path, hold="mid", stall_after=HALF), filename="f.bin")
    run = threading.Thread(target=lambda: got.append(download([item], out, settings=settings)))
    run.start()
    try:
        assert httpd.held("mid")
        wait_for(lambda: part.exists() and part.stat().st_size >= HALF)
        if change == "folder moved":
            out.rename(tmp_path / "moved")
        else:
            part.unlink()
            if change == "link to a file outside":
                part.symlink_to(outside)
            elif change == "another file":
                part.write_bytes(b"the user's")
    finally:
        httpd.release("mid")
        run.join(60)
    assert not run.is_alive()
    from omniget.engine.report import Report

    [report] = got
    assert isinstance(report, Report) and report.failed == 1, report
    error = report.failures[0].error
    assert isinstance(error, StorageError) and "\n" not in str(error)
    assert outside.read_bytes() == b"mine"
    assert not (out / "f.bin").exists() and not (out / "f.bin").is_symlink()
    if change == "folder moved":
        kept = tmp_path / "moved" / "f.bin.omniget-part"
        assert str(kept) in str(error)
        assert kept.read_bytes() == data  # (every byte: the rename alone failed)
    else:
        assert "removed or replaced while it was written" in str(error)
    if change == "another file":
        assert part.read_bytes() == b"the user's"
    elif change.startswith("link"):
        assert part.is_symlink()


def test_a_file_where_a_folder_of_the_path_must_be_is_named(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Items "d" and "d/f" of one run: the second's folder is the first's file. Before:
    "File exists while creating .../d/f.omniget-part", the kernel's words for mkdir."""
    url = httpd.add(httpd.new_path("a.txt"), b"data")
    items = [Item(url + "?n=1", filename="d"), Item(url + "?n=2", filename="d/f")]
    out = tmp_path / "out"
    # (one file at a time: "d" first; at once, "d/f" may make its folder first)
    report = download(items, out, settings=Settings(state_dir=tmp_path / "state", jobs=1))
    assert [r.status for r in report.results] == ["ok", "failed"]
    error = report.results[1].error
    assert isinstance(error, StorageError)
    assert str(error) == f"cannot make the folder {out / 'd'} for f: it is a file, not a folder"
    assert (out / "d").read_bytes() == b"data"


@pytest.mark.parametrize("deep", [False, True])
def test_a_file_there_before_the_run_where_a_folder_must_be_is_named(
    httpd: HTTPServer, tmp_path: Path, deep: bool
) -> None:
    """A file "d" already there, an item "d/f" (or "d/e/f"): it failed as an unsafe
    output path (Refused, exit 8: "[Errno 20] Not a directory"), as if the item had tried
    to leave the folder; it is the same storage error as a "d" the run wrote itself."""
    url = httpd.add(httpd.new_path("a.txt"), b"data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "d").write_bytes(b"mine")
    rel = "d/e/f" if deep else "d/f"
    report = download(Item(url, path=rel), out, settings=Settings(state_dir=tmp_path / "s"))
    error = report.results[0].error
    assert isinstance(error, StorageError) and report.exit_code == 7
    folder = out / rel.rsplit("/", 1)[0]
    which = "it" if not deep else str(out / "d")
    assert str(error) == f"cannot make the folder {folder} for f: {which} is a file, not a folder"
    assert (out / "d").read_bytes() == b"mine"
