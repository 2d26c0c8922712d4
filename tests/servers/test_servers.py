"""The test servers themselves, checked with stdlib clients only (never omniget's code)."""

from __future__ import annotations

import base64
import email.utils
import gzip
import hashlib
import http.client
import socket
import ssl
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers import send
from tests.servers.httpd import HTTPServer
from tests.servers.nginx import NginxServer, nginx_binary, start_nginx

Resp = tuple[int, http.client.HTTPMessage, bytes]


def request(
    server: HTTPServer, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Resp:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, target, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def raw(server: HTTPServer, target: str, extra: str = "", timeout: float = 5) -> tuple[bytes, str]:
    """Send one request on a raw socket; return every byte received and how it ended."""
    with socket.create_connection((server.host, server.port), timeout) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
            return data, "eof"
        except ConnectionResetError:
            return data, "reset"


def split(data: bytes) -> tuple[str, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(), body


@pytest.fixture
def file(httpd: HTTPServer, payload: Callable[..., bytes]) -> tuple[str, bytes]:
    data = payload(100_000, 7)
    path = httpd.new_path()
    httpd.add(path, data)
    return path, data


def test_get_head_and_validators(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    status, h, body = request(httpd, path)
    assert (status, body) == (200, data)
    assert h["Content-Length"] == str(len(data)) and h["Accept-Ranges"] == "bytes"
    assert h["ETag"].startswith('"') and email.utils.parsedate_to_datetime(h["Last-Modified"])
    status, h2, body = request(httpd, path, method="HEAD")
    assert (status, body, h2["ETag"], h2["Content-Length"]) == (200, b"", h["ETag"], str(len(data)))
    assert request(httpd, "/missing")[0] == 404


@pytest.mark.parametrize(
    ("rng", "status", "span"),
    [
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=99990-", 206, (99990, 100000)),
        ("bytes=-5", 206, (99995, 100000)),
        ("bytes=99000-200000", 206, (99000, 100000)),
        ("bytes=100000-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-1,5-6", 200, (0, 100000)),
        ("bytes=9-2", 200, (0, 100000)),
    ],
)
def test_range(
    httpd: HTTPServer, file: tuple[str, bytes], rng: str, status: int, span: tuple[int, int] | None
) -> None:
    path, data = file
    got, h, body = request(httpd, path, {"Range": rng})
    assert got == status
    if status == 416:
        assert h["Content-Range"] == "bytes */100000"
        return
    assert span is not None
    assert body == data[span[0] : span[1]]
    if status == 206:
        assert h["Content-Range"] == f"bytes {span[0]}-{span[1] - 1}/100000"


def test_if_range(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    _, h, _ = request(httpd, path, method="HEAD")
    etag, lm = h["ETag"], h["Last-Modified"]
    for validator, want in [(etag, 206), (lm, 206), ('"other"', 200), (f"W/{etag}", 200)]:
        status, _, body = request(httpd, path, {"Range": "bytes=10-19", "If-Range": validator})
        assert status == want, validator
        assert body == (data[10:20] if want == 206 else data)
    stale = email.utils.formatdate(time.time() - 10 * 86400, usegmt=True)
    assert request(httpd, path, {"Range": "bytes=1-2", "If-Range": stale})[0] == 200


def test_keep_alive_and_request_log(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    conn = http.client.HTTPConnection(httpd.host, httpd.port, timeout=5)
    for i in range(3):
        conn.request("GET", f"{path}?n={i}", headers={"X-Secret": "s3", "Range": f"bytes={i}-"})
        assert conn.getresponse().read() == data[i:]
    conn.close()
    request(httpd, path, {"Authorization": "Bearer t"})
    assert httpd.wait_idle()
    log = httpd.requests_to(path)
    assert len(log) == 4 and len(httpd.connection_ids(path)) == 2
    assert log[0].conn_id == log[1].conn_id == log[2].conn_id != log[3].conn_id
    assert [r.range for r in log] == ["bytes=0-", "bytes=1-", "bytes=2-", None]
    assert log[1].query == {"n": "1"} and log[1].header("x-SECRET") == "s3"
    assert "authorization" in log[3].headers and "authorization" not in log[0].headers
    assert log[3].sent == len(data) and log[3].status == 200
    assert log[0].started <= log[0].finished <= log[1].started  # type: ignore[operator]
    httpd.clear_log()
    assert httpd.requests == []


def test_http10_closes(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    with socket.create_connection((httpd.host, httpd.port), 5) as s:
        s.sendall(f"GET {file[0]} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, body = split(data)
    assert "Connection: close" in head and body == file[1]


def test_directory_root(httpd_factory: Callable[..., HTTPServer], tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"0123456789")
    server = httpd_factory(root=tmp_path)
    assert request(server, "/sub/a.bin", {"Range": "bytes=2-4"})[2] == b"234"
    assert request(server, "/sub/a.bin?drip=1000000")[2] == b"0123456789"
    assert request(server, "/../etc/passwd")[0] == 404


def test_reset(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    target = f"{path}?reset=5000&times=1"
    got, how = raw(httpd, target)
    head, body = split(got)
    assert head.startswith("HTTP/1.1 200") and "Content-Length: 100000" in head
    assert (body, how) == (data[:5000], "reset")
    assert request(httpd, target)[2] == data  # times=1: the second one is whole


def test_truncate(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    got, how = raw(httpd, f"{path}?truncate=777", "Range: bytes=1000-\r\n")
    head, body = split(got)
    assert "Content-Length: 99000" in head and (body, how) == (data[1000:1777], "eof")
    with pytest.raises(http.client.IncompleteRead):
        request(httpd, f"{path}?truncate=10")


def test_chunked(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    status, h, body = request(httpd, f"{path}?chunked=1")
    assert (status, body, h["Transfer-Encoding"], h["Content-Length"]) == (
        200,
        data,
        "chunked",
        None,
    )
    got, how = raw(httpd, f"{path}?chunked=1&chunked_truncate=20000")
    assert not got.endswith(b"0\r\n\r\n") and how == "eof"
    with pytest.raises(http.client.IncompleteRead):
        request(httpd, f"{path}?chunked=1&chunked_truncate=20000")


def test_norange_and_badrange(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    status, h, body = request(httpd, f"{path}?norange=1", {"Range": "bytes=10-"})
    assert (status, body, h["Accept-Ranges"]) == (200, data, None)
    status, h, body = request(httpd, f"{path}?badrange=1&times=1", {"Range": "bytes=5000-5999"})
    start = int(h["Content-Range"].split()[1].split("-")[0])
    assert status == 206 and start != 5000 and body == data[start : start + 1000]
    again = request(httpd, f"{path}?badrange=1&times=1", {"Range": "bytes=5000-5999"})
    assert again[2] == data[5000:6000]


@pytest.mark.parametrize("code", [500, 502, 503, 504, 429, 404, 403, 410])
def test_status_times(httpd: HTTPServer, file: tuple[str, bytes], code: int) -> None:
    path, data = file
    target = f"{path}?status={code}&times=2&retry_after=7"
    for _ in range(2):
        status, h, _ = request(httpd, target)
        assert (status, h["Retry-After"]) == (code, "7")
    assert request(httpd, target)[:3:2] == (200, data)


def test_status_counter_k_and_dates(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, _ = file
    # one counter over different URLs; HEAD counts too
    assert request(httpd, f"{path}?status=503&times=2&k=t1&a=1", method="HEAD")[0] == 503
    assert request(httpd, f"{path}?status=503&times=2&k=t1&a=2")[0] == 503
    assert request(httpd, f"{path}?status=503&times=2&k=t1&a=3")[0] == 200
    _, h, _ = request(httpd, f"{path}?status=429&retry_after=date:30")
    when = email.utils.parsedate_to_datetime(h["Retry-After"]).timestamp()
    assert 25 < when - time.time() <= 31
    assert request(httpd, "/nothing/here?status=503&times=1")[0] == 503
    assert request(httpd, "/nothing/here?status=503&times=1")[0] == 404
    assert request(httpd, f"{path}?status=abc")[0] == 400  # a typo is loud


def test_drip(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    t0 = time.monotonic()
    assert request(httpd, f"{path}?drip=40000", {"Range": "bytes=0-9999"})[2] == data[:10000]
    assert 0.2 < time.monotonic() - t0 < 5  # (0.25 s, never less; a loaded machine adds)


def test_a_drip_held_up_goes_on_at_its_rate_not_in_a_burst(
    httpd: HTTPServer, file: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server's clock jumps 2 s after the first bytes, as if the process had stopped:
    # the rest (1 s at the rate) came at once before, and a test cutting the run midway
    # found it finished
    path, data = file
    ahead = [0.0]
    clock = types.SimpleNamespace(monotonic=lambda: time.monotonic() + ahead[0])
    monkeypatch.setattr(send, "time", clock)
    with socket.create_connection((httpd.host, httpd.port), 30) as s:
        s.sendall(f"GET {path}?drip=40000 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-39999\r\n\r\n"
                  .encode())
        got = b""
        while len(split(got)[1]) < 100:
            got += s.recv(65536)
        ahead[0] = 2.0
        t0 = time.monotonic()
        while len(split(got)[1]) < 40_000:
            got += s.recv(65536)
        assert time.monotonic() - t0 > 0.5  # (about 0.95 s at the rate)
    assert split(got)[1] == data[:40_000]


def test_stall(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    # (what the server sent is read from its log, not guessed from a read timing out,
    # which a loaded machine can make come too early or too late)
    path, data = file
    with socket.create_connection((httpd.host, httpd.port), 5) as s:
        t0 = time.monotonic()
        s.sendall(f"GET {path}?stall=1&stall_after=100 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while len(split(got)[1]) < 100:
            got += s.recv(65536)
        assert split(got)[1] == data[:100]
        [req] = httpd.requests_to(path)
        while req.sent < 100:  # (counted just after the send)
            time.sleep(0.001)
        assert req.sent == 100 and req.finished is None  # silent now, for 1 s
        while len(split(got)[1]) < len(data):
            got += s.recv(65536)
        assert time.monotonic() - t0 >= 1 and split(got)[1] == data


def test_hold(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    with socket.create_connection((httpd.host, httpd.port), 30) as s:
        s.sendall(f"GET {path}?hold=h&stall_after=100 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert httpd.held("h")
        got = b""
        while len(split(got)[1]) < 100:
            got += s.recv(65536)
        assert split(got)[1] == data[:100]
        [req] = httpd.requests_to(path)
        assert req.sent == 100 and req.finished is None  # (held until released)
        httpd.release("h")
        while len(split(got)[1]) < len(data):
            got += s.recv(65536)
        assert split(got)[1] == data


def test_etag_change(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    seen = [request(httpd, f"{path}?etag_change=1") for _ in range(3)]
    assert len({h["ETag"] for _, h, _ in seen}) == 3
    assert len({h["Last-Modified"] for _, h, _ in seen}) == 3
    assert [b for *_, b in seen] == [data, httpd.variant(path, 1), httpd.variant(path, 2)]
    assert data != httpd.variant(path, 1) and len(httpd.variant(path, 1)) == len(data)
    # If-Range with the first ETag now answers 200 with the new bytes
    etag0 = seen[0][1]["ETag"]
    changed = request(httpd, f"{path}?etag_change=1", {"Range": "bytes=5-", "If-Range": etag0})
    assert changed[0] == 200
    once = [request(httpd, f"{path}?etag_change=1&times=1")[1]["ETag"] for _ in range(3)]
    assert once[0] != once[1] == once[2]


def test_corrupt_once(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    bad = request(httpd, f"{path}?corrupt=1&times=1")[2]
    assert len(bad) == len(data) and sum(a != b for a, b in zip(bad, data, strict=True)) == 1
    assert request(httpd, f"{path}?corrupt=1&times=1")[2] == data


def test_gzip(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    status, h, body = request(httpd, f"{path}?gzip=1", {"Range": "bytes=0-9"})
    assert (status, h["Content-Encoding"], h["Content-Length"]) == (200, "gzip", str(len(body)))
    assert gzip.decompress(body) == data


def test_content_disposition(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, _ = file
    h = request(httpd, httpd.url(path, cd="../evil name.bin").split(str(httpd.port))[1])[1]
    assert h["Content-Disposition"] == 'attachment; filename="../evil name.bin"'
    h = request(httpd, f"{path}?cdstar=%C3%A9t%C3%A9%20x.bin&cd=fallback.bin")[1]
    assert h["Content-Disposition"] == (
        "attachment; filename=\"fallback.bin\"; filename*=UTF-8''%C3%A9t%C3%A9%20x.bin"
    )
    assert request(httpd, f"{path}?cdraw=inline")[1]["Content-Disposition"] == "inline"


def test_redirects(httpd: HTTPServer, httpd2: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    other = httpd2.add("/elsewhere.bin", b"over there")
    status, h, _ = request(httpd, httpd.url(path, redirect=other).split(str(httpd.port), 1)[1])
    assert (status, h["Location"]) == (302, other)
    req = urllib.request.Request(httpd.url(path, redirect=other, redirect_status=307))
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.read() == b"over there"
    assert [r.path for r in httpd2.requests] == ["/elsewhere.bin"]
    assert (
        request(httpd, f"{path}?redirect=file:///etc/passwd")[1]["Location"] == "file:///etc/passwd"
    )
    status, h, _ = request(httpd, f"{path}?loop=1")
    assert (status, h["Location"]) == (302, f"{path}?loop=1")
    assert request(httpd, f"{path}?loop=hop&hop=4")[1]["Location"] == f"{path}?loop=hop&hop=5"
    assert request(httpd, f"{path}?loop=1&times=1&k=lp")[0] == 302
    assert request(httpd, f"{path}?loop=1&times=1&k=lp")[2] == data


def test_delay_and_nolength(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    t0 = time.monotonic()
    assert request(httpd, f"{path}?delay=0.3")[2] == data
    assert time.monotonic() - t0 >= 0.3
    got, how = raw(httpd, f"{path}?nolength=1")
    head, body = split(got)
    assert "Content-Length" not in head and "Connection: close" in head
    assert (body, how) == (data, "eof")
    got, how = raw(httpd, f"{path}?nolength=1&truncate=1234")
    assert (split(got)[1], how) == (data[:1234], "eof")  # looks complete: only a digest can tell


def test_digest(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    h = request(httpd, f"{path}?digest=1")[1]
    assert (h["Repr-Digest"], h["Content-MD5"]) == (f"sha-256=:{sha}:", md5)
    h = request(httpd, f"{path}?digest=1", {"Range": "bytes=0-0"})[1]
    assert (h["Repr-Digest"], h["Content-MD5"]) == (f"sha-256=:{sha}:", None)
    assert request(httpd, f"{path}?digest=legacy")[1]["Digest"] == f"SHA-256={sha}"
    assert sha not in request(httpd, f"{path}?digest=bad")[1]["Repr-Digest"]


def test_html_body_auth_and_handler(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    path, data = file
    status, h, body = request(httpd, f"{path}?status=200&body=html")
    assert (status, h["Content-Type"]) == (200, "text/html; charset=utf-8") and b"<html>" in body
    status, h, _ = request(httpd, f"{path}?status=503&body=html")
    assert (status, h["Content-Type"]) == (503, "text/html; charset=utf-8")
    status, h, _ = request(httpd, f"{path}?auth=u:p")
    assert status == 401 and "Basic" in h["WWW-Authenticate"]
    token = base64.b64encode(b"u:p").decode()
    assert request(httpd, f"{path}?auth=u:p", {"Authorization": f"Basic {token}"})[2] == data
    httpd.handle("/api/echo", lambda r: (201, {"X-Seen": r.path}, r.method.encode() + r.body))
    conn = http.client.HTTPConnection(httpd.host, httpd.port, timeout=5)
    conn.request("POST", "/api/echo", body=b"hi", headers={"Expect": "100-continue"})
    r = conn.getresponse()
    assert (r.status, r.read()) == (201, b"POSThi")
    conn.close()


def test_names_for_resolve(httpd: HTTPServer, file: tuple[str, bytes]) -> None:
    assert httpd.resolve("files.test") == f"files.test:{httpd.port}:127.0.0.1"
    assert httpd.url("/a b", host="files.test", x=1) == f"http://files.test:{httpd.port}/a%20b?x=1"
    request(httpd, file[0], {"Host": f"files.test:{httpd.port}"})
    assert httpd.requests[-1].host == f"files.test:{httpd.port}"


def test_tls(httpsd: HTTPServer, tls_ca_path: Path, file: tuple[str, bytes]) -> None:
    httpsd.add("/s.bin", b"secret bytes")
    ctx = ssl.create_default_context(cafile=str(tls_ca_path))
    with urllib.request.urlopen(httpsd.url("/s.bin"), context=ctx, timeout=5) as r:
        assert r.read() == b"secret bytes"
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(httpsd.url("/s.bin"), timeout=5)
    with socket.create_connection((httpsd.host, httpsd.port), 5) as s:  # wrong name
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(s, server_hostname="wrong.test")
    deadline = time.monotonic() + 30  # (the server's thread notes it when it runs)
    while len(httpsd.handshake_failures) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(httpsd.handshake_failures) >= 2


def test_subprocess_mode(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abcdef")
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "tests.servers.httpd", "--root", str(tmp_path), "--port", "0"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/f.bin", headers={"Range": "bytes=2-"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert (r.status, r.read()) == (206, b"cdef")
    finally:
        proc.terminate()
        assert proc.wait(5) == 0


def test_nginx(nginx: NginxServer, payload: Callable[..., bytes]) -> None:
    data = payload(300_000, 3)
    url = nginx.add("t/n.bin", data)
    req = urllib.request.Request(url, headers={"Range": "bytes=1000-1999"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert (r.status, r.read()) == (206, data[1000:2000])
        assert r.headers["Content-Range"] == "bytes 1000-1999/300000"
    with urllib.request.urlopen(nginx.url("t/n.bin", slow=True), timeout=5) as r:
        assert r.read() == data


def test_payload(payload: Callable[..., bytes]) -> None:
    a, b = payload(3 << 20, 5), payload((3 << 20) + 17, 5)
    assert b.startswith(a) and a == payload(3 << 20, 5) != payload(3 << 20, 6)
    blocks = {a[i : i + (1 << 20)] for i in range(0, len(a), 1 << 20)}
    assert len(blocks) == 3 and len(payload(0)) == 0



def test_the_refused_port_refuses_and_no_other_socket_takes_it(refused_port: int) -> None:
    # (a port closed again at once was free for another test's server to take)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", refused_port), 5).close()
    for reuse in (False, True):
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse))
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", refused_port))


def test_ipv6_and_dual_stack_listeners() -> None:
    """``host="::1"`` listens on the IPv6 loopback only, ``dual=True`` on both loopbacks
    at one port; URLs and resolve entries bracket an IPv6 address; each request says which
    address took it. The default stays 127.0.0.1 alone."""
    from tests.servers.httpd import ipv6_loopback

    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) here")
    with HTTPServer(host="::1") as v6, HTTPServer(dual=True) as both, HTTPServer() as v4:
        assert v6.url("/a") == f"http://[::1]:{v6.port}/a"
        assert v6.base_url == f"http://[::1]:{v6.port}"
        assert v6.resolve("x.test") == f"x.test:{v6.port}:[::1]"
        assert v4.url("/a", host="::1") == f"http://[::1]:{v4.port}/a"
        for server, host in [(v6, "::1"), (both, "::1"), (both, "127.0.0.1"), (v4, "127.0.0.1")]:
            server.add("/a", b"abc")
            conn = http.client.HTTPConnection(host, server.port, timeout=5)
            try:
                conn.request("GET", "/a")
                assert conn.getresponse().read() == b"abc"
            finally:
                conn.close()
            assert server.requests[-1].local == host
        # (which addresses each listens on, not a connection refused on the other: the
        # same port on the other loopback may be another server's, of a test beside it)
        for server, hosts in [(v6, ["::1"]), (v4, ["127.0.0.1"]), (both, ["127.0.0.1", "::1"])]:
            assert sorted(s.getsockname()[0] for s in server._listeners) == hosts


def _read_all(s: socket.socket) -> bytes:
    """Every byte ``s`` gets until the server ends the connection (a reset ends it too)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_late_request_on_an_earlier_tests_connection_reaches_no_later_test(
    httpd_factory: Callable[..., HTTPServer],
) -> None:
    """A shared server between two tests (the fixtures' ``next_test``): a request the
    earlier test's client had sent, read only after that, is neither logged nor counted
    in the next test (it was: a pipelined request read late, a retry's, broke a count)."""
    server = httpd_factory()
    server.add("/a.bin", b"a" * 100)
    late = "/a.bin?status=503&times=1"
    with socket.create_connection((server.host, server.port), 30) as s:
        s.sendall(b"GET /a.bin?hold=h HTTP/1.1\r\nHost: x\r\n\r\n"
                  + f"GET {late} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert server.held("h")  # (the second request waits in the socket, unread)
        server.next_test()
        server.add("/a.bin", b"b" * 100)
        server.release("h")
        _read_all(s)  # (the server is done with this connection)
    assert server.requests == []
    assert request(server, late)[0] == 503  # (its first request: the late one took none)
    assert [r.target for r in server.requests] == [late]


def test_a_late_connection_to_an_earlier_tests_port_gets_no_answer(
    httpd_factory: Callable[..., HTTPServer],
) -> None:
    """A connection an earlier test's client opens after that test (a retry) is closed
    unread, not served in the next test; the next test's requests are its own."""
    server = httpd_factory()
    server.add("/a.bin", b"a" * 100)
    before = server.port
    server.next_test()
    server.add("/a.bin", b"b" * 100)
    got = b""
    try:
        with socket.create_connection((server.host, before), 30) as s:
            s.sendall(b"GET /a.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = _read_all(s)
    except (ConnectionRefusedError, BrokenPipeError, ConnectionResetError):
        pass
    assert got == b"" and server.requests == []
    assert request(server, "/a.bin")[2] == b"b" * 100
    assert len(server.requests) == 1


def test_a_tunnels_far_end_is_the_peer_the_server_logs(
    httpd: HTTPServer, file: tuple[str, bytes]
) -> None:
    """The proxy's CONNECT entry names its end of the tunnel (``upstream``): the port the
    server logs as the request's ``peer``."""
    from tests.servers.proxy import Proxy

    path, data = file
    with Proxy() as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        conn.set_tunnel(httpd.host, httpd.port)
        conn.request("GET", path)
        assert conn.getresponse().read() == data
        conn.close()
        [connect] = proxy.log
    [req] = httpd.requests
    assert connect.method == "CONNECT" and req.peer == connect.upstream != 0


def _late_after_each_send(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """The server's threads pause after each send to a client (as a loaded machine may
    pause them): what they record after an answer's last byte is recorded after a client
    that has the answer is done."""
    sendall, sendfile = socket.socket.sendall, socket.socket.sendfile

    def server_side(sock: socket.socket) -> bool:
        return bool(sock.getsockname()[1] == port)

    def late_sendall(sock: socket.socket, data: bytes, *args: int) -> None:
        sendall(sock, data, *args)
        if server_side(sock):
            time.sleep(0.5)

    def late_sendfile(sock: socket.socket, *args: object, **kw: object) -> int:
        sent: int = sendfile(sock, *args, **kw)  # type: ignore[arg-type]
        if server_side(sock):
            time.sleep(0.5)
        return sent

    monkeypatch.setattr(socket.socket, "sendall", late_sendall)
    monkeypatch.setattr(socket.socket, "sendfile", late_sendfile)


@pytest.mark.parametrize(
    "query", ["", "chunked=1", "nolength=1", "drip=1000000", "head", "from-disk", "empty"]
)
def test_a_request_is_recorded_whole_before_the_client_has_the_answer(
    httpd_factory: Callable[..., HTTPServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    """The bytes sent and the end of each answer are in the log before its last byte
    leaves: before, they were recorded after the send, so a test reading the log as soon
    as its client was done could find the answer unfinished (sent short of the length)."""
    data = b"0123456789" * 10_000 if query != "empty" else b""
    (tmp_path / "d.bin").write_bytes(data)
    server = httpd_factory(root=tmp_path)
    path = "/d.bin" if query == "from-disk" else "/m.bin"
    server.add("/m.bin", data)
    _late_after_each_send(monkeypatch, server.port)
    method = "HEAD" if query == "head" else "GET"
    target = path if query in ("", "head", "from-disk", "empty") else f"{path}?{query}"
    status, _, body = request(server, target, method=method)
    (logged,) = server.requests
    assert (status, body) == (200, b"" if method == "HEAD" else data)
    assert logged.finished is not None  # (before: None, the server still sending)
    assert logged.sent == len(body) and logged.status == 200


def test_nginx_s_log_is_read_once_every_request_taken_has_its_line(tmp_path: Path) -> None:
    """nginx writes a request's line after the answer's last byte went out (here up to 2 s
    after: a buffered log, as a loaded machine may be that late): ``requests()`` waits
    for the lines of the requests nginx took. Before, it read the log as it was (none)."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    work = tmp_path / "nginx"
    late = f"access_log {work / 'access.log'} omniget buffer=64k flush=2s;"
    server = start_nginx(tmp_path / "www", work, access_log=True, extra=late)
    if not server.status_port:
        server.stop()
        pytest.skip("this nginx has no stub_status module (nginx -V)")
    try:
        urls = [server.add(f"n{i}.bin", bytes([i]) * 1000) for i in range(3)]
        for i, url in enumerate(urls):
            with urllib.request.urlopen(url, timeout=5) as r:
                assert r.read() == bytes([i]) * 1000
        log = server.requests()
    finally:
        server.stop()
    assert sorted(r.target for r in log) == ["/n0.bin", "/n1.bin", "/n2.bin"]


def test_a_request_of_a_client_gone_is_in_the_log_once_the_server_says_all_closed(
    httpd: HTTPServer,
) -> None:
    """A client sends a request and is gone (a process killed, or one that gave up on an
    answer) before the server took its connection from the kernel's queue: once
    ``wait_closed()`` says every connection is closed, that request is logged. (A test
    clearing the log as soon as its client ended could find it logged after that.)"""
    with httpd._lock:  # (no server thread takes or logs a connection meanwhile)
        with socket.create_connection((httpd.host, httpd.port), timeout=5) as client:
            client.sendall(b"GET /gone.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert httpd.wait_closed()
    assert [r.target for r in httpd.requests] == ["/gone.bin"]
    with socket.create_connection((httpd.host, httpd.port), timeout=5):
        assert not httpd.wait_closed(0.5)  # (one open: False once the time is up)
