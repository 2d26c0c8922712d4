"""A URL's own text: a control character (a NUL above all) makes no URL, refused in one
line before any request with the character shown escaped; a URL sent in another form
than given (its scheme in capitals, a space percent-encoded) is no redirect. (The
command asks for a control character of its URLs percent-encoded, as wget and browsers
do: tests/cli/test_shell_edges.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


@pytest.mark.parametrize("bad", ["\0", "\x01", "\x1b[31m", "\x7f", "\x9b", "\n", "\t"])
def test_a_url_with_a_control_character_is_refused_before_any_request(
    httpd: HTTPServer, tmp_path: Path, bad: str
) -> None:
    """Before: a NUL was sent as %00 and the server's 404 came back with the raw NUL in
    its message; a tab or line break inside was dropped without a word."""
    url = httpd.add(httpd.new_path("a.bin"), b"x" * 10)
    given = f"HTTP{url[4:]}?q={bad}1"
    report = omniget.download(given, tmp_path / "out", settings=_settings(tmp_path))
    [result] = report.results
    assert report.exit_code == 2 and isinstance(result.error, omniget.UsageError)
    said = str(result.error)
    assert said.isprintable() and "\n" not in said, said
    assert repr(bad)[1:-1] in said and "not a valid URL" in said
    assert "redirected" not in said
    assert httpd.requests == []


def test_a_url_sent_in_a_cleaner_form_is_no_redirect(httpd: HTTPServer, tmp_path: Path) -> None:
    """Before: 'HTTP 404 from http://.../a%20b, redirected from HTTP://.../a b': the
    form libcurl was given (a lower-case scheme, a space encoded) was taken for the URL
    of another server."""
    given = f"HTTP{httpd.base_url[4:]}/no such file"
    report = omniget.download(given, tmp_path / "out", settings=_settings(tmp_path))
    [result] = report.results
    assert isinstance(result.error, omniget.NotFound)
    assert "redirected" not in str(result.error), result.error
