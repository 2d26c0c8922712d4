"""A file made of pieces whose part file changed between two runs. Each verified piece
keeps a fingerprint of its bytes in the part file (the CRC-32 of its first and last few
KiB, as spans do: see tests/integration/test_part_content.py); a rerun reads them back,
and fetches again the pieces that do not hold them, with one warning for the file.
Before, a part file overwritten in place, or replaced by one that got its inode number,
was trusted piece by piece, and the rerun finished the file with the foreign bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine._syncs import no_syncs
from tests.integration.test_part_content import same_number
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import Engine, Report
from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.events import Event, Warned
from omniget.engine.journal import FILENAME, Journal, handle
from omniget.engine.prints import PRINT_BYTES, changed
from omniget.engine.retry import FakeClock
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.model import ByteRange, Digest, Item, LocalSlice, Piece, Transform
from omniget.settings import Settings

KiB = 1024
#: What the rerun says of a file some of whose pieces it fetches again.
CHANGED = (
    "its part file does not hold the bytes the resume journal recorded for some of its"
    " pieces (changed since the last run?); fetching those again"
)


def md5(data: bytes) -> Digest:
    return Digest("md5", hashlib.md5(data).hexdigest())


def run_once(
    mem: MemoryTransport, item: Item, out: Path, state: Path, **settings: object
) -> tuple[Report, list[Event]]:
    """One run of ``item`` to ``out`` through ``mem`` (one connection, no retries): its
    report and events."""
    events: list[Event] = []
    eng = Engine(
        Settings(state_dir=state, split=1, retries=0, **settings),  # type: ignore[arg-type]
        transports={"http": mem},
        clock=FakeClock(),
        on_event=events.append,
    )

    async def go() -> Report:
        try:
            return await asyncio.wait_for(eng.run([item], out), 20)
        finally:
            await eng.aclose()

    return asyncio.run(go()), events


def warned(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Warned)]


class Cut:
    """f.bin, five pieces (one of them shorter than a print's ends, one sent zlib
    compressed: its print is of its output), served by a transport double; a first run
    fails at the last piece (404), the four before it verified and recorded (one
    connection: they come in order)."""

    SIZES = (20 * KiB, 20 * KiB, 1000, 20 * KiB, 20 * KiB)

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        rng = random.Random(7)
        self.blobs = [rng.randbytes(n) for n in self.SIZES]
        self.data = b"".join(self.blobs)
        self.starts = [sum(self.SIZES[:i]) for i in range(len(self.SIZES))]
        self.mem = MemoryTransport(chunk=3000)  # (chunks shorter than a print's ends)
        self.urls = [f"http://cdn.test/p{i}" for i in range(len(self.blobs))]
        for i, (url, blob) in enumerate(zip(self.urls, self.blobs, strict=True)):
            self.mem.add(url, zlib.compress(blob) if i == 3 else blob)
        self.item = Item(self.urls[0], path="f.bin", pieces=tuple(
            Piece(url, size=len(blob), digest=md5(blob),
                  transform=Transform.ZLIB if i == 3 else Transform.IDENTITY)
            for i, (url, blob) in enumerate(zip(self.urls, self.blobs, strict=True))
        ))
        self.tmp_path = tmp_path
        self.out, self.state = tmp_path / "out", tmp_path / "state"
        self.part = self.out / f"f.bin{PART_SUFFIX}"
        self.mem.on(self.urls[-1], lambda req, n: MemResponse(404))
        report, _ = self.run(**settings)
        assert report.results[0].status == "failed"
        assert self.part.read_bytes()[: self.starts[-1]] == self.data[: self.starts[-1]]
        del self.mem.handlers[self.urls[-1]]
        self.mem.requests.clear()

    def run(self, **settings: object) -> tuple[Report, list[Event]]:
        return run_once(self.mem, self.item, self.out, self.state, **settings)

    def rerun(self, **settings: object) -> tuple[list[str], list[int]]:
        """Run again to the end: the right bytes; the warnings it gave, and which pieces it
        fetched."""
        report, events = self.run(**settings)
        assert report.exit_code == 0, report.failures
        assert (self.out / "f.bin").read_bytes() == self.data
        assert sorted(p.name for p in self.out.iterdir()) == ["f.bin"]
        fetched = sorted(self.urls.index(r.url) for r in self.mem.requests)
        return warned(events), fetched

    def flip(self, at: int) -> None:
        """Change the part file's byte at ``at`` in place."""
        with open(self.part, "r+b") as f:
            f.seek(at)
            f.write(bytes([self.data[at] ^ 0xFF]))


def test_a_part_file_left_alone_fetches_only_the_pieces_it_lacks(tmp_path: Path) -> None:
    cut = Cut(tmp_path)
    assert cut.rerun() == ([], [4])


