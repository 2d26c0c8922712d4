"""The console script's last steps (:func:`omniget.cli.run`): a Ctrl+C that comes once
``main`` has returned, or that escapes it, ends the process with no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: main replaced; a SIGINT sent where the test says
SCRIPT = textwrap.dedent("""
    import logging, os, signal, sys
    import omniget.cli as cli
    where = sys.argv[1]

    def interrupt():
        os.kill(os.getpid(), signal.SIGINT)

    def main():
        if where == "escapes":
            raise KeyboardInterrupt
        return 3

    if where == "after":  # (run() shuts logging down after main: Ctrl+C lands there)
        real = logging.shutdown
        logging.shutdown = lambda: (interrupt(), real())
    cli.main = main
    cli.run()
""")


@pytest.mark.parametrize(("where", "code"), [("after", 3), ("escapes", 130)])
def test_a_late_ctrl_c_ends_with_the_run_s_code_and_no_traceback(where: str, code: int) -> None:
    """Before: a Ctrl+C between main's return and the exit printed a traceback (and the
    shell saw the interpreter's exit code for it)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, where], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr) == (code, "")
