"""The core value types: what a source yields and the engine consumes.

Everything here is a frozen dataclass with no I/O. An :class:`Item` is one output
file (or directory, or link); its :class:`Piece` tuple says how the file's bytes are
assembled. An empty ``pieces`` means one identity piece: the ``download_url`` itself,
which the engine may split into spans when the server honours Range.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import MISSING, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import unquote, urlsplit

from ._frozen import frozen_dataclass, frozen_slots_dataclass
from .errors import nearest

if TYPE_CHECKING:
    import hashlib

__all__ = [
    "ByteRange",
    "Digest",
    "Item",
    "LocalSlice",
    "Origin",
    "Piece",
    "Transform",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})
#: Headers the engine sends itself to resume and split a file: one given for every
#: request (or an item's) would make each answer a part the engine did not ask for.
ENGINE_HEADERS = frozenset({"range", "if-range"})
#: Headers of a request's body: a GET has none, and a server told of one waits for it
#: (an empty value, as curl's ``-H "Name:"``, leaves the header out: taken).
BODY_HEADERS = frozenset({"content-length", "transfer-encoding"})
# headers whose values an Item's repr hides (with the item's own secret_headers)
_SHOWN_HIDDEN = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def body_header(name: str) -> str:
    """Why the header ``name`` (one of :data:`BODY_HEADERS`) cannot be set."""
    return (f"cannot set {name}: omniget's requests are GETs without a body (the server "
            "would wait for one)")


# Names hashlib knows, keyed by the spellings people and servers use.
_ALGOS = {
    "md5": "md5",
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha224": "sha224",
    "sha-224": "sha224",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha384": "sha384",
    "sha-384": "sha384",
    "sha512": "sha512",
    "sha-512": "sha512",
}


class Transform(StrEnum):
    """How a piece's fetched bytes become output bytes."""

    IDENTITY = "identity"
    ZLIB = "zlib"


