"""Property tests of the pipelined connection's answer reader (transports/h1conn.py): valid
answers, and answers with bytes flipped, added, dropped, cut or repeated, fed in any
reads. Whatever the bytes, the reader raises nothing, finishes every request once, and
hands a request only bytes of its own answer's body (the reference reading of
``_h1_model.py`` says which); the same bytes give the same result however they are cut;
an endless head or line, or run of interim answers, is refused, holding at most MAX_HEAD
bytes. The bytes go to one connection through a fake transport (as asyncio would hand
them over), and for a few examples through a real socket.
"""

from __future__ import annotations

import gzip
import itertools
import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniget.engine.transports import h1conn
from omniget.engine.transports.pipeline import FALLBACK

from ._h1_model import Got, Run, Stop, Want, drive, reference
from ._pool_kit import WRITE, Client, Hop, ok, run, send
from ._server import Server

#: Fixed examples for CI; OMNIGET_FUZZ_EXAMPLES=n runs n fresh random ones per test instead.
_MORE = int(os.environ.get("OMNIGET_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_MORE or 200,
    derandomize=not _MORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ----- valid answers --------------------------------------------------------------------


@dataclass
class Answer:
    data: bytes
    status: int
    body: bytes  # what the request should get
    keeps: bool  # the connection goes on after it
    lines: list[int]  # offsets in data where a header line may be put
    to_eof: bool  # its body ends at the connection's end
    body_at: int  # offset in data where its body (or its chunks) begins


NAMES = st.sampled_from(["X-A", "ETag", "Content-Type", "Server", "Set-Cookie", "Link"])
VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
BODIES = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(
        [b"HTTP/1.1 200 OK\r\n\r\n", b"0\r\n\r\n", b"\r\n", b"5\r\nhello\r\n"]
    ),
)
INTERIM = [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Hints\r\nLink: </s>\r\n\r\n"]
#: Header lines libcurl reads, odd as they are: folded lines after a head's first one, a
#: first one folded with a colon, an empty name, a blank in a name, control and high bytes.
ODD_FIELDS = ["X-F: a\r\n b", "X-F: a\r\n\t\tb\r\n c ", ": v", "X a: b", "X-H: \xff\x01\x7f"]
FOLDED_HINTS = b"HTTP/1.1 103 Hints\r\n Link: </s>\r\n\r\n"
FOLDED_FIRST = b" X: y\r\n"


@st.composite
def answers(draw: st.DrawFn, last: bool) -> Answer:
    """One whole answer, maybe behind interim ones; an answer read to EOF or one that
    closes the connection only if it is the ``last``."""
    interims = draw(st.lists(st.sampled_from([*INTERIM, FOLDED_HINTS]), max_size=2))
    pre = b"".join(interims)
    v10 = draw(st.integers(0, 5)) == 0
    status = draw(st.sampled_from([200, 200, 206, 404, 204, 304, 301]))
    body = b"" if status in (204, 304) else draw(BODIES)
    wire = body  # (what is sent for it)
    if status not in (204, 304) and draw(st.integers(0, 5)) == 0:
        wire = gzip.compress(body, mtime=0)
    framings = ["length", "chunked"] if not v10 else ["length"]
    if last:
        framings.append("eof")
    framing = draw(st.sampled_from(framings))
    close = last and draw(st.booleans())
    headers = [f"{n}: {v}" for n, v in draw(st.lists(st.tuples(NAMES, VALUES), max_size=3))]
    headers += draw(st.lists(st.sampled_from(ODD_FIELDS), max_size=2))
    if wire != body:
        headers.append("Content-Encoding: gzip")
    if v10 and not close:
        headers.append("Connection: keep-alive")
    if close:
        headers.append("Connection: close")
    chunks: list[bytes] = []
    if status in (204, 304):
        if draw(st.booleans()):
            headers.append(f"Content-Length: {draw(st.integers(0, 99))}")
    elif framing == "length":
        headers += [f"Content-Length: {len(wire)}"] * draw(st.integers(1, 2))
    elif framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=4)))
        chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if b > a]
    order = draw(st.permutations(headers))
    head = (b"HTTP/1.0 " if v10 else b"HTTP/1.1 ") + b"%d X\r\n" % status
    if draw(st.integers(0, 5)) == 0:
        head += FOLDED_FIRST
    lines, at = [], 0  # where a line may be put: after each head's status line or field
    for interim in interims:
        lines.append(at + interim.index(b"\r\n") + 2)
        at += len(interim)
    lines.append(len(pre) + len(head))
    for h in order:
        head += h.encode("latin-1") + b"\r\n"
        lines.append(len(pre) + len(head))
    data = pre + head + b"\r\n"
    body_at = len(data)
    if framing == "chunked" and status not in (204, 304):
        for c in chunks:
            ext = draw(st.sampled_from([b"", b";a=b", b' ; n="v"']))
            data += b"%x%s\r\n%s\r\n" % (len(c), ext, c)
        data += b"0\r\n"
        data += draw(st.sampled_from([b"", b"T: 1\r\n", b"T: 1\r\nU: 2\r\n"])) + b"\r\n"
    else:
        data += wire
    keeps = not close and framing != "eof"
    to_eof = framing == "eof" and status not in (204, 304)
    return Answer(data, status, body, keeps, lines, to_eof, body_at)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Answer], bytes]:
    """1 to 4 answers in a row, and what may follow the last one."""
    n = draw(st.integers(1, 4))
    out = [draw(answers(last=i == n - 1)) for i in range(n)]
    after = draw(st.sampled_from([b"", b"", b"\r\n", b"HTTP/1.1 200 OK\r\n\r\n", b"junk"]))
    if out[-1].to_eof:
        after = b""  # (it would be part of that body)
    return out, after


