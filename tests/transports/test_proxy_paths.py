"""A user's proxy and CA settings apply on every network path, as curl applies them: many
small http:// files (which omniget pipelines on its own connections when nothing stands in
the way), many small https:// files (HTTP/2 streams on libcurl's connections) and a lone
file. Checked end to end through ``download()`` against a forwarding proxy that logs what
it was asked (tests/servers/proxy.py: ``GET http://host/...``, ``CONNECT host:port``) and
a SOCKS5 proxy (tests/servers/socks.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.servers.h2d import H2Server
from tests.servers.httpd import HTTPServer
from tests.servers.listener import Canned
from tests.servers.proxy import Proxy
from tests.servers.socks import SocksProxy
from tests.servers.tls import TLSFiles

from omniget import AuthRequired, Engine, Item, Report, adownload, download, load_settings
from omniget.settings import NetworkSettings, Settings

LOGGER = "omniget.engine.transports.http"
FILES = 24
PROXY_ENV = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
             "ALL_PROXY", "no_proxy", "NO_PROXY")
CA_ENV = ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_ENV + CA_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy() as p:
        yield p


@pytest.fixture
def socks() -> Iterator[SocksProxy]:
    with SocksProxy() as p:
        yield p


@pytest.fixture
def h2srv(tls_files: TLSFiles) -> Iterator[H2Server]:
    with H2Server(tls_files) as server:
        yield server


def small(i: int) -> bytes:
    return f"small file {i}\n".encode() * (40 + i)


def plain_files(server: HTTPServer, host: str | None = None) -> list[str]:
    """FILES small files on ``server`` (under ``host``, if given): their URLs."""
    urls = []
    for i in range(FILES):
        path = server.new_path(f"s{i}.txt")
        server.add(path, small(i))
        urls.append(server.url(path, host=host))
    return urls


def h2_files(server: H2Server) -> list[str]:
    return [server.add(f"/t{i}.txt", small(i)) for i in range(FILES)]


def get(urls: list[str], dest: Path, **network: object) -> Report:
    settings = Settings(state_dir=dest / "state", retries=0,
                        network=NetworkSettings(netrc=False, **network))  # type: ignore[arg-type]
    return download(urls, dest / "out", settings=settings)


def got_all(report: Report, dest: Path) -> None:
    assert report.ok == FILES, report.failures
    names = sorted((dest / "out").iterdir(), key=lambda p: int(p.stem.lstrip("st")))
    assert [p.read_bytes() for p in names] == [small(i) for i in range(FILES)]


def pipelined(caplog: pytest.LogCaptureFixture) -> int:
    return sum(" (pipelined)" in r.getMessage() or " (kept connection)" in r.getMessage()
               for r in caplog.records)


def through(proxy: Proxy, server: HTTPServer) -> None:
    """Every request ``server`` got came through ``proxy`` (it adds ``Connection: close``
    to what it sends on) as an absolute-form request."""
    assert len(server.requests) == len(proxy.log) == FILES
    assert all(r.headers.get("connection") == "close" for r in server.requests)
    assert {r.method for r in proxy.log} == {"GET"}
    assert all(r.target.startswith("http://") for r in proxy.log)


# -- plain http://, many small files: the pipelined path's case --


def test_without_a_proxy_small_files_are_pipelined(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the tests below: this workload takes the pipelined path."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    got_all(get(plain_files(httpd), tmp_path), tmp_path)
    assert pipelined(caplog) > 0
    assert len(httpd.requests) == FILES


@pytest.mark.parametrize("how", ["--proxy", "http_proxy", "all_proxy", "ALL_PROXY"])
def test_an_http_proxy_takes_every_small_file(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    network: dict[str, object] = {}
    if how == "--proxy":
        network["proxy"] = proxy.url
    else:
        monkeypatch.setenv(how, proxy.url)
    got_all(get(plain_files(httpd), tmp_path, **network), tmp_path)
    through(proxy, httpd)
    assert pipelined(caplog) == 0


def test_upper_case_http_proxy_is_ignored_as_curl_ignores_it(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(httpoxy: a CGI program's environment has HTTP_PROXY from a request's Proxy header.)"""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    got_all(get(plain_files(httpd), tmp_path), tmp_path)
    assert proxy.log == []
    assert pipelined(caplog) > 0


