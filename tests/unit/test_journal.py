from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.servers import together
from tests.servers.checks import wait_for

import omniget
from omniget.engine.journal import (
    FILENAME,
    SCHEMA_VERSION,
    FileRecord,
    Journal,
    JournalStore,
    handle,
    repair,
    schema,
)
from omniget.engine.journal.records import RecordGone, RecordTaken
from omniget.errors import StorageError

KEY = "/abs/out\x00http:abc"


@contextlib.contextmanager
def locked_by_another(path: Path) -> Iterator[sqlite3.Connection]:
    """The journal at ``path`` held in a write transaction by another program (as an
    sqlite3 shell's ``BEGIN IMMEDIATE`` holds it) while the block runs."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.in_dir(tmp_path / "state")
    yield j
    j.close()


def start(j: Journal, key: str = KEY, **kw: object) -> None:
    args: dict[str, object] = {
        "path": "/abs/out/file.bin",
        "url": "https://example.com/file.bin",
        "size": 1000,
        "etag": '"v1"',
        "last_modified": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    args.update(kw)
    j.start(key, **args)  # type: ignore[arg-type]


def versions(path: Path) -> list[Any]:
    """The rows of the journal file's schema_version table."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT version FROM schema_version").fetchall()


def old_journal(path: Path, script: str, *more: str) -> None:
    """A journal of an older version at ``path``: ``script`` makes its tables, then KEY's
    record is put in ``files`` with the span 0-500, and ``more`` run with KEY as their one
    parameter."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(script)
        blob = (0).to_bytes(8, "little") + (500).to_bytes(8, "little")
        db.execute(
            "INSERT INTO files (key, path, url, updated, spans) VALUES (?, 'p', 'u', 1.0, ?)",
            (KEY, blob),
        )
        for sql in more:
            db.execute(sql, (KEY,))
        db.commit()


def test_is_a_journal_store(journal: Journal) -> None:
    store: JournalStore = journal
    assert store.get("nothing") is None


def test_round_trip(tmp_path: Path) -> None:
    now = iter(range(100, 200))
    j = Journal(tmp_path / "j.sqlite", now=lambda: float(next(now)))
    assert j.get(KEY) is None and j.spans(KEY) == [] and j.pieces(KEY) == {}
    start(j)
    rec = j.get(KEY)
    assert rec == FileRecord(
        key=KEY,
        path="/abs/out/file.bin",
        url="https://example.com/file.bin",
        size=1000,
        etag='"v1"',
        last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
        done=False,
        digest=None,
        updated=100.0,
    )
    j.save_spans(KEY, [(500, 600), (0, 100), (100, 200)])
    assert j.spans(KEY) == [(0, 200), (500, 600)]
    j.piece_done(KEY, 3, 4096)
    j.piece_done(KEY, 0, 10)
    j.piece_done(KEY, 3, 4000)  # a piece redone replaces its row
    assert j.pieces(KEY) == {0: 10, 3: 4000}
    j.close()
    # Everything is there after reopening.
    j2 = Journal(tmp_path / "j.sqlite")
    assert j2.spans(KEY) == [(0, 200), (500, 600)]
    assert j2.pieces(KEY) == {0: 10, 3: 4000}
    rec2 = j2.get(KEY)
    assert rec2 is not None and rec2.updated > 100
    j2.close()


def test_start_again_keeps_progress_and_updates_validators(journal: Journal) -> None:
    start(journal)
    journal.save_spans(KEY, [(0, 10)])
    journal.piece_done(KEY, 1, 5)
    start(journal, size=None, etag=None, last_modified=None, url="https://mirror/x")
    rec = journal.get(KEY)
    assert rec is not None and (rec.size, rec.etag, rec.url) == (None, None, "https://mirror/x")
    assert journal.spans(KEY) == [(0, 10)] and journal.pieces(KEY) == {1: 5}


def test_reset_drops_progress_only(journal: Journal) -> None:
    start(journal)
    journal.save_spans(KEY, [(0, 10)])
    journal.piece_done(KEY, 1, 5)
    journal.reset(KEY)
    assert journal.spans(KEY) == [] and journal.pieces(KEY) == {}
    rec = journal.get(KEY)
    assert rec is not None and rec.etag == '"v1"' and not rec.done
    journal.reset("unknown")  # harmless


def test_finish_archives_and_start_reopens(journal: Journal) -> None:
    start(journal)
    journal.save_spans(KEY, [(0, 10)])
    journal.piece_done(KEY, 1, 5)
    journal.finish(KEY, size=1234, digest="sha256=" + "0" * 64)
    rec = journal.get(KEY)
    assert rec is not None and rec.done and rec.size == 1234
    assert rec.digest == "sha256=" + "0" * 64
    assert journal.spans(KEY) == [] and journal.pieces(KEY) == {}
    start(journal)
    rec = journal.get(KEY)
    assert rec is not None and not rec.done and rec.digest is None


def test_forget(journal: Journal) -> None:
    start(journal)
    journal.piece_done(KEY, 1, 5)
    journal.forget(KEY)
    assert journal.get(KEY) is None and journal.pieces(KEY) == {}
    journal.forget(KEY)


def test_writes_need_a_record(journal: Journal) -> None:
    with pytest.raises(KeyError):
        journal.save_spans("nope", [(0, 1)])
    with pytest.raises(KeyError):
        journal.piece_done("nope", 0, 1)
    with pytest.raises(KeyError):
        journal.finish("nope", size=1, digest=None)
    assert journal.pieces("nope") == {}


def test_keys_are_independent(journal: Journal) -> None:
    start(journal, "a")
    start(journal, "b")
    journal.save_spans("a", [(0, 5)])
    journal.piece_done("b", 0, 1)
    journal.finish("a", size=5, digest=None)
    assert journal.pieces("b") == {0: 1}
    rec = journal.get("b")
    assert rec is not None and not rec.done


def test_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    Journal.in_dir(state).close()
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((state / FILENAME).stat().st_mode) == 0o600


def test_its_wal_and_shared_memory_files_are_private_too(tmp_path: Path) -> None:
    """The records (URLs, which may carry tokens) go to the -wal file first."""
    old = os.umask(0o022)
    try:
        with Journal.in_dir(tmp_path / "state") as journal:
            journal.start("k", path="/x", url="https://h/x?token=t0k", size=1, etag=None,
                          last_modified=None)
            made = sorted(p.name for p in (tmp_path / "state").iterdir())
            assert made == [FILENAME, f"{FILENAME}-shm", f"{FILENAME}-wal"]
            for name in made:
                mode = stat.S_IMODE((tmp_path / "state" / name).stat().st_mode)
                assert mode == 0o600, (name, oct(mode))
    finally:
        os.umask(old)


def test_wal_mode_and_schema_version(journal: Journal) -> None:
    with contextlib.closing(sqlite3.connect(journal.path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert versions(journal.path) == [(SCHEMA_VERSION,)]


# --- errors become StorageError naming the path ---


def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="file"):
        Journal.in_dir(blocker / "state")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        Journal.in_dir(blocker)  # (--state-dir naming a file: was "[Errno 17] File exists")
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StorageError, match=r"dir\.sqlite"):
        Journal(tmp_path / "dir.sqlite")


def test_a_journal_another_program_keeps_locked_says_so_at_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the open (an sqlite3 shell left in a write transaction): before, SQLite's
    "database is locked" alone, after a wait it did not say."""
    monkeypatch.setattr(schema, "OPEN_WAIT", 0.05)
    path = tmp_path / FILENAME
    Journal(path).close()
    said = "database is locked (another program kept it locked for over 0.05 s)"
    with locked_by_another(path), pytest.raises(StorageError,
                                                match=re.escape(f"open failed: {said}")):
        Journal(path)


