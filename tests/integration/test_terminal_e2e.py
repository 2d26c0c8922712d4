"""The command on a pseudo-terminal (as a user runs it) and piped into a log, against the
local server: what ends up on the screen, and what a log gets."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.cli._screen import Screen
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

MiB = 1024 * 1024
RESUME = "omniget: error: interrupted; run the same command again to resume"
# The command with the pty as its controlling terminal, as a shell runs it: a key typed
# there (Ctrl+C, Ctrl+\) signals it, and the terminal echoes it (^C). Its terminal
# signals start at their defaults, as on a user's terminal: a test run started with them
# ignored (`&` in a script ignores SIGINT and SIGQUIT, nohup SIGHUP) passes that on, and
# the command keeps an ignored signal ignored. (No core file: Ctrl+\ dumps one.)
DEFAULTS = ("import signal; [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, "
            "signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP)]; ")
OMNIGET = (DEFAULTS + "import fcntl, os, resource, sys, termios; "
           "fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
           "resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
           "os.execv(sys.executable, [sys.executable, '-m', 'omniget', *sys.argv[1:]])")

# A shell's job control in a few lines: the command in a process group of its own in the
# terminal's foreground; when it stops (Ctrl+Z) the shell takes the terminal back, says so,
# and a second later gives it back and continues it (fg). Its exit code is the command's.
JOBS = """
import fcntl, os, signal, sys, termios, time
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpid())
    for signum in (signal.SIGTTOU, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_DFL)  # (see OMNIGET)
    os.execv(sys.executable, [sys.executable, "-m", "omniget", *sys.argv[1:]])
while True:
    status = os.waitpid(pid, os.WUNTRACED)[1]
    if not os.WIFSTOPPED(status):
        sys.exit(os.waitstatus_to_exitcode(status) % 256)
    os.tcsetpgrp(0, os.getpgrp())
    os.write(1, b"[1]+  Stopped\\n")
    time.sleep(1)
    os.write(1, b"$ fg\\n")
    os.tcsetpgrp(0, pid)
    os.killpg(pid, signal.SIGCONT)
