"""What a pipelined request sends: the bytes libcurl would send for the same request."""

from __future__ import annotations

import pytest

from omniget.engine.transports.base import Request
from omniget.engine.transports.outgoing import check_headers, pipe_request
from omniget.model import ByteRange

BASE = b"Host: h:8\r\nUser-Agent: ua/1\r\nAccept: */*\r\nAccept-Encoding: identity\r\n\r\n"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://h:8/a/b.bin", b"/a/b.bin"),
        ("http://h:8", b"/"),
        ("http://h:8/", b"/"),
        ("http://h:8?x=1", b"/?x=1"),
        ("http://h:8/a?x=/y", b"/a?x=/y"),
        ("http://h:8?x=/y", b"/?x=/y"),
        ("http://h:8/a#frag?x", b"/a"),
    ],
)
def test_the_target_is_the_path_and_query(url: str, target: bytes) -> None:
    assert pipe_request(Request(url), url, {}, None, "ua/1") == b"GET %s HTTP/1.1\r\n%s" % (
        target,
        BASE,
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [("http://h:80/f", b"h"), ("http://h:/f", b"h"), ("http://[::1]:80/f", b"[::1]"),
     ("http://h:8080/f", b"h:8080"), ("http://h/f", b"h"), ("http://[0:0::1]:80/f", b"[::1]"),
     ("http://[::1]/f", b"[::1]"), ("http://[::1]:/f", b"[::1]")],
)
def test_the_host_line_leaves_out_the_default_port_as_libcurl_does(
    url: str, host: bytes
) -> None:
    """(was ``Host: h:80`` where libcurl sends ``Host: h``)"""
    stores: tuple[dict[str, str] | None, ...] = (None, {})
    for fixed in stores:
        sent = pipe_request(Request(url), url, {}, None, None, fixed)
        assert sent is not None and sent.split(b"\r\n")[1] == b"Host: " + host


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("0:0:0:0:0:0:0:1", "::1"),
        ("A::B", "a::b"),
        ("fe80::1%25lo", "fe80::1"),  # (no zone id: it means nothing to the server)
        ("::1%lo", "::1"),
        ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("1:0:2:0:0:3:0:0", "1:0:2::3:0:0"),  # (the first of two longest runs)
        ("::FFFF:1.2.3.4", "::ffff:1.2.3.4"),
        ("0:0:0:0:0:ffff:102:304", "::ffff:1.2.3.4"),
        ("0::0:1.2.3.4", "::1.2.3.4"),
        ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),  # (the short form is longer: kept as written)
        ("::FFFF:7F00:1", "::FFFF:7F00:1"),
        ("::", "::"),
    ],
)
def test_an_ipv6_host_line_is_written_as_libcurl_writes_it(written: str, sent: str) -> None:
    """(each pair as libcurl 8 sent it; the pipelined path sent the URL's text)"""
    url = f"http://[{written}]:8/f"
    stores: tuple[dict[str, str] | None, ...] = (None, {})
    for fixed in stores:
        for request in (Request(url), Request(url, range=ByteRange(0, 9))):
            data = pipe_request(request, url, {}, None, None, fixed)
            assert data is not None and data.split(b"\r\n")[1] == f"Host: [{sent}]:8".encode()


@pytest.mark.parametrize(
    "url",
    ["http://h:8/a/../f", "http://h:8/a/./f", "http://h:8/a/..", "http://h:8/./f?x=1",
     "http://h:8/a/%2e%2E/f", "http://h:8/a/.%2e/f", "http://h:8/a/%2E/f"],
)
def test_a_path_with_dot_segments_is_left_to_libcurl(url: str) -> None:
    """libcurl sends /a/../f as /f: sent as given on our own connections it asked the
    server for another path (was sent as given)."""
    assert pipe_request(Request(url), url, {}, None, None) is None
    assert pipe_request(Request(url), url, {}, None, None, {}) is None
    for fine in ("http://h:8/a/.b/f..", "http://h:8/f?x=/../y", "http://h:8/a%2e%2e/f"):
        assert pipe_request(Request(fine), fine, {}, None, None) is not None


def test_headers_cookie_and_range_lines() -> None:
    url = "http://h:8/f"
    headers = check_headers((("X-A", "1"), ("Accept", "text/x"), ("X-Empty", "")))
    req = Request(url, range=ByteRange(5, 10), if_range='"e"')
    assert pipe_request(req, url, headers, "c=1", None) == (
        b"GET /f HTTP/1.1\r\nHost: h:8\r\nAccept-Encoding: identity\r\nX-A: 1\r\n"
        b'Accept: text/x\r\nCookie: c=1\r\nRange: bytes=5-9\r\nIf-Range: "e"\r\n\r\n'
    )
    assert pipe_request(Request(url), url, {}, None, None) == (
        b"GET /f HTTP/1.1\r\nHost: h:8\r\nAccept: */*\r\nAccept-Encoding: identity\r\n\r\n"
    )
    assert pipe_request(Request("http://h:8/\u00e9"), "http://h:8/\u00e9", {}, None, "u") is None


def test_a_request_line_goes_before_the_header_lines_written_once_per_host() -> None:
    """With a store for the transport's own headers, a plain GET's header lines are
    written once per host and the bytes are those written line by line; a request with
    a cookie or a range is written in full as before."""
    headers = check_headers((("X-A", "1"), ("X-Empty", "")))
    fixed: dict[str, str] = {}
    cases = [
        Request("http://h:8/a/b.bin"),
        Request("http://h:8?x=1"),
        Request("http://other:9/c#frag"),
        Request("http://h:8/f", range=ByteRange(5, 10), if_range='"e"'),
        Request("http://h:8/\u00e9"),
        Request("http://h:8/d"),
    ]
    for cookie in (None, "c=1"):
        for req in cases:
            want = pipe_request(req, req.url, headers, cookie, "ua/1")
            assert pipe_request(req, req.url, headers, cookie, "ua/1", fixed) == want
    assert sorted(fixed) == ["h:8", "other:9"]
    fixed["h:8"] = "X-Stored: 1\r\n\r\n"  # (what is stored is what goes out)
    assert pipe_request(Request("http://h:8/z"), "http://h:8/z", headers, None, "ua/1", fixed) == (
        b"GET /z HTTP/1.1\r\nX-Stored: 1\r\n\r\n"
    )