def test_writes_to_a_journal_another_program_keeps_locked_wait_for_it_off_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write while another program holds the journal's write lock returns at once (the
    engine writes on its event loop: it waited BUSY_WAIT there, the transfers stalled,
    then failed, and the run went on without resume state); its record reads as the
    writes waiting make it (they read as none: a piece recorded was fetched again), and
    the writes reach the file, in order, once the lock is let go. (A write that waited
    BUSY_WAIT would fail here.)"""
    monkeypatch.setattr(schema, "BUSY_WAIT", 5.0)
    path = tmp_path / FILENAME
    j = Journal(path)
    start(j, "old")
    j.save_spans("old", [(0, 5)])
    with locked_by_another(path) as other:
        start(j)
        j.save_spans(KEY, [(0, 10)])
        j.save_spans(KEY, [(0, 20)])
        j.piece_done(KEY, 3, 100)
        j.forget("old")
        record = j.get(KEY)
        assert record is not None and record.size == 1000 and not record.done
        assert j.spans(KEY) == [(0, 20)] and j.pieces(KEY) == {3: 100}
        assert j.get("old") is None and j.spans("old") == []  # (its forget waits too)
        assert other.execute("SELECT count(*) FROM files").fetchone()[0] == 1
    wait_for(lambda: j.get(KEY) is not None)
    assert j.spans(KEY) == [(0, 20)] and j.pieces(KEY) == {3: 100}
    assert j.get("old") is None
    j.close()
    with Journal(path) as again:
        assert again.spans(KEY) == [(0, 20)] and again.get("old") is None


def test_reads_see_the_writes_waiting_for_a_lock_not_the_file_s_older_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record on file, then changed by writes that wait for another program's lock:
    each read answers as they will leave it (a piece recorded while they wait is not
    fetched again; a reset or finished record is not resumed from its older spans)."""
    monkeypatch.setattr(schema, "BUSY_WAIT", 5.0)
    path = tmp_path / FILENAME
    j = Journal(path)
    start(j)
    j.save_spans(KEY, [(0, 10)])
    j.piece_done(KEY, 0, 10)
    start(j, "moved")
    with locked_by_another(path) as other:
        j.piece_done(KEY, 1, 20, (1, 2, 3))
        assert j.pieces(KEY) == {0: 10, 1: 20}
        assert j.pieces_with_prints(KEY)[1] == (20, (1, 2, 3))
        j.reset(KEY)
        assert j.spans(KEY) == [] and j.pieces(KEY) == {}
        record = j.get(KEY)
        assert record is not None and record.size == 1000
        j.save_spans(KEY, [(0, 30)])
        j.finish(KEY, size=1000, digest="sha256:ab")
        record = j.get(KEY)
        assert record is not None and record.done and record.digest == "sha256:ab"
        assert j.spans(KEY) == []
        j.move("moved", "there", path="/abs/out/there.bin")
        assert j.get("moved") is None
        there = j.get("there")
        assert there is not None and there.path == "/abs/out/there.bin"
        assert other.execute("SELECT count(*) FROM pieces").fetchone()[0] == 1
    j.close()
    with Journal(path) as again:
        record = again.get(KEY)
        assert record is not None and record.done and again.get("there") is not None