def cuts_of(size: int) -> st.SearchStrategy[list[int]]:
    """Where reads end."""
    return st.lists(st.integers(0, size), max_size=8)


def check(got: list[Got], want: list[Want], end: str) -> None:
    """Every request finished once (or was put back, or waits for the rest of a live
    connection's answer) and got only bytes of its own answer's body."""
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        where = f"request {i}: {g} / {w}"
        assert g.finishes <= 1 and g.late == 0, where
        if w.kind == "skip":
            continue
        if g.code is None:
            if g.waiting:
                assert not g.body and not g.head, where
            else:  # still in flight on a connection that lives on
                assert end == "open" and w.kind in ("open", "none"), where
                assert w.body.startswith(g.body), where
            continue
        if g.code == 0:
            assert (w.kind, g.status, g.body) == ("ok", w.status, w.body), where
        elif g.code == FALLBACK:
            assert not g.body and not g.head, where
        else:
            assert w.body.startswith(g.body), where
            assert w.kind != "none" or not g.body, where


ENDS = st.sampled_from(["eof", "reset", "open", "close"])


@FUZZ
@given(st.data())
def test_valid_answers_come_whole_in_any_reads(data: st.DataObject) -> None:
    stream, after = data.draw(streams())
    raw = b"".join(a.data for a in stream) + after
    run = Run(data.draw(cuts_of(len(raw))), data.draw(ENDS), large=data.draw(st.booleans()))
    got = drive(raw, len(stream), run)
    check(got, reference(raw, len(stream), run.end), run.end)
    for i, (g, a) in enumerate(zip(got, stream, strict=True)):
        if a.keeps or run.end == "eof" or a is not stream[-1]:
            assert (g.code, g.status, g.body) == (0, a.status, a.body), (i, g)
        if not a.keeps:
            break


