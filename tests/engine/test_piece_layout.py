"""Items whose pieces cannot make one file (overlapping, leaving holes, of another size
than the item says) are refused before any request; slices of local files that cannot
give the bytes asked fail, naming why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.engine.test_engine_memory import make, run

import omniget
from omniget import IntegrityError, UsageError
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.model import ByteRange, Digest, Item, LocalSlice, Piece, Transform

A, B = "http://cdn.test/a", "http://cdn.test/b"


def _mem() -> MemoryTransport:
    mem = MemoryTransport()
    mem.add(A, b"a" * 100)
    mem.add(B, b"b" * 100)
    return mem


BAD = {
    "overlap": ((Piece(A, offset=0, size=100), Piece(B, offset=50, size=100)), None,
                "overlap"),
    "same-offset": ((Piece(A, offset=0, size=100), Piece(B, offset=0, size=100)), None,
                    "overlap"),
    "hole": ((Piece(A, offset=0, size=100), Piece(B, offset=150, size=100)), None,
             "bytes 100..150"),
    "leading-hole": ((Piece(A, offset=100, size=100), Piece(B)), None, "bytes 0..100"),
    "unknown-size-before-another": ((Piece(A, offset=0), Piece(B, offset=50)), None,
                                    "no size"),
    "offset-after-unknown-sizes": ((Piece(A), Piece(B), Piece(B, offset=500, size=100)),
                                   None, "unknown size"),
    "item-size": ((Piece(A, size=100), Piece(B, size=100)), 150, "150 bytes"),
    "range-and-size": ((Piece(A, range=ByteRange(0, 10), size=100),), None, "10 bytes"),
    "zlib-local": ((Piece(local=LocalSlice("x.bin"), transform=Transform.ZLIB),), None,
                   "local"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_pieces_that_cannot_make_one_file_are_refused_before_any_request(
    tmp_path: Path, case: str
) -> None:
    """Before, each of these was fetched and reported ok with wrong bytes (an overlap
    written over, a hole of zeros, a piece appended over another), or failed only once
    every byte was in (the item's size)."""
    pieces, size, said = BAD[case]
    mem = _mem()
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(A, filename="o.bin", size_bytes=size, pieces=pieces)], tmp_path)
    [result] = report.results
    assert result.status == "failed" and isinstance(result.error, UsageError), result.error
    assert said in str(result.error) and "o.bin" in str(result.error)
    assert mem.requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


@pytest.mark.parametrize("case", ["overlap", "hole", "item-size"])
def test_download_refuses_them_at_once(tmp_path: Path, case: str) -> None:
    pieces, size, said = BAD[case]
    item = Item(A, filename="o.bin", size_bytes=size, pieces=pieces)
    with pytest.raises(ValueError, match=said):
        omniget.download([item], tmp_path)


