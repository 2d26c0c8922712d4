"""A 502, 503 or 504 that came through an http:// proxy says whose it is: the proxy's own
(its Proxy-Status has an ``error``, or it is Squid's error page), the server's passed on
(Proxy-Status ``received-status``), or either (nothing says). Before, each read as the
server's. A CONNECT the proxy answers so (an https:// URL) names the proxy already."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omniget import download
from omniget.errors import OmnigetError, TransientError
from omniget.settings import NetworkSettings, Settings

from ._server import Server, static


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A server that answers as a proxy: absolute-form requests come to it."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with Server() as server:
        yield server


def failure(url: str, tmp_path: Path, proxy: str) -> OmnigetError:
    settings = Settings(state_dir=tmp_path / "state", retries=0,
                        network=NetworkSettings(proxy=proxy))
    report = download([url], tmp_path / "out", settings=settings)
    (result,) = report.failures
    assert result.error is not None
    return result.error


@pytest.mark.parametrize(
    ("status", "headers", "evidence"),
    [
        (502, [("Proxy-Status", "edge; error=connection_refused")],
         "Proxy-Status: error=connection_refused"),
        (504, [("Proxy-Status", 'up; received-status=200, edge; error=connection_timeout; '
                "details=\"no answer, in time\"")], "Proxy-Status: error=connection_timeout"),
        (503, [("X-Squid-Error", "ERR_DNS_FAIL 0"), ("Via", "1.1 edge (squid/6.10)")],
         "X-Squid-Error: ERR_DNS_FAIL 0"),
    ],
)
def test_a_proxy_s_own_answer_is_said_to_be_the_proxy_s(
    proxy: Server, tmp_path: Path, status: int, headers: list[tuple[str, str]],
    evidence: str,
) -> None:
    proxy.route("/f", static(b"<html>proxy error</html>", status, headers))
    named = proxy.origin.replace("127.0.0.1", "pu:s3cret@127.0.0.1")
    err = failure("http://files.test/f", tmp_path, named)
    assert isinstance(err, TransientError) and err.status == status
    shown = named.replace("s3cret", "***")
    assert str(err).startswith(f"HTTP {status} from the proxy {shown} (--proxy), not the "
                               f"server, for http://files.test/f ({evidence})"), str(err)
    assert "s3cret" not in str(err)
    assert [r.target for r in proxy.requests] == ["http://files.test/f"]


@pytest.mark.parametrize("status", [502, 504])
def test_a_proxy_s_own_answer_without_a_body_is_the_proxy_s_too(
    proxy: Server, tmp_path: Path, status: int
) -> None:
    """(No body: the head is taken as the transfer ends, on another path.)"""
    proxy.route("/f", static(b"", status, [("Proxy-Status", "edge; error=dns_error")]))
    err = failure("http://files.test/f", tmp_path, proxy.origin)
    assert str(err).startswith(f"HTTP {status} from the proxy {proxy.origin} (--proxy), not "
                               "the server, for http://files.test/f (Proxy-Status: "
                               "error=dns_error)"), str(err)


@pytest.mark.parametrize(
    ("headers", "tail"),
    [([("Proxy-Status", "edge; received-status=502")], ""),  # (the server's, passed on)
     ([("Via", "1.1 edge")], " (through the proxy {p} (--proxy): its own answer or the "
      "server's)"),
     ([], " (through the proxy {p} (--proxy): its own answer or the server's)")],
)
def test_a_502_passed_on_or_of_either_says_so(
    proxy: Server, tmp_path: Path, headers: list[tuple[str, str]], tail: str
) -> None:
    proxy.route("/f", static(b"bad gateway", 502, headers))
    err = failure("http://files.test/f", tmp_path, proxy.origin)
    assert str(err).startswith("HTTP 502 from http://files.test/f" + tail.format(p=proxy.origin)
                               ), str(err)
    if not tail:
        assert "proxy" not in str(err)


def test_a_404_through_a_proxy_is_the_server_s(proxy: Server, tmp_path: Path) -> None:
    proxy.route("/f", static(b"no", 404, [("Via", "1.1 edge")]))
    err = failure("http://files.test/f", tmp_path, proxy.origin)
    assert "proxy" not in str(err), str(err)


def test_a_tunnel_the_proxy_could_not_open_names_the_proxy(
    proxy: Server, tmp_path: Path
) -> None:
    proxy.route("127.0.0.1:1", static(b"", 502))  # (the CONNECT's target)
    err = failure("https://127.0.0.1:1/f", tmp_path, proxy.origin)
    assert str(err).startswith("the proxy refused the tunnel to https://127.0.0.1:1/f "
                               "(HTTP 502)"), str(err)
    assert [r.method for r in proxy.requests] == ["CONNECT"]


def test_a_squid_error_s_words_are_taken_only_as_squid_writes_them(
    proxy: Server, tmp_path: Path
) -> None:
    """The header is the answer's: what is no Squid error name (a terminal's escape, say)
    never reaches the message."""
    proxy.route("/f", static(b"", 503, [("X-Squid-Error", "\x1b[2J\x1b]0;owned\x07 0")]))
    err = failure("http://files.test/f", tmp_path, proxy.origin)
    assert str(err).startswith(f"HTTP 503 from the proxy {proxy.origin} (--proxy), not the "
                               "server, for http://files.test/f (X-Squid-Error)"), str(err)
    assert "\x1b" not in str(err) and "owned" not in str(err)