"""


class Terminal:
    """``omniget ARGS`` with stdin, stdout and stderr on a pty of ``width`` x ``height``
    (``stdout=subprocess.PIPE``: stdout a pipe, read by :meth:`finish`), run by
    ``program`` (:data:`JOBS`: under job control)."""

    def __init__(
        self, args: list[str], state: Path, width: int = 80, height: int = 24,
        stdout: int | None = None, program: str = OMNIGET,
    ) -> None:
        self.width, self.height = width, height
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        # A typed Ctrl+C, Ctrl+Z or Ctrl+\ flushes what the command wrote and this end has
        # not read yet (POSIX, unless NOFLSH): a terminal reads it at once, but this one
        # does not while it types, and a frame or a line went missing from the screen.
        attrs = termios.tcgetattr(slave)
        attrs[3] |= termios.NOFLSH
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env.update(OMNIGET_STATE_DIR=str(state), TERM="xterm-256color")
        self.proc = subprocess.Popen([sys.executable, "-c", program, *args], stdin=slave,
                                     stdout=slave if stdout is None else stdout, stderr=slave,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.master, self.output = master, b""

    def read_until(self, done: Callable[[bytes], bool], timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not done(self.output):
            assert time.monotonic() < end, self.output[-2000:]
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # (EIO: the other side is closed)
                    chunk = b""
                if not chunk:
                    return
                self.output += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self) -> tuple[int, Screen]:
        self.read_until(lambda _: False)  # to the end of the output
        os.close(self.master)
        code = self.proc.wait(timeout=30)
        return code, Screen(self.width, self.height).feed(self.output.decode())


def test_ctrl_c_on_a_terminal_leaves_a_clean_screen(httpd: HTTPServer, tmp_path: Path) -> None:
    urls = []
    for i in range(300):  # many small files: the bars change all the time
        path = httpd.new_path(f"f{i}.bin")
        httpd.add(path, bytes(4000))
        urls.append(httpd.url(path, drip=8000))
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    term = Terminal(["-i", str(tmp_path / "urls.txt"), "-o", str(tmp_path / "out")],
                    tmp_path / "state")
    term.read_until(lambda out: out.count(b"total [") >= 3)  # bars on the screen
    os.kill(term.proc.pid, signal.SIGINT)
    code, screen = term.finish()
    assert code == 130
    lines = screen.lines()
    assert lines[0] == "omniget: stopping and saving state (Ctrl+C again to quit now)", lines
    assert " interrupted, " in lines[1] and lines[-1] == RESUME, lines
    assert not any("━" in line or "total [" in line for line in lines)  # no bar left
    assert not screen.cursor_hidden


@pytest.mark.parametrize("keys", [b"\x03", b"\x03" * 4], ids=["once", "again-and-again"])
def test_ctrl_c_typed_under_a_full_width_bar_leaves_no_bar_behind(
    httpd: HTTPServer, tmp_path: Path, keys: bytes
) -> None:
    """The terminal echoes a typed Ctrl+C as ^C where the cursor is: after a file's bar,
    as wide as the terminal, that went onto a new row, and the bars' erasing, one row
    short, left the run's bar above the lines that followed (and so did a few ^C after a
    row with room for one)."""
    path = httpd.new_path("wide.bin")
    httpd.add(path, bytes(8 * MiB))
    term = Terminal([httpd.url(path, drip=MiB), "-o", str(tmp_path / "out")],
                    tmp_path / "state")
    term.read_until(lambda out: out.count(b"wide.bin") >= 3)  # its bar on the screen
    for key in keys:  # (as a hand types them)
        term.type(bytes([key]))
        time.sleep(0.01)
    code, screen = term.finish()
    # (a ^C echoed as the run ended, or after it, is the terminal's: a shell's prompt too)
    lines = [line for line in (row.replace("^C", "") for row in screen.lines()) if line]
    assert code == 130 and lines[-1] == RESUME, lines
    assert lines[0] == "omniget: stopping and saving state (Ctrl+C again to quit now)", lines
    assert not any("━" in line or "total [" in line for line in lines), lines
    assert not screen.cursor_hidden


def test_ctrl_z_stops_the_run_on_a_clean_screen_and_fg_ends_it_whole(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Ctrl+Z and fg under a shell's job control: while stopped, the screen has the shell's
    line where the bars were and a cursor; after fg the run goes on and ends whole."""
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB
    path = httpd.new_path("stop.bin")
    httpd.add(path, data)
    out = tmp_path / "out"
    term = Terminal([httpd.url(path, drip=MiB), "-o", str(out)], tmp_path / "state",
                    program=JOBS)
    term.read_until(lambda output: output.count(b"stop.bin") >= 3)
    term.type(b"\x1a")
    term.read_until(lambda output: b"Stopped" in output)
    stopped = Screen(term.width, term.height).feed(term.output.decode())
    assert (stopped.lines(), stopped.cursor_hidden) == (["[1]+  Stopped"], False)
    code, screen = term.finish()
    lines = screen.lines()
    assert code == 0 and lines[:2] == ["[1]+  Stopped", "$ fg"], lines
    assert lines[-1].startswith("1 file ok, ") and not screen.cursor_hidden, lines
    assert (out / "stop.bin").read_bytes() == data


def _rerun_resumes(
    httpd: HTTPServer, url: str, path: str, out: Path, state: Path, data: bytes
) -> None:
    """The same command again, quiet: it ends whole, fetching at least 2 MiB less than
    the file (it went on from what the stopped run kept)."""
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    rerun = subprocess.run([sys.executable, "-m", "omniget", url, "-o", str(out), "-q"],
                           env={**os.environ, "OMNIGET_STATE_DIR": str(state)}, timeout=60)
    assert rerun.returncode == 0 and (out / "cut.bin").read_bytes() == data
    assert sum(r.sent for r in httpd.requests_to(path)) <= len(data) - 2 * MiB  # (resumed)


