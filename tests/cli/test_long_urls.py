"""A long URL is shortened in the lines a person reads (warnings, errors), kept whole in
the ``--json`` events a program reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main
from omniget.cli.output import short_urls

LONG = "/" + "d" * 60_000 + "/s.bin"  # (the server reads request lines up to 64 KiB)


def test_a_long_url_in_a_retry_warning_and_an_error_is_shortened(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each retry line repeated the whole URL (a 100 KB URL: 100 KB a line)."""
    httpd.add(LONG, b"x" * 10)
    url = httpd.url(LONG, status=503, times=5)
    assert main(["--retries", "1", "-o", str(tmp_path / "o"), url]) != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "503" in line]
    assert lines and any("retrying in" in line for line in lines), err[:2000]
    for line in lines:
        assert len(line) < 600, line[:2000]
        assert f"http://127.0.0.1:{httpd.port}/..." in line and "d/s.bin" in line, line
        assert "characters left out" in line, line


def test_json_events_keep_the_whole_url(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    httpd.add(LONG, b"x" * 10)
    url = httpd.url(LONG, status=503, times=1)
    assert main(["--json", "--retries", "1", "-o", str(tmp_path / "o"), url]) == 0
    out = capsys.readouterr().out
    events = [json.loads(line) for line in out.splitlines()]
    [retry] = [e for e in events if e["event"] == "retrying"]
    assert retry["url"] == url and url in retry["error"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("HTTP 503 from http://h/a.bin; retrying", "HTTP 503 from http://h/a.bin; retrying"),
        (f"HTTP 503 from https://h:8{'/x' * 300}/a.bin?q={'z' * 300}; retrying",
         "HTTP 503 from https://h:8/...(869 characters left out)...x/x/x/x/x/x/x/x/x/x/x/x/x/"
         "x/x/x/x/a.bin; retrying"),
        (f"not a valid URL: 'http://h/{'y' * 500}'",
         f"not a valid URL: 'http://h/...(460 characters left out)...{'y' * 40}'"),
    ],
)
def test_short_urls_keeps_the_scheme_the_host_and_the_end_of_the_path(
    text: str, shown: str
) -> None:
    assert short_urls(text) == shown
