"""Something other than a file at the name of the resume journal, its -wal or its -shm
(a folder, a FIFO, a socket, a link to a device, to nowhere, or to itself), or a file
where a folder of the state folder's path must be: the open fails (the run goes without
resume state) with a message that names it and says what it is. SQLite's own words
("disk I/O error", "unable to open database file") sent the user looking at the disk."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from omniget.engine.journal import FILENAME, Journal
from omniget.errors import StorageError

NAMES = [FILENAME, f"{FILENAME}-wal", f"{FILENAME}-shm"]


def put(path: Path, kind: str) -> None:
    """Something of ``kind`` at ``path``."""
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to("nowhere/x")
    else:
        path.symlink_to(path.name)


SAID = {
    "folder": "is a folder, not a file",
    "fifo": "is a FIFO, not a file",
    "socket": "is a socket, not a file",
    "device": "is a device, not a file",
    "dangling": "is a symbolic link to nowhere/x, which is not there",
    "loop": "is a loop of symbolic links, leading to no file",
}


@pytest.mark.parametrize("kind", list(SAID))
@pytest.mark.parametrize(("name", "there"), [
    (FILENAME, False), *((n, there) for n in NAMES[1:] for there in (False, True))
], ids=lambda v: {False: "new", True: "journal-there"}.get(v, v))
def test_what_is_at_a_journal_name_instead_of_a_file_is_said(
    tmp_path: Path, name: str, there: bool, kind: str
) -> None:
    """Before: "disk I/O error", "unable to open database file", "No such file or
    directory" for a name that is there, or "permission denied" (for root). ``there``:
    a journal with a record is there (its -wal or -shm is then read at the open, or
    written at the next call)."""
    if kind == "device" and not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    if there:
        with Journal.in_dir(tmp_path) as j:
            j.start("k", path="p", url="u", size=None, etag=None, last_modified=None)
    put(tmp_path / name, kind)
    began = time.monotonic()
    try:
        with Journal.in_dir(tmp_path) as j:
            j.start("k2", path="p", url="u", size=None, etag=None, last_modified=None)
    except StorageError as exc:
        assert f"({name} {SAID[kind]})" in str(exc), exc
    else:  # (SQLite may clear what is at a -wal's name itself: a log it found empty)
        assert name != FILENAME and not os.path.lexists(tmp_path / name), kind
    assert time.monotonic() - began < 30  # (a FIFO is never waited on)


def test_a_file_where_a_folder_of_the_state_folder_must_be_is_named(tmp_path: Path) -> None:
    """Before: "Not a directory: .../file/state" (mkdir's words, of the folder to make)."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError) as caught:
        Journal.in_dir(tmp_path / "file" / "a" / "state")
    assert f"{tmp_path / 'file'} is a file, not a folder (see --state-dir)" in str(caught.value)


def test_a_device_as_the_state_folder_or_on_its_path_is_said_to_be_one(tmp_path: Path) -> None:
    """Before: "/dev/null is a file, not a folder"."""
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null here")
    for state in (Path("/dev/null"), Path("/dev/null/state")):
        with pytest.raises(StorageError, match="/dev/null is a device, not a folder"):
            Journal.in_dir(state)