def test_a_part_file_overwritten_in_place_fetches_every_piece_again(tmp_path: Path) -> None:
    cut = Cut(tmp_path)
    ino = cut.part.stat().st_ino
    with open(cut.part, "r+b") as f:  # (the same file: its inode number stays)
        f.write(random.Random(8).randbytes(cut.part.stat().st_size))
    assert cut.part.stat().st_ino == ino
    assert cut.rerun() == ([CHANGED], [0, 1, 2, 3, 4])


def test_a_part_file_replaced_by_one_with_its_inode_number_fetches_every_piece_again(
    tmp_path: Path,
) -> None:
    cut = Cut(tmp_path)
    if not same_number(cut.part, random.Random(9).randbytes(cut.part.stat().st_size)):
        pytest.skip("no new file got the part file's inode number here")
    assert cut.rerun() == ([CHANGED], [0, 1, 2, 3, 4])


@pytest.mark.parametrize("where", ["first", "last"])
def test_one_piece_changed_is_the_one_fetched_again(tmp_path: Path, where: str) -> None:
    """The others are kept: each piece was checked on its own when it came, and its
    fingerprint is its own (a repair fetches the bad chunks only)."""
    cut = Cut(tmp_path)
    start, end = cut.starts[1], cut.starts[2]
    cut.flip(start + PRINT_BYTES - 1 if where == "first" else end - PRINT_BYTES)
    assert cut.rerun() == ([CHANGED], [1, 4])


def test_pieces_changed_give_one_warning_for_the_file(tmp_path: Path) -> None:
    cut = Cut(tmp_path)
    for at in (0, cut.starts[2] + 500, cut.starts[4] - 1):  # (pieces 0, 2 and 3)
        cut.flip(at)
    assert cut.rerun() == ([CHANGED], [0, 2, 3, 4])


def test_a_part_file_cut_short_fetches_the_pieces_past_its_end_again(tmp_path: Path) -> None:
    """A piece not all there has lost bytes: it is fetched again whole (a span cut short
    is resumed where the file ends instead; a piece is checked as a whole)."""
    cut = Cut(tmp_path)
    os.truncate(cut.part, cut.starts[3] + 5 * KiB)
    assert cut.rerun() == ([CHANGED], [3, 4])


def test_pieces_recorded_without_a_print_are_trusted_as_before(tmp_path: Path) -> None:
    """An older omniget's record (schema 3) has no fingerprints: its pieces are taken as
    they are, the part file is not read."""
    cut = Cut(tmp_path)
    with sqlite3.connect(cut.state / FILENAME) as db:
        db.execute("UPDATE pieces SET print = NULL")
    db.close()
    cut.flip(cut.starts[1])
    report, events = cut.run()
    assert report.exit_code == 0, report.failures
    assert [e for e in events if isinstance(e, Warned)] == []
    assert [r.url for r in cut.mem.requests] == [cut.urls[4]]


def test_after_a_reboot_the_synced_pieces_are_checked_by_their_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first two pieces were synced to the disk, the next two only written, and a
    power loss took those two's bytes. The rerun, on another boot, fetches them again
    (not trusted: not synced) and finds the first two as their prints say (of the bytes
    written before the sync that marked them synced): no warning."""
    no_syncs(monkeypatch)  # (no sync of its own, as the file fails either: one is played)
    cut = Cut(tmp_path, fsync_seconds=3600.0)
    with Journal(cut.state / FILENAME) as journal:
        [(key, _)] = journal.unfinished()
        journal.save_synced(key, [], [0, 1])
    with open(cut.part, "r+b") as f:  # (what the power loss took)
        f.seek(cut.starts[2])
        f.write(bytes(cut.starts[4] - cut.starts[2]))
    monkeypatch.setattr(handle, "_BOOT", "after the power loss")
    assert cut.rerun() == ([], [2, 3, 4])
    # (the same with the first piece's synced bytes changed: it is fetched again)
    cut = Cut(tmp_path / "again", fsync_seconds=3600.0)
    with Journal(cut.state / FILENAME, boot="after the power loss") as journal:
        [(key, _)] = journal.unfinished()
        journal.save_synced(key, [], [0, 1])
    monkeypatch.setattr(handle, "_BOOT", "and another")
    cut.flip(10)
    assert cut.rerun() == ([CHANGED], [0, 2, 3, 4])


def test_a_piece_changed_is_fetched_again_through_the_api(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The same against a real server, with download(): one piece's bytes changed in the
    part file (the last of them), another replaced (the first)."""
    data = payload(256 * KiB, 61)
    path = httpd.new_path("whole.bin")
    url = httpd.add(path, data)
    missing = httpd.new_path("tail.bin")  # (not there on the first run: 404)
    quarter = 64 * KiB
    pieces = [
        Piece(url, range=ByteRange(i * quarter, (i + 1) * quarter), size=quarter,
              digest=md5(data[i * quarter : (i + 1) * quarter]))
        for i in range(3)
    ]
    tail = data[3 * quarter :]
    item = Item(url, path="f.bin", pieces=(
        *pieces, Piece(httpd.url(missing), size=quarter, digest=md5(tail))))
    out, state = tmp_path / "out", tmp_path / "state"
    settings = Settings(state_dir=state, split=1, retries=0)
    assert download([item], out, settings=settings).results[0].status == "failed"
    part = out / f"f.bin{PART_SUFFIX}"
    with open(part, "r+b") as f:
        f.seek(2 * quarter - 1)
        f.write(b"\0" if data[2 * quarter - 1] else b"\1")
        f.seek(0)
        f.write(payload(quarter, 62))
    httpd.add(missing, tail)
    httpd.clear_log()
    events: list[Event] = []
    report = download([item], out, settings=settings, on_event=events.append)
    assert report.exit_code == 0, report.failures
    assert (out / "f.bin").read_bytes() == data
    assert [e.message for e in events if isinstance(e, Warned)] == [CHANGED]
    assert sorted(r.header("range") or "" for r in httpd.requests_to(path)) == [
        f"bytes=0-{quarter - 1}", f"bytes={quarter}-{2 * quarter - 1}"]
    assert len(httpd.requests_to(missing)) == 1


