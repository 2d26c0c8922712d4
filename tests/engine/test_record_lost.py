"""A file's resume record lost or changed under its running download by another omniget
run on the same state folder: one writing the same download (same URL, same output
folder) to another name at the same time (--on-exists rename in one run, overwrite in the
other), which takes the one record there is for that download, then finishes and drops it.

The run whose record went goes on: its file finishes whole, with one warning, exit 0. It
never writes its bytes into a record that now describes the other run's part file (a
later run would resume that part file over holes), nor drops that record. Before, the
first checkpoint after the record was dropped failed the file (exit 7, "the resume
record went away"), and one while the other run held it wrote this run's spans into it.

Also here: a prune by another run (it cannot drop a running download's record), and an
earlier URL's record dropped by another run just as this one takes it over.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.core import Engine
from omniget.engine.events import Event, Warned
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.report import Report
from omniget.engine.resources import gone
from omniget.engine.resume import started_over
from omniget.model import ByteRange, Item, Piece
from omniget.settings import Settings

KiB = 1024
HALF = 512 * KiB
QUARTER = 256 * KiB
OLD = b"an earlier x.bin"


class Background:
    """A download() on a thread of its own."""

    def __init__(self, items: list[Item], out: Path, settings: Settings) -> None:
        self.events: list[Event] = []
        self.reports: list[Report] = []
        self.thread = threading.Thread(target=lambda: self.reports.append(
            download(items, out, settings=settings, on_event=self.events.append)))
        self.thread.start()

    def report(self) -> Report:
        self.thread.join(60)
        [report] = self.reports
        return report

    def warned(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, Warned)]


def settings(state: Path, on_exists: str) -> Settings:
    # (every chunk checkpointed; no sync recorded later)
    return Settings(state_dir=state, split=1, retries=0, checkpoint_bytes=1,
                    fsync_seconds=3600.0, on_exists=on_exists)  # type: ignore[arg-type]


def the_record(state: Path) -> tuple[str, list[tuple[int, int]]] | None:
    """(path, spans) of the one record in the journal; None if there is none."""
    with Journal.in_dir(state) as j:
        keys = j.keys("")
        if not keys:
            return None
        [key] = keys
        rec = j.get(key)
        assert rec is not None
        return rec.path, j.spans(key)


def dropped_under(
    a: Background, httpd: HTTPServer, item: Item, out: Path, state: Path, data: bytes
) -> None:
    """Run B writes ``item`` to x.bin (--on-exists overwrite) while A, held at ``hold=a``,
    writes it to x_1.bin: B finishes and drops the record; then A goes on to the end,
    with one warning, and both files are whole."""
    b = download([item], out, settings=settings(state, "overwrite"))
    assert b.exit_code == 0, b.failures
    assert the_record(state) is None
    httpd.release("a")
    report = a.report()
    assert report.exit_code == 0, report.failures
    assert {p.name: p.read_bytes() == data for p in out.iterdir()} == {
        "x.bin": True, "x_1.bin": True}
    [warning] = a.warned()
    assert warning.startswith("its resume record went away")


def test_a_record_another_run_took_and_dropped_is_made_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Run A (rename: x.bin is there) is held half-way into x_1.bin; run B (overwrite)
    fetches the same URL into x.bin, taking the record and dropping it when done. A goes
    on: its next checkpoint makes a new record, and x_1.bin is finished."""
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    (out / "x.bin").write_bytes(OLD)
    data = payload(1024 * KiB, 31)
    url = httpd.add(httpd.new_path("x.bin"), data) + f"?hold=a&stall_after={HALF}&times=1"
    a = Background([Item(url)], out, settings(state, "rename"))
    assert httpd.held("a")
    wait_for(lambda: the_record(state) == (str(out / "x_1.bin"), [(0, HALF)]))
    dropped_under(a, httpd, Item(url), out, state, data)
    assert the_record(state) is None  # (its new record dropped once it was done)