def test_a_lock_let_go_within_the_quick_wait_is_waited_out_where_it_is_met(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another omniget run sharing the state folder holds the lock a few ms per write: a
    write that meets it waits it out in place (QUICK_WAIT), so its record reads back at
    once (waiting in memory made every such record read as none meanwhile, and a file
    whose part file was just taken over started over)."""
    monkeypatch.setattr(handle, "QUICK_WAIT", 30.0)  # (room for a loaded machine)
    path = tmp_path / FILENAME
    j = Journal(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    let_go = threading.Timer(0.05, lambda: other.execute("ROLLBACK"))
    let_go.start()
    try:
        start(j)
        j.save_spans(KEY, [(0, 10)])
        assert j.get(KEY) is not None and j.spans(KEY) == [(0, 10)]
        assert not j._pending
    finally:
        let_go.join()
        other.close()
        j.close()


def test_writes_waiting_for_a_lock_are_written_at_the_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The close waits for the lock (BUSY_WAIT at most) to write what waits; a lock still
    held then is said, and those writes are lost."""
    monkeypatch.setattr(schema, "BUSY_WAIT", 5.0)
    path = tmp_path / FILENAME
    j = Journal(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    start(j)
    j.save_spans(KEY, [(0, 10)])
    monkeypatch.setattr(schema, "BUSY_WAIT", 600.0)  # (the close's wait: read then)
    def let_go() -> None:
        other.execute("ROLLBACK")
        other.close()

    timer = threading.Timer(0.2, let_go)
    timer.start()  # (let go while the close waits)
    try:
        j.close()
    finally:
        timer.join()
    with Journal(path) as again:
        assert again.spans(KEY) == [(0, 10)]
    monkeypatch.setattr(schema, "BUSY_WAIT", 0.05)
    j = Journal(path)
    with locked_by_another(path):
        j.save_spans(KEY, [(0, 30)])
        with caplog.at_level("WARNING", logger="omniget"):
            j.close()
    [said] = [r.getMessage() for r in caplog.records]
    assert said == (
        f"resume journal {path}: another program kept it locked for over 0.05 s at the"
        " close: this run's last 1 write is lost (the downloads it left unfinished resume"
        " from an earlier state)"
    ), said
    with Journal(path) as again:
        assert again.spans(KEY) == [(0, 10)]


def test_checkpoints_waiting_for_a_lock_take_each_other_s_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's checkpoints while the lock is held: only its last one waits (a lock held
    long, through thousands of checkpoints, does not fill the memory or end resume
    state); the writes between them keep their order."""
    monkeypatch.setattr(schema, "BUSY_WAIT", 0.05)
    monkeypatch.setattr(handle, "PENDING_MAX", 4)
    path = tmp_path / FILENAME
    j = Journal(path)
    start(j)
    with locked_by_another(path):
        for n in range(1, 100):
            j.save_spans(KEY, [(0, n)])
        j.reset(KEY)  # (not let go past)
        for n in range(1, 100):
            j.save_spans(KEY, [(0, n)] if n < 99 else [(50, 60)])
        assert len(j._pending) == 3
    j.close()
    with Journal(path) as again:
        assert again.spans(KEY) == [(50, 60)]


def test_a_lock_held_through_too_many_writes_ends_resume_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes do not wait for ever in memory: past PENDING_MAX, the write fails (the run
    goes on without resume state, as for any failed call)."""
    monkeypatch.setattr(schema, "BUSY_WAIT", 0.05)
    monkeypatch.setattr(handle, "PENDING_MAX", 3)
    path = tmp_path / FILENAME
    j = Journal(path)
    start(j)
    with locked_by_another(path):
        for n in range(3):
            j.piece_done(KEY, n, 1)
        with pytest.raises(StorageError, match=re.escape(
            "checkpoint failed: database is locked (another program has kept it locked"
            " while this run made 3 writes)"
        )):
            j.piece_done(KEY, 9, 1)
    j.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc")
def test_a_state_folder_in_proc_says_what_it_is() -> None:
    """--state-dir /proc/x: was "No such file or directory: /proc/x" alone (mkdir's)."""
    with pytest.raises(StorageError) as caught:
        Journal.in_dir("/proc/x")
    assert str(caught.value) == (
        "resume journal /proc/x/journal.sqlite: open failed: /proc/x cannot be made: /proc"
        " is on a proc file system, which makes no folders asked for (see --state-dir)")


def test_closed_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path / FILENAME)
    j.close()
    j.close()
    with pytest.raises(StorageError, match="closed"):
        j.get(KEY)


def test_context_manager(tmp_path: Path) -> None:
    with Journal(tmp_path / FILENAME) as j:
        start(j)
    with pytest.raises(StorageError):
        j.spans(KEY)


# --- concurrency ---


def test_two_journals_share_the_file(tmp_path: Path) -> None:
    a = Journal(tmp_path / FILENAME)
    b = Journal(tmp_path / FILENAME)
    start(a, "k1")
    a.save_spans("k1", [(0, 7)])
    assert b.spans("k1") == [(0, 7)]
    start(b, "k2")
    b.piece_done("k2", 2, 9)
    assert a.pieces("k2") == {2: 9}
    b.finish("k1", size=7, digest=None)
    rec = a.get("k1")
    assert rec is not None and rec.done
    a.close()
    b.close()


