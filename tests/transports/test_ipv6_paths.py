"""IPv6 and name resolution on each network path, as curl users expect them: a lone file
and split spans (libcurl), many small http:// files (the pipelined reader's own sockets)
and many small https:// files (HTTP/2). ``--resolve`` with several addresses where the
first refuses (libcurl tries the next; so must the pipelined reader), ``--resolve`` to an
IPv6 address, ``no_proxy`` with ``::1`` and ``[::1]``, the Host line of an IPv6 literal,
redirects to one, the per-host cap on an IPv6 origin and URLs with a zone id. Checked end
to end through ``download()`` against servers on ::1 (skipped where it cannot be bound)."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pycurl
import pytest
from tests.engine.test_adaptive import run_peak
from tests.servers.h2d import H2Server
from tests.servers.httpd import HTTPServer, bracketed, ipv6_loopback
from tests.servers.proxy import Proxy
from tests.servers.tls import TLSFiles

from omniget import Report, download
from omniget.errors import UsageError
from omniget.settings import NetworkSettings, Settings

LOGGER = "omniget.engine.transports.http"
FILES = 24
KiB, MiB = 1024, 1024 * 1024

pytestmark = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def small(i: int) -> bytes:
    return f"small file {i}\n".encode() * (40 + i)


def plain_files(server: HTTPServer, host: str | None = None, n: int = FILES) -> list[str]:
    urls = []
    for i in range(n):
        path = server.new_path(f"s{i}.txt")
        server.add(path, small(i))
        urls.append(server.url(path, host=host))
    return urls


def get(urls: list[str], dest: Path, **network: object) -> Report:
    settings = Settings(state_dir=dest / "state", retries=0,
                        network=NetworkSettings(netrc=False, **network))  # type: ignore[arg-type]
    return download(urls, dest / "out", settings=settings)


def got_all(report: Report, dest: Path, n: int = FILES) -> None:
    assert report.ok == n, report.failures
    names = sorted((dest / "out").iterdir(), key=lambda p: int(p.stem.lstrip("st")))
    assert [p.name for p in names] == [f"{p.stem}.txt" for p in names]
    assert [p.read_bytes() for p in names] == [small(i) for i in range(n)]


def pipelined(caplog: pytest.LogCaptureFixture) -> int:
    return sum(" (pipelined)" in r.getMessage() or " (kept connection)" in r.getMessage()
               for r in caplog.records)


@contextlib.contextmanager
def one_answers(answering: str, tls: ssl.SSLContext | None = None) -> Iterator[HTTPServer]:
    """A server on the ``answering`` loopback, and the same port on the other loopback
    bound but not listening (a connection there is refused at once)."""
    other = "127.0.0.1" if ":" in answering else "::1"
    for _ in range(20):
        server = HTTPServer(host=answering, tls=tls).start()
        family = socket.AF_INET6 if ":" in other else socket.AF_INET
        refuser = socket.socket(family, socket.SOCK_STREAM)
        try:
            refuser.bind((other, server.port))
        except OSError:  # (taken there by someone else: another port)
            refuser.close()
            server.stop()
            continue
        try:
            yield server
        finally:
            refuser.close()
            server.stop()
        return
    pytest.skip("no port free on both loopbacks")



# -- --resolve NAME:PORT:ADDR1,ADDR2 where only one answers --


@pytest.mark.parametrize(
    ("answering", "entry"),
    [("127.0.0.1", "dual.test:{port}:[::1],127.0.0.1"),  # IPv6 first, refused
     ("::1", "dual.test:{port}:127.0.0.1,[::1]"),  # IPv4 first, refused
     ("::1", "dual.test:{port}:127.0.0.1,::1")],  # (libcurl takes it without brackets)
    ids=["v6-refused", "v4-refused", "unbracketed"],
)
def test_the_next_resolve_address_is_tried_when_the_first_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, answering: str, entry: str
) -> None:
    """As libcurl tries each address of an entry (its happy eyeballs), the pipelined
    reader does: no file fails, none is left to libcurl for its connection."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with one_answers(answering) as server:
        urls = plain_files(server, host="dual.test")
        got_all(get(urls, tmp_path, resolve=(entry.format(port=server.port),)), tmp_path)
        assert pipelined(caplog) >= FILES // 2
        assert len(server.requests) == FILES
        assert {r.headers["host"] for r in server.requests} == {f"dual.test:{server.port}"}
        assert {r.local for r in server.requests} == {answering}


