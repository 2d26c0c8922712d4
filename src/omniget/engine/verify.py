"""Digests: what the server says the file hashes to, and hashing what we wrote.

Header digests (all whole-file checks for the bytes we save):

* ``Repr-Digest`` (RFC 9530) and ``Digest`` (RFC 3230) describe the whole selected
  representation, whatever the status (a 206 included).
* ``Content-Digest`` (RFC 9530) and ``Content-MD5`` describe the message body, so they
  speak of the whole file only for a 200.

A representation includes its content coding (RFC 9530 appendix B), so when the
transport decoded a ``Content-Encoding`` (``decoded=True``) none of them describes the
bytes we save, and none is returned: the transport checks those against the encoded
bytes instead (:func:`encoded_digests`, ``transports/decode.py``).

Beside them, :func:`check_media`: an item that expects media (``expect="media"``) refuses
an answer of type ``text/html`` (a web page, a login or error page) in every path that
fetches it: a plain download, each of its pieces, a stream.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import IntegrityError, RemoteError, StorageError
from ..model import Digest, Item
from .transports.base import Head, Headers

__all__ = [
    "DIGEST_FIELDS",
    "UNVERIFIED",
    "DigestMismatch",
    "StreamHasher",
    "check_media",
    "digests_from_headers",
    "encoded_digests",
    "every_digest",
    "file_digest",
    "file_digests",
    "hashlib_name",
    "strength",
]

def check_media(item: Item, head: Head) -> None:
    """RemoteError when ``item`` expects media and ``head`` is a web page's."""
    if item.expect == "media" and "text/html" in head.headers.get("content-type", ""):
        raise RemoteError(f"got a web page instead of a file from {head.url}")


# Registered algorithm names (RFC 3230 / RFC 9530 registries and common spellings).
_HEADER_ALGOS = {
    "md5": "md5",
    "sha": "sha1",
    "sha-1": "sha1",
    "sha1": "sha1",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
    "sha512": "sha512",
}
_STRENGTH = {"sha512": 0, "sha384": 1, "sha256": 2, "sha224": 3, "sha1": 4, "md5": 5}
_HEX = r"[0-9a-fA-F]+"  # (compiled by re when first used, not at every start)


def hashlib_name(algo: str) -> str:
    """hashlib's name for ``algo`` (``SHA-256`` -> ``sha256``); ValueError if unknown."""
    import hashlib  # (imported where used: start-up time)

    low = algo.strip().lower()
    for name in (low, low.replace("-", ""), low.replace("-", "_")):
        if name in hashlib.algorithms_available:
            return name
    raise ValueError(f"unsupported hash algorithm: {algo!r}")


#: Said of a file whose body simply stopped when the server closed the connection.
UNVERIFIED = (
    "not verified: the server gave no size or hash, and nothing marks the body's end (it "
    "ended with its connection, or in a coding whose end omniget cannot check), as a cut "
    "one would"
)

#: The fields that may give a digest (lower case).
DIGEST_FIELDS = frozenset({"repr-digest", "digest", "content-digest", "content-md5"})
_DIGEST_HEADERS = DIGEST_FIELDS


def strength(digest: Digest) -> int:
    """Sort key: the strongest algorithm first."""
    return _STRENGTH.get(digest.algo, 9)


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    get_all = getattr(headers, "get_all", None)
    if callable(get_all):
        return [str(v) for v in get_all(name)]
    return [v for k, v in headers.items() if k.lower() == name]


def _to_digest(algo_name: str, value: str) -> Digest | None:
    """A Digest from a header's algorithm name and hex or base64 value, or None."""
    algo = _HEADER_ALGOS.get(algo_name.strip().lower())
    if algo is None:
        return None
    import hashlib  # (imported where used: start-up time)

    size = hashlib.new(algo).digest_size
    value = value.strip().strip('"').strip()
    if len(value) == 2 * size and re.fullmatch(_HEX, value):
        return Digest(algo, value)  # hex, though the RFCs say base64: servers do it
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return Digest(algo, raw.hex()) if len(raw) == size else None


def _parse_structured(value: str) -> list[Digest]:
    """RFC 9530 dictionary: ``sha-256=:BASE64:, sha-512=:BASE64:;param``."""
    out: list[Digest] = []
    for member in value.split(","):
        key, sep, rest = member.partition("=")
        item = rest.split(";", 1)[0].strip()
        if sep and len(item) >= 2 and item[0] == ":" and item[-1] == ":":
            d = _to_digest(key, item[1:-1])
            if d is not None:
                out.append(d)
    return out


def _parse_legacy(value: str) -> list[Digest]:
    """RFC 3230: ``SHA-256=BASE64, MD5=BASE64`` (or RFC 9530's ``:BASE64:``, which some
    servers send in this field)."""
    out: list[Digest] = []
    for member in value.split(","):
        key, sep, rest = member.partition("=")
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == ":" and rest[-1] == ":":
            rest = rest[1:-1]
        if sep:
            d = _to_digest(key, rest)
            if d is not None:
                out.append(d)
    return out


