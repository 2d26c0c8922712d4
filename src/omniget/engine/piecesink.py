"""One piece of a :class:`~.pieces.PieceDownload` as its bytes come: where they go (the
part file at the piece's offset, with the ends of what is written there for its
fingerprint, or a staging file of its own: :class:`Out`), the sink that counts, hashes,
inflates (a zlib piece) and writes them (:class:`PieceSink`), and the checks of the
piece's size and digests once it is whole (:func:`check`).
"""

from __future__ import annotations

import zlib

from ..errors import IntegrityError, RemoteError, TransientError
from ..model import ByteRange, Piece, Transform
from .assemble import PartFile
from .job import FileJob
from .prints import Ends
from .transports.base import Head, StopTransfer, check_status, safe_url, skip_prefix
from .verify import StreamHasher, check_media

__all__ = ["Out", "PieceSink", "check"]

#: The most output bytes one call inflates at once (a zlib piece's memory bound).
INFLATE_BLOCK = 1 << 20


class Out:
    """Where a piece's output goes: the part file at an offset (``ends``: the ends of
    what is written there, for its fingerprint), or its own staging file."""

    def __init__(self, part: PartFile, offset: int, ends: Ends | None = None) -> None:
        self.part = part
        self.offset = offset
        self.pos = 0
        self.ends = ends

    def reset(self) -> None:
        """Nothing written yet (what was is written over)."""
        self.pos = 0
        if self.ends is not None:
            self.ends = Ends()

    def write(self, data: bytes) -> None:
        if data:
            self.part.write_at(data, self.offset + self.pos)
            self.pos += len(data)
            if self.ends is not None:
                self.ends.update(data)


class PieceSink:
    def __init__(self, job: FileJob, piece: Piece, out: Out) -> None:
        self.job = job
        self.piece = piece
        self.out = out
        self.skip = 0
        self.left = piece.range.length if piece.range is not None else None
        self.fetched = StreamHasher(piece.fetched_digest.algo) if piece.fetched_digest else None
        self.output = StreamHasher(piece.digest.algo) if piece.digest else None
        self.inflate = zlib.decompressobj() if piece.transform is Transform.ZLIB else None
        self.fetched_start = b""  # the first two bytes fetched
        self.answered = False  # its head was taken (then ended is told at its end)

    def on_head(self, head: Head) -> None:
        rng = self.piece.range
        if rng is not None:
            _within(rng, head)
        check_status(head, head.url)
        self.answered = True  # (its host is up: see downhosts.py)
        self.job.ctx.down.answered(self.piece.url)
        check_media(self.job.item, head)
        start = 0 if rng is None else rng.start
        if head.status == 206:  # (to a request without Range too: it must start at 0)
            cr = head.content_range
            if cr is None or cr[0] != start:
                raise TransientError(f"wrong byte range answered by {head.url}")
            return
        self.skip = start  # Range ignored: the body starts at byte 0

    def on_data(self, data: bytes) -> None:
        if self.skip:
            data, self.skip = skip_prefix(data, self.skip)
            if not data:
                return
        stop = False
        if self.left is not None:
            if len(data) > self.left:  # the server sends more than we asked
                data = data[: self.left]
                stop = True
            self.left -= len(data)
        if self.inflate is not None and len(self.fetched_start) < 2:  # (for a zlib error)
            self.fetched_start += data[: 2 - len(self.fetched_start)]
        self.job.fetched += len(data)
        if self.fetched is not None:
            self.fetched.update(data)
        if self.inflate is None:
            self._emit(data)
        else:
            self._inflate(data)
        if stop:
            raise StopTransfer

    def _inflate(self, data: bytes) -> None:
        """Inflate ``data`` a block at a time (a chunk of a zip bomb inflates a
        thousandfold: the piece fails at its first block past its size, not once in
        memory)."""
        inflate = self.inflate
        assert inflate is not None
        while True:
            try:
                out = inflate.decompress(data, INFLATE_BLOCK)
            except zlib.error as exc:
                gzip = self.fetched_start == b"\x1f\x8b"
                hint = " (gzip data, not zlib: the piece's transform is wrong)" if gzip else ""
                raise IntegrityError(
                    f"bad zlib data in {self.job.item.filename}: {exc}{hint}") from exc
            self._emit(out)
            data = inflate.unconsumed_tail
            if not data and (len(out) < INFLATE_BLOCK or inflate.eof):
                break
        if inflate.unused_data:  # (only ever set at the stream's end)
            raise IntegrityError(
                f"{len(inflate.unused_data)} bytes after the end of the zlib stream"
                f" of a piece of {self.job.item.filename}"
            )

    def _emit(self, out: bytes) -> None:
        if out:
            size = self.piece.size
            if size is not None and self.out.pos + len(out) > size:  # (never written past
                raise IntegrityError(  # its place: the next piece's bytes are there)
                    f"piece of {self.job.item.filename}: more than its {size} bytes")
            self.out.write(out)
            self.job.written += len(out)
            if self.output is not None:
                self.output.update(out)

    def finish(self) -> None:
        if self.left:
            raise TransientError(f"connection closed {self.left} bytes early")
        if self.inflate is not None:
            try:
                self._emit(self.inflate.flush())
            except zlib.error as exc:
                raise IntegrityError(f"bad zlib data in {self.job.item.filename}: {exc}") from exc
            if not self.inflate.eof:
                raise IntegrityError(f"truncated zlib stream in {self.job.item.filename}")



def _within(rng: ByteRange, head: Head) -> None:
    """RemoteError when the answer shows the file ends before the piece's bytes do: no
    try gets them (it was 'connection closed N bytes early', retried)."""
    size = head.unsatisfied_size if head.status == 416 else head.total_size
    if size is None or (rng.start < size and (rng.end is None or rng.end <= size)):
        return
    last = "" if rng.end is None else rng.end - 1
    raise RemoteError(f"the piece asks for bytes {rng.start}-{last} of "
                      f"{safe_url(head.url)}, which has {size} bytes")


def check(
    piece: Piece,
    fetched: StreamHasher | None,
    output: StreamHasher | None,
    size: int,
    name: str,
) -> None:
    if piece.size is not None and size != piece.size:
        raise IntegrityError(f"piece of {name}: expected {piece.size} bytes, got {size}")
    if fetched is not None and piece.fetched_digest is not None:
        got = fetched.hexdigest()
        if got != piece.fetched_digest.hex:
            raise IntegrityError(f"piece of {name}: {piece.fetched_digest.algo} mismatch ({got})")
    if output is not None and piece.digest is not None:
        got = output.hexdigest()
        if got != piece.digest.hex:
            raise IntegrityError(f"piece of {name}: {piece.digest.algo} mismatch ({got})")
