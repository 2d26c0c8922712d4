"""Running the CLI in a subprocess, for the end-to-end tests: to the end, or started and
left running; root's power over file modes taken away in it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["drop_mode_overrides", "killed_when_done", "omniget", "start"]


def omniget(*args: str, state: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIGET_STATE_DIR": str(state), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "omniget", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **kw,
    )


def start(*args: str, state: Path, **kw: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMNIGET_STATE_DIR": str(state)}
    kw.setdefault("stdout", subprocess.DEVNULL)
    return subprocess.Popen(
        [sys.executable, "-m", "omniget", *args],
        stderr=subprocess.PIPE,
        env=env,
        **kw,
    )



@contextlib.contextmanager
def killed_when_done(
    proc: subprocess.Popen[bytes], release: Callable[[], None]
) -> Iterator[subprocess.Popen[bytes]]:
    """A run the test server holds mid-answer: the block works beside it, then it is
    killed (SIGKILL, as a crash); ``release`` lets the server's held answer go, and the
    run is reaped and its stderr closed, whatever the block raised."""
    try:
        yield proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        release()
        proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()


PR_CAPBSET_DROP = 24
#: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root ignore file modes
MODE_OVERRIDES = (1, 2, 3)


def drop_mode_overrides() -> None:
    """In the child before exec: root keeps its uid but loses the capabilities that
    bypass file modes (from the bounding set, so the exec'd program lacks them too).
    Unlike switching to nobody, the interpreter stays readable wherever it lives."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in MODE_OVERRIDES:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
