"""download() called on a thread other than the main one (a worker of a program's own):
a KeyboardInterrupt its handler raises is raised on that thread, a cancel set from
another thread stops it, and either way nothing is left behind and the same call again
resumes it."""

from __future__ import annotations

import gc
import random
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
