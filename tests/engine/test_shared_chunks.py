"""Chunks shared by content address (fetched once per run, copied where else they are
needed): a copy is only taken from bytes still there as they were fetched."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

from tests.engine.test_engine_memory import blob, make, run

from omniget.engine.events import Event, Finished
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.model import ByteRange, Digest, Item, LocalSlice, Piece, Transform

K = "http://cdn.test/k"


def md5(data: bytes) -> Digest:
    return Digest("md5", hashlib.md5(data).hexdigest())


def test_a_file_fetched_again_after_its_digest_failed_fetches_its_chunks_again(
    tmp_path: Path,
) -> None:
    """The file's other piece came corrupt (no digest of its own): the whole file missed
    its digest and was fetched again, but its chunk was then "copied" from the file's own
    part file, emptied for that new start: "shorter than expected", exit 7."""
    chunk = blob(50_000, 1)
    stored = zlib.compress(chunk)
    mem = MemoryTransport()
    mem.add(K, stored)
    mem.add("http://cdn.test/p", b"p" * 5000)
    mem.on("http://cdn.test/p", lambda req, n: MemResponse(200, b"q" * 5000) if n == 0 else None)
    k = Piece(K, size=len(chunk), transform=Transform.ZLIB, fetched_digest=md5(stored))
    item = Item(K, filename="a.bin", digest=md5(chunk + b"p" * 5000),
                pieces=(k, Piece("http://cdn.test/p", size=5000)))
    eng, _ = make(tmp_path, mem)
    report = run(eng, [item], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "a.bin").read_bytes() == chunk + b"p" * 5000


def test_a_copy_from_a_file_changed_since_is_fetched_instead(tmp_path: Path) -> None:
    """The first file, which holds the chunk, is changed once finished: the second file's
    copy of the chunk misses the chunk's digest and the chunk is fetched (before: the
    copy was tried again and again, and the file failed)."""
    chunk = blob(50_000, 2)
    stored = zlib.compress(chunk)
    mem = MemoryTransport()
    mem.add(K, stored)
    k = Piece(K, size=len(chunk), transform=Transform.ZLIB, fetched_digest=md5(stored),
              digest=md5(chunk))

    def spoil(event: Event) -> None:
        if isinstance(event, Finished) and event.item.filename == "a.bin":
            with open(tmp_path / "a.bin", "r+b") as f:
                f.seek(len(chunk) - 1)
                f.write(b"!")

    eng, _ = make(tmp_path, mem, split=1)
    eng.on_event = spoil
    first = Piece(local=LocalSlice("a.bin", ByteRange(0, 10)))  # (after a.bin is done)
    items = [Item(K, filename="a.bin", pieces=(k,)),
             Item(K, filename="b.bin", pieces=(first, k))]
    report = run(eng, items, tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "b.bin").read_bytes() == chunk[:10] + chunk
    assert [r.url for r in mem.requests].count(K) == 2
