"""Pieces that bring more bytes than they say: a zlib piece that inflates past its size
(a zip bomb) or a piece whose answer is longer than its size fails as soon as it goes
past, with memory bounded, and writes nothing past its place."""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import pytest
from tests.engine.test_engine_memory import make, run

from omniget import IntegrityError
from omniget.engine.transports.memory import MemoryTransport
from omniget.model import Item, Piece, Transform

MiB = 1 << 20
URL = "http://cdn.test/z"


def bomb(mib: int) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros (about 1/1000 of that, compressed)."""
    c = zlib.compressobj(9)
    zero = bytes(MiB)
    return b"".join(c.compress(zero) for _ in range(mib)) + c.flush()


@pytest.mark.parametrize("transform", ["zlib", "identity"])
def test_a_piece_that_goes_past_its_size_fails_at_once_in_bounded_memory(
    tmp_path: Path, transform: str
) -> None:
    """Before, a 256 KiB chunk of a bomb inflated to 256 MiB in one call, and every byte
    was written (past the piece's place, over the next one's) before the size was checked
    at the end: 400 MiB on the disk and in memory for a piece of 1000 bytes."""
    zipped = transform == "zlib"
    body = bomb(256) if zipped else bytes(64 * MiB)
    mem = MemoryTransport(chunk=256 * 1024)
    mem.add(URL, body)
    mem.add("http://cdn.test/b", b"b" * 100)
    piece = Piece(URL, size=1000, transform=Transform.ZLIB if zipped else Transform.IDENTITY)
    item = Item(URL, filename="o.bin", pieces=(piece, Piece("http://cdn.test/b", size=100)))
    eng, _ = make(tmp_path, mem, retries=0)
    tracemalloc.start()
    try:
        report = run(eng, [item], tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [result] = report.results
    assert isinstance(result.error, IntegrityError), result.error
    assert "more than its 1000 bytes" in str(result.error)
    assert peak < 16 * MiB, peak
    assert result.fetched <= 1 * MiB
    part = tmp_path / "o.bin.omniget-part"
    assert not part.exists() or part.stat().st_size <= 1100


def test_a_zlib_piece_inflated_in_blocks_is_whole(tmp_path: Path) -> None:
    """The same bomb as a piece of its real size: every block of it comes out."""
    mem = MemoryTransport(chunk=256 * 1024)
    mem.add(URL, bomb(8))
    item = Item(URL, filename="o.bin", pieces=(Piece(URL, size=8 * MiB, transform=Transform.ZLIB),))
    eng, _ = make(tmp_path, mem)
    report = run(eng, [item], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "o.bin").read_bytes() == bytes(8 * MiB)


def test_a_zlib_piece_of_gzip_data_says_so(tmp_path: Path) -> None:
    """It said "incorrect header check" only."""
    import gzip

    mem = MemoryTransport()
    mem.add(URL, gzip.compress(b"x" * 1000))
    item = Item(URL, filename="o.bin", pieces=(Piece(URL, transform=Transform.ZLIB),))
    eng, _ = make(tmp_path, mem, retries=0)
    [result] = run(eng, [item], tmp_path).results
    assert isinstance(result.error, IntegrityError)
    assert "gzip" in str(result.error), result.error
