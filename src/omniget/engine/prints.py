"""Fingerprints of what a part file holds: the CRC-32 of the first and of the last few KiB
of each byte span a checkpoint claims, or of each verified piece (:data:`.journal.Print`).
A rerun reads them back to tell that the part file still holds those bytes: one
overwritten in place, or replaced by a file that got its inode number (ext4 reuses them
at once), does not; a change between a span's two ends is not seen (a digest sees it).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .journal import Print
    from .spans import Interval

__all__ = ["PRINT_BYTES", "Ends", "changed", "holds", "prints"]

#: A fingerprint is of this many bytes at each end of its span at most.
PRINT_BYTES = 4096


def prints(fd: int, spans: list[Interval]) -> list[Print] | None:
    """The fingerprint of each of ``spans`` of the file open as ``fd``: how many bytes
    each end gives (PRINT_BYTES at most) and the CRC-32 of its first and of its last that
    many bytes, read back (from the page cache, as a rule: bytes spliced into the file
    never passed through this process); None if one of them cannot be read."""
    out: list[Print] = []
    try:
        for start, end in spans:
            n = min(end - start, PRINT_BYTES)
            first, last = os.pread(fd, n, start), os.pread(fd, n, end - n)
            if len(first) != n or len(last) != n:
                return None
            out.append((n, zlib.crc32(first), zlib.crc32(last)))
    except OSError:
        return None
    return out


def holds(path: Path, spans: list[Interval], known: list[Print], size: int) -> bool:
    """Whether the file at ``path`` (``size`` bytes long) still holds, at each end of each
    of ``spans``, the bytes of its fingerprint in ``known``. An end past ``size`` is not
    looked at (the file was cut short: it is resumed where it ends), but a span the file
    ends in before its first print's end cannot be told to hold any of its own bytes (a
    short file copied over the part file, say): it does not."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        for (start, end), (n, first, last) in zip(spans, known, strict=True):
            if n > end - start or start < size < start + n:
                return False
            if start + n <= size and zlib.crc32(os.pread(fd, n, start)) != first:
                return False
            if end <= size and zlib.crc32(os.pread(fd, n, end - n)) != last:
                return False
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def changed(fd: int, spans: list[Interval], known: list[Print], size: int) -> list[int]:
    """Which of ``spans`` (a file's verified pieces) the file open as ``fd``, ``size``
    bytes long, does not hold the bytes of their fingerprint in ``known`` at both ends of:
    their indexes. Each is looked at on its own; one reaching past ``size`` has lost bytes
    (unlike a span's end there, see :func:`holds`: a piece is whole or fetched again).
    Every one from the first that cannot be read is said to have changed."""
    out: list[int] = []
    for i, ((start, end), (n, first, last)) in enumerate(zip(spans, known, strict=True)):
        if n != min(end - start, PRINT_BYTES) or end > size:
            out.append(i)
            continue
        try:
            if zlib.crc32(os.pread(fd, n, start)) != first or (
                zlib.crc32(os.pread(fd, n, end - n)) != last
            ):
                out.append(i)
        except OSError:
            return out + list(range(i, len(spans)))
    return out


class Ends:
    """The first and the last :data:`PRINT_BYTES` of the bytes given to :meth:`update`
    (a piece's output as it is written to the part file): their fingerprint as
    :func:`prints` would read it back, without the reads."""

    __slots__ = ("head", "size", "tail")

    def __init__(self) -> None:
        self.head = b""
        self.tail = b""  # (the last chunk, if as long as a print's end: not copied)
        self.size = 0

    def update(self, data: bytes) -> None:
        n = len(data)
        if self.size < PRINT_BYTES:
            self.head += data[: PRINT_BYTES - self.size]
        self.tail = data if n >= PRINT_BYTES else self.tail[n - PRINT_BYTES :] + data
        self.size += n

    def print(self) -> Print:
        n = min(self.size, PRINT_BYTES)
        return n, zlib.crc32(self.head[:n]), zlib.crc32(self.tail[len(self.tail) - n :])
