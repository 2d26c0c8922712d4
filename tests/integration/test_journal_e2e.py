"""The CLI with its resume journal damaged, or its state folder made read-only, while it
downloads (see tests/engine/test_journal_mid_run.py for the engine's side): one warning
line, no traceback, the exit code of the files, and the next run has resume state."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration._cli import drop_mode_overrides, killed_when_done, omniget, start
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

from omniget.engine.journal import FILENAME

KiB = 1024
MiB = 1024 * KiB


def overwritten(state: Path) -> None:
    """The journal file overwritten, and the index of its log (-shm) too: whatever the
    run did last, its next call reads the file again, not pages it keeps in memory."""
    path = state / FILENAME
    db = sqlite3.connect(path, isolation_level=None)
    try:  # (what the log holds written into the file first, as SQLite does by itself)
        wait_for(lambda: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0)
    finally:
        db.close()
    for name in (FILENAME, f"{FILENAME}-shm"):
        size = (state / name).stat().st_size
        with open(state / name, "r+b") as f:
            f.write(b"garbage!" * (size // 8))


def files(httpd: HTTPServer, payload: Callable[..., bytes]) -> tuple[dict[str, bytes], list[str]]:
    """small.bin, held.bin (held half-way until ``httpd.release("h")``), later.bin."""
    data = {
        "small.bin": payload(50 * KiB, 61),
        "held.bin": payload(6 * MiB, 62),
        "later.bin": payload(300 * KiB, 63),
    }
    urls = [httpd.add(httpd.new_path(n), d) for n, d in data.items()]
    urls[1] += f"?hold=h&stall_after={3 * MiB}"  # (a checkpoint at 2 MiB before)
    return data, urls


def cut_then_resumed(httpd: HTTPServer, payload: Callable[..., bytes], out: Path,
                     state: Path, **kw: object) -> None:
    """A run cut off from a file, then one that resumes it: there is resume state."""
    data = payload(300 * KiB, 64)
    path = httpd.new_path("next.bin")
    url = httpd.add(path, data) + "?reset=100000&times=1"
    cut = omniget(url, "-o", str(out), "--retries", "0", "-q", state=state, **kw)
    assert cut.returncode == 3, cut.stderr
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    done = omniget(url, "-o", str(out), "-q", state=state, **kw)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (out / "next.bin").read_bytes() == data
    assert [r.header("range") for r in httpd.requests_to(path)] == ["bytes=100000-307199"]


def test_a_journal_damaged_while_the_cli_downloads_is_one_warning_and_exit_0(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Before: exit 7, held.bin failed ("checkpoint failed: file is not a database")."""
    data, urls = files(httpd, payload)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(*urls, "-o", str(out), "-j", "1", "--split", "1", state=state)
    try:
        assert httpd.held("h")
        wait_for(lambda: recorded(state) > 0)
        overwritten(state)
    finally:
        httpd.release("h")
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    [warning] = [ln for ln in text.splitlines() if "warning" in ln]
    [aside] = [n for n in os.listdir(state) if ".corrupt-" in n]
    assert warning == (
        f"omniget: warning: resume journal {state / FILENAME}: the file was damaged (file is"
        f" not a database); moved aside to {state / aside}; going on without resume state"
        " for the rest of the run")
    assert {p.name: p.read_bytes() == data[p.name] for p in out.iterdir()} == dict.fromkeys(
        data, True)
    cut_then_resumed(httpd, payload, out, state)