def test_ctrl_backslash_ends_the_run_at_once_leaving_a_cursor_and_a_resumable_file(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Ctrl+\\ (SIGQUIT) ends the process as its default does: what the journal has is
    kept, as after a SIGKILL. The terminal got the bars left on it and no cursor (the
    shell's prompt came without one)."""
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB
    path = httpd.new_path("cut.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    term = Terminal([httpd.url(path, drip=MiB), "-o", str(out)], state)
    term.read_until(lambda _: recorded(state) >= 2 * MiB)
    term.type(b"\x1c")
    code, screen = term.finish()
    assert code == -signal.SIGQUIT
    assert not any("━" in line or "total [" in line for line in screen.lines())
    assert not screen.cursor_hidden
    _rerun_resumes(httpd, url, path, out, state, data)


# A shell that loses its terminal (the kernel's SIGHUP goes to it, the session's leader)
# sends its jobs a SIGHUP, as bash does. (More SIGHUPs: see test_terminal.py.)
HANGS_UP = JOBS.replace("while True:", """def hang_up(signum, frame):
    os.killpg(pid, signal.SIGHUP)
signal.signal(signal.SIGHUP, hang_up)
while True:""")


@pytest.mark.parametrize("how", ["kill-hup", "terminal-closed", "shell-hangs-up"])
def test_sighup_stops_the_run_as_sigterm_does_keeping_all_it_has(
    httpd: HTTPServer, tmp_path: Path, how: str
) -> None:
    """SIGHUP (the terminal closed, an ssh connection dropped; or sent with kill) stops
    the run and saves its state as SIGTERM does: exit 130, the same command resumes. A
    terminal still there gets the lines of a run's stop, no bars, and a cursor.
    (Before, SIGHUP ended the process as its default does, 129, keeping only what the
    journal had at its last checkpoint.)"""
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB
    path = httpd.new_path("cut.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    term = Terminal([httpd.url(path, drip=MiB), "-o", str(out)], state,
                    program=HANGS_UP if how == "shell-hangs-up" else OMNIGET)
    term.read_until(lambda _: recorded(state) >= 2 * MiB)
    if how == "kill-hup":
        os.kill(term.proc.pid, signal.SIGHUP)
        code, screen = term.finish()
        lines = screen.lines()
        assert lines[0] == ("omniget: SIGHUP: stopping and saving state (Ctrl+C or SIGTERM "
                            "quits now)"), lines
        assert " interrupted, " in lines[1] and lines[-1] == RESUME, lines
        assert not any("━" in line or "total [" in line for line in lines)
        assert not screen.cursor_hidden
    else:  # (the kernel signals the terminal's session)
        os.close(term.master)
        code = term.proc.wait(timeout=30)
    assert code == 130
    assert (out / "cut.bin.omniget-part").exists() and not (out / "cut.bin").exists()
    # (the run's own end closed the journal, its write-ahead log folded in: a quit at once
    # leaves that log behind)
    assert not (state / "journal.sqlite-wal").exists()
    _rerun_resumes(httpd, url, path, out, state, data)


def test_a_log_gets_plain_lines(httpd: HTTPServer, tmp_path: Path) -> None:
    path = httpd.new_path("slow.bin")
    httpd.add(path, bytes(3_000_000))
    res = subprocess.run(
        [sys.executable, "-m", "omniget", httpd.url(path, drip=1_000_000, norange=1),
         "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "OMNIGET_STATE_DIR": str(tmp_path / "state")},
    )
    assert res.returncode == 0 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert "\x1b" not in res.stderr and "\r" not in res.stderr
    # (at the first event 2 s in: later on a loaded machine)
    assert re.match(r"\[0:00:0[2-9]\] 0/1 files, ", lines[0]), lines
    run_lines = lines[:-2]
    assert lines[-2] == f"saved {tmp_path / 'out' / 'slow.bin'}", lines
    assert all(re.match(r"\[0:00:[0-5][0-9]\] 0/1 files, \d+% of 2.9 MiB, ", line)
               for line in run_lines), lines
    # each with the time left, but one that came less than 0.5 s after the file began (a
    # slow start on a loaded machine: its speed not known yet); the file takes 3 s, so a
    # later line has it
    assert all(line.endswith((" left", ", ?")) for line in run_lines), lines
    assert any(line.endswith(" left") for line in run_lines), lines
    assert lines[-1].startswith("1 file ok, 0 skipped, 0 failed, 2.9 MiB in "), lines


BAR = "━".encode()  # (what rich draws a bar with)


def test_stdout_to_a_pipe_shows_the_bar_on_the_terminal(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``omniget -O - URL | ...`` on a terminal: the bar on stderr, as curl shows its meter
    (before: nothing until the end). -q shows none; the bytes on stdout are the file's."""
    data = bytes(range(256)) * 160  # (40 KiB: within a pipe's buffer)
    path = httpd.new_path("piped.bin")
    httpd.add(path, data)
    url = httpd.url(path, drip=16_000)
    for args, bar in ((["-O", "-", url], True), (["-q", "-O", "-", url], False)):
        term = Terminal(args, tmp_path / "state", stdout=subprocess.PIPE)
        code, screen = term.finish()
        assert (BAR in term.output, b"piped.bin" in term.output) == (bar, bar), term.output
        assert term.proc.stdout is not None
        assert (code, term.proc.stdout.read()) == (0, data)
        assert screen.lines() == [] and not screen.cursor_hidden  # (the bar went at the end)


def test_stdout_on_the_terminal_gets_no_bar(httpd: HTTPServer, tmp_path: Path) -> None:
    """``-O -`` with stdout on the terminal: the file's bytes alone, no bar between them."""
    path = httpd.new_path("shown.txt")
    httpd.add(path, b"line\n" * 8000)
    term = Terminal(["-O", "-", httpd.url(path, drip=16_000)], tmp_path / "state")
    code, screen = term.finish()
    assert code == 0 and BAR not in term.output and b"\x1b[" not in term.output
    assert screen.lines()[-1] == "line"


def until(when: float) -> Callable[[bytes], bool]:
    """For :meth:`Terminal.read_until`: true from the monotonic time ``when``."""
    return lambda _: time.monotonic() > when


def test_a_terminal_made_narrow_mid_run_gets_bars_that_fit_it(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """300 columns, then 20 (the window dragged narrow: SIGWINCH): the frames after fit
    the 20 columns, wide names (CJK, an emoji) and a file of unknown size among them, and
    the run ends on a clean screen with its counts."""
    urls = []
    for name, query in (("a.bin", {"cd": "日本語の名前.bin"}), ("b.bin", {"cd": "📦箱.bin"}),
                        ("c.bin", {"chunked": 1})):
        path = httpd.new_path(name)
        httpd.add(path, bytes(300_000))
        urls.append(httpd.url(path, drip=60_000, **query))
    term = Terminal([*urls, "-o", str(tmp_path / "out")], tmp_path / "state", width=300)
    term.read_until(lambda out: out.count(b"total [") >= 3 and "箱".encode() in out)
    # Stopped between two frames (one may be written in pieces), and all it wrote at 300
    # columns read: the window is made narrow then, as a user's hand does it.
    for _ in range(100):
        os.kill(term.proc.pid, signal.SIGSTOP)
        term.read_until(until(time.monotonic() + 0.3))
        if term.output.endswith(b"\x1b[0m\r"):  # (a frame's end: its last cell, a return)
            break
        os.kill(term.proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    try:
        before = len(term.output)
        fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 20, 0, 0))
    finally:
        os.kill(term.proc.pid, signal.SIGCONT)
    code, _ = term.finish()
    assert code == 0, term.output[-2000:]
    screen = Screen(300, 24).feed(term.output[:before].decode()).resize(20)
    after = term.output[before:].decode()
    bars_end = after.rindex("\x1b[?25h")  # (the bars erased, the cursor shown)
    screen.wraps = 0
    screen.feed(after[:bars_end])
    assert screen.wraps == 0 and "total [" not in after[bars_end:], after[-3000:]
    screen.feed(after[bars_end:])
    text = "".join(screen.lines())  # (the counts line wraps at 20 columns: it is text)
    assert text.startswith("3 files ok, 0 skipped, 0 failed, 878.9 KiB in "), screen.lines()
    assert "━" not in text and not screen.cursor_hidden


def test_a_run_that_ignores_sighup_goes_on_to_its_end_once_its_terminal_is_gone(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``nohup``, ``disown``, ``trap '' HUP``: the terminal closed, the run goes on and
    ends as it would have (exit 0, every file whole). Before, every write to the closed
    terminal failed (EIO): rich kept what it could not write and wrote it all again with
    each line after (a buffer that grew for the rest of the run), and the bars' last
    write raised out of the run: "internal error: OSError", exit 1."""
    files = {f"h{i}.bin": bytes([i]) * 200_000 for i in range(6)}
    urls = []
    for name, data in files.items():
        path = httpd.new_path(name)
        httpd.add(path, data)
        urls.append(httpd.url(path, drip=400_000))
    out = tmp_path / "out"
    ignored = OMNIGET.replace("import fcntl", "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                              "import fcntl")
    term = Terminal(["-v", "-j", "1", "-o", str(out), *urls], tmp_path / "state",
                    program=ignored)
    term.read_until(lambda output: b"done " in output)  # (the first file's line)
    os.close(term.master)  # (the rest are said to a terminal that is gone)
    assert term.proc.wait(timeout=60) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_a_run_stopped_by_ctrl_z_whose_terminal_closes_stops_saving_its_state(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Ctrl+Z, then the terminal closed before fg: the shell goes, and the kernel sends
    the stopped job, orphaned, a SIGHUP and a SIGCONT. The run goes on only to stop as
    for any SIGHUP: its journal closed (its write-ahead log folded in), the part file
    kept, nothing left stopped or running; the same command resumes."""
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB
    path = httpd.new_path("z.bin")
    url = httpd.add(path, data)
    out, state, job = tmp_path / "out", tmp_path / "state", tmp_path / "job"
    # (the shell says where its job is, and waits a long while before fg: it is gone first)
    shell = JOBS.replace("time.sleep(1)", "time.sleep(600)").replace(
        "while True:", f"open({str(job)!r}, 'w').write(str(pid))\nwhile True:")
    term = Terminal([httpd.url(path, drip=MiB), "-o", str(out)], state, program=shell)
    term.read_until(lambda output: output.count(b"z.bin") >= 3)
    term.type(b"\x1a")
    term.read_until(lambda output: b"Stopped" in output)
    os.close(term.master)
    term.proc.wait(timeout=30)
    pid = int(job.read_text())

    def gone() -> bool:  # (reaped by whoever took the orphan, or a zombie left to them)
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True

    wait_for(gone, timeout=60)
    assert sorted(p.name for p in out.iterdir()) == ["z.bin.omniget-part"]
    assert not (state / "journal.sqlite-wal").exists()
    rerun = subprocess.run([sys.executable, "-m", "omniget", url, "-o", str(out), "-q"],
                           env={**os.environ, "OMNIGET_STATE_DIR": str(state)}, timeout=60)
    assert rerun.returncode == 0 and (out / "z.bin").read_bytes() == data