@pytest.mark.parametrize("how", ["--proxy", "http_proxy"])
def test_proxy_credentials_go_with_every_small_file_to_the_proxy_only(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    with_login = proxy.url.replace("http://", "http://pu:p%40ss@")
    network: dict[str, object] = {}
    if how == "--proxy":
        network["proxy"] = with_login
    else:
        monkeypatch.setenv("http_proxy", with_login)
    got_all(get(plain_files(httpd), tmp_path, **network), tmp_path)
    through(proxy, httpd)
    # (base64 of "pu:p@ss")
    assert {r.headers.get("proxy-authorization") for r in proxy.log} == {"Basic cHU6cEBzcw=="}
    assert not any("authorization" in r.headers for r in proxy.log)
    assert not any("proxy-authorization" in r.headers for r in httpd.requests)


@pytest.mark.parametrize("how", ["--proxy ''", "OMNIGET_PROXY=''"])
def test_an_empty_proxy_switches_the_variables_off_for_small_files(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for name in ("http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    if how == "--proxy ''":
        report = get(plain_files(httpd), tmp_path, proxy="")
    else:
        env = {"OMNIGET_PROXY": "", "XDG_CONFIG_HOME": str(tmp_path / "no-config")}
        settings, _ = load_settings(environ=env, flags={
            "state-dir": str(tmp_path / "state"), "retries": 0, "netrc": False})
        assert settings.network.proxy == ""
        report = download(plain_files(httpd), tmp_path / "out", settings=settings)
    got_all(report, tmp_path)
    assert proxy.log == []
    assert pipelined(caplog) > 0


# no_proxy as curl 7.86 and later reads it: which of the hosts below go direct
NO_PROXY = [  # (value, variable, {host: direct})
    ("*", "no_proxy", {"127.0.0.1": True, "near.test": True}),
    ("near.test", "no_proxy", {"127.0.0.1": False, "near.test": True, "a.near.test": True}),
    (".near.test", "NO_PROXY", {"near.test": True, "a.near.test": True, "far.test": False}),
    ("127.0.0.1", "no_proxy", {"127.0.0.1": True, "near.test": False, "127.1": True,
                               "0x7f.0.0.1": True}),
    ("127.0.0.0/8", "no_proxy", {"127.0.0.1": True, "near.test": False}),
    ("10.0.0.0/8, far.test", "no_proxy", {"127.0.0.1": False, "far.test": True}),
    ("near.test:{port}, 127.0.0.1:{port}", "no_proxy", {"near.test": False,
                                                        "127.0.0.1": False}),
    ("127.1", "no_proxy", {"127.1": False, "127.0.0.1": False}),
    ("2130706433", "no_proxy", {"2130706433": False}),
]


@pytest.mark.parametrize(("value", "name", "hosts"), NO_PROXY)
def test_no_proxy_sends_small_files_direct_or_through_the_proxy_as_curl_does(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    value: str, name: str, hosts: dict[str, bool],
) -> None:
    """Each host's files all go one way: through the proxy, or straight to the server (a
    host name's own address: ``--resolve``). An entry with a port never matches (curl
    compares names and addresses only); nor does an address not written as four numbers
    (libcurl reads the URL's as 127.0.0.1, the entry's as no address)."""
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv(name, value.format(port=httpd.port))
    resolve = tuple(httpd.resolve(h) for h in hosts if h[0].isalpha())
    for n, (host, direct) in enumerate(hosts.items()):
        httpd.clear_log()
        seen = len(proxy.log)
        dest = tmp_path / str(n)
        got_all(get(plain_files(httpd, host=host), dest, resolve=resolve), dest)
        proxied = len(proxy.log) - seen
        assert proxied == (0 if direct else FILES), (value, host)
        assert len(httpd.requests) == FILES
        if not direct:
            assert all(r.headers.get("connection") == "close" for r in httpd.requests)


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_a_socks_proxy_takes_every_small_file(
    httpd: HTTPServer, socks: SocksProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    scheme: str,
) -> None:
    """omniget's own connections do not speak SOCKS: libcurl carries these. With
    ``socks5h://`` the proxy is given the host name, with ``socks5://`` its address."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    url = socks.url if scheme == "socks5" else socks.url_h
    urls = plain_files(httpd, host="files.test")
    got_all(get(urls, tmp_path, proxy=url, resolve=(httpd.resolve(),)), tmp_path)
    assert pipelined(caplog) == 0
    log = socks.log
    assert log and len(httpd.connection_ids()) == len(log)  # (each one through the proxy)
    expected = ("ipv4", "127.0.0.1") if scheme == "socks5" else ("name", "files.test")
    assert {(r.kind, r.host, r.port) for r in log} == {(*expected, httpd.port)}


def test_a_socks_proxy_from_all_proxy_with_a_login(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with SocksProxy(login=("su", "sp")) as socks:
        monkeypatch.setenv("all_proxy", socks.url_h.replace("//", "//su:sp@"))
        got_all(get(plain_files(httpd), tmp_path), tmp_path)
        log = socks.log
    assert pipelined(caplog) == 0
    assert log and len(httpd.connection_ids()) == len(log)
    assert {r.login for r in log} == {("su", "sp")}
    assert not any("authorization" in r.headers or "proxy-authorization" in r.headers
                   for r in httpd.requests)


# -- https://, many small files: HTTP/2 streams --


def tunnelled(proxy: Proxy, server: H2Server) -> None:
    """Every connection ``server`` took came through a CONNECT ``proxy`` was asked for."""
    log = proxy.log
    assert log and {(r.method, r.target) for r in log} == {("CONNECT",
                                                             f"127.0.0.1:{server.port}")}
    assert server.connections == len(log)


def h2_served(server: H2Server) -> list[str]:
    return [s.protocol for i in range(FILES) for s in server.served(f"/t{i}.txt")]


@pytest.mark.parametrize("how", ["--proxy", "https_proxy", "HTTPS_PROXY", "all_proxy"])
def test_an_http_proxy_tunnels_every_https_file(
    h2srv: H2Server, proxy: Proxy, tls_ca_path: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    network: dict[str, object] = {"ca_cert": str(tls_ca_path)}
    if how == "--proxy":
        network["proxy"] = proxy.url
    else:
        monkeypatch.setenv(how, proxy.url)
    got_all(get(h2_files(h2srv), tmp_path, **network), tmp_path)
    tunnelled(proxy, h2srv)
    assert "h2" in h2_served(h2srv)  # (HTTP/2 inside the tunnels)


def test_http_proxy_is_not_for_https(
    h2srv: H2Server, proxy: Proxy, tls_ca_path: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    got_all(get(h2_files(h2srv), tmp_path, ca_cert=str(tls_ca_path)), tmp_path)
    assert proxy.log == []


def test_proxy_credentials_go_in_each_connect_and_never_through_the_tunnel(
    h2srv: H2Server, proxy: Proxy, tls_ca_path: Path, tmp_path: Path
) -> None:
    with_login = proxy.url.replace("http://", "http://pu:pp@")
    got_all(get(h2_files(h2srv), tmp_path, proxy=with_login, ca_cert=str(tls_ca_path)),
            tmp_path)
    tunnelled(proxy, h2srv)
    assert {r.headers.get("proxy-authorization") for r in proxy.log} == {"Basic cHU6cHA="}


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_a_socks_proxy_takes_every_https_file(
    h2srv: H2Server, socks: SocksProxy, tls_ca_path: Path, tmp_path: Path, scheme: str
) -> None:
    url = socks.url if scheme == "socks5" else socks.url_h
    got_all(get(h2_files(h2srv), tmp_path, proxy=url, ca_cert=str(tls_ca_path)), tmp_path)
    log = socks.log
    assert log and h2srv.connections == len(log)
    assert {(r.host, r.port) for r in log} == {("127.0.0.1", h2srv.port)}


# -- the CA certificates: on the HTTP/2 path, and through a tunnel --


@pytest.mark.parametrize("how", ["none", "--ca-cert", "SSL_CERT_FILE", "CURL_CA_BUNDLE",
                                 "--insecure", "SSL_CERT_DIR alone"])
@pytest.mark.parametrize("via", ["direct", "tunnel"])
def test_a_self_signed_server_is_trusted_only_as_the_user_says(
    h2srv: H2Server, tls_ca_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    how: str, via: str,
) -> None:
    """Refused by default; accepted with its CA from --ca-cert or either variable, or with
    --insecure; SSL_CERT_DIR, an OpenSSL hashed folder, without one of its CA's hashes in
    it, adds nothing. The same through a proxy's tunnel."""
    network: dict[str, object] = {}
    if how == "--ca-cert":
        network["ca_cert"] = str(tls_ca_path)
    elif how == "--insecure":
        network["insecure"] = True
    elif how == "SSL_CERT_DIR alone":
        monkeypatch.setenv("SSL_CERT_DIR", str(tls_ca_path.parent))  # (not hashed)
    elif how != "none":
        monkeypatch.setenv(how, str(tls_ca_path))
    with Proxy() as proxy:
        if via == "tunnel":
            network["proxy"] = proxy.url
        report = get(h2_files(h2srv), tmp_path, **network)
        log = proxy.log
    if how in ("none", "SSL_CERT_DIR alone"):
        assert report.ok == 0 and report.failed == FILES
        assert h2_served(h2srv) == []  # (no request was sent)
        assert all("certificate" in str(f) for f in report.failures), report.failures
    else:
        got_all(report, tmp_path)
        assert "h2" in h2_served(h2srv)
    if via == "tunnel":
        assert log and {r.method for r in log} == {"CONNECT"}


# -- credentials for the server are never the proxy's --


@pytest.mark.parametrize("how", ["--user", "userinfo", "netrc"])
@pytest.mark.parametrize("tls", [False, True])
def test_server_credentials_never_reach_the_proxy_as_its_own(
    httpd_factory: Callable[..., HTTPServer], proxy: Proxy, tls_ca_path: Path,
    tmp_path: Path, how: str, tls: bool,
) -> None:
    """The server's login is the server's: no Proxy-Authorization from it, none in a
    CONNECT (over http:// the request the proxy passes on carries it, as it must). A netrc
    entry for the proxy's own host is not used for the proxy either (curl uses the
    proxy URL's login only)."""
    server = httpd_factory(tls=tls)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine files.test login nu password np\n"
                     "machine 127.0.0.1 login xu password xp\n")
    host = "files.test"
    network: dict[str, object] = {"proxy": proxy.url, "ca_cert": str(tls_ca_path),
                                  "resolve": (server.resolve(),)}
    urls = plain_files(server, host=host)
    if how == "--user":
        network["user"] = "uu:up"
    elif how == "userinfo":
        urls = [u.replace("://", "://uu:up@") for u in urls]
    else:
        network["netrc_file"] = str(netrc)
    settings = Settings(state_dir=tmp_path / "state", retries=0, network=NetworkSettings(
        netrc=how == "netrc", **network))  # type: ignore[arg-type]
    got_all(download(urls, tmp_path / "out", settings=settings), tmp_path)
    login = "Basic bnU6bnA=" if how == "netrc" else "Basic dXU6dXA="
    assert {r.headers.get("authorization") for r in server.requests} == {login}
    assert not any("proxy-authorization" in r.headers for r in proxy.log)
    if tls:
        assert {r.method for r in proxy.log} == {"CONNECT"}
        assert not any("authorization" in r.headers for r in proxy.log)
    else:
        assert len(proxy.log) == FILES
        assert {r.headers.get("authorization") for r in proxy.log} == {login}


def test_no_proxy_exempts_small_files_from_a_proxy_given_by_flag(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """curl heeds no_proxy beside --proxy too: those files go direct, pipelined."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    got_all(get(plain_files(httpd), tmp_path, proxy=proxy.url), tmp_path)
    assert proxy.log == []
    assert pipelined(caplog) > 0


# -- one large file split over several connections: libcurl's ranged requests --


@pytest.mark.parametrize("tls", [False, True])
def test_every_span_of_a_split_file_goes_through_the_proxy(
    httpd_factory: Callable[..., HTTPServer], proxy: Proxy, tls_ca_path: Path,
    tmp_path: Path, payload: Callable[..., bytes], tls: bool,
) -> None:
    """(The first answer waits, after its first bytes, until the other spans are asked
    for: the file is split whatever the machine's speed.)"""
    server = httpd_factory(tls=tls)
    data = payload(6 << 20)
    url = server.add(server.new_path("big.bin"), data) + "?hold=h&stall_after=65536&times=1"

    def release_when_split() -> None:
        deadline = time.monotonic() + 30
        if server.held("h", timeout=30):
            while time.monotonic() < deadline and sum(
                "range" in r.headers for r in server.requests) < 2:
                time.sleep(0.01)
        server.release("h")

    releaser = threading.Thread(target=release_when_split, daemon=True)
    releaser.start()
    settings = Settings(state_dir=tmp_path / "state", retries=0, split=3,
                        network=NetworkSettings(netrc=False, proxy=proxy.url,
                                                ca_cert=str(tls_ca_path)))
    report = download([url], tmp_path / "out", settings=settings)
    releaser.join()
    assert report.ok == 1, report.failures
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    assert sum("range" in r.headers for r in server.requests) >= 2  # (it was split)
    log = proxy.log
    if tls:
        # every connection a request came on is the far end of one of the proxy's tunnels
        # (a tunnel carries no request the server read when the span that opened it was
        # dropped first, as a span silent on a loaded machine is taken over: a count of
        # the server's connections against the CONNECTs can come out short)
        assert log and {r.method for r in log} == {"CONNECT"}
        peers = {r.conn_id: r.peer for r in server.requests}
        assert len(set(peers.values())) == len(peers)
        assert set(peers.values()) <= {r.upstream for r in log}
    else:
        assert len(log) == len(server.requests)
        assert all(r.headers.get("connection") == "close" for r in server.requests)


# -- a SOCKS proxy that refuses: its login, or the connection asked of it --


@pytest.mark.parametrize("login", ["wrong", "none"])
def test_a_socks_proxy_refusing_the_login_is_an_authentication_failure(
    httpd: HTTPServer, tmp_path: Path, login: str
) -> None:
    """As a 407 from an HTTP proxy: not retried, said to be the proxy's login (it was a
    connection failure, retried, exit 3)."""
    url = httpd.add(httpd.new_path("f.bin"), small(1))
    with SocksProxy(login=("su", "sp")) as socks:
        proxy = socks.url.replace("//", "//su:s3cr3t@") if login == "wrong" else socks.url
        settings = Settings(state_dir=tmp_path / "state", retries=3,
                            network=NetworkSettings(netrc=False, proxy=proxy))
        report = download([url], tmp_path / "out", settings=settings)
        tries = socks.connections
    [failure] = report.failures
    assert isinstance(failure.error, AuthRequired), repr(failure.error)
    said = str(failure.error)
    assert "SOCKS proxy" in said and "user name and password" in said, said
    assert "s3cr3t" not in said
    assert tries == 1  # (no retry)
    assert httpd.requests == []


def test_a_socks_proxy_that_cannot_reach_the_server_says_so(
    httpd: HTTPServer, refused_port: int, tmp_path: Path
) -> None:
    with SocksProxy() as socks:
        settings = Settings(state_dir=tmp_path / "state", retries=0,
                            network=NetworkSettings(netrc=False, proxy=socks.url))
        report = download([f"http://127.0.0.1:{refused_port}/f"], tmp_path / "out",
                          settings=settings)
    [failure] = report.failures
    said = str(failure.error)
    assert "the proxy could not connect to" in said and "refused" in said, said


def test_a_socks_proxy_that_will_not_make_the_connection_is_not_asked_again(
    tmp_path: Path,
) -> None:
    """(This one takes no IPv6 address: its answer would be the same to every retry.)"""
    with SocksProxy() as socks:
        settings = Settings(state_dir=tmp_path / "state", retries=3,
                            network=NetworkSettings(netrc=False, proxy=socks.url))
        report = download(["http://[::1]:9/f"], tmp_path / "out", settings=settings)
        tries = socks.connections
    [failure] = report.failures
    assert "the SOCKS proxy will not connect to" in str(failure.error), failure.error
    assert tries == 1


# -- a proxy variable set, or unset, between two runs of one engine --


def test_a_proxy_variable_set_between_runs_of_one_engine_takes_every_file(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libcurl reads the variables at each request; the pipelined path's choice was made
    once, at the engine's first run: a program that set http_proxy after it had small
    files of its next runs sent past the proxy (the larger ones went through it)."""
    settings = Settings(state_dir=tmp_path / "state", retries=0,
                        network=NetworkSettings(netrc=False))

    def batch(tag: str) -> list[str]:
        return [httpd.add(httpd.new_path(f"{tag}{i}.txt"), small(i)) for i in range(FILES)]

    async def runs() -> list[Report]:
        engine = Engine(settings)
        try:
            first = await adownload(batch("a"), tmp_path / "a", engine=engine)
            monkeypatch.setenv("http_proxy", proxy.url)
            second = await adownload(batch("b"), tmp_path / "b", engine=engine)
            seen.append(len(proxy.log))
            monkeypatch.delenv("http_proxy")
            third = await adownload(batch("c"), tmp_path / "c", engine=engine)
            return [first, second, third]
        finally:
            await engine.aclose()

    seen: list[int] = []
    reports = asyncio.run(runs())
    assert [r.ok for r in reports] == [FILES] * 3, [r.failures for r in reports]
    assert seen == [FILES]  # (every file of the second run, none of the first)
    assert len(proxy.log) == FILES  # (and none of the third)


# -- a proxy that drops the connection: said to be the proxy's path --


@pytest.mark.parametrize("cut", ["no answer", "mid-body", "no tunnel", "no TLS"])
def test_a_proxy_that_drops_the_connection_is_named(tmp_path: Path, cut: str) -> None:
    """libcurl's words ("Empty reply from server") blame the server, which the proxy may
    never have reached."""
    answer = {"mid-body": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10,
              "no TLS": b"HTTP/1.1 200 Connection established\r\n\r\n"}.get(cut, b"")
    url = "https://files.test/f.bin" if "no t" in cut.lower() else "http://files.test/f.bin"
    with Canned(answer) as canned:
        settings = Settings(state_dir=tmp_path / "state", retries=0, network=NetworkSettings(
            netrc=False, proxy=canned.url.replace("//", "//pu:s3cret@")))
        report = download([url], tmp_path / "out", settings=settings)
    [failure] = report.failures
    said = str(failure.error)
    assert f"through the proxy http://pu:***@127.0.0.1:{canned.port} (--proxy)" in said, said
    assert "s3cret" not in said


# -- redirects, mirrors and --resolve with a proxy --


def test_small_files_moved_from_a_host_past_the_proxy_come_through_it(
    httpd: HTTPServer, httpd2: HTTPServer, proxy: Proxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first hops go direct (no_proxy), each redirect's to a host the proxy takes
    goes through it."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    urls = []
    for i in range(FILES):
        path = httpd2.new_path(f"s{i}.txt")
        httpd2.add(path, small(i))
        urls.append(httpd.url(f"/r/s{i}.txt", redirect=httpd2.url(path, host="files.test")))
    got_all(get(urls, tmp_path, proxy=proxy.url, resolve=(httpd2.resolve(),)), tmp_path)
    assert len(httpd.requests) == FILES and proxy.log and len(proxy.log) == FILES
    assert {r.target.split("/")[2] for r in proxy.log} == {f"files.test:{httpd2.port}"}
    assert all(r.headers.get("connection") == "close" for r in httpd2.requests)


def test_a_mirror_tried_after_a_reset_goes_through_the_proxy_too(
    httpd: HTTPServer, httpd2: HTTPServer, proxy: Proxy, tmp_path: Path,
    payload: Callable[..., bytes],
) -> None:
    data = payload(2 << 20)
    first, second = httpd.new_path("m.bin"), httpd2.new_path("m.bin")
    httpd.add(first, data)
    httpd2.add(second, data)
    item = Item(httpd.url(first, reset=65536, times="always"), filename="m.bin",
                mirrors=(httpd2.url(second),))
    settings = Settings(state_dir=tmp_path / "state", retries=2,
                        network=NetworkSettings(netrc=False, proxy=proxy.url))
    report = download([item], tmp_path / "out", settings=settings)
    assert report.ok == 1, report.failures
    assert (tmp_path / "out" / "m.bin").read_bytes() == data
    assert httpd2.requests and len(proxy.log) == len(httpd.requests) + len(httpd2.requests)
    assert all(r.headers.get("connection") == "close"
               for r in httpd.requests + httpd2.requests)


def test_a_proxy_s_own_name_is_looked_up_in_resolve(
    httpd: HTTPServer, proxy: Proxy, tmp_path: Path
) -> None:
    """As curl: --resolve is for any name libcurl looks up, the proxy's among them."""
    name = f"proxy.test:{proxy.port}"
    got_all(get(plain_files(httpd), tmp_path, proxy=f"http://{name}",
                resolve=(f"{name}:127.0.0.1",)), tmp_path)
    through(proxy, httpd)
