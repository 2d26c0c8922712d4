"""``list`` and ``--dry-run`` say what the download would: the items ``--include`` and
``--exclude`` leave out, a password asked only where a request is made, an output folder
the system will not make. Run as a user runs them (a subprocess, the local test server)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.integration._cli import drop_mode_overrides
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
ENV = {"PYTHONPATH": SRC, "NO_COLOR": "1"}


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``python -m omniget ARGS`` in the test's folder and environment (see conftest)."""
    return subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                          text=True, env={**os.environ, **ENV}, timeout=120, check=False,
                          stdin=subprocess.DEVNULL, **kw)


def test_list_says_how_many_items_include_and_exclude_left_out(httpd: HTTPServer) -> None:
    """As ``--dry-run`` says it. Before: they were dropped without a word, and the
    ``--json`` summary counted the items kept only."""
    a, b, c = (httpd.add(f"/{n}", b"x") for n in ("a.bin", "b.txt", "c.txt"))
    done = cli("list", "--include", "*.bin", a, b, c)
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == ["a.bin"]
    assert done.stderr == "2 left out (--include, --exclude)\n"
    dry = cli("--dry-run", "--include", "*.bin", a, b, c)
    assert dry.stderr.endswith("; 2 left out (--include, --exclude)\n")
    done = cli("list", "--json", "--exclude", "*.bin", a, b, c)
    assert done.returncode == 0 and done.stderr == ""
    *items, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert [i["output_path"] for i in items] == ["b.txt", "c.txt"]
    assert summary == {"event": "summary", "items": 2, "skipped": 1, "failed": 0,
                       "exit_code": 0}
    quiet = cli("list", "-q", "--include", "*.bin", a, b, c)
    assert quiet.returncode == 0 and quiet.stderr == ""  # (-q: as the dry run's summary)
    kept = cli("list", a, b)  # (nothing left out: nothing said)
    assert kept.returncode == 0 and kept.stderr == ""
    assert httpd.requests == []


def on_a_terminal(*args: str) -> tuple[int | None, str, str]:
    """``omniget ARGS`` with a terminal for its stdin, in a session of its own (no
    /dev/tty but that terminal): its exit code (None: it was still waiting, killed),
    stdout and stderr."""
    main_fd, term = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "omniget", *args], stdin=term, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**os.environ, **ENV}, start_new_session=True,
        ) as proc:
            os.close(term)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # (waiting for a password)
                proc.kill()
                out, err = proc.communicate()
                return None, out.decode(), err.decode()
            return proc.returncode, out.decode(), err.decode()
    finally:
        os.close(main_fd)


@pytest.mark.parametrize("command", [["list"], ["--dry-run"], ["--dry-run", "-O", "f"]])
def test_a_user_without_a_password_is_not_asked_where_no_request_is_made(
    httpd: HTTPServer, command: list[str]
) -> None:
    """Plain links make no request in ``list`` or ``--dry-run``: nothing to send the
    password with. Before: ``Enter host password for user 'bob': `` and a wait."""
    url = httpd.add("/a.bin", b"x")
    code, out, err = on_a_terminal(*command, "--user", "bob", url)
    assert "password" not in err and (code, err) == (0, err), (code, err)
    assert "a.bin" in out and httpd.requests == []
    assert not Path("f").exists()


def fs_type(path: str) -> str | None:
    """The type of the filesystem mounted at ``path`` (None: none mounted there)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                return fields[fields.index("-") + 1]
    return None


@pytest.mark.parametrize(("folder", "fs"), [("/proc/foo", "proc"), ("/sys/foo", "sysfs")])
def test_dry_run_fails_on_an_output_folder_the_system_will_not_make(
    httpd: HTTPServer, folder: str, fs: str
) -> None:
    """As the download fails there, with its line and exit code 7. Before: the dry run
    said the file would be written there, exit 0."""
    if fs_type(os.path.dirname(folder)) != fs:
        pytest.skip(f"no {fs} at {os.path.dirname(folder)}")
    url = httpd.add("/a.bin", b"x")
    got = cli(url, "-o", folder)
    assert got.returncode == 7 and got.stderr.startswith(
        f"omniget: error: cannot create output folder {folder}: "), got.stderr
    dry = cli("--dry-run", url, "-o", folder)
    assert (dry.returncode, dry.stdout, dry.stderr) == (7, "", got.stderr)
    dry = cli("--dry-run", "--json", url, "-o", folder)
    *_, summary = [json.loads(line) for line in dry.stdout.splitlines()]
    assert dry.returncode == 7 and summary["exit_code"] == 7
    assert httpd.requests == []


def test_dry_run_fails_on_an_output_folder_in_a_folder_it_may_not_write(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A folder without write permission for this user (or on a read-only mount): as
    the download fails, exit 7. As root, run without the capabilities that bypass file
    modes."""
    kw = {"preexec_fn": drop_mode_overrides} if os.geteuid() == 0 else {}
    shut = tmp_path / "shut"
    shut.mkdir(mode=0o555)
    url = httpd.add("/a.bin", b"x")
    got = cli(url, "-o", str(shut / "new"), **kw)
    assert got.returncode == 7, got.stderr
    dry = cli("--dry-run", url, "-o", str(shut / "new"), **kw)
    assert (dry.returncode, dry.stdout, dry.stderr) == (7, "", got.stderr)
    assert httpd.requests == []