def test_a_split_file_tries_the_next_resolve_address(
    tmp_path: Path, payload: Callable[..., bytes]
) -> None:
    data = payload(4 * MiB, 71)
    with one_answers("::1") as server:
        path = server.new_path("big.bin")
        server.add(path, data)
        entry = f"dual.test:{server.port}:127.0.0.1,[::1]"
        settings = Settings(state_dir=tmp_path / "state", retries=0, split=4,
                            network=NetworkSettings(netrc=False, resolve=(entry,)))
        report = download([server.url(path, host="dual.test")], tmp_path / "out",
                          settings=settings)
        assert report.ok == 1, report.failures
        assert (tmp_path / "out" / "big.bin").read_bytes() == data


def test_https_tries_the_next_resolve_address(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    with one_answers("::1", tls=tls_files.server_context()) as server:
        urls = plain_files(server, host="files.test")
        entry = f"files.test:{server.port}:127.0.0.1,[::1]"
        report = get(urls, tmp_path, resolve=(entry,), ca_cert=str(tls_files.ca_path))
        got_all(report, tmp_path)


@pytest.mark.parametrize("first", ["127.0.0.1", "::1"])
def test_an_address_that_never_answers_holds_up_the_next_briefly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, first: str
) -> None:
    """The first address of an entry takes no connection (its listener's backlog is
    full: the SYN is dropped), the second answers. libcurl starts on the second after
    200 ms (happy eyeballs); the pipelined reader gave the first half the connect timeout
    (here 30 s) before it tried the second, and its files waited that long."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answering = "::1" if first == "127.0.0.1" else "127.0.0.1"
    with contextlib.ExitStack() as stack:
        server = blackholed_beside(stack, answering, first)
        urls = plain_files(server, host="dual.test")
        entry = f"dual.test:{server.port}:{bracketed(first)},{bracketed(answering)}"
        start = time.monotonic()
        report = get(urls, tmp_path, resolve=(entry,), connect_timeout=60.0)
        took = time.monotonic() - start
        got_all(report, tmp_path)
        assert pipelined(caplog) >= FILES // 2
        assert {r.local for r in server.requests} == {answering}
        assert took < 20, took  # (the bound a loaded machine keeps: 30 s before)


@pytest.mark.parametrize("entry", ["127.0.0.1,[::1]", "[::1],127.0.0.1"])
def test_both_paths_connect_to_ipv6_first_whatever_the_entrys_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, entry: str
) -> None:
    """A server on both loopbacks: libcurl connects to ::1 (it tries a host's families by
    turns, IPv6 first: RFC 8305), and so does the pipelined reader (it took the entry's
    order: 127.0.0.1 first)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with HTTPServer(dual=True) as server:
        resolve = f"dual.test:{server.port}:{entry}"
        if libcurl_connects_to(server.url("/", host="dual.test"), resolve) != "::1":
            pytest.skip("this libcurl tries an entry's addresses in their order (8.x: IPv6 first)")
        server.reset()
        urls = plain_files(server, host="dual.test")
        got_all(get(urls, tmp_path, resolve=(resolve,)), tmp_path)
        assert pipelined(caplog) >= FILES // 2
        assert {r.local for r in server.requests} == {"::1"}


def libcurl_connects_to(url: str, resolve: str) -> str:
    """The address libcurl itself connects to for ``url`` with this ``--resolve`` entry."""
    easy = pycurl.Curl()
    try:
        easy.setopt(pycurl.URL, url)
        easy.setopt(pycurl.RESOLVE, [resolve])
        easy.setopt(pycurl.WRITEDATA, io.BytesIO())
        easy.perform()
        return str(easy.getinfo(pycurl.PRIMARY_IP))
    finally:
        easy.close()


def blackholed_beside(stack: contextlib.ExitStack, answering: str, silent: str) -> HTTPServer:
    """A server on ``answering``, and at its port on ``silent`` a listener whose backlog
    is full: a connection there is neither taken nor refused."""
    for _ in range(20):
        server = stack.enter_context(HTTPServer(host=answering))
        family = socket.AF_INET6 if ":" in silent else socket.AF_INET
        try:
            stack.enter_context(
                socket.create_server((silent, server.port), family=family, backlog=0))
        except OSError:  # (taken there by someone else: another port)
            continue
        stack.enter_context(socket.create_connection((silent, server.port)))  # (fills it)
        return server
    pytest.skip("no port free on both loopbacks")
    raise AssertionError  # (unreachable)


