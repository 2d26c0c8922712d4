"""CurlTransport's network safety against real sockets on 127.0.0.1: redirects and where
credentials may go, proxies, --resolve, cookies, netrc and TLS."""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pycurl
import pytest
from tests.servers.tls import JSSE_ALERT

from omniget.engine.transports.base import Request, origin
from omniget.engine.transports.curlerrors import curl_error
from omniget.engine.transports.http import CurlTransport, ca_locations
from omniget.engine.transports.outgoing import no_proxy_match
from omniget.errors import AuthRequired, RemoteError, TransientError, UsageError
from omniget.settings import NetworkSettings

from ._http_kit import BODY, Sink, get, run
from ._server import Handler, Req, Server, redirect, reply, static


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        yield server


@pytest.fixture
def other() -> Iterator[Server]:
    with Server() as server:
        yield server


# -- redirects --


def test_redirect_chain_followed(srv: Server) -> None:
    srv.route("/r1", redirect("/r2", 301))
    srv.route("/r2", redirect("r3", 302))  # relative to /r2
    srv.route("/r3", redirect(srv.url("/final"), 307))
    srv.route("/final", static(b"final body"))
    head, sink = get(srv.url("/r1"))
    assert head.status == 200
    assert head.url == srv.url("/final")
    assert bytes(sink.data) == b"final body"
    assert len(sink.heads) == 1
    assert srv.paths() == ["/r1", "/r2", "/r3", "/final"]


@pytest.mark.parametrize(
    ("location", "scheme"),
    [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/x", "ftp"),
        ("gopher://127.0.0.1/x", "gopher"),
        ("data:text/plain,hi", "data"),
    ],
)
def test_redirect_to_other_scheme_refused(srv: Server, location: str, scheme: str) -> None:
    srv.route("/r", redirect(location))
    with pytest.raises(RemoteError) as info:
        get(srv.url("/r"))
    assert scheme in str(info.value)
    assert "\n" not in str(info.value)
    assert srv.paths() == ["/r"]


@pytest.mark.parametrize("location", ["http://127.0.0.1:99999/x", "http://[::1/x"])
def test_a_redirect_to_an_unusable_url_fails_as_the_servers_fault(
    srv: Server, location: str
) -> None:
    """(was a ValueError from urllib: the CLI's "internal error", exit 1)"""
    srv.route("/r", redirect(location))
    with pytest.raises(RemoteError, match=r"^unusable redirect to .* \(from http://") as info:
        get(srv.url("/r"))
    assert not info.value.retryable
    assert srv.paths() == ["/r"]


def test_redirect_loop_refused(srv: Server) -> None:
    srv.route("/a", redirect("/b"))
    srv.route("/b", redirect("/a"))
    with pytest.raises(RemoteError, match="loop"):
        get(srv.url("/a"))
    assert srv.paths() == ["/a", "/b"]


def test_too_many_redirects(srv: Server) -> None:
    for i in range(10):
        srv.route(f"/h{i}", redirect(f"/h{i + 1}"))
    with pytest.raises(RemoteError, match="too many redirects"):
        get(srv.url("/h0"), NetworkSettings(max_redirects=3))
    assert len(srv.requests) == 4


@pytest.mark.parametrize("hops", [10, 11])
def test_ten_redirects_are_followed_by_default_and_no_more(srv: Server, hops: int) -> None:
    for i in range(hops):
        srv.route(f"/h{i}", redirect(f"/h{i + 1}"))
    srv.route(f"/h{hops}", static(b"there"))
    if hops <= 10:
        _, sink = get(srv.url("/h0"))
        assert bytes(sink.data) == b"there"
        assert len(srv.requests) == hops + 1
    else:
        with pytest.raises(RemoteError, match="too many redirects"):
            get(srv.url("/h0"))
        assert len(srv.requests) == 11  # (the last hop not asked for)


def test_redirect_without_location_is_handed_over(srv: Server) -> None:
    srv.route("/r", static(b"no location", status=302))
    head, sink = get(srv.url("/r"))
    assert head.status == 302
    assert bytes(sink.data) == b"no location"


SECRET_HEADERS = {
    "Authorization": "Bearer tok",
    "Cookie": "sid=1",
    "Proxy-Authorization": "Basic cHg=",
    "X-Token": "s3cret",
    "X-Plain": "visible",
}


def test_cross_origin_redirect_drops_credentials(srv: Server, other: Server) -> None:
    srv.route("/start", redirect(other.url("/land")))
    other.route("/land", static(b"landed"))
    settings = NetworkSettings(user="alice:pw", netrc=False)
    head, sink = get(
        srv.url("/start"),
        settings,
        headers={**SECRET_HEADERS, "Host": f"127.0.0.1:{srv.port}"},
        secret_headers=("x-token",),
    )
    assert bytes(sink.data) == b"landed"
    assert head.url == other.url("/land")
    first = srv.requests[0].headers
    assert first["authorization"] == "Bearer tok"  # explicit header wins over --user
    assert first["cookie"] == "sid=1"
    assert first["x-token"] == "s3cret"
    landed = other.requests[0].headers
    for name in ("authorization", "cookie", "proxy-authorization", "x-token"):
        assert name not in landed
    assert landed["x-plain"] == "visible"
    assert landed["host"] == f"127.0.0.1:{other.port}"


def test_cross_origin_redirect_drops_user_credentials(srv: Server, other: Server) -> None:
    srv.route("/start", redirect(other.url("/land")))
    other.route("/land", static(b"landed"))
    get(srv.url("/start"), NetworkSettings(user="alice:pw", netrc=False))
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert srv.requests[0].headers["authorization"] == expected
    assert "authorization" not in other.requests[0].headers