def digests_from_headers(headers: Mapping[str, str], *, status: int, decoded: bool) -> list[Digest]:
    """Whole-file digests the response headers state, strongest first.

    Unknown algorithms and malformed values are skipped; identical digests are returned
    once. Two different values for one algorithm are both returned (the server
    contradicts itself and the check will say so).
    """
    if decoded or (isinstance(headers, Headers) and not headers.has_any(_DIGEST_HEADERS)):
        return []  # (our Headers without any: no _collect call, once per file)
    return _collect(headers, whole=True, body=status == 200)


def encoded_digests(headers: Mapping[str, str], *, status: int) -> list[Digest]:
    """Digests of exactly this answer's body as sent (before any Content-Encoding is
    undone): Content-Digest and Content-MD5, and for a 200 the representation's too."""
    return _collect(headers, whole=status == 200, body=True)


def _collect(headers: Mapping[str, str], *, whole: bool, body: bool) -> list[Digest]:
    """``whole``: the representation digests (Repr-Digest, Digest); ``body``: the
    message body's (Content-Digest, Content-MD5)."""
    if isinstance(headers, Headers) and not headers.has_any(_DIGEST_HEADERS):
        return []  # (our Headers: a quick look first)
    found: list[Digest] = []
    if whole:
        for v in _header_values(headers, "repr-digest"):
            found += _parse_structured(v)
        for v in _header_values(headers, "digest"):
            found += _parse_legacy(v)
    if body:
        for v in _header_values(headers, "content-digest"):
            found += _parse_structured(v)
        for v in _header_values(headers, "content-md5"):
            d = _to_digest("md5", v)
            if d is not None:
                found.append(d)
    unique = list(dict.fromkeys(found))
    unique.sort(key=strength)
    return unique


def file_digest(
    path: Path, algo: str, start: int = 0, end: int | None = None, bufsize: int = 1 << 20
) -> str:
    """Hex digest of ``path``'s bytes ``[start, end)`` (to EOF when ``end`` is None).

    A file shorter than ``end`` is hashed up to its end (the digest will not match).
    OS errors become :class:`StorageError` naming the path.
    """
    return file_digests(path, [algo], start, end, bufsize)[0]


def file_digests(
    path: Path, algos: list[str], start: int = 0, end: int | None = None,
    bufsize: int = 1 << 20,
) -> list[str]:
    """Hex digests of ``path``'s bytes ``[start, end)`` in each of ``algos``, read once
    (see :func:`file_digest`)."""
    import hashlib  # (imported where used: start-up time)

    hashes = [hashlib.new(hashlib_name(algo)) for algo in algos]
    if end is not None and end <= start:
        return [h.hexdigest() for h in hashes]
    buf = bytearray(max(1, bufsize))
    view = memoryview(buf)
    left = None if end is None else end - start
    try:
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            while left is None or left > 0:
                want = len(buf) if left is None else min(len(buf), left)
                n = f.readinto(view[:want])
                if not n:
                    break
                for h in hashes:
                    h.update(view[:n])
                if left is not None:
                    left -= n
    except OSError as e:
        raise StorageError(f"cannot read {path} to check its digest: {e.strerror or e}") from e
    return [h.hexdigest() for h in hashes]


class DigestMismatch(IntegrityError):
    """Bytes that do not hash to the digest wanted (``want``): they hash to ``got``."""

    def __init__(self, message: str, *, want: Digest, got: str) -> None:
        super().__init__(message)
        self.want = want
        self.got = got

    def again(self, earlier: DigestMismatch | None) -> bool:
        """The same digest wanted and the same got as ``earlier``: the same bytes came."""
        return earlier is not None and (earlier.want, earlier.got) == (self.want, self.got)

    def twice(self, why: str) -> DigestMismatch:
        """This error, said of bytes that came the same twice (``why``: what that says)."""
        return DigestMismatch(f"{self.message} twice ({why})", want=self.want, got=self.got)


def every_digest(first: Digest | None, others: list[Digest]) -> list[Digest]:
    """The digests a file must have, each once: ``first`` (the item's or --checksum's)
    leading, then ``others`` (the server's)."""
    if first is None:
        return list(dict.fromkeys(others)) if len(others) > 1 else others
    return list(dict.fromkeys([first, *others]))


def digest_mismatch(name: str, want: Digest, got: str) -> DigestMismatch:
    """The one wording of a whole-file hash that does not match."""
    return DigestMismatch(
        f"{want.algo} mismatch for {name}: expected {want.hex}, got {got}", want=want, got=got
    )


class StreamHasher:
    """Hash bytes as they stream past: ``update`` then ``hexdigest``; ``length`` counts them."""

    __slots__ = ("_h", "algo", "length")

    def __init__(self, algo: str) -> None:
        import hashlib  # (imported where used: start-up time)

        self.algo = hashlib_name(algo)
        self._h = hashlib.new(self.algo)
        self.length = 0

    @classmethod
    def for_digest(cls, digest: Digest) -> StreamHasher:
        return cls(digest.algo)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.length += len(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def matches(self, digest: Digest) -> bool:
        """True when ``digest`` is of this algorithm and equals what was hashed so far."""
        return digest.algo == self.algo and digest.hex == self.hexdigest()