def test_a_record_another_run_holds_is_left_to_it(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """As above, B held a quarter in with the record its own (one source id: the same
    download at two URLs). A goes on without resume state for its file: it neither
    writes its spans into B's record (a later run would take them for x.bin's part file)
    nor drops it at its end; B then finishes with its record."""
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    (out / "x.bin").write_bytes(OLD)
    data = payload(1024 * KiB, 32)
    path = httpd.new_path("x.bin")
    base = httpd.add(path, data)
    a = Background([Item(f"{base}?hold=a&stall_after={HALF}", source_id="x")], out,
                   settings(state, "rename"))
    assert httpd.held("a")
    wait_for(lambda: the_record(state) == (str(out / "x_1.bin"), [(0, HALF)]))
    b = Background([Item(f"{base}?hold=b&stall_after={QUARTER}", source_id="x")], out,
                   settings(state, "overwrite"))
    assert httpd.held("b")
    wait_for(lambda: the_record(state) == (str(out / "x.bin"), [(0, QUARTER)]))
    httpd.release("a")
    first = a.report()
    assert first.exit_code == 0, first.failures
    assert (out / "x_1.bin").read_bytes() == data
    [warning] = a.warned()
    assert warning.startswith("another omniget run on the same state folder took its resume")
    assert the_record(state) == (str(out / "x.bin"), [(0, QUARTER)])
    httpd.release("b")
    second = b.report()
    assert second.exit_code == 0, second.failures
    assert b.warned() == []
    assert {p.name: p.read_bytes() == data for p in out.iterdir()} == {
        "x.bin": True, "x_1.bin": True}
    assert the_record(state) is None


def test_a_prune_by_another_run_leaves_a_running_downloads_record(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A prune drops only records not written for 90 days whose files are gone: a
    running download's part file is there, so even a run whose clock is 100 days ahead
    leaves its record (and with it, the run's resume state for that file)."""
    state, out = tmp_path / "state", tmp_path / "out"
    data = payload(1024 * KiB, 33)
    url = httpd.add(httpd.new_path("x.bin"), data) + f"?hold=a&stall_after={HALF}"
    a = Background([Item(url)], out, settings(state, "skip"))
    assert httpd.held("a")
    wait_for(lambda: the_record(state) == (str(out / "x.bin"), [(0, HALF)]))
    with Journal(state / FILENAME, now=lambda: time.time() + 100 * 86400) as later:
        assert later.prune(gone) == 0
    assert the_record(state) == (str(out / "x.bin"), [(0, HALF)])
    httpd.release("a")
    report = a.report()
    assert report.exit_code == 0, report.failures
    assert (out / "x.bin").read_bytes() == data and a.warned() == []


class DroppedBeforeTheMove(Journal):
    """A journal in which another run drops the record a run is taking over (the earlier
    URL's, whose part file is at the same output path) just before it moves it to its own
    key: the other run finished or dropped that download meanwhile."""

    def move(self, key: str, to: str, *, path: str) -> None:
        with Journal(self.path) as other:
            other.forget(key)
        super().move(key, to, path=path)


def test_an_earlier_urls_record_dropped_as_it_is_taken_over_leaves_the_file_going_on(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The part file then has no record: it is started over, as any such part file is,
    with that warning. Before, the file failed, exit 7 ("the resume record went away")."""
    state, out = tmp_path / "state", tmp_path / "out"
    data = payload(1024 * KiB, 34)
    path = httpd.new_path("signed.bin")
    httpd.add(path, data)
    old = download([httpd.url(path, token="old", reset=HALF, times=1)], out,
                   settings=settings(state, "skip"))
    assert old.failed == 1
    journal = DroppedBeforeTheMove(state / FILENAME)
    events: list[Event] = []

    async def go() -> Report:
        engine = Engine(settings(state, "skip"), journal=journal)
        try:
            return await engine.run([Item(httpd.url(path, token="new"))], out,
                                    on_event=events.append)
        finally:
            await engine.aclose()

    report = asyncio.run(go())
    journal.close()
    assert report.exit_code == 0, report.failures
    assert sorted(p.name for p in out.iterdir()) == ["signed.bin"]
    assert (out / "signed.bin").read_bytes() == data
    assert [e.message for e in events if isinstance(e, Warned)] == [started_over(state)]


def test_a_record_dropped_under_a_piecewise_download_is_made_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """As the first test, for a file fetched in pieces (its record keeps the pieces
    verified): A's first piece is recorded, its second held while B fetches the same
    download into x.bin and drops the record. A's next piece makes a new one."""
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    (out / "x.bin").write_bytes(OLD)
    data = payload(2 * QUARTER, 35)
    base = httpd.add(httpd.new_path("x.bin"), data)

    def item(second: str) -> Item:
        return Item(base, path="x.bin", source_id="x", pieces=(
            Piece(base, range=ByteRange(0, QUARTER)),
            Piece(second, range=ByteRange(QUARTER, 2 * QUARTER)),
        ))

    def pieces() -> dict[int, int]:
        with Journal.in_dir(state) as j:
            return {i: n for key in j.keys("") for i, n in j.pieces(key).items()}

    a = Background([item(f"{base}?hold=a")], out, settings(state, "rename"))
    assert httpd.held("a")
    wait_for(lambda: state.exists() and pieces() == {0: QUARTER})
    dropped_under(a, httpd, item(base), out, state, data)