@settings(FUZZ, max_examples=25)
@given(streams(), st.lists(st.integers(0, 1000), max_size=6), st.booleans())
def test_valid_answers_over_a_socket(
    made: tuple[list[Answer], bytes], cuts: list[int], large: bool
) -> None:
    """The same through asyncio and a real socket (a few examples: the fake transport
    above does what asyncio does)."""
    stream, after = made
    raw = b"".join(a.data for a in stream) + after
    marks = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in itertools.pairwise(marks) if b > a]
    with Server() as srv:
        end = "keep" if stream[-1].keeps else "linger"
        srv.route("/0", send(*pieces, pause=0.001, end=end))
        for i in range(1, len(stream)):
            srv.route(f"/{i}", send())  # (all answers came with the first)

        async def go() -> list[Hop]:
            async with Client(srv.port, max_conns=1) as c:
                if large:
                    c.pool.one_by_one(c.key)
                hops = c.get(*(f"/{i}" for i in range(len(stream))))
                await c.codes(hops)
                return hops

        hops = run(go)
    for h, a in zip(hops, stream, strict=True):
        assert (h.code, h.parsed and h.parsed[0], bytes(h.body)) == (0, a.status, a.body)


def test_a_requester_that_ends_a_short_answer_is_finished_once() -> None:
    """The rest of its body is read and dropped; the end of that is no second finish
    (its finish(0) came after finish(E_WRITE_ERROR))."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + ok(b"ok")
    for cuts in ([], [40]):
        first, second = drive(raw, 2, Run(cuts, "eof", {0: Stop("end", 1)}))
        assert (first.code, first.finishes) == (WRITE, 1)
        assert (second.code, second.body) == (0, b"ok")


@pytest.mark.parametrize("end", ["eof", "reset", "close"])
def test_a_requester_that_ends_its_answer_is_not_finished_again_by_a_fault(end: str) -> None:
    """Its answer's rest, read and dropped, is cut short by the connection's end: that
    fails the placeholder read, not the request a second time."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" + b"x" * 6
    [got] = drive(raw, 1, Run([], end, {0: Stop("end", 1)}))
    assert (got.code, got.finishes) == (WRITE, 1)


# ----- broken answers ------------------------------------------------------------------

ODD = [b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"0", b"9", b"f", b";", b"\x80", b"\xff"]
LINES = [
    b"Content-Length: 99999999999999999999999",
    b"Content-Length: " + b"9" * 5000,
    b"Content-Length: 1",
    b"Content-Length: 0",
    b"Content-Length: 3, 3",
    b"Content-Length:",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Connection: close",
    b" folded",
    b"\tContent-Length: 2",
    b"X: a\nContent-Length: 2",
    b"X: a\r",
    b"X: \x00",
    b"Content-Encoding: gzip",
    b"Content-Length : 2",
    b"Transfer-Encoding :chunked",
    b"Connection\t: close",
    b"Content-Encoding : gzip",
    b"X-A : b",
    b"Connection",
    b"X-No-Colon",
    b"X: a\rb",
    b"\r",
    b" X: folded",
    b" folded: a",
]


def mutate(data: st.DataObject, raw: bytes, stream: list[Answer]) -> bytes:
    draw = data.draw
    kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "repeat", "line"]))
    i = draw(st.integers(0, len(stream) - 1))
    base = sum(len(a.data) for a in stream[:i])
    if draw(st.booleans()):  # anywhere
        at = draw(st.integers(0, len(raw)))
    else:  # in a body or its chunks (at about where they were before any other change)
        at = min(len(raw), base + draw(st.integers(stream[i].body_at, len(stream[i].data))))
    if kind == "flip" and at < len(raw):
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    if kind == "insert":
        return raw[:at] + draw(st.sampled_from(ODD)) * draw(st.integers(1, 2)) + raw[at:]
    if kind == "delete":
        return raw[:at] + raw[at + draw(st.integers(1, 3)) :]
    if kind == "cut":
        return raw[:at]
    if kind == "repeat":
        b = draw(st.integers(at, min(len(raw), at + 40)))
        c = draw(st.integers(0, len(raw)))
        return raw[:c] + raw[at:b] + raw[c:]
    # a header line put into one of the heads
    spot = base + draw(st.sampled_from(stream[i].lines))
    return raw[:spot] + draw(st.sampled_from(LINES)) + b"\r\n" + raw[spot:]


STOPS = st.one_of(
    st.builds(Stop, st.sampled_from(["end", "cancel"]), st.integers(0, 200)).filter(
        lambda s: s.at > 0 or s.how == "cancel"
    ),
    st.none(),
)