def test_user_credentials_go_to_their_origin_only(srv: Server, other: Server) -> None:
    srv.route("/a", static(b"a"))
    other.route("/b", static(b"b"))
    settings = NetworkSettings(user="alice:pw", user_origin=srv.url("/"), netrc=False)
    get(srv.url("/a"), settings)
    get(other.url("/b"), settings)
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert srv.requests[0].headers["authorization"] == expected
    assert "authorization" not in other.requests[0].headers


def test_url_credentials_stay_with_first_origin(srv: Server, other: Server) -> None:
    srv.route("/start", redirect(other.url("/land")))
    other.route("/land", static(b"landed"))
    url = f"http://bob:pa%3Ass@127.0.0.1:{srv.port}/start"
    head, _ = get(url, NetworkSettings(netrc=False))
    expected = "Basic " + base64.b64encode(b"bob:pa:ss").decode()
    assert srv.requests[0].headers["authorization"] == expected
    assert "authorization" not in other.requests[0].headers
    assert "bob" not in head.url


def test_credentials_in_a_location_are_not_used(srv: Server, other: Server) -> None:
    """As curl: a redirect's ``user:password@`` is dropped (was sent, and kept in the
    head's URL); the first URL's credentials still follow to their own origin."""
    srv.route("/r", redirect(f"http://eve:pw@127.0.0.1:{other.port}/land"))
    srv.route("/back", redirect(f"http://eve:pw@127.0.0.1:{srv.port}/land"))
    other.route("/land", static(b"landed"))
    srv.route("/land", static(b"back"))
    head, sink = get(srv.url("/r"), NetworkSettings(netrc=False))
    assert bytes(sink.data) == b"landed" and head.url == other.url("/land")
    assert "authorization" not in other.requests[0].headers
    get(f"http://bob:pw@127.0.0.1:{srv.port}/back", NetworkSettings(netrc=False))
    expected = "Basic " + base64.b64encode(b"bob:pw").decode()
    assert [r.headers.get("authorization") for r in srv.requests[1:]] == [expected] * 2


def test_url_credentials_never_reach_the_head(srv: Server) -> None:
    srv.route("/f", static(b"x"))
    head, _ = get(f"http://bob:pw@127.0.0.1:{srv.port}/f", NetworkSettings(netrc=False))
    assert head.url == srv.url("/f")
    assert srv.requests[0].headers["authorization"].startswith("Basic ")


def test_url_with_spaces_and_non_ascii_is_encoded(srv: Server) -> None:
    srv.route("/a%20b/caf%C3%A9", static(b"encoded"))
    _, sink = get(srv.url("/a b/café"))
    assert bytes(sink.data) == b"encoded"
    assert srv.requests[0].target == "/a%20b/caf%C3%A9"


def test_redirect_to_raw_utf8_location(srv: Server) -> None:
    # The Location header carries raw UTF-8 bytes (reply() encodes str as latin-1).
    srv.route("/r", redirect("/caf\xc3\xa9?q=\xc3\xa9"))
    srv.route("/caf%C3%A9", static(b"ok"))
    head, sink = get(srv.url("/r"))
    assert bytes(sink.data) == b"ok"
    assert srv.requests[1].target == "/caf%C3%A9?q=%C3%A9"
    assert head.url == srv.url("/caf%C3%A9?q=%C3%A9")


def test_same_origin_redirect_keeps_credentials(srv: Server) -> None:
    srv.route("/start", redirect("/land"))
    srv.route("/land", static(b"landed"))
    get(srv.url("/start"), headers=SECRET_HEADERS, secret_headers=("X-Token",))
    landed = srv.requests[1].headers
    assert landed["authorization"] == "Bearer tok"
    assert landed["cookie"] == "sid=1"
    assert landed["x-token"] == "s3cret"


def test_other_port_is_another_origin(srv: Server, other: Server) -> None:
    # Same host, other port: credentials must not follow (CVE-2022-27776).
    srv.route("/start", redirect(f"http://127.0.0.1:{other.port}/land"))
    other.route("/land", static(b"x"))
    get(srv.url("/start"), headers={"Authorization": "Bearer tok"})
    assert "authorization" not in other.requests[0].headers


def test_other_host_on_the_same_port_is_another_origin(srv: Server) -> None:
    # Same server, same port, another host name: credentials must not follow either.
    srv.route("/start", redirect(f"http://localhost:{srv.port}/land"))
    srv.route("/land", static(b"x"))
    get(
        srv.url("/start"),
        NetworkSettings(user="alice:pw", netrc=False),
        headers=SECRET_HEADERS,
        secret_headers=("x-token",),
    )
    first, landed = (r.headers for r in srv.requests)
    assert first["authorization"] == "Bearer tok"
    assert landed["host"] == f"localhost:{srv.port}"
    for name in ("authorization", "cookie", "x-token"):
        assert name not in landed, name


def test_an_origin_is_scheme_host_and_port() -> None:
    """What the redirect checks compare: another scheme alone (which no two local servers
    can show on one port) is another origin; default ports and case are not."""
    assert origin("http://h.example/a") == origin("HTTP://H.example:80/b")
    assert origin("https://h.example/") == origin("https://h.example:443/")
    assert origin("http://h.example/") != origin("https://h.example/")
    assert origin("http://h.example:443/") != origin("https://h.example/")
    assert origin("http://h.example/") != origin("http://g.example/")