@frozen_slots_dataclass
class Digest:
    """A hash value: ``Digest("sha256", "ab12...")``. ``hex`` is lower-case."""

    algo: str
    hex: str

    def __post_init__(self) -> None:
        if not isinstance(self.algo, str):
            raise TypeError(f"Digest(algo=...) takes a hash's name as a str ('sha256'), not "
                            f"{self.algo!r:.60}")
        if not isinstance(self.hex, str):  # (bytes: hashlib's digest(), not hexdigest())
            raise TypeError("Digest(hex=...) takes the hex digits as a str (hashlib's "
                            f"hexdigest(), not digest()), not {type(self.hex).__name__}")
        algo = _ALGOS.get(self.algo.lower())
        if algo is None:
            known = sorted(set(_ALGOS.values()))
            near = nearest(self.algo.lower(), known)
            hint = f"; did you mean {near}?" if near else ""
            raise ValueError(f"unsupported hash algorithm {self.algo!r} (known: "
                             f"{', '.join(known)}){hint}")
        import hashlib  # (imported where used: start-up time)

        hexv = self.hex.lower()
        digits = hashlib.new(algo).digest_size * 2
        if not re.fullmatch(r"[0-9a-f]+", hexv) or len(hexv) != digits:
            raise ValueError(f"not a valid {algo} digest: {self.hex!r} ({digits} hex digits "
                             f"expected)")
        object.__setattr__(self, "algo", algo)
        object.__setattr__(self, "hex", hexv)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``ALGO=HEX`` or ``ALGO:HEX`` (as ``--checksum`` takes it)."""
        algo, sep, hexv = text.replace(":", "=", 1).partition("=")
        if not sep:
            raise ValueError(f"expected ALGO=HEX, got {text!r}{_algo_hint(text)}")
        return cls(algo.strip(), hexv.strip())

    def new(self) -> hashlib._Hash:
        import hashlib  # (imported where used: start-up time)

        return hashlib.new(self.algo)

    def __str__(self) -> str:
        return f"{self.algo}={self.hex}"


#: The known algorithms by the length of their hex digests.
_BY_DIGITS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}


def _algo_hint(text: str) -> str:
    """For hex with no ``ALGO=`` (what sha256sum prints, its file name after it maybe):
    the algorithm its length fits; else ''."""
    words = text.split()
    algo = _BY_DIGITS.get(len(words[0])) if words else None
    if algo is None or not re.fullmatch(r"[0-9a-fA-F]+", words[0]):
        return ""
    return f"; {len(words[0])} hex digits are {algo}'s: give {algo}=HEX"


@frozen_slots_dataclass
class ByteRange:
    """Bytes ``start`` .. ``end`` (exclusive); ``end=None`` means to the end of the resource.
    Never empty: HTTP has no Range header for no bytes (``bytes=5-4`` is invalid)."""

    start: int
    end: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.start, int) or isinstance(self.start, bool):
            raise TypeError("ByteRange(start=...) takes a whole number of at least 0, not "
                            f"{self.start!r:.60}")
        if self.end is not None and (not isinstance(self.end, int) or isinstance(self.end, bool)):
            raise TypeError("ByteRange(end=...) takes a whole number (or None: to the end), "
                            f"not {self.end!r:.60}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ValueError(f"bad byte range {self.start}..{self.end}")

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start

    def header(self) -> str:
        """The HTTP ``Range`` header value (HTTP ranges are inclusive)."""
        last = "" if self.end is None else str(self.end - 1)
        return f"bytes={self.start}-{last}"


@frozen_slots_dataclass
class LocalSlice:
    """Bytes taken from a local file instead of the network.

    ``path`` is an output path relative to the download folder, or an absolute path: a
    file already there, or the output of another item of the same run, which the reader
    waits for. (An item listed *after* the reader is waited for only when no file is
    there yet: an update reads the installed file before a later item replaces it.)
    ``range`` selects bytes of it (None = all).
    """

    path: str
    range: ByteRange | None = None


@frozen_slots_dataclass
class Piece:
    """One unit of fetching and verification.

    ``url`` + ``range`` say what to fetch (or ``local`` says what to copy);
    ``offset`` says where the output goes (None = appended after the previous piece);
    ``size`` is the output length when known; ``transform`` turns fetched bytes into
    output bytes; ``fetched_digest`` checks the bytes as fetched, ``digest`` the output.
    """

    url: str = ""
    range: ByteRange | None = None
    offset: int | None = None
    size: int | None = None
    transform: Transform = Transform.IDENTITY
    fetched_digest: Digest | None = None
    digest: Digest | None = None
    local: LocalSlice | None = None

    def __post_init__(self) -> None:
        if not self.url and self.local is None:
            raise ValueError("a piece needs a url or a local slice")


class Origin:
    """What a source was given to make an item: its URL and options. A later run (a
    download of extracted items) makes that source again from them to refresh the item's
    expiring URLs. Options may be secrets (a password): shown by name only."""

    __slots__ = ("options", "url")

    def __init__(self, url: str, options: Mapping[str, object] | None = None) -> None:
        self.url = url
        self.options: Mapping[str, object] = MappingProxyType(dict(options or {}))

    def __repr__(self) -> str:
        return f"Origin({self.url!r}, options={sorted(self.options)})"

    def __reduce__(self) -> tuple[type[Origin], tuple[str, dict[str, object]]]:
        return Origin, (self.url, dict(self.options))


ItemKind = Literal["file", "dir", "link"]
Expect = Literal["any", "media"]


@frozen_dataclass
class Item:
    """One thing to download. The first six fields keep Megaloader's names."""

    download_url: str
    filename: str = ""
    size_bytes: int | None = None
    collection_name: str | None = None
    source_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    path: str | None = None
    digest: Digest | None = None
    pieces: tuple[Piece, ...] = ()
    modified: float | None = None
    meta: Mapping[str, object] = field(default_factory=lambda: _EMPTY)
    kind: ItemKind = "file"
    link_target: str | None = None
    executable: bool = False
    expect: Expect = "any"
    variant_of: str | None = None
    #: Name of the source that made the item (its ``refresh`` hook is looked up by it);
    #: "" for a URL no source took (see :func:`unextracted`).
    source: str = "http"
    #: Other URLs serving the same bytes (mirrors), tried when the main one fails.
    mirrors: tuple[str, ...] = ()
    #: Headers that are secrets of this source: never sent to another origin than the
    #: ``download_url``'s (a redirect's or a mirror's; Authorization and Cookie neither).
    secret_headers: tuple[str, ...] = ()
    #: True when the name is a guess from the URL and the server may name the file
    #: (Content-Disposition). Sources that know the real name leave it False.
    name_from_server: bool = False
    #: Unix time after which the URLs stop working (the engine refreshes before it).
    expires: float | None = None
    #: The URL and options its source was given (set by extract and download for a
    #: source with a ``refresh``): how a later run reaches that source again. Not
    #: compared: the same file is the same item wherever it was listed from.
    origin: Origin | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.download_url, str):  # (else: a riddle from name_from_url)
            shown = repr(self.download_url)
            raise TypeError("Item(download_url=...) takes a str, "
                            f"not {shown if len(shown) <= 60 else type(self.download_url)}")
        url = self.download_url.strip()  # (a line of a file: its newline is no part of it)
        if url != self.download_url:
            object.__setattr__(self, "download_url", url)
        if not isinstance(self.headers, MappingProxyType):
            object.__setattr__(self, "headers", _frozen_mapping(self.headers, "headers"))
        if self.headers and any(k.lower() in ENGINE_HEADERS for k in self.headers):
            raise ValueError(
                "an item's headers cannot set Range or If-Range: omniget sends them itself "
                "to resume and split (a Piece with a range fetches part of a URL)"
            )
        for name, value in self.headers.items():
            if name.lower() in BODY_HEADERS and value:
                raise ValueError(body_header(name))
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", _frozen_mapping(self.meta, "meta"))
        if not self.filename:
            object.__setattr__(self, "filename", name_from_url(self.download_url))

    def __repr__(self) -> str:
        """The fields not at their defaults (20 of them are, most of the time); secret
        headers' values as ``***``."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not f.repr or (f.default is not MISSING and value == f.default):
                continue
            if callable(f.default_factory) and value == f.default_factory():
                continue
            if isinstance(value, MappingProxyType):  # (secrets' values hidden, as in logs)
                hidden = {*_SHOWN_HIDDEN, *(h.lower() for h in self.secret_headers)}
                value = {k: "***" if k.lower() in hidden else v for k, v in value.items()}
            shown.append(f"{f.name}={value!r}")
        return f"Item({', '.join(shown)})"

    @property
    def output_path(self) -> str:
        """The relative output path before sanitising: ``path`` or ``collection/filename``."""
        if self.path:
            return self.path
        if self.collection_name:
            return f"{self.collection_name}/{self.filename}"
        return self.filename

    @property
    def key(self) -> str:
        """A stable identity for the journal: never an expiring URL when the source has an id."""
        if self.source_id:
            return f"{self.source}:{self.source_id}"
        return self.download_url


def _frozen_mapping(value: object, name: str) -> MappingProxyType[str, Any]:
    """An Item's ``headers`` or ``meta`` as given (a mapping, or (key, value) pairs), made
    read-only; anything else named (``None`` said "'NoneType' object is not iterable")."""
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        return MappingProxyType(dict(cast(Mapping[str, Any], value)))
    except (TypeError, ValueError):
        shown = repr(value)
        raise TypeError(f"Item({name}=...) takes a mapping (a dict), not "
                        f"{shown if len(shown) <= 60 else type(value).__name__}") from None


def unextracted(url: str) -> Item:
    """The item a failure to extract ``url`` is told about: no source made it, so it names
    no file (events about it carry no path, not one guessed from the URL)."""
    return Item(download_url=url, source="")


def name_from_url(url: str) -> str:
    """The last path segment of a URL, percent-decoded; ``index.html`` if there is none."""
    # nothing to decode or cut off (four scans for one character each: a regular
    # expression's character class scans ~3x slower, once per item)
    if "?" not in url and "#" not in url and "%" not in url and ";" not in url and (
        url.count("/") > 2
    ):
        return url.rpartition("/")[2] or "index.html"
    try:
        path = urlsplit(url).path
    except ValueError:  # (an unbalanced IPv6 bracket: the source reports the URL)
        return "index.html"
    name = posixpath.basename(unquote(path))
    return name or "index.html"
