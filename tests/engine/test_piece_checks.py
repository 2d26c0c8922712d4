"""Checks of hand-built pieces, as a library user writes them, against a real server."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest
from tests.faults.test_http_faults import fetch, files
from tests.servers.httpd import HTTPServer

from omniget import IntegrityError, TransferError
from omniget.model import ByteRange, Digest, Item, LocalSlice, Piece, Transform


def test_bytes_after_the_end_of_a_zlib_stream_fail_the_piece(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A zlib piece whose bytes go on after its stream's end (two chunks in one range,
    say) kept the first chunk's output and dropped the rest: a short file, reported ok."""
    one, two = b"1" * 5000, b"2" * 7000
    url = httpd.add(httpd.new_path("z.bin"), zlib.compress(one) + zlib.compress(two))
    item = Item(url, path="out.bin", pieces=(Piece(url, transform=Transform.ZLIB),))
    report, _, out = fetch([item], tmp_path, retries=1)
    [result] = report.results
    assert result.status == "failed" and isinstance(result.error, IntegrityError)
    assert "after the end of the zlib stream" in str(result.error)
    assert "out.bin" not in files(out)


def test_a_zlib_piece_that_is_one_stream_is_whole(httpd: HTTPServer, tmp_path: Path) -> None:
    one, two = b"1" * 5000, b"2" * 7000
    first, second = zlib.compress(one), zlib.compress(two)
    url = httpd.add(httpd.new_path("z.bin"), first + second)
    pieces = (
        Piece(url, range=ByteRange(0, len(first)), transform=Transform.ZLIB),
        Piece(url, range=ByteRange(len(first)), transform=Transform.ZLIB),
    )
    report, _, out = fetch([Item(url, path="out.bin", pieces=pieces)], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "out.bin").read_bytes() == one + two


def test_a_piece_s_failure_names_the_piece(httpd: HTTPServer, tmp_path: Path) -> None:
    """``TransferError.piece`` (documented with ``.item``) was never set."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)
    gone = httpd.url(httpd.new_path("gone.bin"))
    bad = Piece(url, range=ByteRange(0, 10), digest=Digest("md5", "0" * 32))
    items = [
        Item(url, path="one.bin", pieces=(Piece(url), Piece(gone))),
        Item(url, path="two.bin", pieces=(bad,)),
    ]
    report, _, _ = fetch(items, tmp_path, retries=1)
    errors = [r.error for r in report.results]
    assert isinstance(errors[0], TransferError) and errors[0].piece == Piece(gone)
    assert isinstance(errors[1], IntegrityError) and errors[1].piece == bad
    assert [e.item for e in errors if isinstance(e, TransferError)] == items


def test_a_slice_of_a_file_that_failed_says_so(httpd: HTTPServer, tmp_path: Path) -> None:
    """The reader of a file whose own item failed was told no item of the run writes it."""
    gone = httpd.url(httpd.new_path("gone.bin"))
    items = [
        Item(gone, path="x/a.bin"),
        Item(gone, path="slice.bin", pieces=(Piece(local=LocalSlice("x/a.bin")),)),
    ]
    report, _, _ = fetch(items, tmp_path, retries=0)
    message = str(report.results[1].error)
    assert "no item of this run writes" not in message
    assert "the item of this run that writes it failed" in message


@pytest.mark.parametrize("staged", [False, True], ids=["offsets", "appended"])
def test_pieces_of_another_size_than_the_item_s_fail(
    httpd: HTTPServer, tmp_path: Path, staged: bool
) -> None:
    """An item made of pieces took no notice of its size_bytes: a larger one padded the
    file with zeros, a smaller one passed; both ok, verified "size"."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 1000)
    tail = Piece(url, offset=None) if staged else Piece(url, offset=1000)
    pieces = (Piece(url, size=1000), tail)
    items = [Item(url, path=f"{n}.bin", size_bytes=n, pieces=pieces) for n in (1500, 3000, 2000)]
    report, _, out = fetch(items, tmp_path, retries=0)
    errors = [r.error for r in report.results]
    assert all(isinstance(e, IntegrityError) and "size mismatch" in str(e) for e in errors[:2])
    assert errors[2] is None and (out / "2000.bin").read_bytes() == b"a" * 2000
    assert files(out) == ["2000.bin"]


