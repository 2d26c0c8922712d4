"""download() called on a thread other than the main one (a worker of a program's own):
a KeyboardInterrupt its handler raises is raised on that thread, a cancel set from
another thread stops it (Ctrl+C is the main thread's: the program sets it then), and
either way nothing is left behind and the same call again resumes it."""

from __future__ import annotations

import gc
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.api._leftovers import ours, threads
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine.events import Event, Progress, Started


@pytest.mark.parametrize("way", ["ctrl-c", "cancel"])
def test_download_on_another_thread_stops_cleanly_and_resumes(
    httpd: HTTPServer, tmp_path: Path, way: str
) -> None:
    data = random.Random(way).randbytes(4_000_000)
    url = httpd.add(httpd.new_path("t.bin"), data)
    settings = omniget.Settings(state_dir=tmp_path / "state", split=2, min_split_size=1_000_000)
    landed, cancel = threading.Event(), threading.Event()
    ended: list[object] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done:
            landed.set()
            if way == "ctrl-c":
                raise KeyboardInterrupt

    def worker() -> None:
        try:
            ended.append(omniget.download(url + "?drip=1000000", tmp_path / "out",
                                          settings=settings, on_event=on_event, cancel=cancel))
        except BaseException as exc:  # (what the thread's own code would see)
            ended.append(exc)

    gc.collect()
    fds, before = ours(httpd.port), threads()
    thread = threading.Thread(target=worker, name="a-worker")
    thread.start()
    assert landed.wait(30)
    if way == "cancel":
        cancel.set()
    thread.join(30)
    (end,) = ended
    if way == "ctrl-c":
        assert isinstance(end, KeyboardInterrupt)
    else:
        assert isinstance(end, omniget.Report) and end.interrupted == 1, end
    wait_for(lambda: threads() <= before, timeout=30)
    gc.collect()
    assert ours(httpd.port) - fds == set()
    started: list[Event] = []
    again = omniget.download(url, tmp_path / "out", settings=settings, on_event=started.append)
    assert again.succeeded
    assert [ev.resumed > 0 for ev in started if isinstance(ev, Started)] == [True]
    assert (tmp_path / "out" / "t.bin").read_bytes() == data


WORKER = """
import signal
import sys
import threading
import time
from pathlib import Path
import omniget
from omniget.engine.events import Progress

cancel, landed, returned = threading.Event(), threading.Event(), threading.Event()
ended = []

def on_event(ev):
    if isinstance(ev, Progress) and ev.done:
        landed.set()

def work():
    try:
        ended.append(omniget.download(sys.argv[3], sys.argv[1], cancel=cancel,
                                      on_event=on_event,
                                      settings=omniget.Settings(state_dir=Path(sys.argv[2]))))
    finally:
        returned.set()

signal.signal(signal.SIGINT, signal.default_int_handler)  # (as in a terminal)
worker = threading.Thread(target=work)
worker.start()
landed.wait()
try:
    print("landing", flush=True)  # (inside: a Ctrl+C right after it is caught)
    returned.wait()
except KeyboardInterrupt:
    cancel.set()
    returned.wait()
    worker.join()  # (no join was cut: this one waits)
    end = time.monotonic() + 10  # (the run's threads of its own end soon after it)
    while threading.active_count() > 1 and time.monotonic() < end:
        time.sleep(0.02)
    print("stopped", ended[0].interrupted, threading.active_count(), flush=True)
    sys.exit(130)
print("returned", flush=True)
"""


def test_ctrl_c_in_a_program_whose_download_runs_on_another_thread_is_the_main_thread_s(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A real SIGINT: the main thread gets the KeyboardInterrupt (Python's own; no handler
    can be set for a call on another thread), the download goes on until the program
    sets its ``cancel``, as the README says; it then returns at once, its file
    interrupted, no thread of it left, and the same call resumes it."""
    data = random.Random("sigint").randbytes(4_000_000)
    url = httpd.add(httpd.new_path("w.bin"), data)
    env = {**os.environ, "PYTHONPATH": str(Path(omniget.__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / "out"), str(tmp_path / "state"),
         url + "?drip=1000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "landing\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (130, "stopped 1 1\n", "")
    started: list[Event] = []
    settings = omniget.Settings(state_dir=tmp_path / "state")
    again = omniget.download(url, tmp_path / "out", settings=settings, on_event=started.append)
    assert again.succeeded
    assert [ev.resumed > 0 for ev in started if isinstance(ev, Started)] == [True]
    assert (tmp_path / "out" / "w.bin").read_bytes() == data
