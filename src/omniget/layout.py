"""Whether an item's pieces make one file: each byte placed once, none left out, as many
as the item says. Checked before any request (a layout that cannot make the file was
fetched whole, then kept with a piece written over another, or a hole of zeros)."""

from __future__ import annotations

from .model import Item, Transform

__all__ = ["layout_problem"]


def layout_problem(item: Item) -> str | None:
    """What is wrong with the way ``item``'s pieces lay out its file; None when nothing.

    Offsets are the pieces' own, else the sum of the sizes before them; pieces after one
    of unknown size without an offset are appended in order at the end."""
    pos: int | None = 0
    placed: list[tuple[int, int | None, int]] = []  # (offset, size, index)
    unknown = None  # the first piece appended (its offset unknown)
    for i, p in enumerate(item.pieces):
        if p.local is not None and p.transform is not Transform.IDENTITY:
            return (f"piece {i} is a local slice with transform {p.transform.value}: a local"
                    " file's bytes are copied as they are")
        length = p.range.length if p.range is not None and p.local is None else None
        if p.local is not None and p.local.range is not None:
            length = p.local.range.length
        if (length is not None and p.size is not None and p.transform is Transform.IDENTITY
                and length != p.size):
            return f"piece {i} asks for {length} bytes but says its size is {p.size}"
        off = p.offset if p.offset is not None else pos
        if off is None:
            unknown = i if unknown is None else unknown
        else:
            if unknown is not None:
                return (f"piece {i} has an offset ({off}) after piece {unknown}, whose own"
                        " offset depends on pieces of unknown size")
            placed.append((off, p.size, i))
        pos = None if off is None or p.size is None else off + p.size
    end = 0
    open_ended = None  # a piece placed whose size is unknown
    for off, size, i in sorted(placed, key=lambda t: (t[0], 1 << 62 if t[1] is None else t[1])):
        if open_ended is not None:
            return (f"piece {open_ended} has an offset but no size, and piece {i} is placed"
                    f" after it at {off}: give piece {open_ended}'s size")
        if off < end:
            return f"piece {i} at {off} would overlap the bytes before {end}"
        if off > end:
            return f"no piece gives bytes {end}..{off}"
        if size is None:
            open_ended = i
        else:
            end = off + size
    total = None if open_ended is not None or unknown is not None else end
    said = item.size_bytes
    if said is not None and total is not None and said != total:
        return f"the item says {said} bytes, its pieces make {total}"
    return None