def test_appended_pieces_of_a_file_kept_after_its_digest_failed_are_fetched_again(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A file whose last piece is appended (no offset known) fails its digest: its part
    file is kept, but the appended piece's own file went at the assembly, so the rerun
    fetches that piece again (only it) and finishes. Before, the rerun failed to
    assemble it (exit 7)."""
    a_path, b_path = httpd.new_path("a.bin"), httpd.new_path("b.bin")
    a, b = httpd.add(a_path, b"a" * 1000), httpd.add(b_path, b"b" * 700)
    pieces = (Piece(a), Piece(b))  # (the first one's size unknown: the second is appended)
    wrong = Item(a, path="s.bin", pieces=pieces, digest=Digest("sha256", "a" * 64))
    assert fetch([wrong], tmp_path)[0].exit_code == 4
    assert len(httpd.requests_to(a_path)) == len(httpd.requests_to(b_path)) == 2
    right = Digest("sha256", hashlib.sha256(b"a" * 1000 + b"b" * 700).hexdigest())
    report, _, out = fetch([Item(a, path="s.bin", pieces=pieces, digest=right)], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "s.bin").read_bytes() == b"a" * 1000 + b"b" * 700
    assert len(httpd.requests_to(a_path)) == 2 and len(httpd.requests_to(b_path)) == 3


@pytest.mark.parametrize("asked", ["whole", "from-0"])
def test_a_206_from_elsewhere_for_a_whole_piece_is_a_wrong_range(
    httpd: HTTPServer, tmp_path: Path, asked: str
) -> None:
    """A piece asked whole (no range, or one from byte 0 to the end) answered with a 206
    of bytes 500 on: its bytes were the piece's (exit 0: nothing checks a piece without a
    digest or size)."""
    data = bytes(range(256)) * 40
    path = httpd.new_path("w.bin")
    elsewhere = [("Content-Range", f"bytes 500-{len(data) - 1}/{len(data)}")]
    url = httpd.handle(path, lambda req: (206, elsewhere, data[500:]))
    piece = Piece(url) if asked == "whole" else Piece(url, range=ByteRange(0))
    report, _, out = fetch([Item(url, path="out.bin", pieces=(piece,))], tmp_path, retries=1)
    [result] = report.results
    assert result.status == "failed", files(out)
    assert "wrong byte range" in str(result.error)
    assert "out.bin" not in files(out)


@pytest.mark.parametrize(
    ("start", "norange"),
    [(900, False), (900, True), (1000, False), (1200, False)],
    ids=["206", "200", "416-at-end", "416-past-end"],
)
def test_a_piece_past_the_end_of_the_file_says_so_unretried(
    httpd: HTTPServer, tmp_path: Path, start: int, norange: bool
) -> None:
    """A piece asking for bytes the file does not have (900..1100 of 1000) failed as
    'connection closed 100 bytes early', retried each time: the server had sent all it had."""
    path = httpd.new_path("a.bin")
    httpd.add(path, b"a" * 1000)
    url = httpd.url(path, norange=1) if norange else httpd.url(path)
    piece = Piece(url, range=ByteRange(start, start + 200))
    report, _, out = fetch([Item(url, path="out.bin", pieces=(piece,))], tmp_path, retries=2)
    [result] = report.results
    assert result.status == "failed" and isinstance(result.error, TransferError)
    said = str(result.error)
    assert "early" not in said, said
    assert f"bytes {start}-{start + 199}" in said and "has 1000 bytes" in said, said
    assert len(httpd.requests_to(path)) == 1
    assert "out.bin" not in files(out)
