"""Stopping a library download the ways a script does (Ctrl+C, a task's cancel) keeps
what landed, and the same call again resumes it, as download's help says."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.api._leftovers import ours as _ours
from tests.api._leftovers import threads as _threads
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine import Engine
from omniget.engine.events import Event, Listed, Progress, Started

SRC = str(Path(omniget.__file__).resolve().parent.parent)
README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")

SCRIPT = """
import sys
from pathlib import Path
import omniget
from omniget.engine import Engine
from omniget.engine.events import Started

def on_event(ev):
    if isinstance(ev, Started):
        print("started", flush=True)

try:
    omniget.download(sys.argv[1], sys.argv[2],
                     settings=omniget.Settings(state_dir=Path(sys.argv[3])), on_event=on_event)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(130)
print("returned", flush=True)
"""


def _slow(httpd: HTTPServer, name: str) -> tuple[str, bytes]:
    """A 4 MB file sent at 2 MB/s: a run is stopped long before its end."""
    data = random.Random(name).randbytes(4_000_000)
    return httpd.add(httpd.new_path(name), data) + "?drip=2000000", data


def _held(httpd: HTTPServer, name: str) -> tuple[str, bytes]:
    """A 4 MB file whose answers hold after their first 1 MB until the test releases
    ``name``: a run is stopped before its end however long the test takes to stop it
    (a loaded machine can hold a test up longer than a 2 MB/s drip takes)."""
    data = random.Random(name).randbytes(4_000_000)
    return httpd.add(httpd.new_path(name), data) + f"?hold={name}&stall_after=1000000", data


def _resumed(url: str, tmp_path: Path) -> int:
    """The bytes a rerun found already there (its file whole afterwards)."""
    started: list[Event] = []
    report = omniget.download(url, tmp_path / "out",
                              settings=omniget.Settings(state_dir=tmp_path / "state"),
                              on_event=started.append)
    assert report.ok == 1, report.failures
    (first,) = [ev for ev in started if isinstance(ev, Started)]
    return first.resumed


def test_ctrl_c_in_a_script_raises_keyboard_interrupt_and_a_rerun_resumes(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    url, data = _held(httpd, "c.bin")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, url, str(tmp_path / "out"), str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    assert httpd.held("c.bin")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    httpd.release("c.bin")  # (the rerun's answer goes on)
    assert (proc.returncode, out) == (130, "KeyboardInterrupt\n"), err
    assert (tmp_path / "out" / "c.bin.omniget-part").exists()
    assert _resumed(url, tmp_path) > 0
    assert (tmp_path / "out" / "c.bin").read_bytes() == data


MANY = """
import sys
from pathlib import Path
import omniget
from omniget.engine.events import Progress

def on_event(ev):
    if isinstance(ev, Progress) and ev.done:
        print("landing", flush=True)

try:
    omniget.download(sys.argv[3:], sys.argv[1], on_event=on_event, settings=omniget.Settings(
        state_dir=Path(sys.argv[2]), split=4, min_split_size=1_000_000))
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(130)
print("returned", flush=True)
"""


def test_ctrl_c_in_a_script_with_a_split_file_and_many_others_resumes_them_all(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """With a split file and forty others under way (some slow, some waiting to try
    again): KeyboardInterrupt, nothing said on stderr (no task destroyed pending, no
    exception ignored), and a rerun finishes every file whole."""
    url, big = _held(httpd, "big.bin")
    data = {"big.bin": big}
    urls = [url]
    for n in range(40):
        name = f"s{n}.bin"
        data[name] = random.Random(name).randbytes(50_000 + n)
        urls.append(httpd.add(httpd.new_path(name), data[name]) + (
            "?drip=200000" if n % 4 == 0 else "?status=503&times=1" if n % 7 == 1 else ""))
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", MANY, str(tmp_path / "out"), str(tmp_path / "state"), *urls],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "landing\n"
    assert httpd.held("big.bin")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    httpd.release("big.bin")  # (the rerun's answers go on)
    assert (proc.returncode, out.splitlines()[-1:], err) == (130, ["KeyboardInterrupt"], "")
    again = omniget.download([u.partition("?")[0] for u in urls], tmp_path / "out",
                             settings=omniget.Settings(state_dir=tmp_path / "state"))
    assert again.succeeded, again.failures
    for name, body in data.items():
        assert (tmp_path / "out" / name).read_bytes() == body


TWICE = """
import io
import signal
import sys
from pathlib import Path
import omniget
from omniget.engine.events import Progress
from omniget.engine.journal import Journal
from omniget.engine.transports.curlloop import CurlLoop