GOOD = {
    "out-of-order": ((Piece(B, offset=100, size=100), Piece(A, offset=0, size=100)),
                     b"a" * 100 + b"b" * 100),
    "empty-piece": ((Piece(A, size=100), Piece("http://cdn.test/e", size=0),
                     Piece(B, size=100)), b"a" * 100 + b"b" * 100),
    "appended": ((Piece(A, size=100), Piece(B), Piece(A)), b"a" * 100 + b"b" * 100 + b"a" * 100),
    "last-size-unknown": ((Piece(A, offset=0, size=100), Piece(B, offset=100)),
                          b"a" * 100 + b"b" * 100),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_pieces_that_make_one_file_are_taken(tmp_path: Path, case: str) -> None:
    pieces, want = GOOD[case]
    mem = _mem()
    mem.add("http://cdn.test/e", b"")
    eng, _ = make(tmp_path, mem)
    report = run(eng, [Item(A, filename="o.bin", pieces=pieces)], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "o.bin").read_bytes() == want


def test_a_slice_that_starts_past_the_end_of_its_file_fails(tmp_path: Path) -> None:
    """Before, its length came out negative: no byte copied, the file ok and empty."""
    (tmp_path / "src.bin").write_bytes(b"s" * 100)
    item = Item(A, filename="o.bin", pieces=(Piece(local=LocalSlice("src.bin", ByteRange(200))),))
    eng, _ = make(tmp_path, _mem())
    report = run(eng, [item], tmp_path)
    [result] = report.results
    assert result.status == "failed"
    assert "100 bytes" in str(result.error) and "src.bin" in str(result.error)
    assert not (tmp_path / "o.bin").exists()


def test_a_slice_of_a_shorter_file_says_how_short(tmp_path: Path) -> None:
    (tmp_path / "src.bin").write_bytes(b"s" * 100)
    item = Item(A, filename="o.bin",
                pieces=(Piece(local=LocalSlice("src.bin", ByteRange(50, 500))),))
    eng, _ = make(tmp_path, _mem())
    [result] = run(eng, [item], tmp_path).results
    assert result.status == "failed"
    assert "100 bytes" in str(result.error) and "50..500" in str(result.error)


def test_a_slice_of_the_file_itself_not_there_yet_says_so(tmp_path: Path) -> None:
    """It said "the item of this run that writes it failed": the item was itself."""
    item = Item(A, filename="o.bin", pieces=(
        Piece(A, size=100), Piece(local=LocalSlice("o.bin", ByteRange(0, 5)))))
    eng, _ = make(tmp_path, _mem())
    [result] = run(eng, [item], tmp_path).results
    assert result.status == "failed"
    assert "failed" not in str(result.error) and "itself" in str(result.error)


def test_a_slice_of_its_own_part_file_is_refused(tmp_path: Path) -> None:
    """Its bytes were whatever the other pieces had written there yet (ok, racy bytes)."""
    item = Item(A, filename="o.bin", pieces=(
        Piece(A, size=100), Piece(local=LocalSlice("o.bin.omniget-part", ByteRange(0, 5)))))
    eng, _ = make(tmp_path, _mem())
    [result] = run(eng, [item], tmp_path).results
    assert result.status == "failed" and "part file" in str(result.error)


def test_a_slice_of_another_s_part_file_is_refused(tmp_path: Path) -> None:
    """Part files' names are no item's (such a name gets a "_"): one named is refused."""
    item = Item(A, filename="o.bin", pieces=(
        Piece(A, size=100), Piece(local=LocalSlice("q.bin.omniget-part", ByteRange(0, 5)))))
    eng, _ = make(tmp_path, _mem())
    [result] = run(eng, [item], tmp_path).results
    assert result.status == "failed"
    assert str(result.error) == "o.bin takes bytes from a part file, q.bin.omniget-part"


@pytest.mark.parametrize("fresh", ["fewer", "none", "moved"])
def test_a_refresh_that_gives_other_pieces_fails_the_file_only(tmp_path: Path, fresh: str) -> None:
    """A piece's URL expired (403) and the refresh hook gave an item of other pieces:
    before, an IndexError ended the whole run (fewer or no pieces), or the new pieces were
    written where the old ones were (other offsets). Only the URLs may change."""
    mem = _mem()
    expired = "http://cdn.test/expired"
    mem.on(expired, lambda req, n: MemResponse(403, b"expired"))

    async def refresh(item: Item) -> Item:
        if fresh == "none":
            return Item(B, filename=item.filename)
        if fresh == "fewer":
            return Item(B, filename=item.filename, pieces=(Piece(B),))
        return Item(B, filename=item.filename, pieces=(Piece(A, size=100), Piece(B, offset=20)))

    eng, _ = make(tmp_path, mem)
    eng.refresh = refresh
    pieces = (Piece(A, size=100), Piece(expired, size=100))
    other = Item(B, filename="other.bin")
    report = run(eng, [Item(A, filename="o.bin", pieces=pieces), other], tmp_path)
    first, second = report.results
    assert first.status == "failed" and "other pieces" in str(first.error), first.error
    assert second.status == "ok"
    assert not (tmp_path / "o.bin").exists()


def test_a_refresh_that_renews_the_urls_of_the_pieces_is_taken(tmp_path: Path) -> None:
    mem = _mem()
    expired = "http://cdn.test/expired"
    mem.on(expired, lambda req, n: MemResponse(403, b"expired"))

    async def refresh(item: Item) -> Item:
        return Item(A, filename=item.filename, pieces=(Piece(A, size=100), Piece(B, size=100)))

    eng, _ = make(tmp_path, mem)
    eng.refresh = refresh
    pieces = (Piece(A, size=100), Piece(expired, size=100))
    report = run(eng, [Item(A, filename="o.bin", pieces=pieces)], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "o.bin").read_bytes() == b"a" * 100 + b"b" * 100


def test_a_slice_of_a_whole_empty_file_is_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    pieces = (Piece(A, size=100), Piece(local=LocalSlice("empty.bin")))
    item = Item(A, filename="o.bin", pieces=pieces)
    eng, _ = make(tmp_path, _mem())
    report = run(eng, [item], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "o.bin").read_bytes() == b"a" * 100


def test_a_local_slice_is_checked_against_its_fetched_digest_too(tmp_path: Path) -> None:
    """Its bytes as read are its bytes as fetched: that digest was never looked at."""
    (tmp_path / "src.bin").write_bytes(b"s" * 100)
    wrong = Digest("md5", hashlib.md5(b"t" * 100).hexdigest())
    piece = Piece(local=LocalSlice("src.bin"), fetched_digest=wrong)
    item = Item(A, filename="o.bin", pieces=(piece,))
    eng, _ = make(tmp_path, _mem())
    [result] = run(eng, [item], tmp_path).results
    assert isinstance(result.error, IntegrityError) and "md5 mismatch" in str(result.error)
