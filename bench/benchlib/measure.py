"""One timed run: mkdir of the output dir, then the client, measured with wait4.

The caller clears the previous run's output and syncs before calling (``clear_output``):
on a disk mounted with ``discard`` the deletes of the previous run are otherwise flushed
while the next client runs, and each client would pay for its predecessor's output. Wall
time covers mkdir + the client. CPU seconds and peak RSS are the client's own
(and its waited-for children's), from ``os.wait4``. "Other load" is the machine's busy CPU
time during the run minus the client, the servers we started and this process: a noisy
neighbour shows up there.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .servers import tree_cpu_seconds


@dataclass
class Sample:
    wall: float  # seconds, mkdir + client
    prep: float  # seconds of that spent on mkdir
    cpu: float  # client user + sys seconds
    rss_mib: float  # client peak RSS
    exit_code: int  # negative: killed by that signal
    timed_out: bool
    server_cpu: float
    other_load: float
    error: str | None = None  # set when the run failed (exit code or verification)

    @property
    def ok(self) -> bool:
        return self.error is None


# fd 3: the launcher reports the client's pid; fd 4: the client waits for a byte before exec,
# so it cannot exit (and be reaped by the shell) before the shell itself is gone.
_LAUNCH = '{ read _ <&4 && exec "$@" 4<&-; } 3>&- & echo $! >&3'
_subreaper = False


def _become_subreaper() -> None:
    """Orphans of our children (the clients, once their launcher shell exits) become ours."""
    global _subreaper
    if not _subreaper:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        _subreaper = True


def _busy_cpu_seconds() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def clear_output(out_dir: Path, sync: bool) -> None:
    """Remove the previous run's output, then flush the deletes (outside the timed window)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    if sync:
        os.sync()


def run_timed(
    argv: list[str],
    out_dir: Path,
    env: dict[str, str],
    log_prefix: Path,
    timeout: float,
    server_pids: list[int],
) -> Sample:
    """Run argv once. stdout/stderr go to log_prefix.{out,err}."""
    out_log = f"{log_prefix}.out"
    err_log = f"{log_prefix}.err"
    opens = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, err_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    srv0 = tree_cpu_seconds(server_pids)
    busy0 = _busy_cpu_seconds()
    self0 = _self_cpu()

    _become_subreaper()
    rfd, wfd = os.pipe()
    gate_r, gate_w = os.pipe()
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        *opens,
        (os.POSIX_SPAWN_DUP2, wfd, 3),
        (os.POSIX_SPAWN_DUP2, gate_r, 4),
    ]

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True)
    t1 = time.perf_counter()
    # The client is forked by a small shell, not spawned from this (large) Python process:
    # Linux carries the spawning process's peak RSS across exec into ru_maxrss, so a client
    # spawned from here would report at least this process's size. The shell prints the
    # client's pid and exits; as a subreaper we inherit the client and wait4() it directly.
    shell = os.posix_spawn(
        "/bin/sh", ["sh", "-c", _LAUNCH, "sh", *argv], env, file_actions=actions, setpgroup=0
    )
    os.close(wfd)
    os.close(gate_r)
    with os.fdopen(rfd, "rb") as pipe:
        text = pipe.read().strip()
    os.waitpid(shell, 0)
    os.write(gate_w, b"go\n")
    os.close(gate_w)
    if not text.isdigit():
        raise RuntimeError(f"launcher did not report a pid for {argv[0]}")
    pid = int(text)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(shell, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, ru = os.wait4(pid, 0)
    except BaseException:  # Ctrl+C: the client is in its own process group, so stop it here
        timer.cancel()
        kill()
        os.waitpid(pid, 0)
        raise
    t2 = time.perf_counter()
    timer.cancel()
    # Anything the client left running in its process group (it should not) goes too.
    try:
        os.killpg(shell, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

    cpu = ru.ru_utime + ru.ru_stime
    srv = tree_cpu_seconds(server_pids) - srv0
    busy = _busy_cpu_seconds() - busy0
    own = _self_cpu() - self0
    code = os.waitstatus_to_exitcode(status)
    error = None
    if timed_out.is_set():
        error = f"timed out after {timeout:g} s"
    elif code != 0:
        tail = Path(err_log).read_text(errors="replace").strip().splitlines()[-3:]
        error = f"exit {code}" + (f": {' | '.join(tail)[:300]}" if tail else "")
    return Sample(
        wall=t2 - t0,
        prep=t1 - t0,
        cpu=cpu,
        rss_mib=ru.ru_maxrss / 1024,
        exit_code=code,
        timed_out=timed_out.is_set(),
        server_cpu=srv,
        other_load=max(0.0, busy - cpu - srv - own),
        error=error,
    )
