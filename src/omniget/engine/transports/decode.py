"""Undoing a Content-Encoding forced on us (we ask for identity bytes), with a check that
the encoded stream really ended: a gzip or zlib stream carries its own end and checksum,
and a body that stops before them (or decodes to garbage that zlib only notices at the
end) must not pass for a whole file. libcurl does not check that, so both the pipelined
connections and libcurl's transfers decode here. A digest the server sent of the encoded
bytes (Content-MD5 of a gzip body, say) is checked here too: it says nothing of the bytes
we save."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Protocol

from ...model import Digest

__all__ = [
    "DECODED",
    "Checked",
    "DecodeError",
    "Decoder",
    "Deflate",
    "Gzip",
    "codings",
    "decoder_for",
    "end_of",
    "to_undo",
]

#: Encodings decoded here; others (br, zstd, ...) are left to libcurl.
DECODED = frozenset({"gzip", "x-gzip", "deflate"})

DecodeError = zlib.error


def codings(values: list[str]) -> str:
    """The codings of an answer's Content-Encoding lines, as one lower-case list
    (``gzip, br``): several lines are one list, as one line with commas (RFC 9110 5.3),
    in the order applied; ``identity`` (no coding) and blanks are left out. ''
    for none."""
    found = [c for v in values for c in (p.strip().lower() for p in v.split(","))
             if c and c != "identity"]
    return ", ".join(found)


class Decoder(Protocol):
    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


class Gzip:
    """gzip, member after member (RFC 1952 allows several in a row). Whatever follows the
    last member and is not another one is ignored, as gzip(1) and libcurl do."""

    def __init__(self) -> None:
        self._inner = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._after = b""  # bytes after a member's end: too few to tell what they are
        self._ignoring = False  # trailing bytes that are no member

    @property
    def eof(self) -> bool:
        return self._inner.eof

    def decompress(self, data: bytes | memoryview, /) -> bytes:
        if self._ignoring:
            return b""
        out = b""
        if not self._inner.eof:
            out = self._inner.decompress(data)
            if not self._inner.eof:
                return out
            data = self._inner.unused_data
        else:
            data = self._after + data
        while len(data) >= 2:  # at the end of a member: another one?
            if data[:2] != b"\x1f\x8b":
                self._ignoring = True
                return out
            self._inner = zlib.decompressobj(zlib.MAX_WBITS | 16)
            out += self._inner.decompress(data)
            if not self._inner.eof:
                data = b""
                break
            data = self._inner.unused_data
        self._after = data
        return out

    def flush(self) -> bytes:
        return self._inner.flush()


class Deflate:
    """``deflate`` as servers send it: zlib-wrapped (RFC 9110) or raw, told by the first
    two bytes (as libcurl does)."""

    def __init__(self) -> None:
        self._inner: zlib._Decompress | None = None
        self._start = b""

    @property
    def eof(self) -> bool:
        return self._inner is not None and self._inner.eof

    def decompress(self, data: bytes | memoryview, /) -> bytes:
        if self._inner is None:
            self._start += data
            if len(self._start) < 2:
                return b""
            b0, b1 = self._start[0], self._start[1]
            wrapped = b0 & 0x0F == 8 and (b0 << 8 | b1) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._start = self._start, b""
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return b"" if self._inner is None else self._inner.flush()


class Checked:
    """A decoder that also hashes the encoded bytes it is fed, for the server's digests
    of them (``mismatch`` tells at the end)."""

    def __init__(self, inner: Decoder, digests: Sequence[Digest]) -> None:
        self._inner = inner
        import hashlib  # (imported where used: start-up time)

        self._digests = list(digests)
        self._hashes = {d.algo: hashlib.new(d.algo) for d in self._digests}

    @property
    def eof(self) -> bool:
        return self._inner.eof

    def decompress(self, data: bytes | memoryview, /) -> bytes:
        for h in self._hashes.values():
            h.update(data)
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush()

    def mismatch(self) -> str | None:
        """Why the encoded bytes fail a digest the server sent of them (None if none)."""
        for d in self._digests:
            got = self._hashes[d.algo].hexdigest()
            if got != d.hex:
                return f"the encoded body fails its {d.algo} (expected {d.hex}, got {got})"
        return None


#: Content types of a gzip file itself, not of what it holds.
_GZIP_TYPES = frozenset({
    "application/gzip", "application/x-gzip", "application/x-gunzip", "application/gzipped",
    "application/gzip-compressed", "application/x-gzip-compressed", "gzip/document",
})
#: Names of files that are gzip streams themselves.
_GZIP_NAMES = (".gz", ".tgz", ".svgz")
#: Such a name in a Content-Disposition (``filename="a.tar.gz"``, ``filename*=...a.tgz``;
#: compiled when first used, not at every start: see tests/unit/test_startup.py)
_GZIP_GIVEN = r"\.(?:gz|tgz|svgz)\s*(?:\"|;|$)"


def to_undo(encoding: str, headers: Mapping[str, str], url: str) -> str:
    """The Content-Encoding (lower case, stripped) to undo for an answer to ``url``: ''
    for a gzip file whose own compression the server gave as the encoding (its type is
    gzip's, or ``url`` or the server's Content-Disposition names a .gz, .tgz or .svgz
    file: a static server set up with Apache's ``AddEncoding x-gzip .gz``, say). Its
    bytes are the file, as curl, wget, aria2 and browsers keep them; undone, a .tar.gz
    would be saved as a bare tar."""
    if encoding not in ("gzip", "x-gzip"):
        return encoding
    kind = headers.get("content-type", "").partition(";")[0].strip().lower()
    name = url.partition("#")[0].partition("?")[0].rpartition("/")[2].lower()
    if kind in _GZIP_TYPES or name.endswith(_GZIP_NAMES):
        return ""
    given = headers.get("content-disposition")
    return "" if given and re.search(_GZIP_GIVEN, given, re.I) else encoding


def decoder_for(encoding: str, digests: Sequence[Digest] = ()) -> Decoder | None:
    """A decoder for a Content-Encoding value (lower case, stripped); None for identity.
    KeyError for one not decoded here (see :data:`DECODED`). ``digests``: the server's
    digests of the encoded bytes, checked by :func:`end_of`."""
    if encoding in ("", "identity"):
        return None
    inner: Decoder
    if encoding in ("gzip", "x-gzip"):
        inner = Gzip()
    elif encoding == "deflate":
        inner = Deflate()
    else:
        raise KeyError(encoding)
    return Checked(inner, digests) if digests else inner


def end_of(decoder: Decoder) -> tuple[bytes, str | None]:
    """The decoded bytes the decoder still holds at the end of the body, and why the
    body is not a whole encoded stream, or not the one the server's digest names (None
    when it is)."""
    try:
        rest = decoder.flush()
    except zlib.error as exc:
        return b"", f"bad encoded body: {exc}"
    if not decoder.eof:
        return rest, "the encoded body ends before its stream does"
    if isinstance(decoder, Checked) and (why := decoder.mismatch()) is not None:
        return b"", why
    return rest, None
