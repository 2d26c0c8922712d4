"""A part file's temporary (``NAME.omniget-part-PID``, made when a part file is started
over) that a killed run left behind: a later run on NAME removes it once its process is
gone, never while that process runs, and skipping NAME is not bothered by it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.assemble import PartFile
from omniget.settings import Settings

KiB = 1024


def dead_pid() -> int:
    """The PID of a process that has finished (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The PID of a process running for the test's length."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        yield child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()


@pytest.mark.parametrize("fresh", [True, False])
def test_opening_a_part_file_removes_its_dead_runs_temporaries(
    tmp_path: Path, live_pid: int, fresh: bool
) -> None:
    final = tmp_path / "f.bin"
    (tmp_path / "f.bin.omniget-part").write_bytes(b"x" * 100)
    gone, live = dead_pid(), live_pid
    for pid in (gone, live):
        (tmp_path / f"f.bin.omniget-part-{pid}").write_bytes(b"")
    (tmp_path / f"g.bin.omniget-part-{gone}").write_bytes(b"")  # (another name's)

    part = PartFile(final, fresh=fresh)  # (started over, or resumed)
    part.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["f.bin.omniget-part", f"f.bin.omniget-part-{live}", f"g.bin.omniget-part-{gone}"]
    )


def test_a_later_run_on_the_name_removes_the_leftover(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, live_pid: int
) -> None:
    """Before: the leftover stayed for ever, as no run looked at it."""
    data = payload(200 * KiB, 91)
    path = httpd.new_path("left.bin")
    httpd.add(path, data)
    out = tmp_path / "out"
    out.mkdir()
    (out / "left.bin.omniget-part").write_bytes(b"x" * 1000)  # (the killed run's part)
    gone = dead_pid()
    (out / f"left.bin.omniget-part-{gone}").write_bytes(b"")
    (out / f"left.bin.omniget-part-{live_pid}").write_bytes(b"")  # (a live run's)

    report = download([httpd.url(path)], out, settings=Settings(state_dir=tmp_path / "state"))

    assert report.exit_code == 0, report.failures
    assert (out / "left.bin").read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == [
        "left.bin", f"left.bin.omniget-part-{live_pid}"
    ]


@pytest.mark.parametrize("on_exists", ["skip", "rename"])
def test_a_leftover_beside_a_finished_file_does_not_bother_a_rerun(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    on_exists: Literal["skip", "rename"],
) -> None:
    data = payload(50 * KiB, 92)
    path = httpd.new_path("done.bin")
    httpd.add(path, data)
    out = tmp_path / "out"
    out.mkdir()
    (out / "done.bin").write_bytes(data)
    leftover = out / f"done.bin.omniget-part-{dead_pid()}"
    leftover.write_bytes(b"")

    report = download(
        [httpd.url(path)], out,
        settings=Settings(state_dir=tmp_path / "state", on_exists=on_exists),
    )

    assert report.exit_code == 0, report.failures
    if on_exists == "skip":
        assert [(r.status, r.reason) for r in report.results] == [("skipped", "exists")]
    else:
        assert [r.status for r in report.results] == ["ok"]
        assert (out / "done_1.bin").read_bytes() == data
    assert (out / "done.bin").read_bytes() == data


@pytest.mark.parametrize(
    "stem", ["a" * 236, "é" * 118, "😀" * 59], ids=["ascii", "2-byte", "4-byte"]
)
def test_a_part_file_of_the_longest_name_is_started_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, live_pid: int, stem: str
) -> None:
    """A name of the longest length names keep (240 bytes) leaves no room for the
    temporary's ``-PID`` after its part file's name (253 bytes); the temporary's name is
    cut instead. Before: "File name too long while creating ...", on every run, for a
    part file with no record here (another state folder), or whose file changed."""
    name = stem + ".bin"
    assert len(name.encode()) == 240
    data = payload(100 * KiB, 93)
    path = httpd.new_path("long.bin")
    httpd.add(path, data)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{name}.omniget-part").write_bytes(b"x" * 1000)  # (another state folder's)
    cut = name.encode()[:231].decode(errors="ignore") + ".omniget-part"  # (whole characters)
    gone = dead_pid()
    (out / f"{cut}-{gone}").write_bytes(b"")  # (a temporary a killed run left)
    (out / f"{cut}-{live_pid}").write_bytes(b"")  # (a live run's)

    from omniget import Item

    report = download([Item(httpd.url(path), filename=name)], out,
                      settings=Settings(state_dir=tmp_path / "state"))

    assert report.exit_code == 0, report.failures
    assert (out / name).read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == sorted([name, f"{cut}-{live_pid}"])
