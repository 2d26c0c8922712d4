"""A resume journal that cannot be used (its state folder is a file, unwritable, full; the
database is from a newer omniget): downloads go on without resume state, as curl and aria2
would, and no byte an earlier run kept is thrown away. (A damaged one is moved aside and
made again: see tests/unit/test_journal_repair.py.)"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.core import Engine
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.report import Report
from omniget.errors import StorageError, TransientError
from omniget.model import Digest, Item
from omniget.settings import Settings

KiB = 1024


def broken(state: Path, how: str) -> None:
    """Make ``state`` a state folder whose journal cannot be used, ``how``."""
    if how == "a file":
        state.write_text("not a folder")
        return
    state.mkdir()
    if how == "newer":
        Journal(state / FILENAME).close()
        db = sqlite3.connect(state / FILENAME)
        db.execute("UPDATE schema_version SET version = 99")
        db.commit()
        db.close()


@pytest.mark.parametrize("how", ["a file", "newer"])
def test_downloads_go_on_without_resume_state(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, the whole run stopped at once (exit 7), nothing downloaded."""
    state = tmp_path / "state"
    broken(state, how)
    before = sorted((p.name, p.read_bytes()) for p in state.iterdir()) if state.is_dir() else []
    data = payload(300 * KiB, 71)
    url = httpd.add(httpd.new_path("f.bin"), data)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="omniget"):
        report = download([url], out, settings=Settings(state_dir=state))
    assert report.ok == 1, report.failures
    assert (out / "f.bin").read_bytes() == data
    assert isinstance(report.journal_error, StorageError)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"resume journal {state / FILENAME}: ")
    assert warning.endswith("; downloading without resume state")
    if state.is_dir():  # (left as it was: a newer omniget's)
        assert sorted((p.name, p.read_bytes()) for p in state.iterdir()) == before


def test_a_part_file_of_an_earlier_run_is_kept_and_one_of_this_run_removed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Without the journal an earlier run's part file cannot be resumed, nor may it be
    started over (the journal may be fine again tomorrow): that file fails, and says so.
    A part file this run leaves could never be resumed: it is not left."""
    state = tmp_path / "state"
    broken(state, "a file")
    kept, cut = payload(300 * KiB, 72), payload(300 * KiB, 73)
    a = httpd.add(httpd.new_path("kept.bin"), kept)
    b = httpd.add(httpd.new_path("cut.bin"), cut)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"kept.bin{PART_SUFFIX}").write_bytes(kept[: 100 * KiB])
    settings = Settings(state_dir=state, retries=0)
    report = download([a, b + "?reset=100000"], out, settings=settings)
    assert report.ok == 0 and report.failed == 2
    first, second = (r.error for r in report.results)
    assert isinstance(first, StorageError) and isinstance(second, TransientError)
    assert "its part file is kept, not resumed" in str(first)
    assert f"delete kept.bin{PART_SUFFIX} to start over" in str(first)
    assert (out / f"kept.bin{PART_SUFFIX}").read_bytes() == kept[: 100 * KiB]
    assert sorted(p.name for p in out.iterdir()) == [f"kept.bin{PART_SUFFIX}"]
    assert httpd.requests_to("/" + a.split("/", 3)[3]) == []


def test_a_file_failing_its_digest_without_a_journal_keeps_nothing(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A file that fails its digest keeps its bytes for a rerun only when its record
    can say what they are: without a journal it leaves nothing, and does not say it
    kept them."""
    state = tmp_path / "state"
    broken(state, "a file")
    url = httpd.add(httpd.new_path("d.bin"), payload(40 * KiB, 74))
    item = Item(url, filename="d.bin", digest=Digest("sha256", "a" * 64))
    out = tmp_path / "out"
    report = download([item], out, settings=Settings(state_dir=state))
    assert report.exit_code == 4
    assert str(report.failures[0].error).endswith(" twice (the server sends the same bytes"
                                                  " each time: is the checksum right?)")
    assert not out.exists() or list(out.iterdir()) == []


class FullJournal(Journal):
    """A journal on a disk that filled up: what was recorded stays readable, and no new
    record fits (as SQLite answers then)."""

    def start(self, key: str, **kw: object) -> None:
        raise StorageError(f"resume journal {self.path}: start failed: database or disk is full")


def test_a_journal_that_fills_up_leaves_new_files_unrecorded_not_failed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, every file failed at its first checkpoint (exit 7) with its bytes fetched
    and kept in a part file nothing recorded (so a rerun started it over)."""
    data = [payload(3 * 1024 * KiB, 74 + i) for i in range(2)]
    urls = [httpd.add(httpd.new_path(f"big{i}.bin"), d) for i, d in enumerate(data)]
    out = tmp_path / "out"
    journal = FullJournal(tmp_path / "state" / FILENAME)
    settings = Settings(state_dir=tmp_path / "state", split=1, checkpoint_bytes=256 * KiB)

    async def go() -> Report:
        engine = Engine(settings, journal=journal)
        try:
            return await engine.run([Item(u) for u in urls], out)
        finally:
            await engine.aclose()

    try:
        with caplog.at_level(logging.WARNING, logger="omniget"):
            report = asyncio.run(go())
    finally:
        journal.close()
    assert report.ok == 2, report.failures
    assert [(out / f"big{i}.bin").read_bytes() == d for i, d in enumerate(data)] == [True] * 2
    assert report.journal_error is not None and "disk is full" in str(report.journal_error)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.endswith("disk is full; going on without resume state for the rest of the run")
