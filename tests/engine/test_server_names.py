"""Where a file goes, and what is there or coming: names the server chooses
(Content-Disposition) meeting other files of the same run, a folder in the way, a part file
with no record.

A server-chosen name is known only once the answer's head arrives, after the run planned
every file by its URL; the file already writing that name must not share its part file
with this one (before: one file of mixed bytes reported as done, the other failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget import Report, download
from omniget.engine.core import Engine
from omniget.engine.events import Event, Progress, Warned
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.resume import NOT_KEPT, started_over
from omniget.model import Item
from omniget.settings import Settings

KiB = 1024


def cut_once_started(urls: list[str], out: Path, settings: Settings) -> Report:
    """A run of ``urls`` into ``out``, cancelled at its first progress."""
    cancel = threading.Event()

    def stop_once_started(event: Event) -> None:
        if isinstance(event, Progress):
            cancel.set()

    return download(urls, out, settings=settings, on_event=stop_once_started, cancel=cancel)


@pytest.mark.parametrize("on_exists", ["skip", "rename", "overwrite"])
def test_a_server_name_another_file_is_writing(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, on_exists: str
) -> None:
    first, second = payload(600 * KiB, 31), payload(600 * KiB, 32)
    a, b = httpd.new_path("data.bin"), httpd.new_path("other.bin")
    httpd.add(a, first)
    httpd.add(b, second)
    urls = [
        httpd.url(a, drip=1_000_000),  # still writing data.bin when the second answer comes
        httpd.url(b, cd="data.bin", drip=8_000_000),
    ]
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)  # type: ignore[arg-type]

    report = download(urls, out, settings=settings)

    assert report.exit_code == 0, report.failures
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    if on_exists == "skip":
        assert got == {"data.bin": first}
        assert [(r.status, r.reason) for r in report.results] == [
            ("ok", ""),
            ("skipped", "same-name"),
        ]
    else:  # overwrite too: the other file is not done, so this one takes another name
        assert got == {"data.bin": first, "data_1.bin": second}


def test_two_server_names_alike_in_one_run(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Every name comes from the server, alike: each later file takes the next free name."""
    bodies = [payload(300 * KiB, 40 + i) for i in range(3)]
    urls = []
    for i, body in enumerate(bodies):
        path = httpd.new_path(f"f{i}")
        httpd.add(path, body)
        urls.append(httpd.url(path, cd="report.pdf", drip=3_000_000))
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", on_exists="rename")

    report = download(urls, out, settings=settings)

    assert report.exit_code == 0, report.failures
    got = sorted(p.read_bytes() for p in out.iterdir())
    assert got == sorted(bodies)
    assert sorted(p.name for p in out.iterdir()) == ["report.pdf", "report_1.pdf", "report_2.pdf"]


@pytest.mark.parametrize("on_exists", ["skip", "overwrite", "rename"])
def test_a_folder_where_the_file_goes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, on_exists: str
) -> None:
    """A folder of the file's name is no file to skip, nor one to replace: the file fails
    before any byte is fetched (exit 7), unless rename saves it beside the folder."""
    data = payload(100 * KiB, 70)
    path = httpd.new_path("thing.bin")
    httpd.add(path, data)
    out = tmp_path / "out"
    (out / "thing.bin").mkdir(parents=True)
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)  # type: ignore[arg-type]
    before = len(httpd.requests)

    report = download([httpd.url(path)], out, settings=settings)

    if on_exists == "rename":
        assert report.exit_code == 0, report.failures
        assert (out / "thing_1.bin").read_bytes() == data
    else:
        assert report.exit_code == 7
        assert "is a folder" in str(report.failures[0].error)
        assert len(httpd.requests) == before
        assert sorted(p.name for p in out.iterdir()) == ["thing.bin"]
    assert (out / "thing.bin").is_dir()