cls, name = (Journal, "save_spans") if sys.argv[1] == "journal" else (CurlLoop, "_on_socket")
first = second = False
landed = 0

def on_event(ev):
    global first, landed
    if isinstance(ev, Progress) and ev.done and not first:
        first, landed = True, ev.done
        signal.raise_signal(signal.SIGINT)  # Ctrl+C

call = getattr(cls, name)

def again(*args, **kwargs):
    global second
    if first and not second:
        second = True
        signal.raise_signal(signal.SIGINT)  # Ctrl+C again, in the run's clean-up
        print("went on", flush=True)
    return call(*args, **kwargs)

setattr(cls, name, again)
signal.signal(signal.SIGINT, signal.default_int_handler)  # (as in a terminal)
try:
    if sys.argv[1] == "stream":
        omniget.stream(sys.argv[4], io.BytesIO(), on_event=on_event)
    else:
        omniget.download(sys.argv[4], sys.argv[2], on_event=on_event,
                         settings=omniget.Settings(state_dir=Path(sys.argv[3])))
except KeyboardInterrupt:
    print("KeyboardInterrupt", second, landed, flush=True)
    sys.exit(130)
print("returned", flush=True)
"""


@pytest.mark.parametrize("where", ["journal", "libcurl", "stream"])
def test_ctrl_c_twice_lets_the_run_save_its_place_and_raises_keyboard_interrupt(
    httpd: HTTPServer, tmp_path: Path, where: str
) -> None:
    """A second Ctrl+C as the first one's clean-up runs: as the stopped file's place is
    written to the journal, or inside a libcurl callback as its transfer is taken out.
    asyncio.run's handler raised KeyboardInterrupt right there: the place was never
    saved (the rerun began at byte 0; at times a task destroyed pending, or a process
    that never ended), or pycurl turned it into a SystemError (exit 1). The clean-up
    goes on to its end now, then KeyboardInterrupt; the rerun resumes from the place.
    (``stream``: inside a libcurl callback too; it keeps no place to resume from.)"""
    url, data = _slow(httpd, f"{where}.bin")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [sys.executable, "-c", TWICE, where, str(tmp_path / "out"), str(tmp_path / "state"),
         url], capture_output=True, text=True, env=env, timeout=60,
    )
    *before, said = proc.stdout.splitlines() or [""]
    assert (proc.returncode, before, said.rpartition(" ")[0], proc.stderr) == (
        130, ["went on"], "KeyboardInterrupt True", ""), proc.stderr
    landed = int(said.rpartition(" ")[2])
    assert landed > 0
    if where == "stream":
        return
    assert _resumed(url, tmp_path) >= landed
    assert (tmp_path / "out" / f"{where}.bin").read_bytes() == data


def test_a_keyboard_interrupt_in_the_run_s_last_steps_does_not_hold_its_close_forever(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a program's own ``asyncio.run``, a second Ctrl+C is asyncio's: it raises
    KeyboardInterrupt wherever the loop is. Landing in the run's last clean-up steps, it
    left the run's end unsaid, and adownload's close of its engine waited for that end
    forever (the process had to be killed). Now KeyboardInterrupt comes out of
    asyncio.run, nothing of the run is left, and the same call finds the file whole."""
    from omniget.engine.checkpoints import stop_syncs
    from omniget.engine.context import RunContext

    def cut(ctx: RunContext) -> None:
        stop_syncs(ctx)
        raise KeyboardInterrupt  # (a Ctrl+C landing just after it)

    monkeypatch.setattr("omniget.engine.core.stop_syncs", cut)
    data = random.Random("cut").randbytes(200_000)
    url = httpd.add(httpd.new_path("cut.bin"), data)
    settings = omniget.Settings(state_dir=tmp_path / "state")
    ended: list[BaseException] = []

    def program() -> None:
        try:
            asyncio.run(omniget.adownload(url, tmp_path / "out", settings=settings))
        except BaseException as exc:  # (what the program's own code would see)
            ended.append(exc)

    gc.collect()
    fds, threads = _ours(httpd.port), _threads()
    thread = threading.Thread(target=program, daemon=True)  # (a hang must not hold pytest)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "adownload's close waits for a run that ended"
    assert [type(exc) for exc in ended] == [KeyboardInterrupt]
    monkeypatch.undo()
    wait_for(lambda: _threads() <= threads, timeout=30)
    gc.collect()
    assert _ours(httpd.port) - fds == set()
    again = omniget.download(url, tmp_path / "out", settings=settings)
    assert again.succeeded and (tmp_path / "out" / "cut.bin").read_bytes() == data


