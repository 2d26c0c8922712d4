"""Engine behaviour against the in-memory transport double (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.engine._syncs import no_syncs

from omniget.engine import Engine
from omniget.engine.events import Event, Finished, Retrying
from omniget.engine.journal import Journal
from omniget.engine.report import Report
from omniget.engine.retry import FakeClock
from omniget.engine.transports.base import Head, Headers, Request, Sink
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.model import ByteRange, Digest, Item, LocalSlice, Piece, Transform
from omniget.settings import Settings

MiB = 1024 * 1024
URL = "http://files.test/data.bin"


def blob(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(block[:32] + i.to_bytes(8, "big")).digest()[:8] + block[8:]
        i += 1
    return bytes(out[:n])


def run(engine: Engine, items: list[Item], dest: Path, within: float | None = None) -> Report:
    """Run to the end; ``within``: fail with TimeoutError after that many seconds (a hang)."""

    async def go() -> Report:
        try:
            return await asyncio.wait_for(engine.run(items, dest), within)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def make(tmp_path: Path, mem: MemoryTransport, **kw: Any) -> tuple[Engine, list[Event]]:
    events: list[Event] = []
    settings = Settings(**{"min_split_size": 256 * 1024, **kw})
    eng = Engine(
        settings,
        transports={"http": mem},
        journal=Journal(tmp_path / "state" / "journal.sqlite"),
        clock=FakeClock(),
        on_event=events.append,
    )
    return eng, events


def test_plain_file_downloads_and_renames(tmp_path: Path) -> None:
    mem = MemoryTransport()
    data = blob(3 * MiB)
    mem.add(URL, data)
    eng, events = make(tmp_path, mem)
    report = run(eng, [Item(URL)], tmp_path / "out")
    assert report.exit_code == 0, report.failures
    out = tmp_path / "out" / "data.bin"
    assert out.read_bytes() == data
    assert sorted(p.name for p in out.parent.iterdir()) == ["data.bin"]
    assert any(isinstance(e, Finished) and e.verified == "size" for e in events)


def test_split_fixed_uses_ranges(tmp_path: Path) -> None:
    mem = MemoryTransport(chunk=16 * 1024)
    data = blob(4 * MiB, 1)
    mem.add(URL, data)
    eng, _ = make(tmp_path, mem, split=4)
    report = run(eng, [Item(URL)], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "data.bin").read_bytes() == data
    ranged = [r for r in mem.requests if r.range is not None]
    assert len(ranged) >= 3
    assert all(r.if_range for r in ranged)


@pytest.mark.parametrize("later", ["same", "other"])
def test_a_digest_a_later_answer_of_a_split_gives_must_hold_too(
    tmp_path: Path, later: str
) -> None:
    """The 206s of a split give a Repr-Digest of their own: one that is not the first
    answer's says the file is other bytes (exit 4). Before, only the first answer's
    digests were taken, whatever the others said."""
    mem = MemoryTransport(chunk=16 * 1024)
    data = blob(4 * MiB, 5)
    other = data if later == "same" else blob(4 * MiB, 6)

    def repr_digest(of: bytes) -> str:
        return "sha-256=:" + base64.b64encode(hashlib.sha256(of).digest()).decode() + ":"

    served = MemoryTransport()  # (its answers, Range and all, with a digest added)
    served.add(URL, data, etag='"s"')

    def answer(req: Request, n: int) -> MemResponse | None:
        res = served._answer(req, n)
        whole = res.status == 200
        res.headers = {**res.headers, "repr-digest": repr_digest(data if whole else other)}
        return res

    mem.on(URL, answer)
    eng, _ = make(tmp_path, mem, split=4)
    report = run(eng, [Item(URL)], tmp_path)
    assert len([r for r in mem.requests if r.range is not None]) >= 3
    if later == "same":
        assert report.exit_code == 0, report.failures
        assert report.results[0].verified == "sha256"
    else:
        assert report.exit_code == 4
        assert "sha256 mismatch" in str(report.failures[0].error)


def test_reset_is_retried_and_resumed(tmp_path: Path) -> None:
    mem = MemoryTransport()
    data = blob(MiB, 2)
    mem.add(URL, data)
    mem.on(
        URL,
        lambda req, n: (
            MemResponse(200, data, {"etag": '"x"'}, reset_after=300_000) if n == 0 else None
        ),
    )
    mem.files[URL] = (data, {"etag": '"x"'})
    eng, events = make(tmp_path, mem)
    report = run(eng, [Item(URL)], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "data.bin").read_bytes() == data
    assert mem.requests[1].range == ByteRange(300_000, MiB)
    assert any(isinstance(e, Retrying) for e in events)


def test_digest_mismatch_fails_with_integrity_error(tmp_path: Path) -> None:
    mem = MemoryTransport()
    data = blob(100_000, 3)
    mem.add(URL, data)
    bad = Digest("sha256", hashlib.sha256(b"other").hexdigest())
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(URL, digest=bad)], tmp_path)
    assert report.exit_code == 4
    assert not (tmp_path / "data.bin").exists()


def test_a_large_split_file_is_hashed_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (hashed on the loop, a GiB file stalled every other transfer for seconds)
    import threading

    from omniget.engine import finish
    from omniget.engine.verify import file_digests as real

    threads: list[threading.Thread] = []

    def spy(*args: Any, **kw: Any) -> list[str]:
        threads.append(threading.current_thread())
        return real(*args, **kw)

    monkeypatch.setattr(finish, "file_digests", spy)
    mem = MemoryTransport(chunk=64 * 1024)
    data = blob(finish.HASH_IN_THREAD + MiB, 4)
    mem.add(URL, data)
    eng, _ = make(tmp_path, mem, split=3)
    report = run(eng, [Item(URL, digest=Digest("sha256", hashlib.sha256(data).hexdigest()))],
                 tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "data.bin").read_bytes() == data
    assert threads and threading.main_thread() not in threads


@pytest.mark.parametrize(("retries", "fetches"), [(0, 1), (1, 2), (5, 2)])
def test_digest_mismatch_downloads_again_within_retries(
    tmp_path: Path, retries: int, fetches: int
) -> None:
    # a wrong --checksum with --retries 0 costs one download, not three; with more, the
    # second one's bytes hash as the first's, and a third would too: none is made
    mem = MemoryTransport()
    mem.add(URL, blob(100_000, 3))
    bad = Digest("sha256", hashlib.sha256(b"other").hexdigest())
    eng, _ = make(tmp_path, mem, retries=retries)
    report = run(eng, [Item(URL, digest=bad)], tmp_path)
    assert report.exit_code == 4
    assert len(mem.requests) == fetches
    assert ("twice" in str(report.failures[0].error)) is (fetches == 2)


def test_a_digest_header_that_changes_with_the_same_bytes_is_fetched_again(
    tmp_path: Path,
) -> None:
    """The same bytes, but the server's Repr-Digest of them is another at each answer:
    not the same answer twice (the server is in flux), fetched again as before."""
    data = blob(100_000, 4)
    mem = MemoryTransport()
    mem.add(URL, data)

    def answer(req: Request, n: int) -> MemResponse:
        said = base64.b64encode(hashlib.sha256(data + bytes([n])).digest()).decode()
        return MemResponse(200, data, {"repr-digest": f"sha-256=:{said}:"})

    mem.on(URL, answer)
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(URL)], tmp_path)
    assert report.exit_code == 4
    assert len(mem.requests) == 3
    assert "twice" not in str(report.failures[0].error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin.omniget-part", "state"]


def test_zlib_pieces_and_local_slices(tmp_path: Path) -> None:
    mem = MemoryTransport()
    a, b = blob(300_000, 4), blob(200_000, 5)
    md5: Callable[[bytes], Digest] = lambda x: Digest("md5", hashlib.md5(x).hexdigest())  # noqa: E731
    pieces = []
    for url, raw in (("http://cdn.test/a", a), ("http://cdn.test/b", b)):
        stored = zlib.compress(raw)
        mem.add(url, stored)
        pieces.append(
            Piece(
                url, size=len(raw), transform=Transform.ZLIB, fetched_digest=md5(stored),
                digest=md5(raw),
            )
        )
    whole = Item(
        "http://cdn.test/a",
        filename="game.bin",
        pieces=tuple(pieces),
        digest=Digest("sha256", hashlib.sha256(a + b).hexdigest()),
    )
    # same chunk again in another file: fetched once per run
    again = Item("http://cdn.test/a", filename="copy.bin", pieces=(pieces[0],))
    sliced = Item(
        "http://x.test/none",
        filename="tail.bin",
        pieces=(Piece(local=LocalSlice("game.bin", ByteRange(len(a), len(a) + 1000))),),
    )
    eng, _ = make(tmp_path, mem, jobs=1)
    report = run(eng, [whole, again, sliced], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "game.bin").read_bytes() == a + b
    assert (tmp_path / "copy.bin").read_bytes() == a
    assert (tmp_path / "tail.bin").read_bytes() == b[:1000]
    assert [r.url for r in mem.requests].count("http://cdn.test/a") == 1


@pytest.mark.parametrize("stop_at", [0.02, 0.05, 0.08])
def test_a_stop_while_files_wait_for_a_shared_chunk(tmp_path: Path, stop_at: float) -> None:
    """Three files share a chunk: the first fetches it (slowly), the other two wait for
    it, and the run is stopped meanwhile. Each file ends done or interrupted (never
    assembled without its chunk, never a crash), and a rerun makes all three exact."""
    chunk = blob(100_000, 21)
    stored = zlib.compress(chunk)

    class Slow(MemoryTransport):
        async def fetch(self, request: Request, sink: Sink) -> Head:
            if request.url == "http://cdn.test/k":
                await asyncio.sleep(0.1)
            return await super().fetch(request, sink)

    k = Piece(
        "http://cdn.test/k",
        size=len(chunk),
        transform=Transform.ZLIB,
        fetched_digest=Digest("md5", hashlib.md5(stored).hexdigest()),
    )
    items = [
        Item("http://cdn.test/k", filename="a.bin", pieces=(k,)),
        Item("http://cdn.test/k", filename="b.bin", pieces=(k, Piece("http://cdn.test/b"))),
        Item("http://cdn.test/k", filename="c.bin", pieces=(k, Piece("http://cdn.test/c"))),
    ]
    want = {"a.bin": chunk, "b.bin": chunk + b"bee", "c.bin": chunk + b"sea"}

    def transport() -> Slow:
        mem = Slow()
        mem.add("http://cdn.test/k", stored)
        mem.add("http://cdn.test/b", b"bee")
        mem.add("http://cdn.test/c", b"sea")
        return mem

    eng, _ = make(tmp_path, transport())

    async def stopped() -> Report:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(stop_at, stop.set)
        try:
            return await asyncio.wait_for(eng.run(items, tmp_path, cancel=stop), 10)
        finally:
            await eng.aclose()

    first = asyncio.run(stopped())
    for r in first.results:
        assert r.status == "ok" or type(r.error).__name__ == "Cancelled", r.error
        if r.status == "ok":
            assert (tmp_path / r.item.filename).read_bytes() == want[r.item.filename]
    eng2, _ = make(tmp_path, transport())
    again = run(eng2, items, tmp_path, within=10)
    assert again.exit_code == 0, again.failures
    assert {n: (tmp_path / n).read_bytes() for n in want} == want


def test_unknown_size_segments_appended_in_order(tmp_path: Path) -> None:
    mem = MemoryTransport()
    segs = [blob(10_000 + i * 777, 10 + i) for i in range(6)]
    for i, s in enumerate(segs):
        mem.add(f"http://media.test/seg{i}", s)
    item = Item(
        "http://media.test/seg0",
        filename="video.mp4",
        pieces=tuple(Piece(f"http://media.test/seg{i}") for i in range(6)),
    )
    eng, _ = make(tmp_path, mem)
    report = run(eng, [item], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "video.mp4").read_bytes() == b"".join(segs)
    assert sorted(os.listdir(tmp_path)) == ["state", "video.mp4"]


def test_rerun_skips_complete_file(tmp_path: Path) -> None:
    mem = MemoryTransport()
    mem.add(URL, b"hello")
    eng, _ = make(tmp_path, mem)
    run(eng, [Item(URL)], tmp_path)
    eng2, _ = make(tmp_path, mem)
    report = run(eng2, [Item(URL, name_from_server=True)], tmp_path)
    assert report.skipped == 1 and report.exit_code == 0
    assert len(mem.requests) == 1


@pytest.mark.parametrize("status,code", [(404, 6), (403, 5), (400, 3)])
def test_http_errors_map_to_exit_codes(tmp_path: Path, status: int, code: int) -> None:
    mem = MemoryTransport()
    mem.on(URL, lambda req, n: MemResponse(status, b"no"))
    eng, _ = make(tmp_path, mem)
    item = Item(URL)
    report = run(eng, [item], tmp_path)
    assert report.exit_code == code
    assert list(tmp_path.glob("data.bin*")) == []
    [failure] = report.failures
    if status != 403:  # (403 is an AuthRequired: a SourceError, with the URL instead)
        assert getattr(failure.error, "item", None) is item  # (the transport knew no item)


def test_permission_error_is_storage_error_with_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = MemoryTransport()
    mem.add(URL, b"data")
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: Any) -> int:
        if str(path).endswith(".omniget-part"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", deny)
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(URL)], tmp_path / "o")
    assert report.exit_code == 7
    msg = str(report.failures[0].error)
    assert "permission denied" in msg and "data.bin.omniget-part" in msg


def test_first_answer_with_wrong_range_is_never_spliced(tmp_path: Path) -> None:
    """With the size known up front, the first request is ranged: its 206 is checked too."""
    mem = MemoryTransport()
    data = blob(200_000, 30)
    mem.add(URL, data, etag='"e"')  # same validator: only the offset check can catch it

    def bad_first(req: Request, n: int) -> MemResponse | None:
        if n == 0:  # claims bytes 100..end, sends them: self-consistent, not what was asked
            cr = f"bytes 100-{len(data) - 1}/{len(data)}"
            return MemResponse(206, data[100:], {"content-range": cr, "etag": '"e"'})
        return None

    mem.on(URL, bad_first)
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(URL, size_bytes=len(data))], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "data.bin").read_bytes() == data


def test_local_slice_of_a_renamed_producer_does_not_hang(tmp_path: Path) -> None:
    mem = MemoryTransport()
    mem.add("http://cdn.test/game", b"new-bytes")
    (tmp_path / "game.bin").write_bytes(b"old-bytes")
    producer = Item("http://cdn.test/game", filename="game.bin")  # renamed to game_1.bin
    reader = Item(
        "http://x.test/none",
        filename="head.bin",
        pieces=(Piece(local=LocalSlice("game.bin", ByteRange(0, 3))),),
    )
    eng, _ = make(tmp_path, mem, on_exists="rename")

    report = run(eng, [producer, reader], tmp_path, within=10)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "game_1.bin").read_bytes() == b"new-bytes"
    assert (tmp_path / "head.bin").read_bytes() == b"old"


@pytest.mark.parametrize("on_exists", ["rename", "skip", "overwrite"])
def test_items_of_one_run_sharing_a_name(tmp_path: Path, on_exists: str) -> None:
    """Four items named alike in one run (a gallery's "image.jpg" in four posts): with
    rename each keeps its bytes under its own name; skip keeps the first; overwrite
    leaves the last. Nothing is lost to two renames picking the same free name."""
    mem = MemoryTransport()
    bodies = [blob(300_000 + i * 1000, seed=i) for i in range(4)]
    for i, body in enumerate(bodies):
        mem.add(f"http://cdn.test/{i}/image.jpg", body)
    items = [Item(f"http://cdn.test/{i}/image.jpg", filename="image.jpg") for i in range(4)]
    eng, _ = make(tmp_path, mem, on_exists=on_exists)
    out = tmp_path / "out"

    report = run(eng, items, out, within=10)
    assert report.exit_code == 0, report.failures
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    if on_exists == "rename":
        names = ["image.jpg", "image_1.jpg", "image_2.jpg", "image_3.jpg"]
        assert got == dict(zip(names, bodies, strict=True))
        assert [r.path.name for r in report.results if r.path] == names
    elif on_exists == "skip":
        assert got == {"image.jpg": bodies[0]}
        assert [r.status for r in report.results] == ["ok", "skipped", "skipped", "skipped"]
        assert [r.reason for r in report.results[1:]] == ["same-name"] * 3
    else:
        assert got == {"image.jpg": bodies[3]}


def test_same_name_skip_says_whether_the_run_wrote_it(tmp_path: Path) -> None:
    """A file there before the run is skipped for every item ("exists"); one an earlier
    item wrote in this run, for the later ones ("same-name"); an earlier item that failed
    leaves the name to the next."""
    mem = MemoryTransport()
    mem.on("http://cdn.test/0/a.bin", lambda req, n: MemResponse(404, b"gone"))
    for i in (1, 2):
        mem.add(f"http://cdn.test/{i}/a.bin", bytes([i]) * 1000)
        mem.add(f"http://cdn.test/{i}/old.bin", b"new")
    (tmp_path / "old.bin").write_bytes(b"old")
    items = [Item(f"http://cdn.test/{i}/a.bin", filename="a.bin") for i in range(3)]
    items += [Item(f"http://cdn.test/{i}/old.bin", filename="old.bin") for i in (1, 2)]
    eng, _ = make(tmp_path, mem)

    report = run(eng, items, tmp_path, within=10)
    assert [(r.status, r.reason) for r in report.results] == [
        ("failed", ""), ("ok", ""), ("skipped", "same-name"),
        ("skipped", "exists"), ("skipped", "exists"),
    ]
    assert (tmp_path / "a.bin").read_bytes() == bytes([1]) * 1000
    assert (tmp_path / "old.bin").read_bytes() == b"old"


@pytest.mark.parametrize("changes", [False, True])
def test_refresh_hook_on_403(tmp_path: Path, changes: bool) -> None:
    mem = MemoryTransport()
    mem.on(URL, lambda req, n: MemResponse(403, b"expired"))
    mem.add("http://files.test/fresh.bin", b"fresh")
    calls: list[Item] = []

    async def refresh(item: Item) -> Item:
        calls.append(item)
        if not changes:
            return item
        return Item("http://files.test/fresh.bin", filename=item.filename)

    eng, _ = make(tmp_path, mem)
    eng.refresh = refresh
    report = run(eng, [Item(URL)], tmp_path)
    assert len(calls) == 1
    if changes:
        assert report.exit_code == 0
        assert (tmp_path / "data.bin").read_bytes() == b"fresh"
    else:
        assert report.exit_code == 5
        assert [r.url for r in mem.requests] == [URL]  # no pointless second try


def test_a_proxys_407_is_an_authentication_failure_that_names_the_proxy(
    tmp_path: Path,
) -> None:
    mem = MemoryTransport()
    mem.on(URL, lambda req, n: MemResponse(407, b"proxy login"))
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(URL)], tmp_path)
    assert report.exit_code == 5  # (was 3: a server failure)
    message = str(report.failures[0].error)
    assert "proxy refused" in message and "user name and password" in message
    assert len(mem.requests) == 1  # not retried


def test_the_same_output_path_twice_in_one_run_is_written_once(tmp_path: Path) -> None:
    mem = MemoryTransport()
    data = blob(300_000)
    mem.add(URL, data)
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(URL), Item(URL), Item(URL)], tmp_path / "out")
    assert report.exit_code == 0, report.failures
    assert [r.status for r in report.results] == ["ok", "skipped", "skipped"]
    assert (tmp_path / "out" / "data.bin").read_bytes() == data
    assert len(mem.requests) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.bin"]


def test_local_slice_of_a_later_item_under_one_job(tmp_path: Path) -> None:
    # The reader holds the only file slot after its network piece; it must give the slot
    # up while it waits for the producer, or neither ever finishes. (It gives back its
    # set-up slot too until the run lists the producer.)
    mem = MemoryTransport()
    mem.add("http://cdn.test/head", b"head-")
    mem.add("http://cdn.test/mid", b"mid")
    mem.add("http://cdn.test/later", b"later-bytes")
    reader = Item(
        "http://cdn.test/head",
        filename="mixed.bin",
        pieces=(
            Piece("http://cdn.test/head", size=5),
            Piece(local=LocalSlice("later.bin", ByteRange(0, 5))),
        ),
    )
    mid = Item("http://cdn.test/mid", filename="mid.bin")
    producer = Item("http://cdn.test/later", filename="later.bin")
    eng, _ = make(tmp_path, mem, jobs=1)

    report = run(eng, [reader, mid, producer], tmp_path, within=10)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "mixed.bin").read_bytes() == b"head-later"
    assert (tmp_path / "later.bin").read_bytes() == b"later-bytes"


def test_local_slices_wait_for_a_producer_listed_after_them(tmp_path: Path) -> None:
    # Under -j 1 the run sets up two items ahead. Two readers of a file listed last would
    # hold both set-up slots for good if they kept them while waiting: the producer could
    # never be listed. They give their slots back until the list reaches it.
    mem = MemoryTransport()
    mem.add("http://cdn.test/later", b"later-bytes")
    for name in ("a", "b"):
        mem.add(f"http://cdn.test/{name}", name.encode() * 3)

    def reader(name: str, start: int) -> Item:
        return Item(
            f"http://cdn.test/r{name}",
            filename=f"r{name}.bin",
            pieces=(Piece(local=LocalSlice("later.bin", ByteRange(start, start + 5))),),
        )

    items = [
        reader("1", 0),
        reader("2", 6),
        Item("http://cdn.test/a", filename="a.bin"),
        Item("http://cdn.test/b", filename="b.bin"),
        Item("http://cdn.test/later", filename="later.bin"),
    ]
    eng, _ = make(tmp_path, mem, jobs=1)

    report = run(eng, items, tmp_path, within=10)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "r1.bin").read_bytes() == b"later"
    assert (tmp_path / "r2.bin").read_bytes() == b"bytes"
    assert (tmp_path / "b.bin").read_bytes() == b"bbb"


def test_local_slice_of_a_file_no_item_writes_fails_once_the_list_ends(tmp_path: Path) -> None:
    mem = MemoryTransport()
    mem.add("http://cdn.test/a", b"aaa")
    reader = Item(
        "http://x.test/r",
        filename="r.bin",
        pieces=(Piece(local=LocalSlice("never.bin", ByteRange(0, 3))),),
    )
    eng, _ = make(tmp_path, mem, jobs=1)
    report = run(eng, [reader, Item("http://cdn.test/a", filename="a.bin")], tmp_path, within=10)
    assert report.exit_code == 7
    (failure,) = report.failures
    assert "never.bin, which does not exist and which no item of this run writes" in str(
        failure.error
    )
    assert (tmp_path / "a.bin").read_bytes() == b"aaa"


def test_local_slice_of_a_missing_file_says_so(tmp_path: Path) -> None:
    mem = MemoryTransport()
    reader = Item(
        "http://x.test/none",
        filename="head.bin",
        pieces=(Piece(local=LocalSlice("absent.bin", ByteRange(0, 3))),),
    )
    eng, _ = make(tmp_path, mem)
    report = run(eng, [reader], tmp_path)
    assert report.exit_code == 7
    (failure,) = report.failures
    assert "absent.bin, which does not exist" in str(failure.error)
    assert "resume" not in str(failure.error)


class _Counting:
    """A sink passing everything on, and setting ``owner.cancel`` after
    ``owner.cancel_at`` bytes of body."""

    def __init__(self, inner: Sink, owner: Any) -> None:
        self.inner, self.owner, self.seen = inner, owner, 0

    def on_head(self, head: Head) -> None:
        self.inner.on_head(head)

    def on_data(self, data: bytes) -> None:
        self.inner.on_data(data)
        self.seen += len(data)
        if self.seen >= self.owner.cancel_at and self.owner.cancel is not None:
            self.owner.cancel.set()


class CancelAfter(MemoryTransport):
    """Sets ``cancel`` once ``cancel_at`` bytes of body have gone to the engine."""

    cancel: asyncio.Event | None = None
    cancel_at = MiB

    async def fetch(self, request: Request, sink: Sink) -> Head:
        return await super().fetch(request, _Counting(sink, self))


def cancelled_run(eng: Engine, mem: CancelAfter, items: list[Item], dest: Path) -> Report:
    async def first() -> Report:
        mem.cancel = asyncio.Event()
        try:
            return await eng.run(items, dest, cancel=mem.cancel)
        finally:
            await eng.aclose()

    return asyncio.run(first())


def test_cancel_reports_fetched_bytes_and_a_rerun_resumes(tmp_path: Path) -> None:
    data = blob(4 * MiB, 7)
    mem = CancelAfter(chunk=16 * 1024)
    mem.add(URL, data)
    eng, _ = make(tmp_path, mem, split=1, checkpoint_seconds=0.0)

    report = cancelled_run(eng, mem, [Item(URL)], tmp_path / "out")
    [res] = report.results
    assert res.status == "failed" and type(res.error).__name__ == "Cancelled"
    assert MiB <= res.fetched < len(data)
    assert res.path == tmp_path / "out" / "data.bin"
    assert (tmp_path / "out" / "data.bin.omniget-part").exists()

    mem2 = MemoryTransport(chunk=16 * 1024)
    mem2.add(URL, data)
    eng2, _ = make(tmp_path, mem2, split=1)
    again = run(eng2, [Item(URL)], tmp_path / "out")
    assert again.exit_code == 0, again.failures
    assert (tmp_path / "out" / "data.bin").read_bytes() == data
    assert again.fetched <= len(data) - MiB  # resumed, not fetched again
    assert mem2.requests[0].range is not None


@pytest.mark.parametrize("synced", [False, True])
def test_a_run_after_a_power_loss_trusts_only_bytes_synced_before(
    tmp_path: Path, synced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints are committed as bytes are written; the part file is fdatasync'ed
    every ``fsync_seconds`` (and as the file stops). A run on another boot resumes from
    the synced spans only: none where no sync returned well."""
    if not synced:
        no_syncs(monkeypatch)
    data = blob(4 * MiB, 9)
    mem = CancelAfter(chunk=16 * 1024)
    mem.cancel_at = 2 * MiB
    mem.add(URL, data)
    eng, _ = make(
        tmp_path, mem, split=1, checkpoint_seconds=0.0, fsync_seconds=0.0 if synced else 1e9
    )
    out = tmp_path / "out"
    [first] = cancelled_run(eng, mem, [Item(URL)], out).results
    assert first.status == "failed" and type(first.error).__name__ == "Cancelled"
    path = tmp_path / "state" / "journal.sqlite"
    with Journal(path) as same_boot, Journal(path, boot="after a power loss") as other:
        [key] = same_boot.keys("")
        written = sum(e - s for s, e in same_boot.spans(key))
        trusted = sum(e - s for s, e in other.spans(key))
    assert written >= 2 * MiB - 16 * 1024
    assert (0 < trusted <= written) if synced else trusted == 0

    mem2 = MemoryTransport(chunk=16 * 1024)
    mem2.add(URL, data)
    eng2 = Engine(
        Settings(split=1),
        transports={"http": mem2},
        journal=Journal(path, boot="after a power loss"),
        clock=FakeClock(),
    )
    again = run(eng2, [Item(URL)], out)
    assert again.exit_code == 0, again.failures
    assert (out / "data.bin").read_bytes() == data
    assert again.fetched == len(data) - trusted


@pytest.mark.parametrize("synced", [False, True])
def test_pieces_done_in_the_part_file_are_trusted_after_a_power_loss_once_synced(
    tmp_path: Path, synced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not synced:  # (no sync returns well: none, as the file stops, either)
        no_syncs(monkeypatch)
    parts = [blob(64 * 1024, 20 + i) for i in range(6)]

    class CancelAtFifth(CancelAfter):
        async def fetch(self, request: Request, sink: Sink) -> Head:
            if len(self.requests) == 4 and self.cancel is not None:
                self.cancel.set()
            return await super().fetch(request, sink)

    mem = CancelAtFifth(chunk=16 * 1024)
    for i, p in enumerate(parts):
        mem.add(f"http://cdn.test/p{i}", p)
    pieces = tuple(
        Piece(
            f"http://cdn.test/p{i}",
            size=len(p),
            digest=Digest("sha256", hashlib.sha256(p).hexdigest()),
        )
        for i, p in enumerate(parts)
    )
    item = Item("http://cdn.test/p0", filename="whole.bin", pieces=pieces)
    eng, _ = make(tmp_path, mem, split=1, fsync_seconds=0.0 if synced else 1e9)
    out = tmp_path / "out"
    [first] = cancelled_run(eng, mem, [item], out).results
    assert first.status == "failed"
    path = tmp_path / "state" / "journal.sqlite"
    with Journal(path) as same_boot, Journal(path, boot="after a power loss") as other:
        [key] = same_boot.keys("")
        done, trusted = same_boot.pieces(key), other.pieces(key)
    assert len(done) == 4
    assert (trusted and set(trusted) <= set(done)) if synced else not trusted

    mem2 = MemoryTransport(chunk=16 * 1024)
    for i, p in enumerate(parts):
        mem2.add(f"http://cdn.test/p{i}", p)
    eng2 = Engine(
        Settings(split=1),
        transports={"http": mem2},
        journal=Journal(path, boot="after a power loss"),
        clock=FakeClock(),
    )
    again = run(eng2, [item], out)
    assert again.exit_code == 0, again.failures
    assert (out / "whole.bin").read_bytes() == b"".join(parts)
    assert len(mem2.requests) == len(parts) - len(trusted)


def test_a_rerun_checks_bytes_all_in_place_against_the_digest_heard_before(
    tmp_path: Path,
) -> None:
    """A run stopped after every byte came (one of them wrong) and was checkpointed, but
    before the check: the rerun asks nothing (nothing is left to fetch), so it hears no
    digest. The one the server gave the first time is in the journal, and is checked."""
    data = blob(256 * 1024, 8)
    sha = hashlib.sha256(data)
    digest = {"repr-digest": f"sha-256=:{base64.b64encode(sha.digest()).decode()}:"}
    mem = CancelAfter(chunk=16 * 1024)
    mem.cancel_at = 64 * 1024
    mem.add(URL, data, etag='"v1"', **digest)
    eng, _ = make(tmp_path, mem, split=1, checkpoint_seconds=0.0)
    out = tmp_path / "out"
    [first] = cancelled_run(eng, mem, [Item(URL)], out).results
    assert first.status == "failed" and type(first.error).__name__ == "Cancelled"
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    [key] = journal.keys("")
    record = journal.get(key)
    assert record is not None and record.digest == f"sha256:{sha.hexdigest()}"

    bad = bytearray(data)  # (as if the rest had come, one byte wrong, before the stop)
    bad[1000] ^= 0xFF
    (out / "data.bin.omniget-part").write_bytes(bad)
    journal.save_spans(key, [(0, len(data))])
    journal.close()
    mem2 = MemoryTransport(chunk=16 * 1024)
    mem2.add(URL, data, etag='"v1"', **digest)
    eng2, _ = make(tmp_path, mem2, split=1)
    again = run(eng2, [Item(URL)], out)
    assert again.exit_code == 0, again.failures
    assert (out / "data.bin").read_bytes() == data
    assert again.results[0].verified == "sha256"
    assert len(mem2.requests) == 1  # fetched again once the check failed


@pytest.mark.parametrize("listing", ["open", "done"])
def test_a_finished_file_is_let_go_while_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    """A long run keeps its results, not its finished jobs (and their part files, spans and
    requests): less memory, and less for the garbage collector to walk again and again.
    ``open``: the item list is still going; ``done``: the run only waits for its files."""
    import gc
    import weakref

    import omniget.engine.core as core
    from omniget.engine.job import FileJob  # (what core.FileJob is)

    jobs: dict[str, weakref.ref[Any]] = {}

    class Tracked(FileJob):
        def __init__(self, ctx: Any, item: Item, *args: Any, **kw: Any) -> None:
            super().__init__(ctx, item, *args, **kw)
            jobs[item.download_url] = weakref.ref(self)

    class Gated(MemoryTransport):
        gate: asyncio.Event

        async def fetch(self, request: Request, sink: Sink) -> Head:
            if request.url.endswith("/slow.bin"):
                await self.gate.wait()
            return await super().fetch(request, sink)

    monkeypatch.setattr(core, "FileJob", Tracked)
    mem = Gated()
    fast, slow = "http://files.test/fast.bin", "http://files.test/slow.bin"
    late = "http://files.test/late.bin"
    mem.add(fast, blob(1000))
    mem.add(slow, blob(2000, seed=1))
    mem.add(late, blob(10, seed=2))
    eng, events = make(tmp_path, mem)

    async def items() -> AsyncIterator[Item]:
        yield Item(fast)
        yield Item(slow)
        if listing == "open":
            await mem.gate.wait()
            yield Item(late)

    async def go() -> Report:
        mem.gate = asyncio.Event()
        running = asyncio.create_task(eng.run(items(), tmp_path / "o"))
        for _ in range(1000):
            await asyncio.sleep(0)
            if any(isinstance(e, Finished) and e.item.download_url == fast for e in events):
                break
        for _ in range(20):  # (the job's done callback, the run moving on)
            await asyncio.sleep(0)
        gc.collect()
        assert jobs[fast]() is None, "the finished job is still referenced"
        assert jobs[slow]() is not None
        mem.gate.set()
        try:
            return await asyncio.wait_for(running, 10)
        finally:
            await eng.aclose()

    report = asyncio.run(go())
    assert [(r.item.download_url, r.status) for r in report.results] == [
        (fast, "ok"),
        (slow, "ok"),
        *([(late, "ok")] if listing == "open" else []),
    ]
    assert (tmp_path / "o" / "fast.bin").read_bytes() == blob(1000)


class _Hanging(MemoryTransport):
    """The first answer (no Range) sends its head and ``first_bytes`` of body, then hangs
    (or fails with ``first_error`` once two more requests are out); ranged requests
    answer ``range_status`` (the file's bytes when 206) or hang when it is None. Records
    which fetches were cancelled."""

    def __init__(self, data: bytes, *, first_bytes: int, range_status: int | None = 206,
                 first_error: Exception | None = None) -> None:
        super().__init__(chunk=16 * 1024)
        self.add(URL, data)
        self.data = data
        self.first_bytes = first_bytes
        self.range_status = range_status
        self.first_error = first_error
        self.cancelled: list[str] = []

    async def fetch(self, request: Request, sink: Sink) -> Head:
        self.requests.append(request)
        ranged = request.range is not None
        try:
            if ranged and self.range_status == 206:
                return await super().fetch(request, sink)
            if ranged and self.range_status is not None:
                head = Head(self.range_status, request.url, Headers([("content-length", "0")]))
                sink.on_head(head)
                return head
            await asyncio.sleep(0)
            headers = [("content-length", str(len(self.data))), ("accept-ranges", "bytes")]
            head = Head(200 if not ranged else 206, request.url, Headers(headers))
            if not ranged:
                sink.on_head(head)
                sink.on_data(self.data[: self.first_bytes])
                if self.first_error is not None:
                    while len(self.requests) < 3:  # (fails once the split spans are out)
                        await asyncio.sleep(0)
                    raise self.first_error
            await asyncio.Event().wait()  # a connection that went silent
            raise AssertionError("not reached")
        except asyncio.CancelledError:
            self.cancelled.append("ranged" if ranged else "first")
            raise


def test_a_split_span_failing_stops_the_first_span_at_once(tmp_path: Path) -> None:
    """The first span runs in the file's own task; a permanent error on another span
    ends the file at once instead of waiting for the first span's (silent) connection."""
    mem = _Hanging(blob(4 * MiB, 3), first_bytes=64 * 1024, range_status=403)
    eng, _ = make(tmp_path, mem, split=2)
    report = run(eng, [Item(URL)], tmp_path / "out", within=10)
    [res] = report.results
    assert res.status == "failed" and type(res.error).__name__ == "AuthRequired", res.error
    assert mem.cancelled == ["first"]
    assert (tmp_path / "out" / "data.bin.omniget-part").exists()  # kept for a rerun
    assert res.fetched == 64 * 1024


def test_the_first_span_failing_stops_the_split_spans(tmp_path: Path) -> None:
    from omniget.errors import RemoteError

    mem = _Hanging(blob(4 * MiB, 4), first_bytes=64 * 1024, range_status=None,
                   first_error=RemoteError("HTTP 400 from the first connection", status=400))
    eng, _ = make(tmp_path, mem, split=3)
    report = run(eng, [Item(URL)], tmp_path / "out", within=10)
    [res] = report.results
    assert res.status == "failed" and "first connection" in str(res.error)
    assert sorted(mem.cancelled) == ["ranged", "ranged"]


def test_cancel_while_split_stops_every_connection_and_keeps_the_part(tmp_path: Path) -> None:
    mem = _Hanging(blob(4 * MiB, 5), first_bytes=64 * 1024, range_status=None)
    eng, _ = make(tmp_path, mem, split=2, checkpoint_seconds=0.0)

    async def go() -> Report:
        cancel = asyncio.Event()
        running = asyncio.create_task(eng.run([Item(URL)], tmp_path / "out", cancel=cancel))
        for _ in range(200):
            await asyncio.sleep(0)
            if len(mem.requests) >= 2:
                break
        cancel.set()
        try:
            return await asyncio.wait_for(running, 10)
        finally:
            await eng.aclose()

    report = asyncio.run(go())
    [res] = report.results
    assert res.status == "failed" and type(res.error).__name__ == "Cancelled"
    assert sorted(mem.cancelled) == ["first", "ranged"]
    assert (tmp_path / "out" / "data.bin.omniget-part").exists()
