"""Fingerprints of a part file's spans and pieces (omniget.engine.prints)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omniget.engine.prints import PRINT_BYTES, Ends, changed, holds, prints


def test_a_spans_print_is_of_its_first_and_last_bytes_and_tells_them_changed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.omniget-part"
    data = bytes(range(256)) * 256  # 64 KiB
    path.write_bytes(data)
    spans = [(0, 100), (1000, 30000), (40000, 65536)]
    fd = os.open(path, os.O_RDONLY)
    try:
        known = prints(fd, spans)
        assert prints(fd, [(0, 70000)]) is None  # (past the end: not there to read)
    finally:
        os.close(fd)
    assert known is not None
    assert [p[0] for p in known] == [100, PRINT_BYTES, PRINT_BYTES]
    assert holds(path, spans, known, len(data))

    def flipped(at: int) -> bool:
        """Whether a byte changed at ``at`` is seen (the file is put back after)."""
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(bytes([data[at] ^ 0xFF]))
        seen = not holds(path, spans, known, len(data))
        path.write_bytes(data)
        return seen

    assert not flipped(1000 + PRINT_BYTES)  # (between a span's ends: not seen)
    assert not flipped(30000 - PRINT_BYTES - 1)
    assert not flipped(35000)  # (in no span)
    for at in (0, 99, 1000, 1000 + PRINT_BYTES - 1, 30000 - PRINT_BYTES, 29999, 65535):
        assert flipped(at), at
    # an end past the file's end (a file cut short) is not looked at; the others are
    os.truncate(path, 45000)
    assert holds(path, spans, known, 45000)
    with open(path, "r+b") as f:  # (the first bytes of the span cut short are still seen)
        f.seek(40000)
        f.write(b"\xff")
    assert not holds(path, spans, known, 45000)
    os.truncate(path, 20000)
    assert holds(path, spans[:1], known[:1], 20000)
    assert holds(path, spans[2:], known[2:], 20000)
    assert not holds(tmp_path / "gone", spans, known, 0)


def test_a_file_ending_inside_a_spans_first_print_does_not_hold_it(tmp_path: Path) -> None:
    """Cut (or copied over by a shorter file) before the end of a span's first print:
    none of its ends can be read back, and the bytes left of it are not trusted."""
    path = tmp_path / "x.omniget-part"
    data = bytes(range(256)) * 64  # 16 KiB
    path.write_bytes(data)
    spans = [(0, 3000), (6000, 16384)]
    fd = os.open(path, os.O_RDONLY)
    try:
        known = prints(fd, spans)
    finally:
        os.close(fd)
    assert known is not None
    for size, held in ((12000, True), (6000 + PRINT_BYTES, True), (8000, False),
                       (6000, True), (2000, False), (0, True)):
        os.truncate(path, size)
        assert holds(path, spans, known, size) is held, size


@pytest.mark.parametrize("size", [0, 1, 100, PRINT_BYTES, PRINT_BYTES + 1, 3 * PRINT_BYTES + 7,
                                  70000])
def test_the_ends_of_bytes_passing_through_are_their_print_as_read_back(
    tmp_path: Path, size: int
) -> None:
    """A piece's print made from its bytes as they are written, in chunks of any size,
    is the one read back from the file (see prints)."""
    import random

    rng = random.Random(size)
    data = rng.randbytes(size)
    path = tmp_path / "x.omniget-part"
    path.write_bytes(b"x" * 100 + data + b"y" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        read = prints(fd, [(100, 100 + size)])
    finally:
        os.close(fd)
    assert read is not None
    [known] = read
    for top in (1, 10, PRINT_BYTES - 1, PRINT_BYTES, 3 * PRINT_BYTES, 1 << 20):
        ends, pos = Ends(), 0
        while pos < size:
            n = rng.randint(1, top)
            ends.update(data[pos : pos + n])
            pos += n
        assert ends.print() == known, top


def test_changed_says_which_pieces_do_not_hold_their_bytes(tmp_path: Path) -> None:
    """Each piece is looked at on its own; one reaching past the file's end has lost
    bytes (unlike a span's end there, which is resumed where the file ends)."""
    path = tmp_path / "x.omniget-part"
    data = bytes(range(256)) * 256  # 64 KiB
    path.write_bytes(data)
    spans = [(0, 100), (100, 20000), (20000, 20000), (20000, 40000), (40000, 65536)]
    fd = os.open(path, os.O_RDWR)
    try:
        known = prints(fd, spans)
        assert known is not None
        assert changed(fd, spans, known, len(data)) == []
        os.pwrite(fd, bytes([data[100] ^ 1]), 100)  # (the first byte of the second)
        os.pwrite(fd, bytes([data[39999] ^ 1]), 39999)  # (the last of the fourth)
        assert changed(fd, spans, known, len(data)) == [1, 3]
        os.pwrite(fd, data[:65536], 0)
        os.ftruncate(fd, 65535)
        assert changed(fd, spans, known, 65535) == [4]
        assert changed(fd, [(0, 100)], [(101, 0, 0)], 65535) == [0]  # (not a print of it)
    finally:
        os.close(fd)
    assert changed(-1, spans, known, len(data)) == [0, 1, 2, 3, 4]  # (not to be read)