@FUZZ
@given(st.data())
def test_broken_answers_never_give_a_request_bytes_not_its_own(data: st.DataObject) -> None:
    stream, after = data.draw(streams())
    raw = b"".join(a.data for a in stream) + after
    for _ in range(data.draw(st.integers(1, 3))):
        raw = mutate(data, raw, stream)
    n = len(stream)
    stops = {i: s for i, s in enumerate(data.draw(st.lists(STOPS, max_size=n))) if s}
    run = Run(
        data.draw(cuts_of(len(raw))),
        data.draw(ENDS),
        stops,
        large=data.draw(st.booleans()),
        max_head=data.draw(st.sampled_from([h1conn.MAX_HEAD] * 3 + [40, 80])),
    )
    got = drive(raw, n, run)
    want = reference(raw, n, run.end, run.max_head)
    check(got, want, run.end)
    # (how much a stopped requester holds depends on the reads, and so does how much a
    # corrupt coded body gives before its decoder sees the fault)
    if not stops and all(w.kind != "skip" for w in want):
        assert got == drive(raw, n, Run(end=run.end, max_head=run.max_head))


# ----- endless heads and lines --------------------------------------------------------

HEADS = [
    b"",  # the head itself
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",  # a chunk size line
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",  # a trailer
    *INTERIM,  # the final head after an interim one (all heads of an answer: MAX_HEAD)
]


@settings(FUZZ, max_examples=100)
@given(
    st.sampled_from(HEADS),
    st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"\r", b"")),
    st.lists(st.integers(0, 3000), max_size=20),
    st.sampled_from([40, 80, 300]),
)
def test_an_endless_head_or_line_is_refused_holding_at_most_max_head(
    before: bytes, unit: bytes, cuts: list[int], max_head: int
) -> None:
    raw = before + unit * (3000 // len(unit) + 1)
    run = Run(cuts, "open", max_head=max_head)
    [got] = drive(raw, 1, run)
    early = len(before) - 4 if before in INTERIM else 0  # (a head counts up to its blank line)
    assert run.kept < max_head + 4 - early and run.buffer == h1conn.READ_SIZE
    assert got.code is not None and got.code != 0
    assert got.body in (b"", b"abc")


@pytest.mark.parametrize("max_head", [80, 300, h1conn.MAX_HEAD])
@pytest.mark.parametrize("unit", INTERIM, ids=["100", "103"])
def test_endless_interim_answers_are_refused(unit: bytes, max_head: int) -> None:
    """Each is whole and small, but all heads of one answer are one head's size at most:
    the request is put back (no byte of it came) and the connection ends."""
    raw = unit * ((1 << 20) // len(unit))
    run = Run(list(range(0, len(raw), 1000)), "open", max_head=max_head)
    [got] = drive(raw, 1, run)
    assert got.code == FALLBACK and not got.body
    assert run.kept < max_head + 4


def test_a_megabyte_of_head_is_refused_at_max_head() -> None:
    run = Run(list(range(0, 1 << 20, 4096)), "open")
    [got] = drive(b"HTTP/1.1 200 OK\r\nX: " + b"a" * (1 << 20), 1, run)
    assert got.code is not None and not got.body
    assert h1conn.MAX_HEAD <= run.kept < h1conn.MAX_HEAD + 4


class _Counted(bytearray):
    """A read buffer that counts the bytes searched and moved in it."""

    work = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:
        _Counted.work += (len(self) if end is None else end) - (start or 0)
        return super().find(sub, start, end)

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, slice):
            _Counted.work += len(value)
        super().__setitem__(key, value)


def test_a_head_that_comes_a_byte_at_a_time_costs_no_more_than_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read searched and moved all of the head so far: a server sending a 64 KiB
    head a byte per read cost 1.3 s of CPU here (over 2 GB searched and moved)."""
    monkeypatch.setattr(h1conn, "bytearray", _Counted, raising=False)
    _Counted.work = 0
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(2000))
    raw = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok"
    [got] = drive(raw, 1, Run(list(range(len(raw))), "open"))
    assert (got.code, got.body) == (0, b"ok")
    assert _Counted.work < 10 * len(raw)
