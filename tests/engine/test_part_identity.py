"""Which part file a resume record describes: the record keeps the part file's identity
(its inode number), so bytes are resumed only from the very file they were recorded for,
and found again when the file moved with its folder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import context
from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.events import Event, Warned
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.report import Report
from omniget.engine.resume import NOT_KEPT, started_over
from omniget.settings import Settings

KiB = 1024


def run(urls: list[str], out: Path, state: Path, events: list[Event] | None = None) -> Report:
    settings = Settings(state_dir=state, retries=0, split=1)
    return download(urls, out, settings=settings,
                    on_event=events.append if events is not None else None)


def test_a_part_file_another_state_folder_started_over_is_not_resumed_from_the_first(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A run with state folder s1 is cut off at 600 KiB; a run of another download of the
    same name with state folder s2 starts that part file over and is cut off at 100 KiB;
    s1's run again. Before, it took s1's record for the part file as it was and went on at
    600 KiB: a file of both downloads' bytes (and zeros), reported as done, size ok."""
    mine, theirs = payload(1536 * KiB, 61), payload(1536 * KiB, 62)
    httpd.add("/a/x.bin", mine)
    httpd.add("/b/x.bin", theirs)  # (another file of the same name)
    url = httpd.url("/a/x.bin", reset=600 * KiB, times=1)
    out = tmp_path / "out"
    assert run([url], out, tmp_path / "s1").failed == 1
    other = run([httpd.url("/b/x.bin", reset=100 * KiB)], out, tmp_path / "s2")
    assert other.failed == 1 and (out / f"x.bin{PART_SUFFIX}").exists()
    events: list[Event] = []
    again = run([url], out, tmp_path / "s1", events)
    assert again.ok == 1, again.failures
    assert (out / "x.bin").read_bytes() == mine
    assert [e.message for e in events if isinstance(e, Warned)] == [NOT_KEPT]


def test_a_part_file_moved_with_its_folder_is_resumed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The output folder renamed between a cut-off run and its rerun: the part file is
    the one the journal recorded (in the old folder), so the rerun goes on with it. Before,
    it started over ("no resume record in this state folder")."""
    data = payload(1536 * KiB, 63)
    path = httpd.new_path("moved.bin")
    httpd.add(path, data)
    url = httpd.url(path, reset=600 * KiB, times=1)
    state = tmp_path / "state"
    assert run([url], tmp_path / "out", state).failed == 1
    shutil.move(tmp_path / "out", tmp_path / "renamed")
    httpd.clear_log()
    events: list[Event] = []
    report = run([url], tmp_path / "renamed", state, events)
    assert report.ok == 1, report.failures
    assert (tmp_path / "renamed" / "moved.bin").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "renamed").iterdir()) == ["moved.bin"]
    assert not any(isinstance(e, Warned) and e.message == started_over(state) for e in events)
    [request] = httpd.requests_to(path)
    assert request.header("range") is not None and request.header("range") != "bytes=0-"


def test_a_renewed_url_of_the_same_file_resumes_its_part_file(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A signed link cut off at 600 KiB, then the same file by a new link (its token
    renewed): the part file is the one the earlier URL's record describes and the server
    says by If-Range that the file is the same, so the rerun goes on from there (before:
    "no resume record", all 1.5 MiB again), as wget -c and curl -C - would."""
    data = payload(1536 * KiB, 64)
    path = httpd.new_path("signed.bin")
    httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    assert run([httpd.url(path, token="old", reset=600 * KiB, times=1)], out, state).failed == 1
    httpd.clear_log()
    events: list[Event] = []
    report = run([httpd.url(path, token="new")], out, state, events)
    assert report.ok == 1, report.failures
    assert (out / "signed.bin").read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["signed.bin"]
    assert not any(isinstance(e, Warned) and e.message == started_over(state) for e in events)
    [request] = httpd.requests_to(path)
    assert request.header("range") not in (None, "bytes=0-")
    assert request.header("if-range") is not None


