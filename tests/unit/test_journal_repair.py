"""A damaged journal file is moved aside (with its -wal and -shm) and a new one made;
what is not damage (a newer omniget's journal, a file this user may not move, a lock) is
left as it is. Before, every later run warned and went without resume state until the
user deleted the file."""

from __future__ import annotations

import calendar
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.servers import together
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.journal import FILENAME, Journal, opening, repair, schema
from omniget.errors import StorageError
from omniget.settings import Settings

#: 2026-11-22 07:18:05 UTC
NOW = float(calendar.timegm((2026, 11, 22, 7, 18, 5, 0, 0, 0)))
ASIDE = f"{FILENAME}.corrupt-20261122T071805Z"
GARBAGE = b"this is not sqlite at all" * 200
#: What a damaged journal that could not be moved aside is left to (not "delete it" alone:
#: each run tries again)
LEFT = ("(it is left there: each run tries again, or delete it; the downloads it could have"
        " resumed start over)")


def start(j: Journal, key: str) -> None:
    j.start(key, path=f"/out/{key}", url=f"https://h/{key}", size=10, etag=None,
            last_modified=None)


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def truncated(path: Path) -> None:
    with Journal(path) as j:
        for n in range(2000):
            start(j, f"key{n}" + "x" * 200)
    os.truncate(path, path.stat().st_size // 2)


def garbage(path: Path) -> None:
    path.write_bytes(GARBAGE)


def versioned(version: object) -> Any:
    """A journal whose schema version is ``version``."""
    def make(path: Path) -> None:
        Journal(path).close()
        db = sqlite3.connect(path)
        db.execute("DROP TABLE schema_version")
        db.execute("CREATE TABLE schema_version (version)")  # (no NOT NULL: any value)
        db.execute("INSERT INTO schema_version VALUES (?)", (version,))
        db.commit()
        db.close()
    return make


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (garbage, "file is not a database"),
        (truncated, "database disk image is malformed"),
        # a version no omniget wrote (before the move: KeyError, TypeError or ValueError
        # out of the open, or for 1.5 the upgrade from 1 run again)
        *((versioned(v), f"malformed schema version {v!r}") for v in (0, -1, None, "three", 1.5)),
    ],
)
def test_a_damaged_journal_is_moved_aside_and_a_new_one_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, said: str
) -> None:
    path = tmp_path / FILENAME
    damage(path)
    before = {n: (tmp_path / n).read_bytes() for n in names(tmp_path)}
    with caplog.at_level(logging.WARNING), Journal(path, now=lambda: NOW) as j:
        start(j, "new")
    assert warnings(caplog) == [
        f"resume journal {path}: the file was damaged ({said}); moved aside to"
        f" {tmp_path / ASIDE} and a new one made (downloads its records could have"
        " resumed start over)"]
    assert (tmp_path / ASIDE).read_bytes() == before[FILENAME]
    assert not any(n.startswith(ASIDE) and n != ASIDE for n in names(tmp_path))
    with Journal(path) as again:
        assert again.get("new") is not None


def test_its_log_and_index_go_with_it(tmp_path: Path) -> None:
    """SQLite removes them when its last connection closes; a run that had the journal
    open before it was damaged keeps them: they are moved with it, and the new journal
    never meets the old log."""
    path = tmp_path / FILENAME
    held = Journal(path)
    start(held, "old")
    held._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    start(held, "later")  # (in the log only)
    with open(path, "r+b") as f:
        f.write(b"garbage!" * 4)  # (its header)
    idents = {s: os.stat(f"{path}{s}").st_ino for s in ("-wal", "-shm")}
    with Journal(path, now=lambda: NOW) as j:
        start(j, "new")
        assert j.get("later") is None
    assert {s: os.stat(f"{tmp_path / ASIDE}{s}").st_ino for s in idents} == idents
    held._db.close()  # type: ignore[union-attr]  # (as a killed run: nothing more)
    held._db = None
    with Journal(path) as again:
        assert again.keys("") == {"new"}


