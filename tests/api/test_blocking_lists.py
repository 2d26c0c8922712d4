"""A plain (sync) list whose next entry takes long to come, as ``extract(url)``'s does while
its source fetches the next page: the files already begun go on meanwhile, and a stop
(Ctrl+C, ``cancel``, a cancelled task) ends the wait at once, their resume state kept."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine.events import Event, Progress, Started
from omniget.model import Item
from omniget.sources.base import Source

#: Seconds the slow page is held at most (no stop may wait for it). Only a failing run
#: waits that long: a passing one opens the page as it ends. (10 s was a bound a loaded
#: machine could pass: the page came, and the check that the stop never waited failed.)
HELD = 30.0
BIG = bytes(range(256)) * 4000  # ~1 MiB, sent at 200 kB/s: still coming when stopped


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


class Gate:
    """A page held until :meth:`open` (or HELD s): ``asked`` once it is requested."""

    def __init__(self, httpd: HTTPServer, path: str, lines: list[str]) -> None:
        self.asked, self.answered = threading.Event(), threading.Event()
        self._open = threading.Event()
        self.body = json.dumps(lines).encode()
        self.url = httpd.handle(path, self._answer)

    def _answer(self, _req: object) -> tuple[int, dict[str, str], bytes]:
        self.asked.set()
        self._open.wait(HELD)
        self.answered.set()
        return 200, {}, self.body

    def open(self) -> None:
        self._open.set()


class TwoPages(Source):
    """``https://twopages.test/BASE``: the URLs listed in ``BASE/p0.json``, then those
    of ``BASE/p1.json`` (a request each, as a paged listing API)."""

    name = "twopages"
    patterns = (r"^https?://twopages\.test/",)
    examples = ("https://twopages.test/http://127.0.0.1:9/list/",)

    async def items(self) -> AsyncIterator[Item]:
        base = self.url.removeprefix("https://twopages.test/")
        for n in range(2):
            for url in await self.ctx.http.get_json(f"{base}p{n}.json"):
                yield Item(url)


def _list_threads_end() -> None:
    """The thread left taking the list's next entry ends once the page came."""
    for thread in threading.enumerate():
        if thread.name.startswith("omniget-list"):
            thread.join(HELD)
            assert not thread.is_alive()


@pytest.mark.parametrize("how", ["cancel", "task"])
def test_a_stop_while_extract_s_next_page_is_fetched_stops_at_once(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """``download(extract(url))``: extract's next() waited for the page on download's
    own loop thread, so that loop stood still (the file begun made no progress) and a
    ``cancel`` set or the task cancelled was seen only once the page came."""
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (TwoPages, *builtin))
    first = httpd.add(httpd.new_path("first.bin"), BIG) + "?drip=200000"
    httpd.add("/pages/p0.json", json.dumps([first]).encode())
    page = Gate(httpd, "/pages/p1.json", [httpd.url("/never.bin")])
    stop = threading.Event()

    def on_event(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.done > 0 and page.asked.is_set():
            stop.set()

    items = omniget.extract("https://twopages.test/" + httpd.url("/pages/"))
    try:
        began = time.monotonic()
        if how == "cancel":
            report = omniget.download(items, tmp_path / "out", settings=_settings(tmp_path),
                                      on_event=on_event, cancel=stop)
            assert report.stopped and (report.failed, report.interrupted) == (1, 1)
        else:
            async def main() -> None:
                task = asyncio.create_task(omniget.adownload(
                    items, tmp_path / "out", settings=_settings(tmp_path), on_event=on_event))
                await asyncio.to_thread(stop.wait, HELD)
                task.cancel()
                await task

            with pytest.raises(asyncio.CancelledError):
                asyncio.run(main())
        assert not page.answered.is_set() and time.monotonic() - began < HELD
    finally:
        page.open()
    _list_threads_end()
    assert (tmp_path / "out" / "first.bin.omniget-part").exists()
    assert all(r.path != "/never.bin" for r in httpd.requests)


SCRIPT = """
import signal, sys, urllib.request
import omniget
signal.signal(signal.SIGINT, signal.default_int_handler)  # (as in a program run from a shell)
first, page, out, state = sys.argv[1:]

def entries():
    yield first
    with urllib.request.urlopen(page) as answer:  # more URLs, on a page slow to come
        yield from answer.read().decode().split()

def on_event(event):
    if type(event).__name__ == "Progress" and event.done > 0:
        print("progress", flush=True)

try:
    omniget.download(entries(), out, settings=omniget.Settings(state_dir=state, retries=0),
                     on_event=on_event)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_while_a_generator_waits_for_its_next_entry_stops_at_once(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A script's ``download(entries())``, Ctrl+C while the generator waits for a page:
    the Ctrl+C was seen only once the page came (held here: never), and meanwhile the
    file begun made no progress. Now it stops at once, the file's state kept: a rerun
    resumes it."""
    first = httpd.add(httpd.new_path("first.bin"), BIG)
    page = Gate(httpd, "/more.txt", [])
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, str(script), first + "?drip=200000", page.url, str(out), str(state)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "progress\n"  # (the file goes on while it waits)
        assert page.asked.wait(HELD)
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(HELD) == 130
        assert time.monotonic() - began < HELD / 2 and not page.answered.is_set()
        assert proc.stdout.read().splitlines()[-1] == "interrupted"
    finally:
        page.open()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    started: list[Event] = []
    again = omniget.download(first, out, settings=omniget.Settings(state_dir=state, retries=0),
                             on_event=started.append)
    assert again.ok == 1 and (out / "first.bin").read_bytes() == BIG
    assert [ev.resumed > 0 for ev in started if isinstance(ev, Started)] == [True]


def test_a_plain_list_and_a_generator_give_the_same_files(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Entries from a generator (taken on a thread of their own) and from a list (taken
    on the loop): the same files, in the same order, an error from the generator raised."""
    urls = [httpd.add(httpd.new_path(f"{n}.bin"), bytes([n]) * 1000) for n in range(5)]

    def entries() -> Iterator[str]:
        yield from urls

    report = omniget.download(entries(), tmp_path / "a", settings=_settings(tmp_path))
    listed = omniget.download(urls, tmp_path / "b", settings=_settings(tmp_path))
    assert [r.path.name for r in report.results if r.path] == [f"{n}.bin" for n in range(5)]
    assert [r.path.name for r in listed.results if r.path] == [f"{n}.bin" for n in range(5)]

    def broken() -> Iterator[str]:
        yield urls[0]
        raise OSError("the list's file went away")

    with pytest.raises(OSError, match="went away"):
        omniget.download(broken(), tmp_path / "c", settings=_settings(tmp_path))


def test_an_engine_reads_a_generator_off_its_loop(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``Engine.run`` as ``download``: a generator's next() on a thread of its own (it may
    wait; it was the loop's), a list as before."""
    from omniget.engine import Engine

    urls = [httpd.add(httpd.new_path(f"{n}.bin"), bytes([n]) * 1000) for n in range(3)]
    read_on: list[str] = []

    def entries() -> Iterator[Item]:
        for url in urls:
            read_on.append(threading.current_thread().name)
            yield Item(url)

    async def main() -> tuple[omniget.Report, omniget.Report]:
        eng = Engine(_settings(tmp_path))
        try:
            return (await eng.run(entries(), tmp_path / "a"),
                    await eng.run([Item(u) for u in urls], tmp_path / "b"))
        finally:
            await eng.aclose()

    made, listed = asyncio.run(main())
    assert made.ok == listed.ok == 3
    assert read_on == ["omniget-list"] * 3
