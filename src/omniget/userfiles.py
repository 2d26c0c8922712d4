"""Reading the text files a user names (a URL list, a config file, a cookies.txt) a piece
at a time, stopping as soon as what was read shows it is no such file: a NUL character
(a binary file, a disk image), a line longer than any real one, more bytes than such a
file has, bytes that are not UTF-8. A 1 GB file given by mistake, or a FIFO whose writer
never stops, is then one line of error after a few kilobytes, not read whole."""

from __future__ import annotations

import codecs
from typing import BinaryIO

__all__ = ["LINE_MAX", "NotText", "read_text"]

#: The pieces a file is read in.
CHUNK = 64 << 10
#: The longest line taken (no URL, cookie or setting is near 1 MiB long).
LINE_MAX = 1 << 20
_BOMS_16 = (b"\xff\xfe", b"\xfe\xff")


class NotText(ValueError):
    """What shows a file is none of the text files asked for (one line, no file name)."""


def _mib(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"


def read_text(
    stream: BinaryIO, *, limit: int | None = None, utf16: bool = False
) -> str:
    """The text of ``stream``: UTF-8 (a BOM is kept, for the caller to drop), or UTF-16
    when ``utf16`` and it begins with a UTF-16 BOM (what Windows' PowerShell and
    Notepad's "Unicode" write). NotText as soon as a piece shows a NUL character, a line
    longer than LINE_MAX, more than ``limit`` bytes, or bytes that are not UTF-8 (said
    with their place in the file)."""
    chunk = stream.read(CHUNK)
    codec = "utf-16" if utf16 and chunk[:2] in _BOMS_16 else "utf-8"
    decoder = codecs.getincrementaldecoder(codec)()
    parts: list[str] = []
    got = 0  # bytes read
    line = 1  # the line being read
    run = 0  # characters of it so far
    while True:
        got += len(chunk)
        if limit is not None and got > limit:
            raise NotText(f"larger than {_mib(limit)}")
        held = len(decoder.getstate()[0])  # (bytes of a character an earlier piece cut)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:
            if codec == "utf-16":  # (its BOM is no UTF-8 either)
                raise NotText("not UTF-8 text (invalid start byte at byte 0)") from None
            at = got - len(chunk) - held + e.start
            raise NotText(f"not UTF-8 text ({e.reason} at byte {at})") from None
        nul = text.find("\0")
        if nul >= 0:
            raise NotText(f"a NUL character in line {line + text.count(chr(10), 0, nul)}"
                          " (a binary file?)")
        first = _first_break(text)
        if run + (len(text) if first < 0 else first) > LINE_MAX:
            raise NotText(f"line {line} is longer than {_mib(LINE_MAX)} (a binary file?)")
        if first >= 0:
            run = len(text) - 1 - max(text.rfind("\n"), text.rfind("\r"))
            line += text.count("\n")
            if run > LINE_MAX:  # (only when a piece is longer than a line may be)
                raise NotText(f"line {line} is longer than {_mib(LINE_MAX)} (a binary file?)")
        else:
            run += len(text)
        parts.append(text)
        if not chunk:
            return "".join(parts)
        chunk = stream.read(CHUNK)


def _first_break(text: str) -> int:
    """Where the first line break of ``text`` is (-1: none)."""
    n, r = text.find("\n"), text.find("\r")
    return n if r < 0 else r if n < 0 else min(n, r)
