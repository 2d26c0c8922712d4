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

import pytest
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
ENV = {"PYTHONPATH": SRC, "NO_COLOR": "1"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m omniget ARGS`` in the test's folder and environment (see conftest)."""
    return subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                          text=True, env={**os.environ, **ENV}, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


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