def test_a_state_folder_made_read_only_during_the_run_changes_nothing(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The journal and its -wal and -shm are open already: SQLite goes on writing them
    (only the -wal is left behind at the end, as it cannot be removed); the next run,
    the folder still read-only, opens them and has resume state."""
    kw: dict[str, object] = {}
    if os.geteuid() == 0:
        kw["preexec_fn"] = drop_mode_overrides
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            probe = subprocess.run(
                [sys.executable, "-c", f"open({str(locked / 'x')!r}, 'w')"],
                capture_output=True, **kw,  # type: ignore[call-overload]
            )
        except subprocess.SubprocessError:
            probe = None
        if probe is None or b"PermissionError" not in probe.stderr:
            pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
    data, urls = files(httpd, payload)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(*urls, "-o", str(out), "-j", "1", "--split", "1", state=state, **kw)
    try:
        assert httpd.held("h")
        wait_for(lambda: recorded(state) > 0)
        state.chmod(0o500)
    finally:
        httpd.release("h")
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "warning" not in text, text
    assert {p.name: p.read_bytes() == data[p.name] for p in out.iterdir()} == dict.fromkeys(
        data, True)
    cut_then_resumed(httpd, payload, out, state, **kw)


def test_a_state_folder_on_a_full_disk_is_said_to_be_full(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """SQLite says "disk I/O error" when its index (-shm) cannot be given room: the
    warning says the disk is full (before, only SQLite's words), the file still comes,
    and once there is room the journal is made and used."""
    import shutil

    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(state)], capture_output=True
    ).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        fill = state / "fill"
        fd = os.open(fill, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # (every block of it, whatever its size)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
            # (room for the journal's first pages, none for its index: SQLite's words
            # are then "disk I/O error")
            os.ftruncate(fd, os.fstat(fd).st_size - 12 * KiB)
        finally:
            os.close(fd)
        data = payload(100 * KiB, 65)
        url = httpd.add(httpd.new_path("full.bin"), data)
        res = omniget(url, "-o", str(tmp_path / "out"), state=state)
        assert res.returncode == 0, res.stderr
        [warning] = [ln for ln in res.stderr.splitlines() if "warning" in ln]
        assert "resume journal" in warning and "is full" in warning, warning
        assert (tmp_path / "out" / "full.bin").read_bytes() == data
        fill.unlink()
        cut_then_resumed(httpd, payload, tmp_path / "out", state)
    finally:
        subprocess.run(["umount", str(state)], capture_output=True)


@pytest.mark.parametrize("name", [FILENAME, f"{FILENAME}-wal"])
def test_a_fifo_at_a_journal_name_is_named_and_the_files_still_come(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, name: str
) -> None:
    """Never waited on; one warning names it (before: "disk I/O error", which sent the
    user to look at the disk); once it is gone, the journal is made and used."""
    data = payload(4 * MiB, 66)  # (a file this big has a record: the journal is written)
    url = httpd.add(httpd.new_path("f.bin"), data)
    out, state = tmp_path / "out", tmp_path / "state"
    if name != FILENAME:  # (a journal there: its -wal is read at the open, or written)
        assert omniget(httpd.add(httpd.new_path("x"), b"x"), "-o", str(tmp_path / "x"),
                       state=state).returncode == 0
    state.mkdir(exist_ok=True)
    os.mkfifo(state / name)
    res = omniget(url, "-o", str(out), state=state)
    assert res.returncode == 0, res.stderr
    [warning] = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert warning.startswith(f"omniget: warning: resume journal {state / FILENAME}: ")
    assert f"({name} is a FIFO, not a file)" in warning, warning
    assert "Traceback" not in res.stderr
    assert (out / "f.bin").read_bytes() == data
    with contextlib.suppress(FileNotFoundError):  # (SQLite removes a -wal at its close)
        os.unlink(state / name)
    cut_then_resumed(httpd, payload, out, state)


def test_a_relative_state_folder_after_a_cd_is_named_when_a_part_file_starts_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """``--state-dir st`` names a folder of the current one: after a ``cd`` it is another
    folder, without the killed run's record, and the part file starts over (its bytes
    are not known to be this file's). Before, the warning said "in this state folder",
    leaving the user to guess which; it names it now."""
    data = payload(6 * MiB, 67)
    path = httpd.new_path("r.bin")
    httpd.add(path, data)
    url = httpd.url(path, hold="h", stall_after=3 * MiB, times=1, k="r")
    out, first, then = tmp_path / "out", tmp_path / "a", tmp_path / "b"
    first.mkdir()
    then.mkdir()
    args = (url, "-o", str(out), "--state-dir", "st", "-N", "1", "--split", "1")
    with killed_when_done(start(*args, state=tmp_path / "unused", cwd=first),
                          lambda: httpd.release("h")):
        assert httpd.held("h")
        wait_for(lambda: recorded(first / "st") > 0)
    res = omniget(*args, state=tmp_path / "unused", cwd=then)
    assert res.returncode == 0, res.stderr
    [warning] = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert warning == (f"omniget: warning: {out / 'r.bin'}: its part file had no resume record"
                       f" in the state folder {then / 'st'}; starting over")
    assert (out / "r.bin").read_bytes() == data


def test_a_journal_log_removed_during_a_run_then_a_kill_leaves_resume_state(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The journal's -wal and -shm removed by hand while the CLI downloads (the journal
    file left): before, the run went on writing into the removed log, where every record
    since the last copy into the file was (all of them, as a rule), and the rerun after
    a kill started over. The run makes the journal again at its next write."""
    data = payload(24 * MiB, 68)
    path = httpd.new_path("log.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(url, "-o", str(out), "--split", "1", "--limit-rate", "4M", state=state)
    try:
        wait_for(lambda: recorded(state) >= 1 * MiB)
        for name in ("-wal", "-shm"):
            os.unlink(state / f"{FILENAME}{name}")
        wait_for(lambda: recorded(state) > 1 * MiB)  # (made again, with the run's records)
        again = recorded(state)
        wait_for(lambda: recorded(state) > again)  # (a later write: the warning is out)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (f"resume journal {state / FILENAME}: its -wal or -shm was removed during the run;"
            " made again with this run's records") in err.decode(), err
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    done = omniget(url, "-o", str(out), "-q", state=state)
    assert done.returncode == 0, done.stderr
    assert (out / "log.bin").read_bytes() == data
    [asked] = [r.header("range") for r in httpd.requests_to(path) if r.method == "GET"]
    assert asked is not None and int(asked.split("=")[1].split("-")[0]) >= again