# -- --resolve NAME:PORT:IPv6 on each path --


@pytest.mark.parametrize("address", ["[::1]", "::1"])
def test_resolve_to_an_ipv6_address_on_the_pipelined_path(
    httpd6: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    urls = plain_files(httpd6, host="v6.test")
    got_all(get(urls, tmp_path, resolve=(f"v6.test:{httpd6.port}:{address}",)), tmp_path)
    assert pipelined(caplog) >= FILES // 2
    assert {r.headers["host"] for r in httpd6.requests} == {f"v6.test:{httpd6.port}"}


def test_resolve_to_an_ipv6_address_over_https_and_http2(
    httpsd6: HTTPServer, tls_files: TLSFiles, tmp_path: Path
) -> None:
    urls = plain_files(httpsd6, host="files.test")
    report = get(urls, tmp_path, resolve=(httpsd6.resolve("files.test"),),
                 ca_cert=str(tls_files.ca_path))
    got_all(report, tmp_path)
    with H2Server(tls_files, host="::1") as h2:
        urls = [h2.add(f"/s{i}.txt", small(i)).replace("[::1]", "cdn.test") for i in range(FILES)]
        dest = tmp_path / "h2"
        report = get(urls, dest, resolve=(f"cdn.test:{h2.port}:[::1]",),
                     ca_cert=str(tls_files.ca_path))
        got_all(report, dest)
        assert sum(r.protocol == "h2" for r in h2.requests) >= FILES // 2


# -- no_proxy with ::1 and [::1] --


def libcurl_goes_direct(url: str, proxy: str, no_proxy: str) -> bool:
    """What libcurl itself does with this no_proxy: the reference omniget follows."""
    with Proxy() as probe:
        easy = pycurl.Curl()
        easy.setopt(pycurl.URL, url)
        easy.setopt(pycurl.PROXY, probe.url)
        easy.setopt(pycurl.NOPROXY, no_proxy)
        easy.setopt(pycurl.WRITEDATA, io.BytesIO())
        with contextlib.suppress(pycurl.error):  # (direct to nobody there: refused)
            easy.perform()
        easy.close()
        return probe.log == []


@pytest.mark.parametrize("no_proxy", ["::1", "[::1]", "localhost,::1", "::1/128"])
def test_no_proxy_with_an_ipv6_address(
    httpd6: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, no_proxy: str,
) -> None:
    """Each small file goes the way libcurl sends a lone one: direct for ``::1`` (as curl
    reads no_proxy, an IPv6 address without brackets), through the proxy for ``[::1]``."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("no_proxy", no_proxy)
    probe = httpd6.add("/probe.txt", b"probe")
    with Proxy() as proxy:
        direct = libcurl_goes_direct(probe, proxy.url, no_proxy)
        httpd6.reset()
        got_all(get(plain_files(httpd6), tmp_path, proxy=proxy.url), tmp_path)
        assert len(httpd6.requests) == FILES
        assert len(proxy.log) == (0 if direct else FILES)
    if no_proxy in ("::1", "localhost,::1"):
        assert direct  # (curl's documented reading)
        assert pipelined(caplog) >= FILES // 2  # (no proxy in the way: the pool's case)


@pytest.mark.parametrize(
    ("no_proxy", "host"),
    [("::1", "[::1]"), ("::1", "::1"), ("::1", "[0:0::1]"), ("[::1]", "[::1]"),
     ("::1/128", "[::1]"), ("::/0", "[::1]"), ("0:0::1", "[::1]"), ("fe80::1", "[::1]"),
     ("::1", "[::1%25lo]"), ("::1", "[::1%lo]"), ("::ffff:127.0.0.1", "[::ffff:127.0.0.1]"),
     (".1", "[::1]"), (":1", "[::1]"), ("1", "[::1]")],
)
def test_no_proxy_matches_an_ipv6_host_only_where_libcurl_goes_direct(
    httpd6: HTTPServer, no_proxy: str, host: str
) -> None:
    """The pool takes a host past a proxy only when libcurl would go direct to it (as
    libcurl since 7.86 reads no_proxy: an entry that is the address in the short form
    libcurl writes it in); whatever else stays with libcurl, which decides itself."""
    from omniget.engine.transports.outgoing import no_proxy_match

    url = f"http://{bracketed(host)}:{httpd6.port}/probe.txt"
    httpd6.add("/probe.txt", b"probe")
    with Proxy() as proxy:
        direct = libcurl_goes_direct(url, proxy.url, no_proxy)
    matched = no_proxy_match(host, no_proxy)
    assert not matched or direct, (no_proxy, host)
    listed = {("::1", "[::1]"), ("::1", "::1"), ("::ffff:127.0.0.1", "[::ffff:127.0.0.1]")}
    assert matched is ((no_proxy, host) in listed), (no_proxy, host)


@pytest.mark.parametrize(
    ("no_proxy", "first", "then"),
    [("127.0.0.1", "127.0.0.1", "[::ffff:127.0.0.1]"),
     ("::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "127.0.0.1")],
)
def test_no_proxy_is_matched_against_the_host_as_the_url_writes_it(
    httpd: HTTPServer, no_proxy: str, first: str, then: str
) -> None:
    """127.0.0.1 and [::ffff:127.0.0.1] are one host to the caps (one key), but libcurl
    matches no_proxy against the host its URL names: the pool goes direct for the one
    libcurl sends direct, not for the other because they share a key."""
    from omniget.engine.transports.sharing import direct_key

    known: dict[str, bool] = {}
    path = httpd.add("/probe.txt", b"probe")
    for host in (first, then):
        url = path.replace("127.0.0.1", host, 1)
        with Proxy() as proxy:
            direct = libcurl_goes_direct(url, proxy.url, no_proxy)
        assert direct is (host == first), host  # (what the rest relies on)
        key = direct_key(no_proxy, known, url)
        assert (key is not None) is direct, host


@pytest.mark.parametrize("host", ["[::1]", "[0:0::1]"])
def test_a_netrc_login_for_an_ipv6_address_is_sent_on_every_request(
    httpd6: HTTPServer, tmp_path: Path, host: str
) -> None:
    """libcurl finds ``machine ::1`` for http://[::1]/ (and for [0:0::1], which it writes
    short), so no request to it may go pipelined without that login: the pool compared
    the machine names with ``[::1]`` and took such files after the first, with no
    Authorization (401)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ::1 login me password pw\n")
    netrc.chmod(0o600)
    urls = []
    for i in range(FILES):
        path = httpd6.new_path(f"s{i}.txt")
        httpd6.add(path, small(i))
        urls.append(httpd6.url(path, host=host, auth="me:pw"))
    settings = Settings(state_dir=tmp_path / "state", retries=0,
                        network=NetworkSettings(netrc_file=str(netrc)))
    got_all(download(urls, tmp_path / "out", settings=settings), tmp_path)
    assert all("authorization" in r.headers for r in httpd6.requests)


