"""How a journal row's values are packed (byte spans and their fingerprints, as blobs)
and the condition a running download's writes add (see :data:`.records.Owner`)."""

from __future__ import annotations

import struct

from ..spans import Interval
from .records import Owner, Print, RecordGone, missing, taken
from .texts import Texts

__all__ = [
    "lost", "owned", "pack", "pack_print", "pack_prints", "unpack", "unpack_print",
    "unpack_prints",
]  # fmt: skip


def pack(spans: list[Interval]) -> bytes:
    flat = [v for iv in spans for v in iv]
    return struct.pack(f"<{len(flat)}q", *flat)


#: A row still the writer's (see :data:`.records.Owner`): its path, and its part file
#: unless either side does not know it.
_OWNED = " AND path = ? AND (? IS NULL OR part IS NULL OR part = ?)"


def owned(own: Owner | None) -> tuple[str, tuple[object, ...]]:
    """The condition a write given ``own`` adds to its ``WHERE key = ?``, and its values."""
    if own is None:
        return "", ()
    return _OWNED, (own[0], own[1], own[1])


def lost(db: Texts, key: str) -> RecordGone:
    """Why a write found no row of ``key`` it could change: none is there, or one that
    another run took (see :data:`.records.Owner`)."""
    if db.execute("SELECT 1 FROM files WHERE key = ?", (key,)).fetchone() is None:
        return missing(key)
    return taken(key)


def unpack(blob: bytes | None) -> list[Interval]:
    if not blob or len(blob) % 16:
        return []  # nothing, or damaged: the bytes are simply fetched again
    flat = struct.unpack(f"<{len(blob) // 8}q", blob)
    return list(zip(flat[::2], flat[1::2], strict=True))


def pack_prints(spans: list[Interval], prints: list[Print] | None) -> bytes | None:
    """``prints`` packed, if there is one per span of ``spans`` (normal); else None."""
    if prints is None or len(prints) != len(spans):
        return None
    flat = [v for p in prints for v in p]
    return struct.pack(f"<{len(flat)}I", *flat)


def unpack_prints(blob: bytes | None, count: int) -> list[Print] | None:
    """The prints of ``count`` spans; None if there are none (an older omniget's record,
    or a checkpoint that could not read its bytes back) or not as many."""
    if blob is None or len(blob) != 12 * count:
        return None
    flat = struct.unpack(f"<{3 * count}I", blob)
    return list(zip(flat[::3], flat[1::3], flat[2::3], strict=True))


def pack_print(mark: Print | None) -> bytes | None:
    """One piece's print packed (as one of :func:`pack_prints`)."""
    return None if mark is None else struct.pack("<3I", *mark)


def unpack_print(blob: bytes | None) -> Print | None:
    """A piece's print; None if it has none (an older omniget's record, a piece whose
    bytes are not in the part file) or it is damaged."""
    if blob is None or len(blob) != 12:
        return None
    n, first, last = struct.unpack("<3I", blob)
    return n, first, last