def test_a_slice_of_a_local_file_changed_in_the_part_file_is_copied_again(
    tmp_path: Path,
) -> None:
    """Its print too is made as its bytes are written (copied, not fetched)."""
    mem = MemoryTransport()
    local = random.Random(10).randbytes(30 * KiB)
    tail = random.Random(11).randbytes(10 * KiB)
    mem.add("http://cdn.test/tail", tail)
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    (out / "src.bin").write_bytes(local)
    item = Item("http://cdn.test/tail", path="f.bin", pieces=(
        Piece(local=LocalSlice("src.bin", ByteRange(1000, 21000)), size=20000),
        Piece("http://cdn.test/tail", size=len(tail)),
    ))
    mem.on("http://cdn.test/tail", lambda req, n: MemResponse(404) if n == 0 else None)

    def run() -> tuple[str, list[str]]:
        """The file's status, and the warnings given."""
        report, events = run_once(mem, item, out, state)
        return report.results[0].status, warned(events)

    assert run() == ("failed", [])
    with open(out / f"f.bin{PART_SUFFIX}", "r+b") as f:
        f.seek(19999)
        f.write(bytes([local[20999] ^ 1]))
    assert run() == ("ok", [CHANGED])
    assert (out / "f.bin").read_bytes() == local[1000:21000] + tail


def test_many_pieces_are_checked_off_the_loop_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than CHECK_IN_THREAD pieces are read on a worker thread: the same answer."""
    from omniget.engine import pieces as pieces_module

    threads: list[object] = []
    to_thread = asyncio.to_thread

    async def counted(func: Callable[..., object], /, *args: object) -> object:
        threads.append(func)
        return await to_thread(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    count = pieces_module.CHECK_IN_THREAD + 36
    rng = random.Random(12)
    blobs = [rng.randbytes(5000) for _ in range(count)]
    mem = MemoryTransport()
    urls = [f"http://cdn.test/m{i}" for i in range(count)]
    for url, blob in zip(urls, blobs, strict=True):
        mem.add(url, blob)
    item = Item(urls[0], path="m.bin", pieces=tuple(
        Piece(url, size=len(blob), digest=md5(blob)) for url, blob in zip(urls, blobs, strict=True)
    ))
    out, state = tmp_path / "out", tmp_path / "state"
    mem.on(urls[-1], lambda req, n: MemResponse(404) if n == 0 else None)

    def run() -> tuple[str, list[str]]:
        """The file's status, and the warnings given."""
        report, events = run_once(mem, item, out, state)
        return report.results[0].status, warned(events)

    assert run() == ("failed", [])
    with open(out / f"m.bin{PART_SUFFIX}", "r+b") as f:
        f.seek(50 * 5000 + 4999)
        f.write(bytes([blobs[50][4999] ^ 1]))
    mem.requests.clear()
    assert run() == ("ok", [CHANGED])
    assert (out / "m.bin").read_bytes() == b"".join(blobs)
    assert sorted(urls.index(r.url) for r in mem.requests) == [50, count - 1]
    assert threads.count(changed) == 1
