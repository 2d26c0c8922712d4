"""A proxy found down in a run (a file gave up on it): the other files through it fail
at once, said in the one line the run has for it, not each after its own retries. Run as
a user runs it (a subprocess)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses every connection (bound, not listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


def test_files_through_a_proxy_that_refuses_fail_at_once_once_one_gave_up(
    closed_port: int,
) -> None:
    """Each of another host (none is found down): with the default retries, the file
    whose try found the proxy down spends its own; the others fail at their first try,
    without a retry line. Before: each file had its 2 retry lines (40 for 20 files)."""
    files = 20
    Path("urls.txt").write_text("".join(f"http://h{i}.test/f{i}\n" for i in range(files)))
    proxy = f"http://127.0.0.1:{closed_port}"
    done = cli("-v", "-i", "urls.txt", "-o", "out", "-j", "2", "--proxy", proxy)
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    retries = [line for line in lines if "retrying in" in line]
    assert len(retries) <= 2, lines
    errors = [line for line in lines if line.startswith("omniget: error: ")]
    assert errors == [
        f"omniget: error: {files} files failed: could not connect to the proxy {proxy}: "
        "Connection refused (check --proxy)"
    ]
    assert f"0 files ok, 0 skipped, {files} failed" in lines[-1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a connection is never completed: its listening queue
    (one place) is full and never taken from, so the kernel drops the SYNs that come."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):  # (the queue's place, and one more the kernel may allow)
            c = stack.enter_context(socket.socket())
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
        probe = stack.enter_context(socket.socket())
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            yield port
        else:
            pytest.skip("this kernel completes connections past a full queue")


def test_files_through_a_proxy_that_drops_packets_are_not_tried_once_one_gave_up(
    silent_port: int,
) -> None:
    """Each of another host: the first file's tries (and those of the files under way
    with it, -j 2: a connect timeout each) find the proxy down; the others are not tried
    (not a timeout each), and all are said in one line. Before: each file spent its
    tries, each a connect timeout, and had a line of its own."""
    files = 12
    Path("urls.txt").write_text("".join(f"http://h{i}.test/f{i}\n" for i in range(files)))
    proxy = f"http://127.0.0.1:{silent_port}"
    done = cli("-v", "-i", "urls.txt", "-o", "out", "-j", "2", "--retries", "1",
               "--timeout", "1", "--proxy", proxy)
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert len([line for line in lines if "retrying in" in line]) <= 2, lines
    untried = [line for line in lines if line.startswith("failed out/f")
               and ": not tried: could not connect to the proxy" in line]
    # (all but those under way or set up with the first: 2 x -j, see SetupSlots; those
    # waiting for their slot when it was found down have one try each, no retry)
    assert len(untried) >= files - 4, lines
    errors = [line for line in lines if line.startswith("omniget: error: ")]
    assert errors == [
        f"omniget: error: {files} files failed: could not connect to the proxy {proxy}: "
        "timed out (check --proxy)"
    ]


def test_a_proxy_is_down_at_its_first_failed_connection_one_file_retries_it(
    closed_port: int,
) -> None:
    """The first try that fails to connect to the proxy finds it down: that file goes on
    trying it (its retries tell if it comes back), the others under way with it (-j 4)
    fail at once and the rest are not tried. Before, each file under way spent its own
    retries till one gave up: a retry line each (with -v), four files' worth."""
    files = 12
    Path("urls.txt").write_text("".join(f"http://h{i}.test/f{i}\n" for i in range(files)))
    proxy = f"http://127.0.0.1:{closed_port}"
    done = cli("-v", "-i", "urls.txt", "-o", "out", "-j", "4", "--proxy", proxy)
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    retries = [line for line in lines if "retrying in" in line]
    assert 1 <= len(retries) <= 2, lines
    assert len({line.split(":")[0] for line in retries}) == 1, retries  # (one file's)
    errors = [line for line in lines if line.startswith("omniget: error: ")]
    assert errors == [
        f"omniget: error: {files} files failed: could not connect to the proxy {proxy}: "
        "Connection refused (check --proxy)"
    ]


@pytest.mark.parametrize("via", ["host", "proxy"])
def test_a_stream_of_a_dead_host_or_proxy_spends_its_own_retries(
    closed_port: int, via: str
) -> None:
    """``-O -`` is one file, with no run of other files around it for a host or proxy
    found down to spare (each stream, as each run, finds its own): its retries are its
    budget, said as a file's, then its one error line; nothing is written."""
    dead = f"http://127.0.0.1:{closed_port}"
    args = (["-O", "-", f"{dead}/f"] if via == "host"
            else ["-O", "-", "--proxy", dead, "http://h.test/f"])
    done = cli(*args)
    assert (done.returncode, done.stdout) == (3, "")
    lines = done.stderr.splitlines()
    assert len([line for line in lines if "retrying in" in line]) == 2, lines
    (error,) = [line for line in lines if line.startswith("omniget: error: ")]
    assert "Connection refused" in error and error.endswith("(gave up after 2 retries)"), lines
    assert "not tried" not in done.stderr
