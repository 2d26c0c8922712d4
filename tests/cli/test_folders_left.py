"""The folders a failed run leaves: none it made. An output folder given through a
folder that does not exist (``-o x/../afile/``, ``-o x/../y``) makes ``x`` on the way
(the nested mkdir); a run refused its output folder, or one whose files all failed,
removes it again, as it does the output folder itself, if it stayed empty. Folders
that were there before are left as they were. Run as the user runs it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)


def omniget_cli(*args: str) -> tuple[int, str]:
    """``python -m omniget ARGS`` in the current folder: (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "omniget", *args], env=env,
                          capture_output=True, timeout=120, check=False)
    return proc.returncode, proc.stderr.decode()


def tree() -> list[str]:
    """Every path under the current folder, sorted."""
    return sorted(str(p) for p in Path().rglob("*"))


@pytest.mark.parametrize("dry", [[], ["--dry-run"]], ids=["get", "dry-run"])
@pytest.mark.parametrize("given", ["./x/../afile/", "x/y/../../afile", "./x/../afile/sub"])
def test_a_refused_output_folder_leaves_no_folder_behind(
    httpd: HTTPServer, given: str, dry: list[str]
) -> None:
    url = httpd.add(httpd.new_path("f.bin"), b"data\n")
    Path("afile").write_bytes(b"mine")
    code, err = omniget_cli(*dry, "-o", given, url)
    assert code == 7, err
    assert "cannot create output folder afile" in err
    assert tree() == ["afile"] and Path("afile").read_bytes() == b"mine"
    assert httpd.requests == []


def test_a_failed_run_removes_the_folders_it_made_on_the_way(httpd: HTTPServer) -> None:
    """Its output folder ``y`` and ``x``, made only to reach it through ``x/..``."""
    url = httpd.url(httpd.new_path("gone.bin"))  # (404)
    code, err = omniget_cli("--retries", "0", "-o", "./x/../y/z", url)
    assert code != 0, err
    assert tree() == []


def test_folders_there_before_stay_and_those_made_with_files_in_them_stay(
    httpd: HTTPServer,
) -> None:
    Path("old/empty").mkdir(parents=True)
    url = httpd.url(httpd.new_path("gone.bin"))
    code, err = omniget_cli("--retries", "0", "-o", "old/empty/../new", url)
    assert code != 0, err
    assert tree() == ["old", "old/empty"]
    # (an empty folder there before, reached through one the run makes: it stays)
    code, err = omniget_cli("--retries", "0", "-o", "./x/../old/empty", url)
    assert code != 0, err
    assert tree() == ["old", "old/empty"]
    ok = httpd.add(httpd.new_path("f.bin"), b"data\n")
    code, err = omniget_cli("-o", "./x/../y", ok)
    assert code == 0, err
    # (x is empty, made only on the way: it goes too)
    assert tree() == ["old", "old/empty", "y", "y/f.bin"]
