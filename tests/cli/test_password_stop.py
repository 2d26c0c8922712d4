"""Ctrl+Z at the ``--user`` password prompt, on a terminal: while the process is stopped
the terminal echoes again (before: echo stayed off, the shell the user was back at showed
nothing they typed); on ``fg`` echo is off again and the prompt is said anew, as sudo and
ssh do. Driven on a pty by a small job-control shell (a stop needs a process group that
is not orphaned: a session leader's own group is, and the kernel does not stop it)."""

from __future__ import annotations

import base64
import contextlib
import os
import pty
import select
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated

SRC = str(Path(omniget.__file__).resolve().parent.parent)
PROMPT = b"Enter host password for user 'bob': "

#: A job-control shell on its terminal (stdin): runs ``python -m omniget ARGS`` as a
#: foreground job, says "stopped" (or "ended CODE") on the status pipe, and continues a
#: stopped job in the foreground when the control pipe has a byte.
SHELL = textwrap.dedent("""
    import fcntl, os, signal, sys, termios
    ctl, status = int(sys.argv[1]), int(sys.argv[2])
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # (a session of its own: the pty its terminal)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.setpgid(0, 0)
        os.read(r, 1)  # (in the foreground now)
        signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        os.execv(sys.executable, [sys.executable, "-m", "omniget", *sys.argv[3:]])
    os.setpgid(pid, pid)
    os.tcsetpgrp(0, pid)
    os.write(w, b"g")
    while True:
        _, code = os.waitpid(pid, os.WUNTRACED)
        if os.WIFSTOPPED(code):
            os.tcsetpgrp(0, os.getpgrp())
            os.write(status, b"stopped\\n")
            os.read(ctl, 1)
            os.tcsetpgrp(0, pid)
            os.kill(-pid, signal.SIGCONT)
        else:
            os.write(status, b"ended %d\\n" % os.waitstatus_to_exitcode(code))
            break
""")


class Terminal:
    """The pty's other end: what the job wrote to it, and its echo setting."""

    def __init__(self, fd: int) -> None:
        self.fd, self.said = fd, b""

    def wait_for(self, text: bytes, after: int = 0, timeout: float = 60) -> int:
        """Reads until ``text`` is there past offset ``after``; where it ends."""
        deadline = time.monotonic() + timeout
        while (at := self.said.find(text, after)) < 0:
            assert time.monotonic() < deadline, self.said
            if select.select([self.fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    self.said += os.read(self.fd, 4096)
        return at + len(text)

    def echo(self) -> bool:
        return bool(termios.tcgetattr(self.fd)[3] & termios.ECHO)

    def wait_echo(self, on: bool, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.echo() != on:
            assert time.monotonic() < deadline, (on, self.said)
            time.sleep(0.01)


def line(fd: int) -> bytes:
    got = b""
    while not got.endswith(b"\n"):
        more = os.read(fd, 1)
        assert more, got
        got += more
    return got


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pty's settings, Linux's")
def test_ctrl_z_at_the_password_prompt_gives_the_terminal_its_echo_back(
    httpd: HTTPServer,
) -> None:
    url = httpd.add("/small", b"x" * 100)
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    fd, tty = pty.openpty()
    # (not pty.fork: a fork of this multi-threaded process may deadlock in the child)
    shell = subprocess.Popen(
        [sys.executable, "-c", SHELL, str(ctl_r), str(st_w), "-q", "--user", "bob", "-O",
         "f", url], stdin=tty, stdout=tty, stderr=tty, env=env, start_new_session=True,
        pass_fds=(ctl_r, st_w))
    os.close(tty)
    os.close(ctl_r)
    os.close(st_w)
    term = Terminal(fd)
    try:
        end = term.wait_for(PROMPT)
        term.wait_echo(False)  # (getpass's)
        os.write(fd, b"\x1a")  # Ctrl+Z
        assert line(st_r) == b"stopped\n"
        assert term.echo()  # (before: off while stopped)
        os.write(ctl_w, b"f")  # fg
        term.wait_for(PROMPT, end)  # (said anew)
        term.wait_echo(False)
        os.write(fd, b"s3cret\n")
        assert line(st_r) == b"ended 0\n", term.said
    finally:
        for each in (ctl_w, st_r):
            os.close(each)
        with contextlib.suppress(OSError):
            while select.select([fd], [], [], 0.1)[0] and os.read(fd, 4096):
                pass
        os.close(fd)
        shell.wait(60)
    assert b"s3cret" not in term.said and Path("f").read_bytes() == b"x" * 100
    auth = base64.b64encode(b"bob:s3cret").decode()
    assert [r.header("authorization") for r in httpd.requests] == [f"Basic {auth}"]