def test_concurrent_writers(tmp_path: Path) -> None:
    journals = [Journal(tmp_path / FILENAME) for _ in range(2)]
    errors: list[BaseException] = []

    def work(j: Journal, key: str) -> None:
        try:
            start(j, key)
            for i in range(1, 101):
                j.save_spans(key, [(0, i)])
                if i % 10 == 0:
                    j.piece_done(key, i, i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(journals[n % 2], f"key{n}")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for j in journals:  # (a write that met the other's lock waits for it: written by now)
        j.close()
    with Journal(tmp_path / FILENAME) as j:
        for n in range(4):
            assert j.spans(f"key{n}") == [(0, 100)]
            assert len(j.pieces(f"key{n}")) == 10


# --- cost of a checkpoint ---


def test_checkpoint_cost(journal: Journal, record_property: object) -> None:
    start(journal)
    n = 500
    spans = [(0, 2 << 20)]
    t0 = time.perf_counter()
    for i in range(n):
        spans = [(0, (i + 1) << 21), ((i + 5) << 21, (i + 6) << 21)]
        journal.save_spans(KEY, spans)
    per_call = (time.perf_counter() - t0) / n
    print(f"\nsave_spans: {per_call * 1e6:.1f} us per call")
    record_property("save_spans_us", round(per_call * 1e6, 1))  # type: ignore[operator]
    assert journal.spans(KEY) == spans


# --- SIGKILL in the middle of checkpointing ---

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from omniget.engine.journal import Journal

    j = Journal(Path(sys.argv[1]))
    key = "victim"
    if j.get(key) is None:
        j.start(key, path="/p", url="u", size=None, etag=None, last_modified=None)
    spans = j.spans(key)
    i = spans[0][1] // 4096 if spans else 0
    while True:
        i += 1
        j.piece_done(key, i, i)
        j.save_spans(key, [(0, i * 4096)])
        print(i, flush=True)
    """
)


def run_and_kill(path: Path, lines: int) -> int:
    """Run the checkpointing child until it reported ``lines`` commits, SIGKILL it."""
    env = dict(os.environ, PYTHONPATH=str(Path(omniget.__file__).parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    last = 0
    try:
        for _ in range(lines):
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert last > 0, "the child never committed"
    return last


def check_consistent(path: Path, at_least: int) -> int:
    j = Journal(path)
    spans = j.spans("victim")
    pieces = j.pieces("victim")
    j.close()
    assert len(spans) == 1 and spans[0][0] == 0 and spans[0][1] % 4096 == 0
    done = spans[0][1] // 4096
    assert done >= at_least
    # piece i is committed just before span i: never more than one ahead, never a hole
    assert sorted(pieces) == list(range(1, len(pieces) + 1))
    assert len(pieces) in (done, done + 1)
    assert all(pieces[k] == k for k in pieces)
    return done


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_leaves_a_consistent_growing_journal(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    rnd = random.Random()
    reported = run_and_kill(path, rnd.randint(20, 200))
    first = check_consistent(path, reported)
    reported = run_and_kill(path, rnd.randint(20, 200))
    second = check_consistent(path, reported)
    assert second >= first


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("also", [(), ("-shm",)], ids=["journal", "journal-and-shm"])
def test_a_log_left_without_its_journal_is_no_error(
    tmp_path: Path, also: tuple[str, ...]
) -> None:
    """A run killed, then its journal file removed (the user's "start afresh"), its -wal
    left (with every record of the run in it, as the journal may have none yet): the
    open makes a new journal, whole, that takes writes; nothing is said to be damaged."""
    path = tmp_path / FILENAME
    run_and_kill(path, 20)
    assert (tmp_path / f"{FILENAME}-wal").stat().st_size > 0
    for name in ("", *also):
        os.unlink(f"{path}{name}")
    with Journal(path) as j:
        start(j, "after")
        j.save_spans("after", [(0, 10)])
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Journal(path) as j:
        assert j.spans("after") == [(0, 10)]
    assert not [n for n in os.listdir(tmp_path) if ".corrupt-" in n]


def test_keys_by_prefix(journal: Journal) -> None:
    for key in ("/out\0a", "/out\0b\u00e9", "/out2\0a", "/ou\0t", "/out\0\U0001f600"):
        start(journal, key)
    assert journal.keys("/out\0") == {"/out\0a", "/out\0b\u00e9", "/out\0\U0001f600"}
    assert journal.keys("/nothing\0") == set()


# --- what a run after a power loss may trust ---


def test_another_boot_trusts_only_synced_spans(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with Journal(path, boot="one") as j:
        start(j)
        j.save_spans(KEY, [(0, 300)])
        j.save_synced(KEY, [(0, 100)], [])
        j.save_spans(KEY, [(0, 600)])
        assert j.spans(KEY) == [(0, 600)]  # (this boot: the page cache still has them)
    with Journal(path, boot="two") as j:
        assert j.spans(KEY) == [(0, 100)]
        j.save_spans(KEY, [(0, 200)])  # written on this boot, so trusted on it
        assert j.spans(KEY) == [(0, 200)]
    with Journal(path, boot="three") as j:
        assert j.spans(KEY) == [(0, 100)]


def test_another_boot_trusts_only_synced_pieces(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with Journal(path, boot="one") as j:
        start(j)
        for i in range(4):
            j.piece_done(KEY, i, 10 + i)
        j.save_synced(KEY, [], [0, 2])
        assert j.pieces(KEY) == {0: 10, 1: 11, 2: 12, 3: 13}
    with Journal(path, boot="two") as j:
        assert j.pieces(KEY) == {0: 10, 2: 12}


def test_keep_synced_cuts_written_spans_and_pieces_back_to_the_synced_ones(
    tmp_path: Path,
) -> None:
    """The disk failed a sync: what was written since is not trusted on this boot either."""
    path = tmp_path / FILENAME
    with Journal(path, boot="one") as j:
        start(j)
        for i in range(3):
            j.piece_done(KEY, i, 10 + i)
        j.save_spans(KEY, [(0, 300)])
        j.save_synced(KEY, [(0, 100)], [1])
        j.save_spans(KEY, [(0, 600)])
        j.keep_synced(KEY)
        assert j.spans(KEY) == [(0, 100)] and j.pieces(KEY) == {1: 11}
        j.finish(KEY, size=1000, digest=None)
        j.keep_synced(KEY)  # (a file done meanwhile: nothing)
        assert j.spans(KEY) == [] and j.get(KEY) is not None
    with Journal(path, boot="two") as j:
        assert j.spans(KEY) == []


def test_reset_and_finish_drop_synced_spans(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with Journal(path, boot="one") as j:
        start(j)
        j.save_spans(KEY, [(0, 300)])
        j.save_synced(KEY, [(0, 300)], [])
        j.reset(KEY)
    with Journal(path, boot="two") as j:
        assert j.spans(KEY) == []
        j.save_synced(KEY, [(0, 50)], [])
        j.finish(KEY, size=1000, digest=None)
        j.save_synced(KEY, [(0, 70)], [])  # (a late sync of a finished file: nothing)
        start(j)
    with Journal(path, boot="three") as j:
        assert j.spans(KEY) == []


def test_a_first_version_journal_is_upgraded_and_its_spans_kept(tmp_path: Path) -> None:
    """Spans recorded before boots were (version 1) are trusted as they were."""
    path = tmp_path / FILENAME
    old_journal(
        path,
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE files (key TEXT PRIMARY KEY, path TEXT NOT NULL, url TEXT NOT NULL,
            size INTEGER, etag TEXT, last_modified TEXT, done INTEGER NOT NULL DEFAULT 0,
            digest TEXT, updated REAL NOT NULL, spans BLOB);
        CREATE TABLE pieces (key TEXT NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL,
            PRIMARY KEY (key, idx)) WITHOUT ROWID;
        """,
        "INSERT INTO pieces VALUES (?, 3, 30)",
    )
    with Journal(path, boot="later") as j:
        assert j.spans(KEY) == [(0, 500)] and j.pieces(KEY) == {3: 30}
        j.save_spans(KEY, [(0, 800)])
        j.save_synced(KEY, [(0, 700)], [])
    with Journal(path, boot="even later") as j:
        assert j.spans(KEY) == [(0, 700)]
    assert versions(path) == [(SCHEMA_VERSION,)]


# --- which part file a record is of ---


def test_a_record_keeps_its_part_file_and_a_new_one_drops_its_progress(journal: Journal) -> None:
    start(journal, part=11)
    journal.save_spans(KEY, [(0, 10)])
    journal.piece_done(KEY, 1, 5)
    start(journal, part=11)  # the same file: as before
    start(journal)  # (not known: as before)
    rec = journal.get(KEY)
    assert rec is not None and rec.part == 11
    assert journal.spans(KEY) == [(0, 10)] and journal.pieces(KEY) == {1: 5}
    start(journal, part=12)  # another file: its bytes are not these
    rec = journal.get(KEY)
    assert rec is not None and rec.part == 12
    assert journal.spans(KEY) == [] and journal.pieces(KEY) == {}


def test_a_record_moves_to_another_key(journal: Journal) -> None:
    start(journal, "/old\0u\0f", part=7)
    journal.save_spans("/old\0u\0f", [(0, 10)])
    journal.piece_done("/old\0u\0f", 2, 5)
    start(journal, "/new\0u\0f", part=8)  # a stale record in the way: replaced
    start(journal, "/x\0u\0g")
    assert sorted(journal.unfinished()) == [("/new\0u\0f", 8), ("/old\0u\0f", 7)]
    journal.move("/old\0u\0f", "/new\0u\0f", path="/new/f")
    rec = journal.get("/new\0u\0f")
    assert rec is not None and (rec.path, rec.part) == ("/new/f", 7)
    assert journal.spans("/new\0u\0f") == [(0, 10)] and journal.pieces("/new\0u\0f") == {2: 5}
    assert journal.get("/old\0u\0f") is None and journal.pieces("/old\0u\0f") == {}
    with pytest.raises(KeyError):
        journal.move("/old\0u\0f", "/elsewhere\0u\0f", path="/elsewhere/f")


def test_a_write_given_its_owner_changes_a_record_only_while_it_is_the_owners(
    tmp_path: Path,
) -> None:
    """Two runs write one download (one key) to two names: the record is that of the
    run that started it last. The other's writes (given its path and part file) leave it
    alone: a checkpoint or a finish says it was taken, a sync, reset or forget does
    nothing; once the record is gone they say so."""
    path = tmp_path / FILENAME
    mine, theirs = ("/abs/out/x_1.bin", 11), ("/abs/out/x.bin", 22)
    with Journal(path, boot="one") as j:
        start(j, path=mine[0], part=mine[1])
        j.save_spans(KEY, [(0, 400)], own=mine)
        j.piece_done(KEY, 0, 400, own=mine)
        start(j, path=theirs[0], part=theirs[1])  # (the other run's)
        j.save_spans(KEY, [(0, 100)], own=theirs)
        j.piece_done(KEY, 5, 10, own=theirs)
        with pytest.raises(RecordTaken, match="was taken by another omniget run"):
            j.save_spans(KEY, [(0, 800)], own=mine)
        with pytest.raises(RecordTaken):
            j.piece_done(KEY, 1, 400, own=mine)
        with pytest.raises(RecordTaken):
            j.finish(KEY, size=1000, digest=None, own=mine)
        j.save_synced(KEY, [(0, 800)], [5], own=mine)
        j.reset(KEY, own=mine)
        j.forget(KEY, own=mine)
        rec = j.get(KEY)
        assert rec is not None and (rec.path, rec.part, rec.done) == (*theirs, False)
        assert j.spans(KEY) == [(0, 100)] and j.pieces(KEY) == {5: 10}
    with Journal(path, boot="two") as j:  # (nothing recorded as synced)
        assert j.spans(KEY) == [] and j.pieces(KEY) == {}
        j.forget(KEY, own=theirs)
        assert j.get(KEY) is None
        with pytest.raises(RecordGone, match="went away") as gone:
            j.save_spans(KEY, [(0, 100)], own=theirs)
        assert not isinstance(gone.value, RecordTaken)


def test_a_second_version_journal_is_upgraded_and_its_records_trusted(tmp_path: Path) -> None:
    """Records from before part files were known (version 2) are trusted as they were."""
    path = tmp_path / FILENAME
    old_journal(
        path,
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (2);
        CREATE TABLE files (key TEXT PRIMARY KEY, path TEXT NOT NULL, url TEXT NOT NULL,
            size INTEGER, etag TEXT, last_modified TEXT, done INTEGER NOT NULL DEFAULT 0,
            digest TEXT, updated REAL NOT NULL, spans BLOB, boot TEXT, synced BLOB);
        CREATE TABLE pieces (key TEXT NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL,
            boot TEXT, PRIMARY KEY (key, idx)) WITHOUT ROWID;
        """,
    )
    with Journal(path) as j:
        rec = j.get(KEY)
        assert rec is not None and rec.part is None and j.spans(KEY) == [(0, 500)]
        assert j.unfinished() == []  # (its part file is not known: not found by it)
        j.start(KEY, path="p", url="u", size=None, etag=None, last_modified=None, part=3)
        rec = j.get(KEY)
        assert rec is not None and rec.part == 3
    assert versions(path) == [(SCHEMA_VERSION,)]


def _open_and_close(folder: str) -> str:
    together.wait()  # (the four open it at the same moment)
    try:
        Journal.in_dir(Path(folder)).close()
    except StorageError as exc:
        return str(exc)
    return "ok"


def test_runs_opening_a_new_journal_at_once_all_get_it(tmp_path: Path) -> None:
    """Two omniget runs started together on a new state folder: one of them failed at
    once with "database is locked" (the switch to WAL mode does not wait for a lock)."""
    folders = [str(tmp_path / f"s{i}") for i in range(30) for _ in range(4)]
    results = together.in_four(_open_and_close, folders)
    assert [r for r in results if r != "ok"] == []


# --- the state folder removed under a run ---


@pytest.fixture
def look_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write looks for a removed journal file (a run looks once a second)."""
    monkeypatch.setattr(handle, "CHECK_EVERY", 0.0)


def test_a_journal_removed_under_a_run_is_made_again_with_its_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, look_always: None
) -> None:
    """Before, the run went on writing to the removed file (SQLite keeps it open): no
    error, and nothing it recorded was there for a rerun."""
    state = tmp_path / "state"
    j = Journal.in_dir(state)
    start(j, "a")
    j.save_spans("a", [(0, 100)])
    start(j, "b")
    j.piece_done("b", 3, 30)
    j.finish("b", size=30, digest=None)
    shutil.rmtree(state)
    j.save_spans("a", [(0, 200)])  # (the first write after: it is found out here)
    assert "was removed during the run; made again" in caplog.text
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / FILENAME).stat().st_mode) == 0o600
    j.piece_done("a", 1, 10)
    with Journal.in_dir(state) as again:  # what a rerun finds
        assert again.spans("a") == [(0, 200)]
        assert again.pieces("a") == {1: 10}
        rec = again.get("b")
        assert rec is not None and rec.done and rec.size == 30
    j.close()