def test_a_part_file_without_a_record_is_started_over_with_a_word(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Its bytes may be another file's (another state folder's): not trusted, but said."""
    data = payload(200 * KiB, 71)
    path = httpd.new_path("left.bin")
    httpd.add(path, data)
    out = tmp_path / "out"
    out.mkdir()
    (out / "left.bin.omniget-part").write_bytes(b"x" * 300_000)
    events: list[Event] = []

    report = download(
        [httpd.url(path)], out, settings=Settings(state_dir=tmp_path / "state"),
        on_event=events.append,
    )

    assert report.exit_code == 0, report.failures
    assert (out / "left.bin").read_bytes() == data
    said = [e.message for e in events if isinstance(e, Warned)]
    assert said == [started_over(tmp_path / "state")]
    assert sorted(p.name for p in out.iterdir()) == ["left.bin"]


@pytest.mark.parametrize("on_exists", ["skip", "rename"])
def test_a_resumed_server_name_is_taken_for_the_rest_of_the_run(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, on_exists: str
) -> None:
    """A file resumed under the name the server gave it in an interrupted run writes that
    name again: a later file given the same name sees it taken (before: it opened the same
    part file and failed as "being downloaded by another omniget run")."""
    first, second = payload(600 * KiB, 81), payload(100 * KiB, 82)
    a, b = httpd.new_path("a"), httpd.new_path("b")
    httpd.add(a, first)
    httpd.add(b, second)
    slow = httpd.url(a, cd="report.pdf", drip=1_000_000)
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)  # type: ignore[arg-type]
    cut = cut_once_started([slow], out, settings)
    assert cut.interrupted == 1 and (out / "report.pdf.omniget-part").exists()

    report = download([slow, httpd.url(b, cd="report.pdf")], out, settings=settings)

    assert report.exit_code == 0, report.failures
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    if on_exists == "skip":
        assert got == {"report.pdf": first}
        assert [r.status for r in report.results] == ["ok", "skipped"]
    else:
        assert got == {"report.pdf": first, "report_1.pdf": second}


@pytest.mark.parametrize("on_exists", ["skip", "rename"])
def test_two_remembered_server_names_alike_meet_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, on_exists: str
) -> None:
    """Two URLs the server names alike, fetched again into an emptied folder: the journal
    gives both the name the server chose, and they meet there as in the first run (before:
    both wrote that one name, the later bytes kept and both reported done, or the second
    failed as "being downloaded by another omniget run")."""
    bodies = [payload(300 * KiB, 91), payload(300 * KiB, 92)]
    urls = []
    for i, body in enumerate(bodies):
        path = httpd.new_path(f"r{i}")
        httpd.add(path, body)
        urls.append(httpd.url(path, cd="report.pdf", drip=3_000_000))  # (both at once)
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)  # type: ignore[arg-type]
    assert download(urls, out, settings=settings).exit_code == 0
    shutil.rmtree(out)

    report = download(urls, out, settings=settings)

    assert report.exit_code == 0, report.failures
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    if on_exists == "skip":  # (which of the two: whichever took the name first)
        ok = [r for r in report.results if r.status == "ok"]
        assert len(ok) == 1 and got == {"report.pdf": bodies[report.results.index(ok[0])]}
        assert sorted((r.status, r.reason) for r in report.results) == [
            ("ok", ""),
            ("skipped", "same-name"),
        ]
    else:
        assert sorted(got) == ["report.pdf", "report_1.pdf"]
        assert sorted(got.values()) == sorted(bodies)


@pytest.mark.parametrize("on_exists", ["skip", "overwrite", "rename"])
def test_a_file_put_where_an_unfinished_one_goes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, on_exists: str
) -> None:
    """A run is cut off; before the rerun, a file appears under the final name (fetched
    some other way, say). --on-exists decides for it as for any file there: skip keeps it,
    rename saves beside it, overwrite resumes and replaces it. Before, the rerun resumed
    and replaced it whatever the mode."""
    data = payload(600 * KiB, 95)
    path = httpd.new_path("cut.bin")
    httpd.add(path, data)
    url = httpd.url(path, drip=1_000_000)
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)  # type: ignore[arg-type]
    cut = cut_once_started([url], out, settings)
    assert cut.interrupted == 1 and (out / "cut.bin.omniget-part").exists()
    (out / "cut.bin").write_bytes(b"mine")

    report = download([url], out, settings=settings)

    assert report.exit_code == 0, report.failures
    mine = (out / "cut.bin").read_bytes()
    if on_exists == "skip":
        assert mine == b"mine" and report.results[0].status == "skipped"
    elif on_exists == "rename":
        assert mine == b"mine" and (out / "cut_1.bin").read_bytes() == data
    else:
        assert mine == data


def test_a_part_file_whose_record_keeps_none_of_its_bytes_says_so(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Its record's spans were written on another boot and never synced (the machine
    restarted within seconds of its start): there is a record, but none of the bytes it
    names is known to be on the disk. Before, the warning said the part file "had no
    resume record in the state folder", which sent the user looking for another one."""
    data = payload(1024 * KiB, 72)
    path = httpd.new_path("boot.bin")
    httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    settings = Settings(state_dir=state, retries=0)
    cut = download([httpd.url(path, reset=600 * KiB, times=1)], out, settings=settings)
    assert cut.failed == 1 and (out / "boot.bin.omniget-part").exists()
    with contextlib.closing(sqlite3.connect(state / FILENAME)) as db:  # (as a kill leaves
        db.execute("UPDATE files SET synced = NULL, synced_prints = NULL")  # it: no sync)
        db.commit()
    events: list[Event] = []
    with Journal(state / FILENAME, boot="the next boot") as journal:
        [(key, _)] = journal.unfinished()
        assert journal.spans(key) == []

        async def go() -> Report:
            engine = Engine(settings, journal=journal)
            try:
                return await engine.run([Item(httpd.url(path))], out, on_event=events.append)
            finally:
                await engine.aclose()

        report = asyncio.run(go())
    assert report.exit_code == 0, report.failures
    assert (out / "boot.bin").read_bytes() == data
    said = [e.message for e in events if isinstance(e, Warned)]
    assert said == [NOT_KEPT]
