"""A proxy libcurl cannot use (a scheme it does not speak, a bad port, a blank in the
host, an ``@`` of the password not written as %40) is one error before any transfer, exit 2,
naming where it came from (``--proxy``, or the variable), its password masked: as a CA file
that trusts nothing (tests/cli/test_ca_files.py). It was one failure per file, each after
its request was set up, exit 3 ("network or server failure"). A variable that applies to
none of the URLs is not read, as libcurl does not read it for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer
from tests.servers.proxy import Proxy

from omniget import UsageError, download
from omniget.cli import main
from omniget.engine.transports.outgoing import check_proxy
from omniget.settings import NetworkSettings, Settings

ENV = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
       "no_proxy", "NO_PROXY")
BAD = ["ftp://me:s3cr3t@127.0.0.1:9", "http://a b:9", "http://127.0.0.1:99999",
       "http://me:s3c@r3t@127.0.0.1:9"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def urls(server: HTTPServer, n: int = 5) -> list[str]:
    return [server.add(server.new_path(f"f{i}.bin"), b"data" * 64) for i in range(n)]


def settings(tmp_path: Path, **network: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", retries=0,
                    network=NetworkSettings(netrc=False, **network))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("name", ["http_proxy", "all_proxy", "ALL_PROXY"])
def test_a_bad_proxy_variable_is_one_error_before_any_request(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as err:
        download(urls(httpd), tmp_path / "out", settings=settings(tmp_path))
    said = str(err.value)
    assert said.startswith(f"{name}="), said
    assert "fix or unset it" in said, said
    assert not any(part in said for part in ("s3c", "r3t")), said
    assert httpd.requests == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_bad_proxy_setting_is_one_error_too(httpd: HTTPServer, tmp_path: Path) -> None:
    """(A library caller's NetworkSettings: the CLI's --proxy is checked as it is read.)"""
    with pytest.raises(UsageError, match=r"^--proxy ftp://me:\*\*\*@127\.0\.0\.1:9: "):
        download(urls(httpd), tmp_path / "out",
                 settings=settings(tmp_path, proxy="ftp://me:s3cr3t@127.0.0.1:9"))
    assert httpd.requests == []


@pytest.mark.parametrize("how", ["https_proxy only", "no_proxy", "--proxy ''", "HTTP_PROXY",
                                 "all_proxy behind http_proxy"])
def test_a_bad_proxy_variable_that_applies_to_no_url_is_not_read(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    network: dict[str, object] = {}
    if how == "https_proxy only":
        monkeypatch.setenv("https_proxy", "ftp://127.0.0.1:9")
    elif how == "no_proxy":
        monkeypatch.setenv("http_proxy", "ftp://127.0.0.1:9")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
    elif how == "--proxy ''":
        monkeypatch.setenv("http_proxy", "ftp://127.0.0.1:9")
        network["proxy"] = ""
    elif how == "HTTP_PROXY":  # (not read for http://, as curl: see test_proxy_paths.py)
        monkeypatch.setenv("HTTP_PROXY", "ftp://127.0.0.1:9")
    else:  # (http_proxy comes first for http://)
        monkeypatch.setenv("all_proxy", "ftp://127.0.0.1:9")
    with Proxy() as proxy:
        if how.startswith("all_proxy"):
            monkeypatch.setenv("http_proxy", proxy.url)
        report = download(urls(httpd), tmp_path / "out", settings=settings(tmp_path, **network))
    assert report.ok == 5, report.failures
    assert len(proxy.log) == (5 if how.startswith("all_proxy") else 0)


def test_the_command_says_it_once_with_exit_2(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("http_proxy", "http://me:s3c@r3t@127.0.0.1:9")
    code = main([*urls(httpd), "-o", str(tmp_path / "out"), "--state-dir",
                 str(tmp_path / "state"), "--no-netrc"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("omniget: error: http_proxy="), err
    assert "%40" in err and "s3c" not in err and "r3t" not in err, err
    assert httpd.requests == []


def test_urls_that_come_as_the_run_goes_fail_as_a_usage_error(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(A generator is not read ahead: each file says it, exit 2 all the same.)"""
    monkeypatch.setenv("http_proxy", "ftp://127.0.0.1:9")
    report = download(iter(urls(httpd, 2)), tmp_path / "out", settings=settings(tmp_path))
    assert report.failed == 2 and report.exit_code == 2, report.failures
    assert httpd.requests == []


class Unread(list[str]):
    """A list that fails when read: what the check must not do."""

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the list was read")


@pytest.mark.parametrize("how", ["none", "--proxy", "variables"])
def test_a_usable_proxy_costs_no_look_at_the_list(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """(A list of 100,000 URLs took a second to check, with no proxy at all.)"""
    if how == "variables":
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, "http://proxy.test:3128")
    check_proxy("socks5h://proxy.test:1080" if how == "--proxy" else None,
                Unread(["http://a.test/f"]))
