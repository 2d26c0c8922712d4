"""``Proxy-Authorization`` goes to the proxy only, never to an origin server: a
``-H 'Proxy-Authorization: ...'`` is kept across a redirect to another origin while the
proxy stays the same (it is the proxy's, which does not change with the origin), reaches
the proxy in a CONNECT (an https:// URL), and is sent nowhere without a proxy. The
credentials of ``--proxy http://user:pass@host`` likewise. Checked through a forwarding
proxy that takes the header (tests/servers/proxy.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer
from tests.servers.proxy import Proxy

from omniget import download
from omniget.settings import NetworkSettings, Settings

SECRET = "Basic cHJveHk6c2VjcmV0"
AUTH = (("Proxy-Authorization", SECRET),)
DATA = b"through the proxy" * 64
Factory = Callable[..., HTTPServer]
ENV = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
       "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy() as p:
        yield p


def fetch(url: str, tmp_path: Path, **network: object) -> None:
    settings = Settings(state_dir=tmp_path / "state", retries=0,
                        network=NetworkSettings(netrc=False, **network))  # type: ignore[arg-type]
    report = download([url], tmp_path / "out", settings=settings)
    assert report.ok == 1, report.failures


def said(server: HTTPServer) -> list[str | None]:
    """What each request ``server`` was sent carried as Proxy-Authorization."""
    return [r.headers.get("proxy-authorization") for r in server.requests]


def moved(a: HTTPServer, b: HTTPServer, host: str | None = None) -> str:
    """A URL on ``a`` that redirects to a file on ``b`` (under ``host``, if given)."""
    path = b.new_path("f.bin")
    b.add(path, DATA)
    return a.url("/r", redirect=b.url(path, host=host))


def test_it_is_kept_across_origins_through_the_same_proxy(
    httpd: HTTPServer, httpd2: HTTPServer, proxy: Proxy, tmp_path: Path
) -> None:
    """Before, it was dropped at the redirect, with Authorization and Cookie (curl keeps
    it there)."""
    fetch(moved(httpd, httpd2), tmp_path, proxy=proxy.url, headers=AUTH)
    assert [r.headers.get("proxy-authorization") for r in proxy.log] == [SECRET, SECRET]
    assert said(httpd) == said(httpd2) == [None]


def test_it_goes_in_the_connect_not_through_the_tunnel(
    httpd_factory: Factory, proxy: Proxy, tls_ca_path: Path, tmp_path: Path
) -> None:
    """Before (and in curl): it went inside the tunnel to the origin server, and the
    proxy never had it."""
    a, b = httpd_factory(tls=True), httpd_factory(tls=True)
    fetch(moved(a, b), tmp_path, proxy=proxy.url, headers=AUTH, ca_cert=str(tls_ca_path))
    assert [(r.method, r.headers.get("proxy-authorization")) for r in proxy.log] == [
        ("CONNECT", SECRET), ("CONNECT", SECRET)]
    assert said(a) == said(b) == [None]


@pytest.mark.parametrize("tls", [False, True])
def test_without_a_proxy_it_is_sent_nowhere(
    httpd_factory: Factory, tls_ca_path: Path, tmp_path: Path, tls: bool
) -> None:
    """Before (and in curl), the first origin server had it."""
    a, b = httpd_factory(tls=tls), httpd_factory(tls=tls)
    fetch(moved(a, b), tmp_path, headers=AUTH, ca_cert=str(tls_ca_path))
    direct = a.add(a.new_path("g.bin"), DATA)
    fetch(direct, tmp_path / "again", headers=AUTH, ca_cert=str(tls_ca_path))
    assert said(a) == [None, None] and said(b) == [None]


def test_a_redirect_to_a_host_past_the_proxy_does_not_take_it(
    httpd: HTTPServer, httpd2: HTTPServer, proxy: Proxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(curl sends it to that origin server.)"""
    monkeypatch.setenv("no_proxy", "localhost")
    fetch(moved(httpd, httpd2, host="localhost"), tmp_path, proxy=proxy.url, headers=AUTH)
    assert [r.headers.get("proxy-authorization") for r in proxy.log] == [SECRET]
    assert said(httpd) == said(httpd2) == [None]


def test_a_redirect_to_another_proxy_does_not_take_it(
    httpd: HTTPServer, httpd_factory: Factory, tls_ca_path: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """http:// and https:// URLs go through the proxies their variables name: the header
    is for the first one."""
    secure = httpd_factory(tls=True)
    with Proxy() as plain_proxy, Proxy() as tls_proxy:
        monkeypatch.setenv("http_proxy", plain_proxy.url)
        monkeypatch.setenv("https_proxy", tls_proxy.url)
        fetch(moved(httpd, secure), tmp_path, headers=AUTH, ca_cert=str(tls_ca_path))
        assert [r.headers.get("proxy-authorization") for r in plain_proxy.log] == [SECRET]
        assert [(r.method, r.headers.get("proxy-authorization")) for r in tls_proxy.log] == [
            ("CONNECT", None)]
    assert said(httpd) == said(secure) == [None]


@pytest.mark.parametrize("tls", [False, True])
def test_proxy_url_credentials_reach_the_proxy_only(
    httpd_factory: Factory, proxy: Proxy, tls_ca_path: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, tls: bool,
) -> None:
    a, b = httpd_factory(tls=tls), httpd_factory(tls=tls)
    monkeypatch.setenv("no_proxy", "localhost")
    with_creds = proxy.url.replace("http://", "http://user:secret@")
    fetch(moved(a, b), tmp_path, proxy=with_creds, ca_cert=str(tls_ca_path))
    fetch(moved(a, b, host="localhost"), tmp_path / "past", proxy=with_creds,
          ca_cert=str(tls_ca_path))
    expected = "Basic dXNlcjpzZWNyZXQ="
    assert [r.headers.get("proxy-authorization") for r in proxy.log] == [expected] * 3
    assert said(a) == [None, None] and said(b) == [None, None]
