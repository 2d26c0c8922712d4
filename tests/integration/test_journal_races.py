"""Other omniget processes on a file one of them is writing: with another state folder,
with --on-exists overwrite or rename, then the writer killed (SIGKILL) and run again.
Each ends with the right bytes or one line saying why not, never a spliced file (see
tests/integration/test_cli_e2e.py::test_a_second_run_on_the_same_file_stops_clearly for
a second run with the same state folder and mode)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration._cli import killed_when_done, omniget, start
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

MiB = 1 << 20


def test_other_runs_on_a_file_being_written_then_its_writer_killed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(6 * MiB, 71)
    path = httpd.new_path("data.bin")
    httpd.add(path, data)
    # (its first answer held after 3 MiB, a checkpoint at 2 MiB before; the others not)
    url = httpd.url(path, hold="h", stall_after=3 * MiB, times=1, k="data")
    out, state, other = tmp_path / "out", tmp_path / "state", tmp_path / "other"
    writer = start(url, "-o", str(out), "-N", "1", "--split", "1", state=state)
    with killed_when_done(writer, lambda: httpd.release("h")):
        assert httpd.held("h")
        wait_for(lambda: recorded(state) > 0)
        runs = {
            "other state folder": omniget(url, "-o", str(out), state=other),
            **{mode: omniget(url, "-o", str(out), "--on-exists", mode, state=state)
               for mode in ("overwrite", "rename")},  # (no file at its name: none to rename)
        }
        for what, run in runs.items():
            assert run.returncode == 7, (what, run.stderr)
            [line] = [ln for ln in run.stderr.splitlines() if "error" in ln]
            assert line == (f"omniget: error: {out / 'data.bin'} is being downloaded"
                            " by another omniget run in the same folder; run again once it is"
                            " done"), what
        had = recorded(state)
    assert os.listdir(out) == ["data.bin.omniget-part"]
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    rerun = omniget(url, "-o", str(out), "-q", state=state)
    assert rerun.returncode == 0 and rerun.stderr == "", rerun.stderr
    assert (out / "data.bin").read_bytes() == data
    assert os.listdir(out) == ["data.bin"]
    [asked] = [r.header("range") for r in httpd.requests_to(path) if r.method == "GET"]
    assert asked is not None and int(asked.split("=")[1].split("-")[0]) >= had > 0


@pytest.mark.parametrize("rename", [False, True], ids=["skip", "skip-and-rename"])
def test_runs_on_a_file_an_overwrite_is_replacing_then_the_overwrite_killed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, rename: bool
) -> None:
    """The file is there: a run skips it (the old file, whole, is what is there), one
    with rename saves the new one beside it; the overwrite killed leaves the old file in
    place, and its rerun gets the new one: resumed, unless the rename took the download's
    resume record (a record is a download's, not a name's: see journal/__init__.py)."""
    old, data = payload(1 * MiB, 72), payload(6 * MiB, 73)
    path = httpd.new_path("data.bin")
    httpd.add(path, data)
    url = httpd.url(path, hold="h", stall_after=3 * MiB, times=1, k="data")
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    (out / "data.bin").write_bytes(old)
    writer = start(url, "-o", str(out), "-N", "1", "--split", "1", "--on-exists",
                   "overwrite", state=state)
    with killed_when_done(writer, lambda: httpd.release("h")):
        assert httpd.held("h")
        wait_for(lambda: recorded(state) > 0)
        skipped = omniget(url, "-o", str(out), state=state)
        assert skipped.returncode == 0, skipped.stderr
        assert "skipped" in skipped.stderr and "error" not in skipped.stderr, skipped.stderr
        if rename:
            renamed = omniget(url, "-o", str(out), "--on-exists", "rename", "-q", state=state)
            assert renamed.returncode == 0 and renamed.stderr == "", renamed.stderr
            assert (out / "data_1.bin").read_bytes() == data
        had = recorded(state)
    assert (out / "data.bin").read_bytes() == old
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    rerun = omniget(url, "-o", str(out), "--on-exists", "overwrite", "-q", state=state)
    assert rerun.returncode == 0 and rerun.stderr == "", rerun.stderr
    assert (out / "data.bin").read_bytes() == data
    assert sorted(os.listdir(out)) == ["data.bin", *(["data_1.bin"] if rename else [])]
    if not rename:
        [asked] = [r.header("range") for r in httpd.requests_to(path) if r.method == "GET"]
        assert asked is not None and int(asked.split("=")[1].split("-")[0]) >= had > 0
