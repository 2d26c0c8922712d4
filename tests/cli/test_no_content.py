"""A 204 (No Content) or 205 (Reset Content) to a download: the server says it has no
content to send, so there is no file. omniget fails that file, saying so in one line, and
saves nothing (curl saves an empty file with exit 0; wget takes a 204 as done, saving
nothing, and saves a 205's body; aria2 fails both as an unexpected status). A file that is
empty comes as a 200 with Content-Length: 0, and is saved."""

from __future__ import annotations

import os

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)


def no_content(httpd: HTTPServer, status: int) -> str:
    return httpd.handle(httpd.new_path("empty.bin"), lambda req: (status, [], b""))


@pytest.mark.parametrize("status", [204, 205])
def test_no_content_fails_the_file_and_saves_nothing(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    url = no_content(httpd, status)
    assert main([url]) == 3
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "error" in ln]
    assert len(line) == 1, err
    phrase = {204: "No Content", 205: "Reset Content"}[status]
    assert line[0] == (f"omniget: error: no file to save: the server has no content there "
                       f"(HTTP {status} {phrase} from {url})")
    assert os.listdir() == []


@pytest.mark.parametrize("status", [204, 205])
def test_no_content_is_asked_once(httpd: HTTPServer, status: int) -> None:
    url = no_content(httpd, status)
    assert main(["-q", url]) == 3
    assert len(httpd.requests) == 1  # (not retried: the answer is what the server means)


def test_no_content_to_a_stream_writes_nothing(
    httpd: HTTPServer, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    url = no_content(httpd, 204)
    assert main(["-O", "-", url]) == 3
    out, err = capfdbinary.readouterr()
    assert out == b"" and b"HTTP 204" in err


def test_an_empty_file_is_still_saved(httpd: HTTPServer) -> None:
    url = httpd.add(httpd.new_path("zero.bin"), b"")
    assert main(["-q", url]) == 0
    assert os.listdir() == ["zero.bin"] and os.path.getsize("zero.bin") == 0
