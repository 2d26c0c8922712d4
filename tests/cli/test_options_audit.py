"""Edges from a curl/wget/aria2 user's run through every option, in-process against the local
server: what an option does where it cannot apply, and what bad values say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

DATA = b"0123456789" * 100


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in [v for v in os.environ if v.startswith("OMNIGET_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")


def serve(httpd: HTTPServer, name: str = "small", data: bytes = DATA) -> str:
    return httpd.add(httpd.new_path(name), data)


@pytest.mark.parametrize("quiet", [False, True])
def test_split_with_stdout_says_it_is_not_used(
    httpd: HTTPServer, capsysbinary: pytest.CaptureFixture[bytes], quiet: bool
) -> None:
    # (was: silently one connection, while --help says "connections per file")
    path = httpd.new_path("small")
    url = httpd.add(path, DATA)
    assert main(["-O", "-", "--split", "4", *(["-q"] if quiet else []), url]) == 0
    out, err = capsysbinary.readouterr()
    assert out == DATA
    note = (b"omniget: warning: --split 4 is not used with -O -: a stream is written in order, "
            b"over one connection\n")
    assert err == (b"" if quiet else note)
    assert len(httpd.requests_to(path)) == 1


def test_split_of_one_with_stdout_says_nothing(
    httpd: HTTPServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["-O", "-", "--split", "1", serve(httpd)]) == 0
    assert capsysbinary.readouterr() == (DATA, b"")