def test_a_new_url_with_other_bytes_under_the_same_name_starts_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The part file of x.bin from one URL, then another URL whose x.bin is another file:
    its validator does not match the recorded one, so none of the earlier bytes stay."""
    first, other = payload(1536 * KiB, 65), payload(1536 * KiB, 66)
    httpd.add("/one/x.bin", first)
    httpd.add("/two/x.bin", other)
    out, state = tmp_path / "out", tmp_path / "state"
    assert run([httpd.url("/one/x.bin", reset=600 * KiB, times=1)], out, state).failed == 1
    report = run([httpd.url("/two/x.bin")], out, state)
    assert report.ok == 1, report.failures
    assert (out / "x.bin").read_bytes() == other


def test_a_part_file_of_an_earlier_url_without_a_validator_is_not_taken(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The earlier URL's server sent neither ETag nor Last-Modified: nothing can tell
    whether the new URL serves the same bytes, so the file is fetched from its start."""
    data = payload(1536 * KiB, 67)
    path = httpd.new_path("plain.bin")
    httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    assert run([httpd.url(path, token="old", reset=600 * KiB, times=1)], out, state).failed == 1
    with sqlite3.connect(state / FILENAME) as db:  # (as if none had been sent)
        assert db.execute("UPDATE files SET etag = NULL, last_modified = NULL").rowcount == 1
    httpd.clear_log()
    report = run([httpd.url(path, token="new")], out, state)
    assert report.ok == 1, report.failures
    assert (out / "plain.bin").read_bytes() == data
    [request] = httpd.requests_to(path)
    assert request.header("range") in (None, "bytes=0-")


def test_a_journal_of_many_unfinished_records_is_not_read_whole(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A journal with more than FEW unfinished records of other folders: a run reads
    FEW + 1 of them, this folder's, and those by its files' keys (an index), not all
    (before, every one: with 50,000, ~0.4 s and ~25 MB more per run); a part file that
    moved with its folder, and one an earlier URL left, are still resumed."""
    monkeypatch.setattr(context, "FEW", 3)
    read: list[int] = []

    def spied(plain: Any) -> Any:
        def spy(self: Journal, *args: Any) -> Any:
            rows = plain(self, *args)
            read.append(len(rows))
            return rows
        return spy

    for name in ("unfinished", "unfinished_in", "unfinished_after"):
        monkeypatch.setattr(Journal, name, spied(getattr(Journal, name)))
    moved, renewed = payload(1536 * KiB, 67), payload(1536 * KiB, 68)
    moved_path, renewed_path = httpd.new_path("moved.bin"), httpd.new_path("renewed.bin")
    httpd.add(moved_path, moved)
    httpd.add(renewed_path, renewed)
    state = tmp_path / "state"
    cut = [httpd.url(moved_path, reset=600 * KiB, times=1),
           httpd.url(renewed_path, token="old", reset=600 * KiB, times=1)]
    assert run(cut, tmp_path / "out", state).failed == 2
    with Journal.in_dir(state) as j:
        for n in range(20):
            j.start(f"/else/{n}\0u{n}\0f{n}", path=f"/else/{n}/f{n}", url="u", size=None,
                    etag=None, last_modified=None, part=10**9 + n)
    shutil.move(tmp_path / "out", tmp_path / "renamed")
    (tmp_path / "out").mkdir()
    shutil.move(tmp_path / "renamed" / f"renewed.bin{PART_SUFFIX}", tmp_path / "out")
    httpd.clear_log()
    read.clear()
    again = run([httpd.url(moved_path, reset=600 * KiB, times=1)], tmp_path / "renamed", state)
    assert again.ok == 1, again.failures
    assert (tmp_path / "renamed" / "moved.bin").read_bytes() == moved
    [request] = httpd.requests_to(moved_path)
    assert request.header("range") not in (None, "bytes=0-")
    assert sum(read) <= 3 + 1 + 1 + 1, read  # (not the 22 there are)
    read.clear()
    last = run([httpd.url(renewed_path, token="new")], tmp_path / "out", state)
    assert last.ok == 1, last.failures
    assert (tmp_path / "out" / "renewed.bin").read_bytes() == renewed
    [request] = httpd.requests_to(renewed_path)
    assert request.header("range") not in (None, "bytes=0-")
    assert sum(read) <= 3 + 1 + 1, read


def test_an_output_folder_that_is_the_new_state_folder_gets_the_usual_mode(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """--state-dir naming the output folder, both new: the folder is made as an output
    folder is (the umask's mode), not the private one of a state folder of its own (0700:
    others could not read the files downloaded); the journal file itself stays private."""
    httpd.add("/f.bin", payload(10 * KiB, 69))
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert run([httpd.url("/f.bin")], out, out).ok == 1
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert stat.S_IMODE((out / FILENAME).stat().st_mode) == 0o600
        own = tmp_path / "state"  # (a state folder of its own stays private)
        assert run([httpd.url("/f.bin")], out, own).skipped == 1
        assert stat.S_IMODE(own.stat().st_mode) == 0o700
    finally:
        os.umask(old)