OTHER_RUN = textwrap.dedent(
    """
    import json, sys
    from omniget.engine.journal import Journal

    with Journal.in_dir(sys.argv[1]) as j:
        if sys.argv[2:]:
            j.save_spans("a", json.loads(sys.argv[2]))
        rec = j.get("b")
        print(json.dumps([j.spans("a"), rec is not None and rec.done]))
    """
)


def other_run(state: Path, spans: list[tuple[int, int]] | None = None) -> list[Any]:
    """What another process finds in the journal in ``state``: the spans of "a", whether
    "b" is done; ``spans``: given to "a" first."""
    env = dict(os.environ, PYTHONPATH=str(Path(omniget.__file__).parents[1]))
    args = [] if spans is None else [json.dumps(spans)]
    out = subprocess.run([sys.executable, "-c", OTHER_RUN, str(state), *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    found: list[Any] = json.loads(out.stdout)
    return found


@pytest.mark.parametrize("removed", [("-wal", "-shm"), ("-wal",), ("-shm",)],
                         ids=["wal-and-shm", "wal", "shm"])
def test_a_log_removed_under_a_run_is_made_again_with_its_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, look_always: None,
    removed: tuple[str, ...],
) -> None:
    """The journal's -wal (its log: what was written since SQLite last copied it into the
    file) or -shm (the log's index) removed by hand while a run has it open. Before, the
    run went on with the removed ones: another process found none of its records (a
    rerun after a kill started over), could not open the journal ("disk I/O error"), or
    made an index of its own, and their writes were lost to each other."""
    state = tmp_path / "state"
    j = Journal.in_dir(state)
    start(j, "a")
    j.save_spans("a", [(0, 100)])
    start(j, "b")
    j.finish("b", size=30, digest=None)
    for name in removed:
        os.unlink(state / f"{FILENAME}{name}")
    j.save_spans("a", [(0, 200)])  # (the first write after: it is found out here)
    assert "was removed during the run; made again with this run's records" in caplog.text
    assert other_run(state) == [[[0, 200]], True]
    j.save_spans("a", [(0, 300)])
    assert other_run(state) == [[[0, 300]], True]
    assert other_run(state, [(0, 400)]) == [[[0, 400]], True]
    assert j.spans("a") == [(0, 400)]
    j.close()
    assert other_run(state) == [[[0, 400]], True]
    with contextlib.closing(sqlite3.connect(state / FILENAME)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_journal_another_run_made_again_gets_this_runs_records(
    tmp_path: Path, look_always: None
) -> None:
    state = tmp_path / "state"
    mine = Journal.in_dir(state)
    start(mine, "mine")
    mine.save_spans("mine", [(0, 5)])
    shutil.rmtree(state)
    other = Journal.in_dir(state)  # another run made it first
    start(other, "theirs")
    mine.save_spans("mine", [(0, 9)])
    assert other.spans("mine") == [(0, 9)]
    assert other.get("theirs") is not None  # (kept)
    mine.close()
    other.close()


def test_the_records_copied_into_a_journal_another_run_made_leave_that_runs_alone(
    tmp_path: Path, look_always: None
) -> None:
    """Another run moved the journal aside (it found it damaged) and made a new one, in
    which it started a download this run has a record of too (one download, two names):
    its record is newer, and stays as it is (with no pieces of this run's). Before, the
    copy replaced it with this run's."""
    state = tmp_path / "state"
    mine = Journal.in_dir(state)
    start(mine, "both", path="/abs/out/x_1.bin", part=11)
    mine.save_spans("both", [(0, 500)])
    mine.piece_done("both", 1, 10)
    start(mine, "mine")
    repair.move_aside(state / FILENAME, time.time())
    other = Journal.in_dir(state)
    start(other, "both", path="/abs/out/x.bin", part=22)
    other.save_spans("both", [(0, 100)])
    mine.save_spans("mine", [(0, 9)])  # (it looks, and copies its records)
    assert other.spans("mine") == [(0, 9)]
    rec = other.get("both")
    assert rec is not None and (rec.path, rec.part) == ("/abs/out/x.bin", 22)
    assert other.spans("both") == [(0, 100)] and other.pieces("both") == {}
    mine.close()
    other.close()


def test_writes_after_the_last_look_reach_the_journal_made_again_at_the_close(
    tmp_path: Path,
) -> None:
    """The journal moved aside by another run within the second after this run's last
    look: its close looks once more, and copies what it wrote meanwhile."""
    state = tmp_path / "state"
    j = Journal.in_dir(state)
    start(j, "a")
    repair.move_aside(state / FILENAME, time.time())
    Journal.in_dir(state).close()  # (the other run's new one)
    j.save_spans("a", [(0, 80)])  # (within the second: into the file moved aside)
    j.close()
    with Journal.in_dir(state) as again:
        assert again.spans("a") == [(0, 80)]


def test_writes_before_the_next_look_reach_the_journal_made_again(tmp_path: Path) -> None:
    """The file is looked for at most once a second (a stat per write cost every small
    file); what was written to the removed file meanwhile is copied over."""
    state = tmp_path / "state"
    j = Journal.in_dir(state)
    start(j, "a")
    shutil.rmtree(state)
    start(j, "b")  # (within the second: into the removed file)
    j.save_spans("b", [(0, 50)])
    assert not state.exists()
    j._checked -= handle.CHECK_EVERY  # (a second later)
    j.save_spans("a", [(0, 80)])
    j.close()
    with Journal.in_dir(state) as again:
        assert again.spans("a") == [(0, 80)]
        assert again.spans("b") == [(0, 50)]


def test_a_relative_path_stays_the_folder_it_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that changes its folder after opening a journal by a relative path (a
    library user's) does not take the journal for removed and make another there."""
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    j = Journal(Path("state") / FILENAME)
    start(j, "k")
    monkeypatch.chdir(tmp_path / "other")
    j.save_spans("k", [(0, 4)])
    assert os.listdir(tmp_path / "other") == []
    with Journal(tmp_path / "state" / FILENAME) as same:
        assert same.spans("k") == [(0, 4)]
    j.close()


# --- old state is pruned ---

DAY = 86400.0


def test_prune_drops_old_records_whose_files_are_gone(tmp_path: Path) -> None:
    """Before, nothing was ever removed: a finished file's record (a server-chosen name)
    and an abandoned download's stayed for ever, one per file and output folder."""
    clock = [1000 * DAY]
    j = Journal(tmp_path / FILENAME, now=lambda: clock[0])
    there, gone = tmp_path / "there.bin", tmp_path / "gone.bin"
    there.write_bytes(b"x")
    (tmp_path / "kept.bin.part").write_bytes(b"x")
    for key, path in (("done-there", there), ("done-gone", gone)):
        start(j, key, path=str(path))
        j.finish(key, size=1, digest=None)
    for key, path in (("open-kept", tmp_path / "kept.bin"), ("open-gone", gone)):
        start(j, key, path=str(path))
        j.piece_done(key, 0, 1)
    clock[0] += 100 * DAY
    start(j, "new-gone", path=str(gone))  # (recent: kept whatever)

    def missing(path: str, done: bool) -> bool:
        return not os.path.lexists(path if done else path + ".part")

    assert j.prune(missing) == 2
    assert j.keys("") == {"done-there", "open-kept", "new-gone"}
    assert j.pieces("open-kept") == {0: 1}
    assert j.pieces("open-gone") == {}
    assert j.prune(missing) == 0  # (those kept were checked: not again until as old)
    there.unlink()
    assert j.prune(missing) == 0
    clock[0] += 100 * DAY
    assert j.prune(missing) == 2  # done-there, new-gone
    assert j.keys("") == {"open-kept"}
    j.close()


def test_records_written_while_the_clock_was_ahead_are_pruned_in_time(tmp_path: Path) -> None:
    """A clock set years ahead, then back (a dead RTC battery, a wrong NTP answer): the
    records written meanwhile were "from the future", never old enough, kept for ever.
    They count as written when a prune first sees them, and go ``age`` later."""
    clock = [1000 * DAY]
    j = Journal(tmp_path / FILENAME, now=lambda: clock[0])
    clock[0] += 3650 * DAY
    start(j, "ahead", path=str(tmp_path / "gone.bin"))
    start(j, "ahead-there", path=str(tmp_path / "there.bin"))
    (tmp_path / "there.bin.part").write_bytes(b"x")
    clock[0] -= 3650 * DAY

    def missing(path: str, done: bool) -> bool:
        return not os.path.lexists(path if done else path + ".part")

    assert j.prune(missing) == 0  # (not known to be old)
    assert j.keys("") == {"ahead", "ahead-there"}
    clock[0] += 100 * DAY
    assert j.prune(missing) == 1
    assert j.keys("") == {"ahead-there"}
    clock[0] += 100 * DAY
    assert j.prune(missing) == 0  # (its file is there: looked at again in 90 days)
    j.close()


def test_prune_checks_a_bounded_number_of_records_per_call(tmp_path: Path) -> None:
    clock = [0.0]
    j = Journal(tmp_path / FILENAME, now=lambda: clock[0])
    for n in range(30):
        start(j, f"k{n}", path=str(tmp_path / f"f{n}"))
    clock[0] += 100 * DAY
    seen: list[str] = []

    def missing(path: str, done: bool) -> bool:
        seen.append(path)
        return True

    assert j.prune(missing, limit=20) == 20
    assert len(seen) == 20 and len(j.keys("")) == 10
    j.close()


# --- fingerprints of the bytes at the spans' ends ---


def test_spans_keep_their_prints_written_and_synced(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with Journal(path, boot="one") as j:
        start(j)
        assert j.spans_with_prints(KEY) == ([], None)
        j.save_spans(KEY, [(0, 300), (400, 500)], [(300, 7, 17), (100, 8, 18)])
        j.save_synced(KEY, [(0, 100)], [], [(100, 9, 19)])
        assert j.spans_with_prints(KEY) == ([(0, 300), (400, 500)], [(300, 7, 17), (100, 8, 18)])
        assert j.spans(KEY) == [(0, 300), (400, 500)]
    with Journal(path, boot="two") as j:  # (after a reboot: the synced ones, and theirs)
        assert j.spans_with_prints(KEY) == ([(0, 100)], [(100, 9, 19)])
        j.save_spans(KEY, [(0, 200)])  # (none given: none kept)
        assert j.spans_with_prints(KEY) == ([(0, 200)], None)


def test_prints_not_one_per_normal_span_are_not_kept(journal: Journal) -> None:
    start(journal)
    journal.save_spans(KEY, [(0, 10), (20, 30)], [(10, 1, 11)])
    assert journal.spans_with_prints(KEY) == ([(0, 10), (20, 30)], None)
    journal.save_spans(KEY, [(20, 30), (0, 10)], [(10, 2, 12), (10, 1, 11)])  # (not in order)
    assert journal.spans_with_prints(KEY) == ([(0, 10), (20, 30)], None)


def test_reset_finish_and_another_part_file_drop_the_prints(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    for drop in ("reset", "finish", "part"):
        with Journal(path, boot="one") as j:
            start(j, part=1)
            j.save_spans(KEY, [(0, 10)], [(10, 1, 11)])
            j.save_synced(KEY, [(0, 10)], [], [(10, 1, 11)])
            if drop == "reset":
                j.reset(KEY)
            elif drop == "finish":
                j.finish(KEY, size=10, digest=None)
            start(j, part=2 if drop == "part" else 1)
            j.save_spans(KEY, [(0, 10)])
            j.save_synced(KEY, [(0, 10)], [])
            assert j.spans_with_prints(KEY) == ([(0, 10)], None)
        with Journal(path, boot="two") as j:
            assert j.spans_with_prints(KEY) == ([(0, 10)], None), drop


#: A journal as version 3 made it (before the fingerprints).
VERSION_3 = """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version VALUES (3);
    CREATE TABLE files (key TEXT PRIMARY KEY, path TEXT NOT NULL, url TEXT NOT NULL,
        size INTEGER, etag TEXT, last_modified TEXT, done INTEGER NOT NULL DEFAULT 0,
        digest TEXT, updated REAL NOT NULL, spans BLOB, boot TEXT, synced BLOB,
        part INTEGER);
    CREATE TABLE pieces (key TEXT NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL,
        boot TEXT, PRIMARY KEY (key, idx)) WITHOUT ROWID;
"""


def test_a_third_version_journal_is_upgraded_and_its_spans_trusted_without_prints(
    tmp_path: Path,
) -> None:
    """Spans recorded before their fingerprints were (version 3) are trusted as they were."""
    path = tmp_path / FILENAME
    old_journal(path, VERSION_3)
    with Journal(path) as j:
        assert j.spans_with_prints(KEY) == ([(0, 500)], None)
        j.save_spans(KEY, [(0, 600)], [(100, 5, 15)])
        assert j.spans_with_prints(KEY) == ([(0, 600)], [(100, 5, 15)])
    assert versions(path) == [(SCHEMA_VERSION,)]


# --- fingerprints of the verified pieces' bytes in the part file ---


def test_pieces_keep_their_prints_and_after_a_reboot_the_synced_ones(tmp_path: Path) -> None:
    """A piece's print is of its bytes as written before it was recorded; the sync that
    marks it synced started after that write, so the same print holds for the bytes on
    the disk (no second one, as a span has, whose bytes grow)."""
    path = tmp_path / FILENAME
    with Journal(path, boot="one") as j:
        start(j)
        j.piece_done(KEY, 0, 10, (10, 1, 11))
        j.piece_done(KEY, 1, 20, (20, 2, 12))
        j.piece_done(KEY, 2, 30)  # (none: its bytes are not in the part file, say)
        j.save_synced(KEY, [], [0, 2])
        assert j.pieces_with_prints(KEY) == {
            0: (10, (10, 1, 11)), 1: (20, (20, 2, 12)), 2: (30, None)}
        assert j.pieces(KEY) == {0: 10, 1: 20, 2: 30}
        j.piece_done(KEY, 0, 10, (10, 3, 13))  # (fetched again: its new row, as written)
        assert j.pieces_with_prints(KEY)[0] == (10, (10, 3, 13))
    with Journal(path, boot="two") as j:
        assert j.pieces_with_prints(KEY) == {2: (30, None)}


def test_pieces_dropped_are_fetched_again(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    mine, theirs = ("/abs/out/file.bin", 11), ("/abs/out/other.bin", 11)
    with Journal(path) as j:
        start(j, path=mine[0], part=mine[1])
        for i in range(4):
            j.piece_done(KEY, i, 10, (10, i, i))
        j.drop_pieces(KEY, [1, 3], own=mine)
        assert j.pieces(KEY) == {0: 10, 2: 10}
        j.drop_pieces(KEY, [])
        start(j, path=theirs[0], part=theirs[1])  # (taken by another run: left alone)
        j.drop_pieces(KEY, [0], own=mine)
        assert j.pieces(KEY) == {0: 10, 2: 10}
        j.drop_pieces(KEY, [0], own=theirs)
        assert j.pieces(KEY) == {2: 10}


def test_a_piece_s_print_moves_with_its_record_and_is_copied(tmp_path: Path) -> None:
    """A record moved to another key, or copied into a journal made again, keeps them."""
    from omniget.engine.journal.schema import copy_records

    with Journal(tmp_path / "a.sqlite") as a, Journal(tmp_path / "b.sqlite") as b:
        start(a, "/old\0u\0f", part=7)
        a.piece_done("/old\0u\0f", 2, 5, (5, 6, 7))
        a.move("/old\0u\0f", KEY, path="/new/f")
        assert a.pieces_with_prints(KEY) == {2: (5, (5, 6, 7))}
        assert a._db is not None and b._db is not None
        copy_records(a._db, b._db)
        assert b.pieces_with_prints(KEY) == {2: (5, (5, 6, 7))}


def test_a_third_version_journal_s_pieces_are_trusted_without_prints(tmp_path: Path) -> None:
    """Pieces recorded before their fingerprints were (version 3) are trusted as they were."""
    path = tmp_path / FILENAME
    old_journal(path, VERSION_3, "INSERT INTO pieces VALUES (?, 3, 30, NULL)")
    with Journal(path) as j:
        assert j.pieces_with_prints(KEY) == {3: (30, None)}
        j.piece_done(KEY, 4, 40, (40, 4, 14))
        assert j.pieces_with_prints(KEY) == {3: (30, None), 4: (40, (40, 4, 14))}
    assert versions(path) == [(SCHEMA_VERSION,)]


def test_a_damaged_piece_print_is_none(journal: Journal) -> None:
    start(journal)
    journal.piece_done(KEY, 0, 10, (10, 1, 11))
    assert journal._db is not None
    journal._db.execute("UPDATE pieces SET print = x'0102'")
    assert journal.pieces_with_prints(KEY) == {0: (10, None)}


def test_revalidate_changes_size_validators_and_digest_of_its_own_record_only(
    tmp_path: Path,
) -> None:
    """A restarted file's record takes the new version's size, validators and digest,
    its spans kept; another run's record (it took the key) is left alone, and a record
    that is gone stays gone."""
    mine, theirs = ("/abs/out/x_1.bin", 11), ("/abs/out/x.bin", 22)
    with Journal(tmp_path / FILENAME, boot="one") as j:
        start(j, path=mine[0], part=mine[1])
        j.save_spans(KEY, [(0, 400)], own=mine)
        j.revalidate(KEY, size=2000, etag='"B"', last_modified="Tue, 1 Dec 2026 00:00:00 GMT",
                     digest="sha256:" + "b" * 64, own=mine)
        rec = j.get(KEY)
        assert rec is not None
        assert (rec.size, rec.etag, rec.last_modified, rec.digest) == (
            2000, '"B"', "Tue, 1 Dec 2026 00:00:00 GMT", "sha256:" + "b" * 64)
        assert (rec.path, rec.part) == mine and j.spans(KEY) == [(0, 400)]
        start(j, path=theirs[0], part=theirs[1])  # (the other run's now)
        before = j.get(KEY)
        j.revalidate(KEY, size=5, etag='"C"', last_modified=None, digest=None, own=mine)
        after = j.get(KEY)
        assert before is not None and after is not None
        assert (after.size, after.etag, after.digest) == (before.size, before.etag, before.digest)
        j.forget(KEY, own=theirs)
        j.revalidate(KEY, size=5, etag='"C"', last_modified=None, digest=None, own=theirs)
        assert j.get(KEY) is None


def test_the_open_of_a_journal_another_program_keeps_locked_says_so_promptly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open waits OPEN_WAIT (4 s) for the lock, not BUSY_WAIT (it was 10 s of
    silence before the run's first line): another omniget run holds it a few ms at a
    time. The line says how long it waited."""
    monkeypatch.setattr(schema, "BUSY_WAIT", 600.0)  # (the open must not wait that)
    assert schema.OPEN_WAIT <= 4.0
    monkeypatch.setattr(schema, "OPEN_WAIT", 0.5)  # (what the open waits: not 4 s here)
    path = tmp_path / FILENAME
    Journal(path).close()
    caught: list[BaseException] = []

    def open_it() -> None:
        try:
            Journal(path).close()
        except BaseException as exc:  # (said below)
            caught.append(exc)

    with locked_by_another(path):
        opener = threading.Thread(target=open_it, daemon=True)
        opener.start()
        opener.join(timeout=120.0)
        assert not opener.is_alive()
    [err] = caught
    assert isinstance(err, StorageError)
    assert str(err) == (f"resume journal {path}: open failed: database is locked (another"
                        f" program kept it locked for over {schema.OPEN_WAIT:g} s)")