# -- the Host line, redirects --


@pytest.mark.parametrize(
    ("written", "host"),
    [("[::1]", "[::1]"), ("[0:0::1]", "[::1]"), ("[0:0:0:0:0:0:0:1]", "[::1]"),
     ("[::1%25lo]", "[::1]")],
)
def test_the_host_line_of_an_ipv6_literal_is_the_same_on_each_path(
    httpd6: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, written: str,
    host: str,
) -> None:
    """RFC 9112: ``Host: [ADDRESS]:PORT``. libcurl writes the address in its short form,
    without a zone id; the pipelined reader must send the same line."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    got_all(get(plain_files(httpd6, host=written), tmp_path), tmp_path)
    assert {r.headers["host"] for r in httpd6.requests} == {f"{host}:{httpd6.port}"}
    assert pipelined(caplog) >= FILES // 2


def test_redirects_to_an_ipv6_literal(
    httpd: HTTPServer, httpd6: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """From an IPv4 origin to ``http://[::1]:PORT/...``, on the pipelined path too; and
    a relative redirect on the IPv6 origin."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    targets = plain_files(httpd6)
    urls = []
    for i, target in enumerate(targets):
        if i % 2:  # (via a relative redirect on the IPv6 server)
            relative = target.split(str(httpd6.port), 1)[1]
            target = httpd6.url(httpd6.new_path(f"hop{i}"), redirect=relative)
        urls.append(httpd.url(httpd.new_path(f"s{i}.txt"), redirect=target))
    got_all(get(urls, tmp_path), tmp_path)
    assert {r.headers["host"] for r in httpd6.requests} == {f"[::1]:{httpd6.port}"}
    assert len([r for r in httpd6.requests if r.status == 200]) == FILES
    assert pipelined(caplog) >= FILES // 2


# -- the per-host cap --


