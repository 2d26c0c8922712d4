"""The resume journal damaged while a run has it open (after a clean open): overwritten,
cut short, emptied, removed, or its disk full, with one file finished, one half-way and
one not started. The finished file stays as it is, the others finish without resume
state (one warning says so), the run ends 0 without a traceback, and the next run has
resume state again (a damaged file moved aside, see journal/repair.py).

Before, a damaged journal failed every file under way at its next journal write (exit
7), even one already in place whose record could not be dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.core import Engine
from omniget.engine.events import Event, Warned
from omniget.engine.journal import FILENAME, Journal, Owner, handle, repair, schema
from omniget.engine.journal.opening import guard
from omniget.engine.report import Report
from omniget.errors import StorageError
from omniget.model import Item
from omniget.settings import Settings

KiB = 1024
HALF = 512 * KiB
OFF = "; going on without resume state for the rest of the run"


def checkpointed_out(path: Path) -> None:
    """Everything in the log written into the journal file: the run's next call reads
    the file, not pages it has in memory or in the log (as after SQLite's own
    checkpoint), so it meets what a test does to the file next."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        wait_for(lambda: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0)
    finally:
        db.close()


def overwritten(state: Path) -> None:
    path = state / FILENAME
    with open(path, "r+b") as f:
        f.write(b"garbage!" * (path.stat().st_size // 8))


def cut_short(state: Path) -> None:
    path = state / FILENAME
    os.truncate(path, path.stat().st_size // 2)


def emptied(state: Path) -> None:
    os.truncate(state / FILENAME, 0)


DAMAGE = {"overwritten": overwritten, "cut short": cut_short, "emptied": emptied}


class Run:
    """A run of three files into ``out``: small.bin (done before anything happens),
    held.bin (held half-way by the server until :meth:`finish`) and later.bin (started
    once held.bin is done: ``jobs=1``)."""

    def __init__(
        self, httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, state: Path
    ) -> None:
        self.httpd, self.state, self.out = httpd, state, tmp_path / "out"
        self.data = {
            "small.bin": payload(50 * KiB, 91),
            "held.bin": payload(1024 * KiB, 92),
            "later.bin": payload(300 * KiB, 93),
        }
        self.urls = [httpd.add(httpd.new_path(n), d) for n, d in self.data.items()]
        self.urls[1] += f"?hold=h&stall_after={HALF}"
        # (every byte in recorded at once, and no sync recorded later: once the half
        # before the hold is recorded, the run leaves the journal alone until it goes on)
        self.settings = Settings(
            state_dir=state, jobs=1, split=1, retries=0, checkpoint_bytes=1,
            fsync_seconds=3600.0,
        )
        self.reports: list[Report] = []
        self.thread = threading.Thread(target=self._go)

    def _go(self) -> None:
        self.reports.append(download(self.urls, self.out, settings=self.settings))

    def start(self) -> None:
        """Start it, and wait until held.bin is held half-way, recorded in the journal."""
        self.thread.start()
        assert self.httpd.held("h")
        wait_for(lambda: recorded(self.state) == HALF)
        wait_for(lambda: (self.out / "small.bin").exists())

    def finish(self) -> Report:
        self.httpd.release("h")
        self.thread.join(60)
        [report] = self.reports
        return report

    def damage(self, how: Callable[[Path], None] = overwritten) -> None:
        """Damage the journal where the run reads it next (its log written in first)."""
        checkpointed_out(self.state / FILENAME)
        how(self.state)

    def finish_whole(self) -> Report:
        """Let it go on: it ends 0, every file whole."""
        report = self.finish()
        assert report.exit_code == 0, report.failures
        assert self.files() == {"small.bin": True, "held.bin": True, "later.bin": True}
        return report

    def files(self) -> dict[str, bool]:
        """The output folder's files, and whether each has the bytes it should."""
        return {p.name: p.read_bytes() == self.data.get(p.name) for p in self.out.iterdir()}


def moved_aside(state: Path) -> list[str]:
    """The damaged journals moved aside in ``state`` (not their -wal and -shm)."""
    return sorted(n for n in os.listdir(state)
                  if ".corrupt-" in n and not n.endswith(("-wal", "-shm")))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def next_run_resumes(httpd: HTTPServer, payload: Callable[..., bytes], run: Run) -> None:
    """The next run skips the run's files and has resume state: a file it is cut off
    from is resumed by the run after."""
    resumes(httpd, payload, run.out, run.settings, run.urls)


def left_then_moved(
    httpd: HTTPServer, payload: Callable[..., bytes], run: Run, caplog: pytest.LogCaptureFixture
) -> str:
    """The damaged journal was left where it is: the next run moves it aside, with one
    warning (returned), and has resume state."""
    assert sorted(os.listdir(run.state)) == [FILENAME]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omniget"):
        next_run_resumes(httpd, payload, run)
    [warning] = warnings(caplog)
    assert " moved aside to " in warning
    return warning


def resumes(httpd: HTTPServer, payload: Callable[..., bytes], out: Path, settings: Settings,
            done: list[str]) -> None:
    """A run skips ``done`` (in ``out``) and has resume state."""
    data = payload(300 * KiB, 94)
    path = httpd.new_path("next.bin")
    url = httpd.add(path, data) + "?reset=100000&times=1"
    again = download([*done, url], out, settings=settings)
    assert [r.status for r in again.results] == ["skipped"] * len(done) + ["failed"]
    assert again.journal_error is None
    httpd.clear_log()
    last = download([url], out, settings=settings)
    assert last.ok == 1 and (out / "next.bin").read_bytes() == data
    assert [r.header("range") for r in httpd.requests_to(path)] == ["bytes=100000-307199"]


def four_runs(
    go: Callable[[], Coroutine[Any, Any, list[Report]]], caplog: pytest.LogCaptureFixture
) -> None:
    """``go``'s four runs of one engine, warnings captured: the first one whole, the one
    that found the journal damaged whole (and said so), a cut one failed, and its rerun
    whole, both with a journal again."""
    with caplog.at_level(logging.WARNING, logger="omniget"):
        first, damaged, cut, resumed = asyncio.run(go())
    assert (first.ok, damaged.ok, cut.failed, resumed.ok) == (1, 1, 1, 1)
    assert damaged.journal_error is not None
    assert cut.journal_error is None and resumed.journal_error is None


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_journal_damaged_during_the_run_is_moved_aside_and_the_files_go_on(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, damage: str,
) -> None:
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        run.damage(DAMAGE[damage])
        damaged = (state / FILENAME).read_bytes()
        report = run.finish_whole()
    [aside] = [n for n in os.listdir(state) if ".corrupt-" in n]
    assert (state / aside).read_bytes()[: len(damaged) // 2] == damaged[: len(damaged) // 2]
    [warning] = warnings(caplog)
    assert warning.startswith(f"resume journal {state / FILENAME}: the file was damaged (")
    assert warning.endswith(f"); moved aside to {state / aside}{OFF}")
    assert report.journal_error is not None
    caplog.clear()
    next_run_resumes(httpd, payload, run)
    assert warnings(caplog) == []  # (nothing left to repair)


def test_a_journal_removed_during_the_run_is_made_again_with_its_records(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(As before: a removed file is no damage, and resume state goes on.)"""
    monkeypatch.setattr(handle, "CHECK_EVERY", 0.0)  # (looked for at every write)
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        for name in (FILENAME, f"{FILENAME}-wal", f"{FILENAME}-shm"):
            os.unlink(state / name)
        report = run.finish_whole()
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: it was removed during the run; made again with"
        " this run's records"]
    assert report.journal_error is None
    next_run_resumes(httpd, payload, run)


def test_a_damaged_journal_that_cannot_be_moved_aside_is_moved_by_the_next_run(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)

    def not_mine(path: Path, now: float) -> Path:
        raise PermissionError(f"{path.name} is another user's (uid 65534)")

    with monkeypatch.context() as patched, caplog.at_level(logging.WARNING, logger="omniget"):
        patched.setattr(repair, "move_aside", not_mine)
        run.start()
        run.damage()
        run.finish_whole()
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: the file was damaged (file is not a database);"
        f" it could not be moved aside: {FILENAME} is another user's (uid 65534) (it is left"
        " there: each run tries again, or delete it; the downloads it could have resumed"
        f" start over){OFF}"]
    warning = left_then_moved(httpd, payload, run, caplog)
    [aside] = [n for n in os.listdir(state) if ".corrupt-" in n]
    assert warning.startswith(f"resume journal {state / FILENAME}: the file was damaged"
                              f" (file is not a database); moved aside to {state / aside} ")


def test_a_damaged_journal_another_run_replaced_meanwhile_is_left_to_it(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another run found the file damaged first (at its open), moved it aside and made a
    new one: this run's warning says so, and neither moves that one aside nor tells the
    user to delete it (before: "the file is damaged: delete it ...", of the new one)."""
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        run.damage()
        with Journal.in_dir(state) as other:  # (the other run)
            other.start("theirs", path="/out/theirs", url="https://h/theirs", size=1,
                        etag=None, last_modified=None)
        [aside] = moved_aside(state)
        caplog.clear()
        run.finish_whole()
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: the file was damaged (file is not a database);"
        f" it is not there any more (another omniget run moved it aside, or it was removed){OFF}"]
    assert moved_aside(state) == [aside]
    with Journal.in_dir(state) as j:
        assert j.get("theirs") is not None


def test_a_damaged_journal_whose_folder_another_run_keeps_locked_is_left_to_it(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(That run is moving it aside, as a rule: the file there may be its new journal by
    the time the user reads the warning, and is not to be deleted.)"""
    import fcntl

    monkeypatch.setattr(repair, "BUSY_WAIT", 0.05)
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        run.damage()
        fd = os.open(state, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            run.finish_whole()
        finally:
            os.close(fd)
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: the file was damaged (file is not a database);"
        " it could not be moved aside: another omniget run kept its folder locked (the next"
        f" run tries again){OFF}"]
    left_then_moved(httpd, payload, run, caplog)


def test_an_engine_makes_a_new_journal_for_its_next_run_once_one_moved_it_aside(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One engine, several runs (a program embedding omniget): the journal is found
    damaged by a run's first read. That run goes on without resume state; the next one
    has it again."""
    state, out = tmp_path / "state", tmp_path / "out"
    data = [payload(100 * KiB, 95 + i) for i in range(3)]
    paths = [httpd.new_path(f"f{i}.bin") for i in range(3)]
    urls = [httpd.add(p, d) for p, d in zip(paths, data, strict=True)]
    urls[2] += "?reset=50000&times=1"
    settings = Settings(state_dir=state, retries=0)

    async def go() -> list[Report]:
        engine = Engine(settings)
        try:
            reports = [await engine.run([Item(urls[0])], out)]
            checkpointed_out(state / FILENAME)  # (the engine holds it open between runs)
            overwritten(state)
            for url in urls[1:] + urls[2:]:
                reports.append(await engine.run([Item(url)], out))
            return reports
        finally:
            await engine.aclose()

    four_runs(go, caplog)
    [aside] = [n for n in os.listdir(state) if ".corrupt-" in n]
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: the file was damaged (file is not a database);"
        f" moved aside to {state / aside}{OFF}"]
    assert [(out / f"f{i}.bin").read_bytes() == d for i, d in enumerate(data)] == [True] * 3
    ranges = [r.header("range") for r in httpd.requests_to(paths[2])]
    assert ranges[-1] == "bytes=50000-102399"


def test_an_engine_given_a_journal_makes_a_new_one_at_its_path_once_one_moved_it_aside(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As for an engine's own journal; the caller's stays closed (it is the damaged
    file's), the new one is the engine's, closed by aclose. Before, every later run on
    that engine warned ("read failed: it was found damaged and moved aside") and went
    without resume state."""
    state, out = tmp_path / "state", tmp_path / "out"
    data = [payload(100 * KiB, 95 + i) for i in range(3)]
    paths = [httpd.new_path(f"f{i}.bin") for i in range(3)]
    urls = [httpd.add(p, d) for p, d in zip(paths, data, strict=True)]
    urls[2] += "?reset=50000&times=1"
    given = Journal(state / "mine.sqlite", now=lambda: 1_800_000_000.0, boot="b1")
    engine = Engine(Settings(retries=0), journal=given)

    async def go() -> list[Report]:
        try:
            reports = [await engine.run([Item(urls[0])], out)]
            checkpointed_out(given.path)
            with open(given.path, "r+b") as f:
                f.write(b"garbage!" * (given.path.stat().st_size // 8))
            for url in urls[1:]:
                reports.append(await engine.run([Item(url)], out))
            with Journal(given.path) as j:  # (the cut file's record: the given one's clock)
                [key] = j.keys("")
                record = j.get(key)
                assert record is not None and record.updated == 1_800_000_000.0
            reports.append(await engine.run([Item(urls[2])], out))
            return reports
        finally:
            await engine.aclose()

    four_runs(go, caplog)
    [aside] = moved_aside(state)
    assert warnings(caplog) == [
        f"resume journal {given.path}: the file was damaged (file is not a database);"
        f" moved aside to {state / aside}{OFF}"]
    ranges = [r.header("range") for r in httpd.requests_to(paths[2])]
    assert ranges[-1] == "bytes=50000-102399"
    assert given.closed
    given.close()  # (the caller's to close: nothing to do)


def test_damage_the_open_does_not_read_is_found_by_the_run_and_moved_aside(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A page of an earlier run's records damaged (the open reads none of them): the run's
    first look through the unfinished records finds it; that run goes on without resume state, and
    the next one has a new journal."""
    state, out = tmp_path / "state", tmp_path / "out"
    with Journal.in_dir(state) as j:
        for n in range(2000):
            j.start(f"/elsewhere\0old{n:05}", path=f"/elsewhere/old{n}", size=1, etag=None,
                    url=f"https://h/old-{n:05}-marker", last_modified=None, part=n + 1)
        page = j._db.execute("PRAGMA page_size").fetchone()[0]  # type: ignore[union-attr]
    path = state / FILENAME
    # (among the first FEW the run reads: unfinished, their part files known)
    at = path.read_bytes().index(b"https://h/old-00500-marker") // page * page
    with open(path, "r+b") as f:  # (a page of the records, in the middle)
        f.seek(at)
        f.write(b"garbage!" * (page // 8))
    data = payload(100 * KiB, 96)
    url = httpd.add(httpd.new_path("f.bin"), data)
    settings = Settings(state_dir=state, retries=0)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        report = download([url], out, settings=settings)
    assert report.exit_code == 0, report.failures
    assert (out / "f.bin").read_bytes() == data
    [aside] = [n for n in os.listdir(state) if ".corrupt-" in n]
    [warning] = warnings(caplog)
    assert warning == (
        f"resume journal {path}: the file was damaged (database disk image is malformed);"
        f" moved aside to {state / aside}{OFF}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omniget"):
        resumes(httpd, payload, out, settings, [url])
    assert warnings(caplog) == []


def test_a_journal_another_run_moved_aside_gets_this_runs_records_at_its_end(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run B finds the journal damaged at its open (a schema version no omniget wrote,
    which this run, holding the file open, never reads again), moves it aside and makes
    a new one while this run is held. This run's writes go on into the file moved aside
    until it next looks for its journal (at most once a second; here not again in the
    run): at its end, they are copied into B's journal, B's own records left as they are.
    So the file this run was cut off from is resumed by the next run, as is B's. Before,
    they stayed in the file moved aside, which no run reads: the part file was started
    over ("no resume record")."""
    monkeypatch.setattr(handle, "CHECK_EVERY", 3600.0)
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    run.urls[2] += "?reset=100000&times=1"
    later = urlsplit(run.urls[2]).path
    theirs = payload(300 * KiB, 98)
    path = httpd.new_path("theirs.bin")
    url = httpd.add(path, theirs) + "?reset=50000&times=1"
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        with contextlib.closing(sqlite3.connect(state / FILENAME)) as db:
            db.execute("UPDATE schema_version SET version = 'x'")
            db.commit()
        b = download([url], tmp_path / "b", settings=run.settings)
        assert b.failed == 1
        [aside] = moved_aside(state)
        report = run.finish()
    assert [r.status for r in report.results] == ["ok", "ok", "failed"]
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: the file was damaged (malformed schema version"
        f" 'x'); moved aside to {state / aside} and a new one made (downloads its records"
        " could have resumed start over)",
        f"resume journal {state / FILENAME}: another omniget run replaced it during this run"
        " (it found it damaged, or its -wal or -shm removed, say); this run's records are"
        " copied into the new one"]
    httpd.clear_log()
    again = download(run.urls, run.out, settings=run.settings)
    assert [r.status for r in again.results] == ["skipped", "skipped", "ok"], again.failures
    assert run.files() == {"small.bin": True, "held.bin": True, "later.bin": True}
    assert [r.header("range") for r in httpd.requests_to(later)] == ["bytes=100000-307199"]
    assert download([url], tmp_path / "b", settings=run.settings).ok == 1
    assert [r.header("range") for r in httpd.requests_to(path)] == ["bytes=50000-307199"]


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[None]:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill ``folder``'s disk up; the file that takes the room."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\0" * 4096):
            pass
    os.close(fd)
    return filler


def test_a_state_disk_that_fills_up_during_the_run_leaves_the_files_going_on(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The state folder's disk only (the output's has room). Nothing is damaged: the
    journal keeps what it had, and has room again for the next run."""
    small = tmp_path / "small"
    with tmpfs(small, "512k"):
        state = small / "state"
        run = Run(httpd, payload, tmp_path, state)
        with caplog.at_level(logging.WARNING, logger="omniget"):
            run.start()
            checkpointed_out(state / FILENAME)  # (its log takes no room now)
            filler = fill(small)
            report = run.finish()
        assert report.exit_code == 0, report.failures
        assert run.files() == {"small.bin": True, "held.bin": True, "later.bin": True}
        assert warnings(caplog) == [
            f"resume journal {state / FILENAME}: checkpoint failed: database or disk is full"
            f"{OFF}"]
        assert sorted(n for n in os.listdir(state) if "corrupt" in n) == []
        filler.unlink()
        caplog.clear()
        next_run_resumes(httpd, payload, run)
        assert warnings(caplog) == []


def test_a_journal_another_program_keeps_locked_holds_no_transfer_up(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An sqlite3 shell left in a write transaction on the journal while a run writes:
    the files go on and come whole while it holds the lock, the run's writes wait for
    it off the event loop, and reach the journal once it lets go (the run's end waits
    for that, BUSY_WAIT at most); nothing is said, and the next run has resume state.
    Before, the run's next write stalled the event loop (every transfer) for BUSY_WAIT,
    then failed, and the run went on without resume state."""
    monkeypatch.setattr(schema, "BUSY_WAIT", 600.0)  # (a stall would outlast wait_for)
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        other = sqlite3.connect(state / FILENAME, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            httpd.release("h")
            wait_for(lambda: all(run.files().values()) and len(run.files()) == 3)
        finally:
            other.close()  # (its transaction rolled back)
        run.thread.join(60)
    [report] = run.reports
    assert report.exit_code == 0, report.failures
    assert report.journal_error is None
    assert warnings(caplog) == []
    assert recorded(state) == 0  # (the finished files' records dropped, once let go)
    next_run_resumes(httpd, payload, run)
    assert warnings(caplog) == []


def test_a_journal_whose_log_is_removed_on_a_full_disk_keeps_its_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its -wal and -shm removed by hand, and no room to make the journal again: the
    journal file stays as it was, with the records it holds (another download's), and
    the run goes on with the removed log, which SQLite copies into the file at the close
    (once there is room). Removed first, and then not made again, it lost them."""
    monkeypatch.setattr(handle, "CHECK_EVERY", 0.0)
    small = tmp_path / "small"
    with tmpfs(small, "512k"):
        state = small / "state"
        j = Journal.in_dir(state)
        try:
            j.start("other", path="/o", url="u", size=None, etag=None, last_modified=None)
            j.save_spans("other", [(0, 50)])
            checkpointed_out(state / FILENAME)  # (in the file itself)
            j.start("a", path="/a", url="u", size=None, etag=None, last_modified=None)
            for name in ("-wal", "-shm"):
                os.unlink(state / f"{FILENAME}{name}")
            filler = fill(small)
            with caplog.at_level(logging.WARNING, logger="omniget"), pytest.raises(
                StorageError, match="database or disk is full"
            ):
                j.save_spans("a", [(0, 100)])  # (no room for it either)
            [warning] = warnings(caplog)
            assert "its -wal or -shm was removed during the run, and it cannot be made" \
                " again" in warning, warning
            assert sorted(os.listdir(state)) == [FILENAME]
            filler.unlink()
        finally:
            j.close()  # (its log copied into the file, now that there is room)
        with Journal.in_dir(state) as again:
            assert again.spans("other") == [(0, 50)]
            assert again.get("a") is not None


class ForgottenMeanwhile(Journal):
    """A journal in which another run drops a file's record just before this run marks it
    done (as one finishing the same file under another name does, or one that found its
    own copy wrong)."""

    def finish(self, key: str, *, size: int, digest: str | None, path: str | None = None,
               own: Owner | None = None) -> None:
        with Journal(self.path) as other:
            other.forget(key)
        super().finish(key, size=size, digest=digest, path=path, own=own)


def test_a_record_gone_once_its_file_is_in_place_leaves_that_file_finished(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The file is renamed into place, whole and checked, before its record is marked
    done (a server-chosen name is remembered so): the record gone then changes nothing
    of the file. Before, it was reported failed, exit 7 ("the resume record went away")."""
    state, out = tmp_path / "state", tmp_path / "out"
    data = payload(200 * KiB, 97)
    url = httpd.add(httpd.new_path("f.bin"), data,
                    headers={"Content-Disposition": 'attachment; filename="named.bin"'})
    journal = ForgottenMeanwhile(state / FILENAME)
    events: list[object] = []

    async def go() -> Report:
        engine = Engine(Settings(state_dir=state, retries=0), journal=journal)
        try:
            return await engine.run([Item(url, name_from_server=True)], out,
                                    on_event=events.append)
        finally:
            await engine.aclose()

    with caplog.at_level(logging.WARNING, logger="omniget"):
        report = asyncio.run(go())
    journal.close()
    assert report.exit_code == 0, report.failures
    [result] = report.results
    assert (result.status, result.path, result.size) == ("ok", out / "named.bin", len(data))
    assert os.listdir(out) == ["named.bin"] and (out / "named.bin").read_bytes() == data
    assert [type(e).__name__ for e in events if type(e).__name__ in ("Finished", "Failed")] == [
        "Finished"]
    assert warnings(caplog) == []
    assert report.journal_error is None


def test_a_file_finished_after_the_journal_went_off_is_skipped_by_the_next_run(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state disk full from held.bin's second half on: held.bin finishes, and its
    record, which nothing can drop then, stays unfinished (until the prune of records not
    written for 90 days whose files are gone). Its part file went into place with it, so
    the next run neither resumes into the file nor fetches it again: it skips it as
    complete, and says nothing of it. Once the file is deleted, a run fetches it whole,
    not from the record's half (and drops the record)."""
    full = threading.Event()
    plain = Journal._write

    def no_room(self: Journal, action: str, write: Any, *keys: str, **kw: bool) -> None:
        if full.is_set():  # (as SQLite says it; reads still work)
            with guard(self.path, action):
                raise sqlite3.OperationalError("database or disk is full")
        plain(self, action, write, *keys, **kw)

    monkeypatch.setattr(Journal, "_write", no_room)
    state = tmp_path / "state"
    run = Run(httpd, payload, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="omniget"):
        run.start()
        full.set()
        report = run.finish()
        full.clear()
    assert report.exit_code == 0, report.failures
    assert warnings(caplog) == [
        f"resume journal {state / FILENAME}: checkpoint failed: database or disk is full{OFF}"]
    assert run.files() == {"small.bin": True, "held.bin": True, "later.bin": True}
    with Journal.in_dir(state) as j:
        [(key, _)] = j.unfinished()
        record = j.get(key)
    assert record is not None and record.path == str(run.out / "held.bin")
    assert recorded(state) == HALF
    held_path = urlsplit(run.urls[1]).path

    httpd.clear_log()
    events: list[Event] = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omniget"):
        again = download(run.urls, run.out, settings=run.settings, on_event=events.append)
    assert [(r.status, r.reason) for r in again.results] == [("skipped", "exists")] * 3
    assert httpd.requests_to(held_path) == []
    assert run.files() == {"small.bin": True, "held.bin": True, "later.bin": True}
    assert [e for e in events if isinstance(e, Warned)] == [] and warnings(caplog) == []

    (run.out / "held.bin").unlink()
    with caplog.at_level(logging.WARNING, logger="omniget"):
        last = download(run.urls, run.out, settings=run.settings, on_event=events.append)
    assert [r.status for r in last.results] == ["skipped", "ok", "skipped"]
    assert [r.header("range") for r in httpd.requests_to(held_path)] == [None]
    assert run.files() == {"small.bin": True, "held.bin": True, "later.bin": True}
    assert [e for e in events if isinstance(e, Warned)] == [] and warnings(caplog) == []
    assert recorded(state) == 0
