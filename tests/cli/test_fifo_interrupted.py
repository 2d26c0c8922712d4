"""A run stopped while it waits for a FIFO given as ``-i`` or ``--config`` (nobody writes
to it) began nothing, and the same command cannot read that text again: its last line
promises no resume (it said "run the same command again to resume")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.servers.checks import wait_for

pytestmark = pytest.mark.isolated(work=True)


def _waits_for_a_writer(pid: int) -> bool:
    """The process's main thread is in an open of a FIFO, waiting for its writer."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.parametrize("option", ["-i", "--config"])
def test_a_run_stopped_reading_a_fifo_promises_no_resume(tmp_path: Path, option: str) -> None:
    fifo = tmp_path / "work" / "pipe"
    os.mkfifo(fifo)
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}
    args = [option, str(fifo)] + ([] if option == "-i" else ["http://127.0.0.1:9/x.bin"])
    with subprocess.Popen([sys.executable, "-m", "omniget", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            wait_for(lambda: _waits_for_a_writer(proc.pid), timeout=60)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert err.decode() == "omniget: error: interrupted\n"
    assert not (tmp_path / "state").exists()  # (no journal: nothing was begun)