def test_a_script_killed_by_sigterm_leaves_what_the_journal_recorded_for_a_rerun(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The library sets no handler of its own: a script without one dies of SIGTERM at
    once (as of a SIGKILL), and the same call resumes from what its journal had.

    The server holds the answer after 3 MB of its 4 (dripped at 2 MB/s, a loaded machine
    saw the script finish before the journal had 500,000 bytes): the kill lands
    mid-download whatever the load. A checkpoint comes every 2 MiB at most, so the
    journal records more than 500,000 of those 3 MB while it is held."""
    data = random.Random("k.bin").randbytes(4_000_000)
    url = httpd.add(httpd.new_path("k.bin"), data) + "?hold=k&stall_after=3000000"
    env = {**os.environ, "PYTHONPATH": SRC}
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, url, str(tmp_path / "out"), str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    assert httpd.held("k")
    wait_for(lambda: recorded(state) >= 500_000 or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (-signal.SIGTERM, "", "")
    kept = recorded(state)
    httpd.release("k")  # (the rerun's answer goes on)
    assert _resumed(url, tmp_path) >= kept >= 500_000
    assert (tmp_path / "out" / "k.bin").read_bytes() == data


def test_a_cancelled_adownload_task_is_resumed_by_the_same_call(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    url, data = _slow(httpd, "t.bin")

    async def main() -> None:
        began = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Started):
                began.set()

        task = asyncio.create_task(omniget.adownload(
            url, tmp_path / "out", settings=omniget.Settings(state_dir=tmp_path / "state"),
            on_event=on_event))
        await began.wait()
        await asyncio.sleep(0.3)  # (some bytes land)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return
        raise AssertionError("adownload returned instead of raising CancelledError")

    asyncio.run(main())
    assert _resumed(url, tmp_path) > 0
    assert (tmp_path / "out" / "t.bin").read_bytes() == data


def test_ctrl_c_in_a_handler_as_the_list_is_announced_stops_the_run(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A KeyboardInterrupt raised by the handler at the first ``Queued`` (Ctrl+C while it
    ran) was raised only once the whole file had downloaded: the item the list was giving
    then was started after the stop, and nothing stopped it."""
    url, _ = _slow(httpd, "q.bin")

    def on_event(ev: Event) -> None:
        if type(ev).__name__ == "Queued":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        omniget.download(url, tmp_path / "out", on_event=on_event,
                         settings=omniget.Settings(state_dir=tmp_path / "state"))
    assert not (tmp_path / "out" / "q.bin").exists()


def test_a_cancel_set_as_the_list_gives_an_item_starts_no_file(tmp_path: Path) -> None:
    """The same for an engine run's ``cancel``: set while the list was giving its next
    item, that item was started after the stop and ran to its end."""
    cancel = asyncio.Event()

    async def listing() -> AsyncIterator[omniget.Item]:
        cancel.set()
        yield omniget.Item("http://127.0.0.1:9/a.bin")

    async def main() -> omniget.Report:
        engine = Engine(omniget.Settings(state_dir=tmp_path / "st"))
        try:
            return await engine.run(listing(), tmp_path / "out", cancel=cancel)
        finally:
            await engine.aclose()

    report = asyncio.run(main())
    assert (report.results, report.stopped) == ([], True)


@pytest.mark.parametrize("form", ["download", "adownload threading", "adownload asyncio"])
def test_a_cancel_already_set_starts_nothing_and_the_report_says_so(
    httpd: HTTPServer, tmp_path: Path, form: str
) -> None:
    """An event set before the run (or left set by an earlier one: the run never clears
    it) was seen only by a poll 50 ms on, so the first files started and were reported
    as Cancelled; now, in either form, none starts and the report says it stopped."""
    urls = [httpd.add(httpd.new_path(f"s{i}.bin"), b"s" * 1000) for i in range(3)]
    settings = omniget.Settings(state_dir=tmp_path / "state")
    events: list[Event] = []

    async def run() -> omniget.Report:
        cancel = asyncio.Event() if form.endswith("asyncio") else threading.Event()
        cancel.set()
        return await omniget.adownload(urls, tmp_path / "out", settings=settings,
                                       on_event=events.append, cancel=cancel)

    if form == "download":
        cancel = threading.Event()
        cancel.set()
        report = omniget.download(urls, tmp_path / "out", settings=settings,
                                  on_event=events.append, cancel=cancel)
    else:
        report = asyncio.run(run())
    assert (report.results, report.stopped, report.exit_code) == ([], True, 130)
    assert not report.succeeded and "(stopped)" in repr(report)
    # (no file's event: the one Listed tells the list's 3 entries, none begun)
    assert httpd.requests == [] and len(events) == 1, events
    told = events[0]
    assert isinstance(told, Listed) and (told.more, told.ahead) == (False, 3), told
    assert not (tmp_path / "out").exists()


def test_help_says_a_cancel_is_not_cleared_by_the_run() -> None:
    for doc in (omniget.download.__doc__, omniget.adownload.__doc__):
        said = " ".join((doc or "").split())
        assert "already set" in said and "clear()" in said
    assert "clear()" in " ".join(README.split())


def _stop_by(way: str, url: str, tmp_path: Path) -> None:
    """A run (or a stream) stopped mid-file ``way``."""
    settings = omniget.Settings(state_dir=tmp_path / "state")
    cancel = threading.Event()

    def on_event(ev: Event) -> None:
        if not isinstance(ev, Progress) or ev.done == 0:
            return
        if way == "cancel":
            cancel.set()
        elif way == "sys-exit":
            sys.exit(3)
        elif way != "done":
            raise {"ctrl-c": KeyboardInterrupt, "cancelled-error": asyncio.CancelledError,
                   "stream": KeyboardInterrupt, "handler-error": ValueError}[way]

    if way == "stream":
        with pytest.raises(KeyboardInterrupt):
            omniget.stream(url, io.BytesIO(), on_event=on_event)
    elif way in ("done", "cancel", "handler-error"):
        report = omniget.download(url, tmp_path / "out", settings=settings,
                                  on_event=on_event, cancel=cancel)
        assert report.succeeded == (way != "cancel")
        assert isinstance(report.handler_error, ValueError) == (way == "handler-error")
    elif way == "sys-exit":
        with pytest.raises(SystemExit):
            omniget.download(url, tmp_path / "out", settings=settings, on_event=on_event)
    else:
        with pytest.raises(BaseException) as stopped:
            omniget.download(url, tmp_path / "out", settings=settings, on_event=on_event)
        assert isinstance(stopped.value, (KeyboardInterrupt, asyncio.CancelledError))


@pytest.mark.parametrize(
    "way", ["done", "cancel", "ctrl-c", "cancelled-error", "sys-exit", "handler-error", "stream"])
def test_a_run_however_it_ends_leaves_no_descriptor_or_thread_behind(
    httpd: HTTPServer, tmp_path: Path, way: str
) -> None:
    """Its sockets, part files, journal, event loop and threads are all let go of once
    download() (or stream()) is back, stopped or not; and a second call works."""
    url = _slow(httpd, "f.bin")[0] if way != "done" else httpd.add(
        httpd.new_path("f.bin"), b"f" * 100_000)
    omniget.download(httpd.add(httpd.new_path("warm.bin"), b"w"), tmp_path / "warm",
                     settings=omniget.Settings(state_dir=tmp_path / "warm-state"))
    gc.collect()
    fds, threads = _ours(httpd.port), _threads()
    _stop_by(way, url, tmp_path)
    wait_for(lambda: _threads() <= threads, timeout=30)
    gc.collect()  # (nothing of the run may need the collector to let go of it)
    assert _ours(httpd.port) - fds == set()
    again = omniget.download(url.partition("?")[0], tmp_path / "out",
                             settings=omniget.Settings(state_dir=tmp_path / "state"))
    assert again.succeeded