@pytest.mark.parametrize("cap", [1, 2])
def test_the_per_host_cap_counts_an_ipv6_origin(
    httpd6: HTTPServer, tmp_path: Path, payload: Callable[..., bytes], cap: int
) -> None:
    """Small files (pipelined), then a large one split: never more than ``-N`` open
    connections to [::1]:PORT, as the kernel counts them."""
    urls = plain_files(httpd6)
    big = payload(8 * MiB, 72)
    path = httpd6.new_path("after.bin")
    httpd6.add(path, big)
    urls.append(httpd6.url(path, drip=16 * MiB))
    report, peak = run_peak(httpd6, urls, tmp_path, retries=0, connections_per_host=cap)
    assert report.ok == FILES + 1, report.failures
    assert (tmp_path / "out" / "after.bin").read_bytes() == big
    assert 0 < peak <= cap


@pytest.mark.parametrize(
    ("server", "spellings"),
    [("httpd6", ["[::1]", "[0:0::1]", "[0000::1]"]),
     ("httpd", ["127.0.0.1", "[::ffff:127.0.0.1]", "[0:0:0:0:0:FFFF:7f00:1]"])],
    ids=["ipv6", "ipv4-mapped"],
)
def test_the_per_host_cap_counts_each_spelling_of_an_address_as_one_host(
    request: pytest.FixtureRequest, tmp_path: Path, payload: Callable[..., bytes],
    server: str, spellings: list[str],
) -> None:
    """Large files and small ones (pipelined), each URL writing the server's address
    another way: one host, so together they keep ``-N`` open connections to it, as the
    kernel counts them. (Each spelling had a cap of its own, up to three times ``-N``; and
    a connection libcurl kept after one spelling, reused for another, was shut under it
    when the pool opened one of its own for the first.)"""
    httpd: HTTPServer = request.getfixturevalue(server)
    cap = 2
    urls, big = [], {}
    for i, host in enumerate(spellings * 2):
        path = httpd.new_path(f"big{i}.bin")
        big[path] = payload(4 * MiB, 80 + i)
        httpd.add(path, big[path])
        urls.append(httpd.url(path, host=host, drip=8 * MiB))
    for i, url in enumerate(plain_files(httpd, n=12)):
        urls.append(url.replace(bracketed(httpd.host), spellings[i % 3], 1))
    report, peak = run_peak(httpd, urls, tmp_path, retries=0, connections_per_host=cap,
                            jobs=6)
    assert report.ok == len(urls), report.failures
    for path, data in big.items():
        assert (tmp_path / "out" / path.rpartition("/")[2]).read_bytes() == data
    assert 0 < peak <= cap


# -- zone ids --


@pytest.mark.parametrize("zone", ["%25lo", "%lo", "%251", "%25nosuchif0"])
def test_a_zone_id_on_the_loopback_is_handled(
    httpd6: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, zone: str
) -> None:
    """``[::1%25lo]``: libcurl connects with the zone (scope) id (one naming no interface
    is ignored on an address that is not link-local); so does the pipelined reader, which
    gave up on it (its resolver takes no zone there) and left each file to libcurl."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    got_all(get(plain_files(httpd6, host=f"[::1{zone}]"), tmp_path), tmp_path)
    assert len(httpd6.requests) == FILES
    assert pipelined(caplog) >= FILES // 2


@pytest.mark.parametrize(
    ("host", "said"),
    [("[fe80::1%25nosuchif0]", "no network interface 'nosuchif0' here"),
     ("[::1%25]", "an empty zone id")],
)
def test_a_zone_id_that_cannot_work_fails_clearly(
    httpd6: HTTPServer, tmp_path: Path, host: str, said: str
) -> None:
    """Refused before any request (it took libcurl's connect timeout, then each retry's),
    never a traceback or a hang."""
    url = f"http://{host}:{httpd6.port}/f.txt"
    report = get([url], tmp_path)
    [failure] = report.failures
    assert isinstance(failure.error, UsageError) and said in str(failure.error)
    assert httpd6.requests == []


@pytest.mark.parametrize(
    ("url", "said"),
    [("http://u:p@[::1]:8080/a?x=1", "http://[::1]:8080/a?x=1"),
     ("http://u:p@[fe80::1%25eth0]/a", "http://[fe80::1%25eth0]/a"),
     ("http://tok@files.test/a", "http://files.test/a")],
)
def test_a_url_said_without_its_password_keeps_an_ipv6_host_s_brackets(
    url: str, said: str
) -> None:
    """Was ``http://::1:8080/a``: the host without its brackets, not a URL one can use."""
    from omniget.engine.transports.base import safe_url

    assert safe_url(url) == said