def test_damaged_again_within_the_second_gets_another_name(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    for _ in range(3):
        path.write_bytes(GARBAGE)
        Journal(path, now=lambda: NOW).close()
    assert names(tmp_path) == [FILENAME, ASIDE, f"{ASIDE}-2", f"{ASIDE}-3"]


def test_a_newer_omniget_s_journal_is_left_as_it_is(tmp_path: Path) -> None:
    """Its state is a newer version's: moving it would lose it for that version."""
    path = tmp_path / FILENAME
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    before = names(tmp_path)
    with pytest.raises(StorageError) as e:
        Journal(path)
    assert str(e.value) == (
        f"resume journal {path}: open failed: schema version 99 is newer than this omniget"
        f" knows ({schema.SCHEMA_VERSION}); upgrade omniget")
    assert names(tmp_path) == before


def test_a_locked_journal_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / FILENAME
    Journal(path).close()
    monkeypatch.setattr(schema, "OPEN_WAIT", 0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match="database is locked"):
            Journal(path)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not any(".corrupt-" in n for n in names(tmp_path))


def test_another_user_s_damaged_journal_is_not_moved(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a file another user's needs root")
    path = tmp_path / FILENAME
    garbage(path)
    os.chown(path, 65534, 65534)
    with pytest.raises(StorageError) as e:
        Journal(path)
    assert str(e.value) == (
        f"resume journal {path}: open failed: file is not a database; it could not be moved"
        f" aside: {FILENAME} is another user's (uid 65534) {LEFT}")
    assert names(tmp_path) == [FILENAME]
    assert path.read_bytes() == GARBAGE


def test_a_damaged_journal_in_a_read_only_folder_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(The folder played: a run as root may rename in a folder of mode 0500.)"""
    path = tmp_path / FILENAME
    path.write_bytes(GARBAGE)

    def read_only(src: str, dst: str) -> None:
        if not os.path.lexists(src):
            raise FileNotFoundError(2, "No such file or directory", src)
        raise OSError(30, "Read-only file system", src)

    monkeypatch.setattr(os, "rename", read_only)
    with pytest.raises(StorageError) as e:
        Journal(path)
    assert str(e.value) == (
        f"resume journal {path}: open failed: file is not a database; it could not be moved"
        f" aside: Read-only file system: {path} {LEFT}")
    assert e.value.exit_code == 7
    assert names(tmp_path) == [FILENAME]


def test_a_damaged_journal_whose_folder_another_run_keeps_locked_is_left_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run holds the folder's lock (moving the file aside, as a rule): the file
    there may be that run's new journal by now, so no "delete it" (before, the hint
    said so)."""
    path = tmp_path / FILENAME
    garbage(path)
    monkeypatch.setattr(repair, "BUSY_WAIT", 0.05)
    with folder_locked(tmp_path):
        with pytest.raises(StorageError) as e:
            Journal(path)
    assert str(e.value) == (
        f"resume journal {path}: open failed: file is not a database; it could not be moved"
        " aside: another omniget run kept its folder locked (the next run tries again)")
    assert names(tmp_path) == [FILENAME]


@contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
    """``folder``'s lock held exclusive, as by another run moving its journal aside."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- the damaged files kept: the newest three sets


def made(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"an earlier damaged journal")


def sets(folder: Path) -> list[str]:
    return [n for n in names(folder) if ".corrupt-" in n]


def test_only_the_newest_three_damaged_journals_are_kept(tmp_path: Path) -> None:
    """Each with its -wal and -shm; before, every repair left its set behind for ever."""
    old = f"{FILENAME}.corrupt-20261101T000000Z"
    older = f"{FILENAME}.corrupt-20261025T235959Z"
    newer = f"{FILENAME}.corrupt-20261103T120000Z"
    made(tmp_path, older, f"{older}-wal", f"{older}-shm", old, f"{old}-wal", newer,
         f"{newer}-shm")
    garbage(tmp_path / FILENAME)
    Journal(tmp_path / FILENAME, now=lambda: NOW).close()
    assert sets(tmp_path) == [old, f"{old}-wal", newer, f"{newer}-shm", ASIDE]
    garbage(tmp_path / FILENAME)
    Journal(tmp_path / FILENAME, now=lambda: NOW + 3600).close()
    assert sets(tmp_path) == [newer, f"{newer}-shm", ASIDE,
                              f"{FILENAME}.corrupt-20261122T081805Z"]


def test_of_one_second_the_later_numbers_are_the_newer(tmp_path: Path) -> None:
    stamp = f"{FILENAME}.corrupt-20261103T120000Z"
    made(tmp_path, stamp, f"{stamp}-2", f"{stamp}-9", f"{stamp}-10")
    garbage(tmp_path / FILENAME)
    Journal(tmp_path / FILENAME, now=lambda: NOW).close()
    assert sets(tmp_path) == [f"{stamp}-10", f"{stamp}-9", ASIDE]


def test_the_one_just_moved_is_kept_whatever_its_time_says(tmp_path: Path) -> None:
    """(The clock set back since the others were moved aside.)"""
    later = [f"{FILENAME}.corrupt-20271201T00000{n}Z" for n in range(4)]
    made(tmp_path, *later)
    garbage(tmp_path / FILENAME)
    Journal(tmp_path / FILENAME, now=lambda: NOW).close()
    assert sets(tmp_path) == [ASIDE, *later[2:]]


def test_other_files_beside_them_are_left_alone(tmp_path: Path) -> None:
    keep = [f"{FILENAME}.corrupt-notes.txt", f"{FILENAME}.corrupt-20261101T000000Z.bak",
            "other.sqlite.corrupt-20261101T000000Z", f"{FILENAME}.corrupt-20261101T000000Z-x"]
    made(tmp_path, *keep)
    (tmp_path / f"{FILENAME}.corrupt-20261101T000000Z").mkdir()  # (a folder: not one)
    for n in range(4):
        made(tmp_path, f"{FILENAME}.corrupt-2026110{n + 2}T000000Z")
    garbage(tmp_path / FILENAME)
    Journal(tmp_path / FILENAME, now=lambda: NOW).close()
    assert names(tmp_path) == sorted([
        FILENAME, *keep, f"{FILENAME}.corrupt-20261101T000000Z",
        f"{FILENAME}.corrupt-20261104T000000Z", f"{FILENAME}.corrupt-20261105T000000Z", ASIDE])


# --- damage found after the open (the engine's side: tests/engine/test_journal_mid_run.py)


def damaged_under(j: Journal) -> None:
    """Overwrite the file ``j`` has open, its log written into it first (by another
    connection: ``j`` then reads it again, not the pages it keeps in memory)."""
    db = sqlite3.connect(j.path, isolation_level=None)
    assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    db.close()
    garbage(j.path)


def test_a_journal_found_damaged_by_a_call_is_moved_aside_and_closed(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    j = Journal(path, now=lambda: NOW)
    start(j, "a")
    damaged_under(j)
    with pytest.raises(StorageError) as e:
        start(j, "b")
    assert repair.damaged(e.value.__cause__)  # type: ignore[arg-type]
    earlier = [f"{FILENAME}.corrupt-2026110{n}T000000Z" for n in range(1, 5)]
    made(tmp_path, *earlier)
    assert j.set_aside() == tmp_path / ASIDE
    assert j.closed and names(tmp_path) == [*earlier[2:], ASIDE]
    assert (tmp_path / ASIDE).read_bytes()[: len(GARBAGE)] == GARBAGE
    with pytest.raises(StorageError, match="it was found damaged and moved aside"):
        j.get("a")
    assert j.set_aside() is None  # (once)
    with Journal(path) as again:
        assert again.keys("") == set()


def test_one_another_run_made_in_its_place_meanwhile_is_left_alone(tmp_path: Path) -> None:
    """Another run found it damaged first (at its open): it moved it aside and made a new
    one, which this run must not move aside in turn."""
    path = tmp_path / FILENAME
    j = Journal(path, now=lambda: NOW)
    start(j, "a")
    damaged_under(j)
    with Journal(path, now=lambda: NOW) as other:
        start(other, "theirs")
        assert j.set_aside() is None
        assert other.get("theirs") is not None
    with pytest.raises(StorageError, match=r"it was found damaged and closed$"):
        j.get("a")  # (not "moved aside": this run did not)
    # (the log and index moved with it stay: SQLite leaves those of a file that moved)
    assert names(tmp_path) == [FILENAME, ASIDE, f"{ASIDE}-shm", f"{ASIDE}-wal"]
    with Journal(path) as again:
        assert again.keys("") == {"theirs"}


# --- two runs finding the same damaged file ---


def test_a_run_that_finds_it_moved_meanwhile_opens_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another run moves it aside and starts recording between this run's failed open
    and its taking the lock: this run must not move that run's new journal aside."""
    path = tmp_path / FILENAME
    path.write_bytes(GARBAGE)
    plain = repair.folder_lock
    others: list[Journal] = []
    first = [True]

    @contextmanager
    def other_run_first(folder: Path, *, exclusive: bool) -> Iterator[bool]:
        if exclusive and first[0]:
            first[0] = False
            others.append(Journal(path, now=lambda: NOW))
            start(others[0], "theirs")
        with plain(folder, exclusive=exclusive) as held:
            yield held

    monkeypatch.setattr(opening, "folder_lock", other_run_first)
    with caplog.at_level(logging.WARNING), Journal(path, now=lambda: NOW + 1) as mine:
        start(mine, "mine")
        assert mine.get("theirs") is not None
    [theirs] = others
    assert theirs.get("mine") is not None
    theirs.close()
    assert names(tmp_path) == [FILENAME, ASIDE]
    assert len(warnings(caplog)) == 1


def _open_and_record(folder: str) -> str:
    together.wait()  # (the four open it at the same moment)
    try:
        with Journal.in_dir(Path(folder)) as j:
            start(j, f"run{os.getpid()}")
            j.save_spans(f"run{os.getpid()}", [(0, 5)])
    except StorageError as exc:
        return str(exc)
    return "ok"


def test_runs_finding_the_same_damaged_journal_move_it_once_and_keep_every_record(
    tmp_path: Path,
) -> None:
    folders = [tmp_path / f"s{i}" for i in range(20)]
    for folder in folders:
        folder.mkdir()
        garbage(folder / FILENAME)
    results = together.in_four(_open_and_record, [str(f) for f in folders for _ in range(4)])
    assert [r for r in results if r != "ok"] == []
    for folder in folders:
        aside = [n for n in names(folder) if ".corrupt-" in n]
        assert len(aside) == 1, aside
        assert (folder / aside[0]).read_bytes() == GARBAGE
        with Journal.in_dir(folder) as j:
            recorded = j.keys("run")
        assert len(recorded) == 4, (folder, recorded)


def test_threads_opening_it_at_once_move_it_once(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(GARBAGE)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    journals: list[Journal] = []

    def run() -> None:
        barrier.wait(10)
        try:
            journals.append(Journal(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n, j in enumerate(journals):
        start(j, f"t{n}")
    assert journals[0].keys("t") == {"t0", "t1", "t2", "t3"}
    for j in journals:
        j.close()
    assert len([n for n in names(tmp_path) if ".corrupt-" in n]) == 1


# --- a run ---


def test_a_run_on_a_damaged_journal_has_resume_state_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, this run and every later one warned and went without resume state (an
    interrupted download started over) until the user deleted the file."""
    state = tmp_path / "state"
    state.mkdir()
    garbage(state / FILENAME)
    data = payload(300 * 1024, 81)
    path = httpd.new_path("f.bin")
    url = httpd.add(path, data) + "?reset=100000&times=1"
    out = tmp_path / "out"
    settings = Settings(state_dir=state, retries=0, split=1)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        first = download([url], out, settings=settings)
    assert first.failed == 1 and first.journal_error is None
    [warning] = warnings(caplog)
    [aside] = [n for n in names(state) if ".corrupt-" in n]
    assert warning.startswith(f"resume journal {state / FILENAME}: the file was damaged"
                              f" (file is not a database); moved aside to {state / aside} ")
    httpd.clear_log()
    again = download([url], out, settings=settings)
    assert again.ok == 1 and (out / "f.bin").read_bytes() == data
    assert [r.header("range") for r in httpd.requests_to(path)] == ["bytes=100000-307199"]
