"""The ``--user`` password prompt: no echo (getpass's), and a Ctrl+Z at it gives the
terminal its echo back while the process is stopped, turning it off again and saying the
prompt anew once it is in the foreground again (as sudo and ssh do: else the shell the
user is back at echoes nothing they type)."""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["ask_hidden"]


def ask_hidden(prompt: str) -> str:
    """A line typed at ``prompt`` without echo (getpass's; its EOFError and
    KeyboardInterrupt are raised)."""
    with _echo_while_stopped(prompt):
        return getpass.getpass(prompt)


@contextlib.contextmanager
def _echo_while_stopped(prompt: str) -> Iterator[None]:
    """While in use: SIGTSTP restores the terminal's settings as they were before (echo
    on), stops the process, and once continued turns echo off again and says ``prompt``
    again. Nothing when there is no terminal of the process's own (getpass reads stdin
    then: no Ctrl+Z comes from it) or off the main thread (no handler can be set)."""
    if (not hasattr(signal, "SIGTSTP") or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTSTP) is signal.SIG_IGN):  # (ignored: it stays so)
        yield
        return
    import termios

    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield
        return
    try:
        before = termios.tcgetattr(fd)
    except termios.error:
        os.close(fd)
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        hidden = None
        with contextlib.suppress(termios.error, OSError):  # (it stops all the same)
            hidden = termios.tcgetattr(fd)  # (getpass's, echo off)
            termios.tcsetattr(fd, termios.TCSANOW, before)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signal.SIGTSTP)  # (stopped here, till fg)
        finally:
            signal.signal(signal.SIGTSTP, stop)
        with contextlib.suppress(termios.error, OSError):
            if hidden is not None:
                termios.tcsetattr(fd, termios.TCSANOW, hidden)
            os.write(fd, f"\n{prompt}".encode(errors="replace"))

    old = signal.signal(signal.SIGTSTP, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTSTP, old)
        os.close(fd)