@pytest.mark.parametrize("name", ["X-Api-Key", "x-api-key", "X-API-KEY"])
def test_api_key_stays_with_its_origin(srv: Server, other: Server, name: str) -> None:
    # No secret_headers given: X-Api-Key is a secret by itself (as the CLI masks it).
    srv.route("/same", redirect("/land"))
    srv.route("/land", redirect(other.url("/away")))  # other port: another origin
    other.route("/away", static(b"away"))
    _, sink = get(srv.url("/same"), headers={name: "k3y", "X-Plain": "visible"})
    assert bytes(sink.data) == b"away"
    assert [r.headers.get("x-api-key") for r in srv.requests] == ["k3y", "k3y"]
    landed = other.requests[0].headers
    assert "x-api-key" not in landed
    assert "k3y" not in repr(other.requests[0].raw_headers)
    assert landed["x-plain"] == "visible"


# -- network path --


def test_resolve_maps_made_up_host(srv: Server) -> None:
    srv.route("/f", static(b"resolved"))
    host = "files.example.test"
    settings = NetworkSettings(resolve=(f"{host}:{srv.port}:127.0.0.1",))
    _head, sink = get(f"http://{host}:{srv.port}/f", settings)
    assert bytes(sink.data) == b"resolved"
    assert srv.requests[0].headers["host"] == f"{host}:{srv.port}"


def test_proxy_setting_is_used(srv: Server) -> None:
    def proxied(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.target.encode())

    srv.route("/via", proxied)
    settings = NetworkSettings(proxy=srv.origin)
    _, sink = get("http://origin.example.test/via", settings)
    assert bytes(sink.data) == b"http://origin.example.test/via"


