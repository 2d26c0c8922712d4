"""http:// to a port that speaks TLS, where the server answers the plain request in HTTP:
nginx says "400 The plain HTTP request was sent to HTTPS port". The error names the
https:// URL to use, as it does when a TLS server answers with an alert (see
tests/transports/test_http_network.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.nginx import NginxServer, nginx_binary, start_nginx
from tests.servers.tls import TLSFiles

from omniget import download
from omniget.engine.transports.base import Head, Headers, check_status
from omniget.errors import RemoteError
from omniget.settings import NetworkSettings, Settings


@pytest.fixture
def nginx_tls(tmp_path: Path, tls_files: TLSFiles) -> Iterator[NginxServer]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    (tmp_path / "www").mkdir()
    server = start_nginx(tmp_path / "www", tmp_path / "nginx", tls=tls_files)
    try:
        yield server
    finally:
        server.stop()


def test_nginx_https_port_asked_in_plain_http_names_the_https_url(
    nginx_tls: NginxServer, tls_ca_path: Path, tmp_path: Path
) -> None:
    https = nginx_tls.add("f.bin", b"the file")
    http = https.replace("https://", "http://", 1)
    report = download([http], tmp_path / "out", settings=Settings(state_dir=tmp_path / "s"))
    [failed] = report.failures
    assert failed.error is not None and failed.error.exit_code == 3
    assert str(failed.error) == f"HTTP 400 from {http} (if that port speaks TLS, use {https})"
    settings = Settings(state_dir=tmp_path / "s", network=NetworkSettings(ca_cert=tls_ca_path))
    assert download([https], tmp_path / "out", settings=settings).ok == 1
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"the file"


@pytest.mark.parametrize(
    ("url", "server", "hint"),
    [
        ("https://made.test/f", "nginx", False),  # (asked in TLS already)
        ("http://made.test/f", "Apache", False),  # (no server known to answer so)
        ("http://made.test/f", "", False),
        ("http://made.test/f", "nginx", True),
        ("http://made.test:8443/f", "openresty/1.25", True),
    ],
)
def test_a_400_gets_the_hint_only_from_a_plain_http_nginx(
    url: str, server: str, hint: bool
) -> None:
    headers = Headers([("Server", server)] if server else [])
    with pytest.raises(RemoteError) as info:
        check_status(Head(400, url, headers), url)
    assert ("if that port speaks TLS, use https://" in str(info.value)) is hint
