"""What the header lines of an answer's head say, read once per answer for a pipelined
connection (:mod:`.h1conn`; read by :mod:`.h1answer`): its headers, and how its body is
framed and coded.
"""

from __future__ import annotations

from .base import Headers
from .decode import codings

__all__ = [
    "BAD_CODING", "BAD_LENGTH", "BAD_NAME", "BARE_LF", "FRAMING", "LONE_CR", "NOT_HTTP",
    "NO_COLON", "NUL", "line_fault", "read_fields", "status_line",
]  # fmt: skip

_BLANK = " \t\n\r\x0b\x0c"  # what bytes.strip() strips (str.strip() strips more)
#: Header names (lower case) that say how an answer's body is framed or coded.
FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})


#: What a head's header lines say: (headers, Content-Length, chunked, Connection and
#: Content-Encoding in lower case).
_Fields = tuple[Headers, int | None, bool, str, str]
BAD_LENGTH, BAD_CODING = "bad Content-Length", "a transfer coding other than chunked"
BARE_LF = "a line ended by a bare LF"
BAD_NAME = "a framing field's name not ended by its colon"
# (libcurl refuses the whole answer: "Carriage return found in header", "NUL byte in
# header", "Header without colon"; a line starting with CR ends its head)
LONE_CR = "a CR not before an LF"
NUL = "a NUL byte in the head"
NO_COLON = "a header line without a colon"
NOT_HTTP = "not an HTTP/1.0 or 1.1 answer"
#: How a status line begins (libcurl refuses any other HTTP/1 version, or more blanks).
_STARTS = frozenset({b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/1.1\t", b"HTTP/1.0\t"})


def status_line(block: bytes, text: str) -> tuple[int, str] | str:
    """The status code of the head ``block`` (``text``: it as latin-1, one character per
    byte) and its header lines; or what is wrong with it, that libcurl would not read as
    we do (the answer is then left to it).

    A bare LF ends a line for libcurl (RFC 9112 2.2 allows it): its head would not end
    where ours does; a CR not before an LF or a NUL anywhere in a head, it refuses.
    Looked for here in the status line (its first CR, before its first LF) and NULs in
    the whole head; :func:`read_fields` does the header lines (C-speed scans: counting
    all CRs and LFs cost ~2 K instructions each)."""
    end = text.find("\r")  # (of the status line: only CRLF ends a line)
    lf = text.find("\n")  # (the block ends with CRLF: there is one of each)
    if lf != end + 1:
        return BARE_LF if lf < end else LONE_CR
    if "\0" in text:
        return NUL
    # (as libcurl: HTTP/1.0 or 1.1 at the first byte, one blank, and a code of three
    # digits from 100; libcurl takes "200OK" too: ours wants a blank or the end)
    code = block[9:12]
    if (
        block[:9] not in _STARTS
        or not (code.isdigit() and code >= b"100")
        or not block[12:13].isspace()
    ):
        return NOT_HTTP
    return int(code), text[end + 2 :]


def read_fields(rest: str) -> _Fields | str:
    """What the header lines ``rest`` (each ending with CRLF) say, or why the answer is
    not read here: :data:`BAD_CODING` (libcurl reads it), or a fault (the other
    strings) where libcurl would read its framing otherwise or refuse it (the status
    line and NULs are the caller's)."""
    length: int | None = None
    chunked = False
    conn = encoding = ""
    pairs: list[tuple[str, str]] = []  # (the hop's headers: parsed once, here)
    lows: list[str] = []  # their names in lower case (the Headers' keys)
    last: dict[str, tuple[str, str]] = {}  # lower-case name -> its last pair
    folded = rest[:1] in (" ", "\t") or "\r\n " in rest or "\r\n\t" in rest
    lines = rest.split("\r\n")
    fault = _ends(lines)
    if fault:
        return fault
    for line in lines[:-1]:
        if folded and line[:1] in (" ", "\t"):  # obsolete line folding
            if pairs:
                name_s, value_s = pairs[-1]
                pairs[-1] = last[lows[-1]] = (name_s, f"{value_s} {line.strip(_BLANK)}")
            elif line is lines[0] and ":" not in line:  # (it folds nothing: libcurl
                return NO_COLON  # takes it for a field, and a field has a colon)
            continue
        name, colon, after = line.partition(":")
        if not colon:
            return NO_COLON
        name = name.rstrip(_BLANK)  # (no leading blank: that line was a folded one)
        value = after.strip(_BLANK)
        low = name.lower()
        if name:
            pair = (name, value)
            pairs.append(pair)
            lows.append(low)
            last[low] = pair
        if low not in FRAMING:
            continue
        if line[len(name) : len(name) + 1] != ":":  # (RFC 9112 5.1: libcurl ignores
            return BAD_NAME  # "Content-Length : 2" and refuses a line without a colon)
        if low == "content-length":
            n = _length(value)
            if n is None or (length is not None and n != length):
                return BAD_LENGTH
            length = n
        elif low == "transfer-encoding":
            if value.lower() != "chunked":
                return BAD_CODING
            chunked = True
        elif low == "connection":
            conn += after.lower()
        else:
            encoding = f"{encoding},{value}" if encoding else value  # (one list: codings)
    if encoding:
        encoding = codings([encoding])
    return Headers(pairs, lows, last), length, chunked, conn, encoding


def line_fault(rest: str) -> str:
    """Why libcurl would refuse an interim head's header lines ``rest`` (each ending with
    CRLF), or "": the faults :func:`read_fields` finds outside framing fields."""
    lines = rest.split("\r\n")
    fault = _ends(lines)
    if fault:
        return fault
    for i, line in enumerate(lines[:-1]):  # (a folded line after the first needs none)
        if ":" not in line and (i == 0 or line[:1] not in (" ", "\t")):
            return NO_COLON
    return ""


def _ends(lines: list[str]) -> str:
    """:data:`BARE_LF` or :data:`LONE_CR` if ``lines`` (header lines split at CRLF) hold
    an LF or a CR, else "" (a join and two C-speed scans: ~3.5 K instructions less than
    counting the LFs and CRs of the lines before they were split)."""
    joined = "".join(lines)
    if "\n" in joined:
        return BARE_LF
    if "\r" in joined:
        return LONE_CR
    return ""


def _length(value: str) -> int | None:
    """A Content-Length's number, or None: not digits, or past 18 of them (int() refuses
    over 4300; libcurl ignores a length past 2**63 and reads to the end)."""
    if not (value.isascii() and value.isdigit()) or len(value.lstrip("0")) > 18:
        return None
    return int(value)
