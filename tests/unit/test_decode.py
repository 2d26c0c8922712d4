"""Undoing a forced Content-Encoding: whole streams in any chunking, and the end check."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniget.engine.transports.decode import DecodeError, decoder_for, end_of

PLAIN = random.Random(7).randbytes(20_000) + b"text " * 4000


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def feed(encoding: str, coded: bytes, cuts: list[int]) -> tuple[bytes, str | None]:
    d = decoder_for(encoding)
    assert d is not None
    out, start = b"", 0
    for cut in [*sorted({min(c, len(coded)) for c in cuts}), len(coded)]:
        out += d.decompress(memoryview(coded)[start:cut])
        start = cut
    rest, why = end_of(d)
    return out + rest, why


ENCODED = {
    "gzip": gzip.compress(PLAIN),
    "x-gzip": gzip.compress(PLAIN),
    "two members": gzip.compress(PLAIN[:5000]) + gzip.compress(PLAIN[5000:]),
    "deflate": zlib.compress(PLAIN),
    "raw deflate": raw_deflate(PLAIN),
}


def encoding_of(name: str) -> str:
    return "gzip" if name == "two members" else "deflate" if "deflate" in name else name


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(ENCODED)), cuts=st.lists(st.integers(0, 40_000), max_size=6))
def test_any_chunking_decodes_the_whole_stream(name: str, cuts: list[int]) -> None:
    assert feed(encoding_of(name), ENCODED[name], cuts) == (PLAIN, None)


@pytest.mark.parametrize("name", sorted(ENCODED))
def test_a_stream_cut_anywhere_is_caught(name: str) -> None:
    coded = ENCODED[name]
    for cut in (1, len(coded) // 3, len(coded) - 9, len(coded) - 1):
        try:
            _, why = feed(encoding_of(name), coded[:cut], [])
        except DecodeError:
            continue
        assert why == "the encoded body ends before its stream does", cut


def test_what_follows_the_last_member_is_ignored_unless_it_is_one() -> None:
    coded = gzip.compress(PLAIN)
    assert feed("gzip", coded + b"\0\0\0\0", []) == (PLAIN, None)
    assert feed("gzip", coded + b"junk", [len(coded) + 1]) == (PLAIN, None)
    # a member's magic split across two reads is still a member
    second = gzip.compress(b"more")
    assert feed("gzip", coded + second, [len(coded) + 1]) == (PLAIN + b"more", None)


def test_identity_needs_no_decoder_and_others_are_not_ours() -> None:
    assert decoder_for("") is None and decoder_for("identity") is None
    with pytest.raises(KeyError):
        decoder_for("br")


def test_corrupt_stream_raises_or_is_caught_at_the_end() -> None:
    """A flipped byte either fails at once or leaves the stream unfinished: it never
    passes as a whole body."""
    for value in range(256):
        coded = bytearray(gzip.compress(bytes([value]), mtime=0))
        coded[len(coded) // 2] ^= 0xFF
        try:
            _, why = feed("gzip", bytes(coded), [])
        except DecodeError:
            continue
        assert why is not None, value
