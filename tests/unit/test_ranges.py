"""Range header formatting and Content-Range parsing (properties): what the engine asks
for and what it reads back must agree, and a Content-Range that cannot be right is never
taken as a place to write bytes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniget.engine.transports.base import Head, Headers
from omniget.model import ByteRange

offsets = st.integers(0, 2**62)
lengths = st.integers(1, 2**40)


def head(field: str, status: int = 206) -> Head:
    return Head(status, "http://files.test/x", Headers([("Content-Range", field)]))


@given(offsets, st.one_of(st.none(), lengths))
def test_a_range_header_asks_for_exactly_its_bytes(start: int, length: int | None) -> None:
    end = None if length is None else start + length
    value = ByteRange(start, end).header()
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", value)
    assert m is not None, value
    assert int(m[1]) == start
    assert m[2] == "" if end is None else int(m[2]) == end - 1  # (inclusive in HTTP)


@given(
    offsets,
    lengths,
    st.one_of(st.none(), st.integers(0, 2**40)),
    st.sampled_from(["bytes", "BYTES", "Bytes"]),
    st.sampled_from(["", " ", "  ", "\t"]),
)
def test_the_answer_to_a_range_parses_back_to_it(
    start: int, length: int, beyond: int | None, unit: str, pad: str
) -> None:
    asked = ByteRange(start, start + length)
    assert asked.end is not None
    total = None if beyond is None else asked.end + beyond
    field = f"{pad}{unit} {asked.start}-{asked.end - 1}/{'*' if total is None else total}{pad}"
    got = head(field)
    assert got.content_range == (asked.start, asked.end, total)
    assert got.total_size == total


@given(st.text(max_size=40))
def test_any_content_range_parses_to_a_possible_range_or_none(field: str) -> None:
    cr = head(field).content_range  # (never raises)
    if cr is not None:
        start, end, total = cr
        assert 0 <= start < end and (total is None or end <= total)


@given(offsets, offsets, offsets)
def test_numbers_in_any_order_give_a_possible_range_or_none(a: int, b: int, c: int) -> None:
    cr = head(f"bytes {a}-{b}/{c}").content_range
    if a <= b < c:
        assert cr == (a, b + 1, c)
    else:  # (last before first, or past the end of the file it names)
        assert cr is None


@pytest.mark.parametrize(
    "field",
    [
        "bytes 5-3/10",  # last before first
        "bytes 0-9/9",  # past the end of the file it names
        "bytes 0-9/5",
        "bytes -1-9/10",
        "bytes 0-9",
        "items 0-9/10",
        "bytes */10",  # (a 416's form: no range in it)
    ],
)
def test_a_content_range_that_cannot_be_right_is_none(field: str) -> None:
    got = head(field)
    assert got.content_range is None
    assert got.total_size is None


@pytest.mark.parametrize(("start", "end"), [(5, 5), (0, 0), (5, 4), (-1, 3)])
def test_a_range_of_no_bytes_cannot_be_made(start: int, end: int) -> None:
    # (an empty one had the header bytes=5-4, which no server can answer)
    with pytest.raises(ValueError, match="bad byte range"):
        ByteRange(start, end)
