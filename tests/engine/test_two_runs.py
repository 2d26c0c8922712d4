"""Two runs on one output folder at the same time (two omniget commands, or two
download() calls): each file is written by one of them, --on-exists holds between them as
it does for a file already there, and nothing is lost or mixed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.report import Report
from omniget.settings import Settings


@pytest.mark.parametrize("on_exists", ["skip", "rename", "overwrite"])
def test_a_file_another_run_finished_while_this_one_waited_for_its_answer(
    httpd: HTTPServer, tmp_path: Path, on_exists: str
) -> None:
    """This run found no x.bin and asked for it; another run wrote x.bin before the answer
    came. Before, this run then replaced it whatever --on-exists said (skip: the other
    run's file was lost under this one's bytes)."""
    asked, gate = threading.Event(), threading.Event()
    mine, theirs = b"this run's bytes" * 100, b"the other run's bytes" * 100

    def held(_req: object) -> tuple[int, dict[str, str], bytes]:
        asked.set()
        gate.wait(60)  # (the test sets it in its finally)
        return 200, {}, mine

    slow = httpd.handle("/a/x.bin", held)
    quick = httpd.add("/b/x.bin", theirs)  # (the same name)
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)  # type: ignore[arg-type]
    first: list[Report] = []
    runner = threading.Thread(target=lambda: first.append(download([slow], out, settings=settings)))
    runner.start()
    try:
        assert asked.wait(30)
        other = download([quick], out, settings=settings)
        assert other.ok == 1
    finally:
        gate.set()
        runner.join(10)
    [report] = first
    assert report.exit_code == 0, report.failures
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    if on_exists == "skip":
        assert got == {"x.bin": theirs}
        assert [(r.status, r.reason) for r in report.results] == [("skipped", "exists")]
    elif on_exists == "rename":
        assert got == {"x.bin": theirs, "x_1.bin": mine}
    else:
        assert got == {"x.bin": mine}