def test_proxy_environment_applies_when_no_proxy_is_set(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def proxied(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.target.encode())

    srv.route("/via", proxied)
    monkeypatch.setenv("http_proxy", srv.origin)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    _, sink = get("http://origin.example.test/via")
    assert bytes(sink.data) == b"http://origin.example.test/via"


NO_PROXY_CASES = [  # (no_proxy, host, whether libcurl goes direct)
    ("a.example.com", "a.example.com", True),
    ("example.com", "a.example.com", True),
    (".example.com", "a.example.com", True),
    (".example.com", "example.com", True),
    ("example.com.", "a.example.com", True),
    ("EXAMPLE.com", "a.example.COM", True),
    ("example.com", "nonexample.com", False),
    ("*.example.com", "a.example.com", False),
    ("*", "a.example.com", True),
    ("b.test, a.example.com", "a.example.com", True),
    ("b.test,,a.example.com", "a.example.com", True),
    ("b.test a.example.com", "a.example.com", False),  # (libcurl reads up to a blank)
    ("a.example.com:{port}", "a.example.com", False),
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.0/8", "127.0.0.1", True),
    ("127.0.0.2/31", "127.0.0.1", False),
    ("127.0.0.0/33", "127.0.0.1", False),
    ("127.0.0.1/0", "127.0.0.1", True),
    ("localhost", "127.0.0.1", False),
]


def test_no_proxy_is_matched_as_libcurl_matches_it(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``no_proxy_match`` (which hosts the pipelined path may take past a proxy) agrees
    with libcurl's own choice, checked through a real proxy."""
    srv.route("/f", static(b"direct"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    with Server() as proxy:
        proxy.route("/f", static(b"proxy"))
        monkeypatch.setenv("http_proxy", proxy.origin)
        for entry, host, direct in NO_PROXY_CASES:
            value = entry.format(port=srv.port)
            monkeypatch.setenv("no_proxy", value)
            settings = NetworkSettings(resolve=(f"{host.lower()}:{srv.port}:127.0.0.1",))
            _, sink = get(f"http://{host}:{srv.port}/f", settings)
            assert (bytes(sink.data) == b"direct") is direct, (value, host)
            assert no_proxy_match(host, value) is direct, (value, host)


def test_unusable_proxy_scheme_in_the_environment_is_not_retried(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A usage error (exit 2), as the check before a run says it (tests/transports/
    test_proxy_checked.py), for URLs that come as the run goes (a generator, a source's
    listing): it was exit 3, as if the network had failed."""
    monkeypatch.setenv("http_proxy", "ftp://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(UsageError, match="unusable proxy") as err:
        get(f"{srv.origin}/never")
    assert not err.value.retryable
    assert srv.requests == []


@pytest.mark.parametrize(
    "proxy", ["me:s3cret@127.0.0.1:99999", "ftp://me:s3cret@127.0.0.1:9", "me:s3cret@p x:9",
              "http://me:s3c/r3t@127.0.0.1:9", "me:s3c r3t@127.0.0.1:9",
              "http://me:s3c@r3t@127.0.0.1:9", "socks5://me:s3c'r3t@@127.0.0.1:9",
              "socks9://me:s3c/r3t@127.0.0.1:9"]
)
def test_a_proxy_password_is_never_in_the_message(
    srv: Server, monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    """libcurl quotes a proxy URL it cannot use: its password was in the error (the CLI's
    mask wants a scheme before it), and a bad syntax was called a failed lookup. A
    password with a blank, a slash or an ``@`` not written as %XX was shown whole or in
    part."""
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(UsageError, match=r"^unusable proxy for .*\(check http_proxy\)$") as err:
        get(f"{srv.origin}/never")
    said = str(err.value)
    assert not any(part in said for part in ("s3c", "r3t", "ret")), said
    assert "me:***@127.0.0.1:9" in said or "me:***@p x:9" in said, said
    assert not err.value.retryable
    assert srv.requests == []


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(407, AuthRequired, False), (403, AuthRequired, False), (502, TransientError, True)],
)
def test_a_proxy_refusing_the_tunnel_is_named_with_its_status(
    srv: Server, status: int, error: type[Exception], retryable: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    srv.route("127.0.0.1:1", static(b"no", status))  # (a CONNECT's target)
    with pytest.raises(error, match=f"proxy refused the tunnel.*HTTP {status}") as err:
        get("https://127.0.0.1:1/x", NetworkSettings(proxy=srv.origin))
    assert getattr(err.value, "retryable", False) is retryable
    if status == 407:
        assert "user name and password" in str(err.value)
    assert [r.method for r in srv.requests] == ["CONNECT"]


@pytest.mark.parametrize("how", ["--proxy", "https_proxy", "ALL_PROXY"])
def test_an_unreachable_proxy_is_named_in_the_message(
    refused_port: int, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Which proxy, and where it was given (a variable left over from elsewhere, say): the
    message named the server's URL alone."""
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    proxy = f"http://pu:s3cret@127.0.0.1:{refused_port}"
    settings = NetworkSettings(proxy=proxy) if how == "--proxy" else NetworkSettings()
    if how != "--proxy":
        monkeypatch.setenv(how, proxy)
    # (libcurl's own words name the server's host and port: as if the server were down)
    with pytest.raises(TransientError, match="could not connect to the proxy") as err:
        get("https://files.test:8443/x", settings)
    said = str(err.value)
    assert "Connection refused" in said
    assert f"the proxy http://pu:***@127.0.0.1:{refused_port} for " in said, said
    assert said.endswith(f"Connection refused (check {how})"), said
    assert "s3cret" not in said
    assert err.value.max_retries == 2


def test_empty_proxy_setting_switches_the_environment_proxy_off(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv.route("/direct", static(b"direct"))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    _, sink = get(f"{srv.origin}/direct", NetworkSettings(proxy=""))
    assert bytes(sink.data) == b"direct"


def test_cookies_file_scoping(srv: Server, tmp_path: Path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/a\tFALSE\t0\tin_a\t1\n"
        "127.0.0.1\tFALSE\t/\tTRUE\t0\tsecure_only\t2\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t1\texpired\t3\n"
        "other.example\tFALSE\t/\tFALSE\t0\telsewhere\t4\n"
    )
    srv.route("/a/x", static(b"a"))
    srv.route("/b/x", static(b"b"))
    settings = NetworkSettings(cookies_file=str(jar))

    async def go(t: CurlTransport) -> None:
        await t.fetch(Request(srv.url("/a/x")), Sink())
        await t.fetch(Request(srv.url("/b/x")), Sink())

    run(go, settings)
    assert srv.requests[0].headers.get("cookie") == "in_a=1"
    assert "cookie" not in srv.requests[1].headers


def test_cookies_set_on_redirect_are_sent_on_next_hop(srv: Server, tmp_path: Path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n")

    def login(req: Req, sock: socket.socket) -> None:
        reply(sock, 302, b"", [("Location", "/in"), ("Set-Cookie", "session=abc; Path=/")])

    srv.route("/login", login)
    srv.route("/in", static(b"in"))
    get(srv.url("/login"), NetworkSettings(cookies_file=str(jar)))
    assert srv.requests[1].headers.get("cookie") == "session=abc"


def test_cookies_file_for_hosts_without_a_dot(srv: Server, tmp_path: Path) -> None:
    # curl -b sends both the host-only and the domain cookie to localhost; so do we.
    jar = tmp_path / "cookies.txt"
    jar.write_bytes(
        b"localhost\tFALSE\t/\tFALSE\t0\thost_only\t1\r\n"  # (no header line, CRLF)
        b".localhost\tTRUE\t/\tFALSE\t0\tdomain_wide\t2\r\n"
        b"#HttpOnly_localhost\tFALSE\t/\tFALSE\t0\thttp_only\t3\r\n"
        b"localhost\tFALSE\t/\tTRUE\t0\tsecure_only\t4\r\n"
        b"localhost\tFALSE\t/\tFALSE\t1\texpired\t5\r\n"
        b"localhost.local\tFALSE\t/\tFALSE\t0\tmdns_host\t6\r\n"
        b"intranet\tFALSE\t/\tFALSE\t0\tintranet_only\t7\r\n"
    )
    srv.route("/f", static(b"ok"))
    resolve = tuple(f"{h}:{srv.port}:127.0.0.1" for h in ("localhost", "intranet", "other"))
    settings = NetworkSettings(cookies_file=str(jar), resolve=resolve)

    async def go(t: CurlTransport) -> None:
        for host in ("localhost", "intranet", "other"):
            await t.fetch(Request(f"http://{host}:{srv.port}/f"), Sink())

    run(go, settings)
    sent = [r.headers.get("cookie") for r in srv.requests]
    assert sent[0] is not None
    assert sorted(sent[0].split("; ")) == ["domain_wide=2", "host_only=1", "http_only=3"]
    assert sent[1:] == ["intranet_only=7", None]


COOKIES = (
    "# Netscape HTTP Cookie File\n"
    "example.test\tFALSE\t/\tFALSE\t0\thost_only\t1\n"
    ".example.test\tTRUE\t/\tFALSE\t0\tdomain_wide\t2\n"
    "Files.Example.Test\tFALSE\t/a\tFALSE\t0\tfiles_a\t3\n"
    "files.example.test\tFALSE\t/a/b\tFALSE\t0\tfiles_ab\t4\n"
    "example.test\tTRUE\t/\tTRUE\t0\tsecure_only\t5\n"
    "127.0.0.1\tFALSE\t/\tFALSE\t0\tip\t6\n"
    "0.0.1\tTRUE\t/\tFALSE\t0\tip_suffix\t7\n"
    "test\tFALSE\t/\tFALSE\t0\ttld_host_only\t8\n"
    "#HttpOnly_.example.test\tTRUE\t/\tFALSE\t0\thttp_only\t9\n"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.test/", "host_only=1; domain_wide=2; http_only=9"),
        ("http://EXAMPLE.test./x", "host_only=1; domain_wide=2; http_only=9"),
        ("https://example.test/", "host_only=1; domain_wide=2; secure_only=5; http_only=9"),
        ("http://files.example.test/", "domain_wide=2; http_only=9"),
        ("http://files.example.test/a", "files_a=3; domain_wide=2; http_only=9"),
        ("http://files.example.test/ab", "domain_wide=2; http_only=9"),
        ("http://files.example.test/a/b/c?q=/a", "files_ab=4; files_a=3; domain_wide=2"
         "; http_only=9"),
        ("http://x.files.example.test/a", "domain_wide=2; http_only=9"),
        ("http://notexample.test/", None),
        ("http://example.test.evil/", None),
        ("http://other.test/", None),
        ("http://127.0.0.1:8080/", "ip=6"),
        ("http://test/", "tld_host_only=8"),
    ],
)
def test_cookie_header_matches_as_curl(tmp_path: Path, url: str, expected: str | None) -> None:
    from omniget.engine.transports.cookies import cookie_header, load_cookies

    path = tmp_path / "cookies.txt"
    path.write_text(COOKIES)
    header = cookie_header(load_cookies(str(path)), url)
    if expected is None:
        assert header is None
    else:  # (cookies of equal path length may come in any order)
        assert header is not None
        assert sorted(header.split("; ")) == sorted(expected.split("; "))


def test_cookie_header_puts_longer_paths_first(tmp_path: Path) -> None:
    from omniget.engine.transports.cookies import cookie_header, load_cookies

    path = tmp_path / "cookies.txt"
    path.write_text(COOKIES)
    header = cookie_header(load_cookies(str(path)), "http://files.example.test/a/b/c")
    assert header is not None
    assert header.split("; ")[:2] == ["files_ab=4", "files_a=3"]


def test_cookies_set_by_a_host_without_a_dot_stay_with_it(
    srv: Server, tmp_path: Path
) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text("localhost.local\tFALSE\t/\tFALSE\t0\tmdns_host\t1\n")

    def login(req: Req, sock: socket.socket) -> None:
        reply(sock, 302, b"", [("Location", "/in"), ("Set-Cookie", "session=abc; Path=/")])

    def logout(req: Req, sock: socket.socket) -> None:
        reply(sock, 302, b"", [("Location", "/in"), ("Set-Cookie", "session=; Max-Age=0")])

    srv.route("/login", login)
    srv.route("/logout", logout)
    srv.route("/in", static(b"in"))
    resolve = tuple(f"{h}:{srv.port}:127.0.0.1" for h in ("localhost", "sub.localhost"))
    settings = NetworkSettings(cookies_file=str(jar), resolve=resolve)
    base = f"http://localhost:{srv.port}"

    async def go(t: CurlTransport) -> None:
        await t.fetch(Request(f"{base}/login"), Sink())
        await t.fetch(Request(f"http://sub.localhost:{srv.port}/in"), Sink())
        await t.fetch(Request(f"{base}/logout"), Sink())

    run(go, settings)
    sent = [(r.path, r.headers.get("cookie")) for r in srv.requests]
    assert sent == [
        ("/login", None),
        ("/in", "session=abc"),
        ("/in", None),  # host-only: not for sub.localhost
        ("/logout", "session=abc"),
        ("/in", None),  # deleted by Max-Age=0
    ]


def test_secure_cookies_are_taken_only_from_https_as_curl_takes_them(
    tmp_path: Path,
) -> None:
    """An http:// answer's ``Secure`` or ``__Secure-``/``__Host-`` cookie, or one in
    place of a secure cookie, is dropped (they went to https:// after); an https://
    answer's ``__Host-`` cookie needs Secure, Path=/ and no Domain."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("made.test").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    jar = tmp_path / "cookies.txt"
    jar.write_text("made.test\tFALSE\t/\tTRUE\t0\tkeep\t1\n")
    from_http = [
        "sec=1; Secure; Path=/", "plain=2; Path=/", "__Host-x=3; Path=/",
        "__Secure-y=4; Path=/", "keep=evil; Path=/",
    ]
    from_https = [
        "__Host-ok=5; Secure; Path=/", "__Host-nopath=6; Secure",
        "__Host-dom=7; Secure; Path=/; Domain=made.test", "__Secure-no=8; Path=/",
    ]

    def cookies(values: list[str]) -> Handler:
        def handle(req: Req, sock: socket.socket) -> None:
            reply(sock, 200, b"ok", [("Set-Cookie", v) for v in values])

        return handle

    with Server() as plain, Server(tls=ctx) as tls:
        plain.route("/set", cookies(from_http))
        tls.route("/set", cookies(from_https))
        tls.route("/e", static(b"e"))
        resolve = (f"made.test:{plain.port}:127.0.0.1", f"made.test:{tls.port}:127.0.0.1")
        settings = NetworkSettings(cookies_file=str(jar), ca_cert=str(ca_file), resolve=resolve)

        async def go(t: CurlTransport) -> None:
            await t.fetch(Request(f"http://made.test:{plain.port}/set"), Sink())
            await t.fetch(Request(f"https://made.test:{tls.port}/set"), Sink())
            await t.fetch(Request(f"https://made.test:{tls.port}/e"), Sink())

        run(go, settings)
    sent = [r.headers.get("cookie") for r in tls.requests]
    assert sent == ["plain=2; keep=1", "__Host-ok=5; plain=2; keep=1"]


def test_missing_cookies_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cookies"):
        CurlTransport(NetworkSettings(cookies_file=str(tmp_path / "nope.txt")))


def test_netrc_file_used_per_host(srv: Server, other: Server, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nina password pw1\n")
    netrc.chmod(0o600)
    srv.route("/f", static(b"ok"))
    get(srv.url("/f"), NetworkSettings(netrc=True, netrc_file=str(netrc)))
    expected = "Basic " + base64.b64encode(b"nina:pw1").decode()
    assert srv.requests[0].headers["authorization"] == expected


def test_a_missing_netrc_file_that_was_named_is_a_usage_error(tmp_path: Path) -> None:
    """(libcurl skips it without a word: a mistyped ``netrc-file`` sent no login)"""
    missing = tmp_path / "nope"
    with pytest.raises(UsageError, match=r"^netrc-file .*nope: no such file$"):
        CurlTransport(NetworkSettings(netrc_file=str(missing)))
    CurlTransport(NetworkSettings(netrc=False, netrc_file=str(missing)))  # (not read)


def test_a_user_in_the_url_takes_the_password_from_netrc(srv: Server, tmp_path: Path) -> None:
    """``http://nina@host/`` with a netrc entry for nina, as in curl (was "nina:")."""
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine 127.0.0.1 login other password pw0\n"
        "machine 127.0.0.1 login nina password pw1\n"
    )
    netrc.chmod(0o600)
    srv.route("/f", static(b"ok"))
    settings = NetworkSettings(netrc=True, netrc_file=str(netrc))
    get(f"http://nina@127.0.0.1:{srv.port}/f", settings)
    get(f"http://nina:given@127.0.0.1:{srv.port}/f", settings)
    get(f"http://nina:@127.0.0.1:{srv.port}/f", settings)
    get(f"http://nina@127.0.0.1:{srv.port}/f", NetworkSettings(netrc=False))
    sent = [base64.b64decode(r.headers["authorization"][6:]) for r in srv.requests]
    assert sent == [b"nina:pw1", b"nina:given", b"nina:", b"nina:"]


# -- TLS --


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Server(tls=ctx) as server:
        server.route("/f", static(b"secret bytes"))
        yield server, ca_file


def test_https_untrusted_fails_by_default(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server, _ = tls_server
    with pytest.raises(RemoteError) as info:
        get(server.url("/f"))
    message = str(info.value)
    assert "--ca-cert" in message and "--insecure" in message
    assert "\n" not in message


def test_https_insecure_works(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    _, sink = get(server.url("/f"), NetworkSettings(insecure=True))
    assert bytes(sink.data) == b"secret bytes"


def test_https_with_ca_cert_works(tls_server: tuple[Server, Path]) -> None:
    server, ca_file = tls_server
    _, sink = get(server.url("/f"), NetworkSettings(ca_cert=str(ca_file)))
    assert bytes(sink.data) == b"secret bytes"


def as_typed(server: Server, path: str) -> str:
    """``server``'s URL (a TLS one) as a user who typed http:// for https:// has it."""
    return server.url(path).replace("https://", "http://", 1)


def test_http_to_a_tls_port_that_answers_in_tls_fails_at_once_naming_https(
    tls_server: tuple[Server, Path],
) -> None:
    """A TLS server that answers the plain request with an alert (as Java's does):
    libcurl says "Received HTTP/0.9" on the new connection, and no retry helps (curl
    stops there too; wget saves the alert's seven bytes as the file). The https:// URL
    the message names is the one that works."""
    server, ca_file = tls_server
    server.plain = JSSE_ALERT
    url = as_typed(server, "/f")
    with pytest.raises(RemoteError) as info:
        get(url)
    err = info.value
    assert not err.retryable and err.exit_code == 3
    https = server.url("/f")
    assert str(err) == (f"{url} did not answer in HTTP (if it speaks TLS, use {https}): "
                        "Received HTTP/0.9 when not allowed")
    assert server.connections == 1 and server.requests == []
    _, sink = get(https, NetworkSettings(ca_cert=str(ca_file)))
    assert bytes(sink.data) == b"secret bytes"


@pytest.mark.parametrize(
    ("url", "https"),
    [
        ("http://made.test/f?a=1", "https://made.test:80/f?a=1"),
        ("http://u:pw@made.test:8443/f", "https://made.test:8443/f"),
        ("http://[::1]/f", "https://[::1]:80/f"),
    ],
    ids=["implied-80", "login", "ipv6"],
)
def test_the_https_url_named_keeps_the_port_and_no_password(url: str, https: str) -> None:
    """http://HOST/ is port 80, which https://HOST/ is not (443)."""
    err = curl_error(pycurl.E_UNSUPPORTED_PROTOCOL, "Received HTTP/0.9 when not allowed", url,
                     fresh=True)
    assert f"(if it speaks TLS, use {https}): " in str(err)
    assert "pw" not in str(err)


def test_http_to_a_tls_port_that_only_closes_keeps_its_retries(
    tls_server: tuple[Server, Path],
) -> None:
    """An OpenSSL server (this one; nginx's TLS layer) sends no byte to a plain request: a
    reset, as from a server that fails mid-request. omniget cannot tell them apart, so it
    is retried as that is (curl says "Recv failure"; wget retries it 20 times)."""
    server, _ = tls_server
    with pytest.raises(TransientError) as info:
        get(as_typed(server, "/f"))
    assert info.value.retryable and info.value.max_retries is None
    assert "TLS" not in str(info.value)


def test_files_named_by_paths_are_read(tls_server: tuple[Server, Path], tmp_path: Path) -> None:
    """``ca_cert``, ``cookies_file`` and ``netrc_file`` given as Paths (kept as strs)."""
    server, ca_file = tls_server
    jar = tmp_path / "cookies.txt"
    jar.write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tk\tv\n")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nina password pw1\n")
    netrc.chmod(0o600)
    settings = NetworkSettings(ca_cert=ca_file, cookies_file=jar, netrc_file=netrc)
    _, sink = get(server.url("/f"), settings)
    assert bytes(sink.data) == b"secret bytes"
    sent = server.requests[-1].headers
    assert sent["cookie"] == "k=v"
    assert sent["authorization"] == "Basic " + base64.b64encode(b"nina:pw1").decode()


def test_ssl_cert_file_env_is_honoured(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_file = tls_server
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)  # (it comes first, as in curl)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    _, sink = get(server.url("/f"))
    assert bytes(sink.data) == b"secret bytes"


def test_ssl_cert_dir_env_is_honoured(
    tls_server: tuple[Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As curl: a hashed folder of CAs beside the system's bundle (was never read while
    a system bundle existed)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to hash the folder with")
    server, ca_file = tls_server
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(ca_file, certs / "test-ca.pem")
    subprocess.run([openssl, "rehash", str(certs)], check=True, capture_output=True)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    _, sink = get(server.url("/f"))
    assert bytes(sink.data) == b"secret bytes"


def test_ca_locations_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", "from-ssl-env.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "from-env.pem")  # curl's order: this one first
    given = tmp_path / "given.pem"
    given.write_text("")
    assert ca_locations(NetworkSettings(ca_cert=str(given))) == (str(given), None)
    with pytest.raises(UsageError, match=r"--ca-cert missing\.pem: no such file"):
        ca_locations(NetworkSettings(ca_cert="missing.pem"))
    assert ca_locations(NetworkSettings(ca_cert=str(tmp_path))) == (None, str(tmp_path))
    assert ca_locations(NetworkSettings()) == ("from-env.pem", None)
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert ca_locations(NetworkSettings()) == ("from-ssl-env.pem", None)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))  # curl: both, file and folder
    assert ca_locations(NetworkSettings()) == ("from-ssl-env.pem", str(tmp_path))
    monkeypatch.setenv("CURL_CA_BUNDLE", "from-env.pem")  # (then neither)
    assert ca_locations(NetworkSettings()) == ("from-env.pem", None)
    monkeypatch.delenv("CURL_CA_BUNDLE")
    monkeypatch.delenv("SSL_CERT_FILE")
    assert ca_locations(NetworkSettings())[1] == str(tmp_path)
    monkeypatch.delenv("SSL_CERT_DIR")
    cainfo, capath = ca_locations(NetworkSettings())
    # Whatever the system has, it is something that exists (or libcurl's default).
    assert cainfo is None or Path(cainfo).is_file()
    assert capath is None or Path(capath).is_dir()


@pytest.mark.parametrize("name", ["SSL_CERT_FILE", "CURL_CA_BUNDLE"])
def test_unreadable_ca_file_from_the_environment_is_named(
    tls_server: tuple[Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    garbage = tmp_path / "garbage.pem"  # (a file with no PEM block at all: tests/cli)
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv(name, str(garbage))
    server, _ = tls_server
    with pytest.raises(RemoteError, match=f"could not load CA certificates.*; check {name}$"):
        get(server.url("/f"))  # (was "check --ca-cert", not given)


def test_a_certificate_for_another_name_is_not_blamed_on_its_ca(
    tls_server: tuple[Server, Path],
) -> None:
    server, ca_file = tls_server
    wrong = f"wrong.test:{server.port}:127.0.0.1"
    settings = NetworkSettings(ca_cert=str(ca_file), resolve=(wrong,))
    with pytest.raises(RemoteError, match="issued for another name") as err:
        get(f"https://wrong.test:{server.port}/f", settings)
    assert "--ca-cert" not in str(err.value)  # (its CA is trusted already)


def test_an_expired_certificate_is_not_blamed_on_its_ca(tmp_path: Path) -> None:
    import datetime
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = ca.issue_cert("127.0.0.1", not_before=past - datetime.timedelta(days=30), not_after=past)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Server(tls=ctx) as server, pytest.raises(RemoteError, match="expired") as err:
        get(server.url("/f"), NetworkSettings(ca_cert=str(ca_file)))
    assert "--ca-cert" not in str(err.value) and "--insecure" in str(err.value)



def test_a_certificate_not_yet_valid_is_said_so(tmp_path: Path) -> None:
    """(was "it has expired or is not valid yet" for both)"""
    import datetime
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    cert = ca.issue_cert("127.0.0.1", not_before=soon, not_after=soon + datetime.timedelta(30))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Server(tls=ctx) as server, pytest.raises(RemoteError) as err:
        get(server.url("/f"), NetworkSettings(ca_cert=str(ca_file)))
    assert "it is not valid yet (is the clock right?)" in str(err.value)
    assert "expired" not in str(err.value) and "--ca-cert" not in str(err.value)


@pytest.mark.parametrize("given", ["--ca-cert", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_a_certificate_from_another_ca_names_what_was_trusted(
    tls_server: tuple[Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    """The CAs trusted are those given: "pass --ca-cert FILE to trust its CA" was said to a
    --ca-cert that has not that CA (and to a variable's file as if none was given)."""
    trustme = pytest.importorskip("trustme")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    server, _ = tls_server
    settings = NetworkSettings()
    if given == "--ca-cert":
        settings = NetworkSettings(ca_cert=str(other))
    else:
        monkeypatch.setenv(given, str(other))
    with pytest.raises(RemoteError) as err:
        get(server.url("/f"), settings)
    message = str(err.value)
    assert f"its CA is not among those {given} names" in message, message
    assert "--insecure" in message and "\n" not in message
    if given == "--ca-cert":
        assert "pass --ca-cert" not in message
    else:
        assert "pass --ca-cert FILE to trust its CA" in message


def test_a_certificate_not_for_servers_is_not_blamed_on_its_ca(tmp_path: Path) -> None:
    """A certificate for clients only (its extended key usage), from a trusted CA: the
    check fails on the certificate itself (was "its CA is not among those --ca-cert
    names", or "pass --ca-cert FILE to trust its CA")."""
    import datetime
    import ipaddress
    import ssl

    pytest.importorskip("trustme")  # (and so the cryptography package)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def made(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = made("test CA", "test CA", ca_key).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).sign(ca_key, hashes.SHA256())
    leaf = (made("127.0.0.1", "test CA", key)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    with Server(tls=ctx) as server, pytest.raises(RemoteError) as err:
        server.route("/f", static(b"x"))
        get(server.url("/f"), NetworkSettings(ca_cert=str(tmp_path / "ca.pem")))
    message = str(err.value)
    assert "purpose" in message and message.endswith("; --insecure skips the check"), message
    assert " CA " not in message and "--ca-cert" not in message


def test_a_server_that_wants_a_client_certificate_is_said_so_and_not_retried(
    tmp_path: Path,
) -> None:
    """omniget sends none: each try failed alike, retried as a dropped connection
    ("connection failed: ... tlsv13 alert certificate required", 15 s from the CLI). The
    server reads what the client sent before it closes (a close with bytes unread resets
    the connection, and the client may see the reset, not the alert)."""
    import ssl
    import threading

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
        with conn:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    conn.sendall(outgoing.read())
                    data = conn.recv(65536)
                    if not data:
                        return
                    incoming.write(data)
                except ssl.SSLError:
                    break  # (no certificate: the alert is in outgoing)
            conn.sendall(outgoing.read())
            with contextlib.suppress(OSError):
                while conn.recv(65536):  # until the client closes
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/f"
    try:
        with pytest.raises(RemoteError) as err:
            get(url, NetworkSettings(ca_cert=str(tmp_path / "ca.pem")))
    finally:
        thread.join(10)
        listener.close()
    assert not isinstance(err.value, TransientError), err.value
    assert "wants a TLS client certificate, which omniget does not send" in str(err.value)

@pytest.fixture
def tls_proxy(tls_server: tuple[Server, Path]) -> Iterator[tuple[Server, Path]]:
    """An https:// proxy (the TLS test server answering absolute-form requests)."""
    proxy, ca_file = tls_server

    def proxied(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, req.target.encode())

    proxy.route("/via", proxied)
    yield proxy, ca_file


@pytest.mark.parametrize("name", ["CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_an_https_proxy_is_checked_against_the_environments_cas(
    tls_proxy: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for var in ("no_proxy", "NO_PROXY", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)
    proxy, ca_file = tls_proxy
    monkeypatch.setenv(name, str(ca_file))
    # (libcurl's own default for proxies is the CA path built into the pycurl wheel:
    # often another system's and missing, so no https proxy was ever trusted)
    _, sink = get("http://origin.example.test/via", NetworkSettings(proxy=proxy.origin))
    assert bytes(sink.data) == b"http://origin.example.test/via"
    # --ca-cert is the servers', as curl's --cacert: beside it the proxy keeps the above
    settings = NetworkSettings(proxy=proxy.origin, ca_cert=str(Path(__file__)))  # (no CA)
    _, sink = get("http://origin.example.test/via", settings)
    assert bytes(sink.data) == b"http://origin.example.test/via"


def test_an_untrusted_https_proxy_is_named_with_what_would_trust_it(
    tls_proxy: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    proxy, ca_file = tls_proxy
    settings = NetworkSettings(proxy=proxy.origin, ca_cert=str(ca_file))
    with pytest.raises(RemoteError, match=r"^proxy's TLS certificate not trusted") as err:
        get("http://origin.example.test/via", settings)
    assert "CURL_CA_BUNDLE" in str(err.value) and "--ca-cert FILE" not in str(err.value)


def test_pooled_handles_forget_the_last_requests_extras(srv: Server) -> None:
    """Handles are reused without a full reset: a HEAD, a POST, credentials or a speed cap
    must not leak into the next plain GET on the same handle."""
    srv.route("/f", static(BODY))
    srv.route("/p", lambda req, sock: reply(sock, 200, req.method.encode() + b":" + req.body))

    async def go(t: CurlTransport) -> list[tuple[str, bytes]]:
        out = []
        for req in (
            Request(srv.url("/f"), method="HEAD"),
            Request(srv.url("/f")),
            Request(srv.url("/p"), method="POST", body=b"x"),
            Request(srv.url("/p")),
            Request(srv.url("/f").replace("://", "://u:pw@"), max_speed=10_000_000),
            Request(srv.url("/f")),
        ):
            sink = Sink()
            await t.fetch(req, sink)
            out.append((req.method, bytes(sink.data)))
        return out

    results = run(go, max_total_connections=1)
    assert results[0] == ("HEAD", b"") and results[1] == ("GET", BODY)
    assert results[2] == ("POST", b"POST:x") and results[3] == ("GET", b"GET:")
    assert results[5] == ("GET", BODY)
    methods = [r.method for r in srv.requests]
    assert methods == ["HEAD", "GET", "POST", "GET", "GET", "GET"]
    assert "authorization" in srv.requests[4].headers
    assert "authorization" not in srv.requests[5].headers


def test_netrc_in_home_is_read_when_present(
    srv: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv.route("/f", static(b"ok"))
    monkeypatch.setenv("HOME", str(tmp_path))
    get(srv.url("/f"))
    assert "authorization" not in srv.requests[0].headers  # no netrc: nothing sent
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login nina password pw1\n")
    netrc.chmod(0o600)
    get(srv.url("/f"))
    expected = "Basic " + base64.b64encode(b"nina:pw1").decode()
    assert srv.requests[1].headers["authorization"] == expected


