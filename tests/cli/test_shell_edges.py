"""A user's shell against the command: names and URLs in bytes that are no UTF-8, a
locale that is no UTF-8, the names ``-O`` is given. In a subprocess where it is about the
process (its locale, its argv as bytes), else in-process, against the local server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

DATA = b"0123456789" * 100

pytestmark = pytest.mark.isolated(work=True)


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("omniget: error: "), err
    return err


@pytest.mark.parametrize(
    ("name", "saved_as"),
    [
        ("name.", "name"),
        (" lead.txt", "lead.txt"),
        ("tab\there.txt", "tab_here.txt"),
        ("CON", "_CON"),
        ("x\\y.txt", "x/y.txt"),
        ("a\u202eb.txt", "ab.txt"),
    ],
)
def test_an_output_file_name_omniget_would_change_is_refused(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], name: str, saved_as: str
) -> None:
    """Before: saved as the name made safe (``x\\y.txt`` even in a new folder ``x``), said
    ``saved SAFE-NAME``, exit 0: a script found no file where it said to write it."""
    url = httpd.add(httpd.new_path("f"), DATA)
    assert main(["-O", name, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"would be saved as {saved_as!r}" in err, err
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize("name", [".hidden", "a<b>:c.txt", "é名.txt", "sp ace.txt"])
def test_an_output_file_name_that_is_safe_already_is_saved_as_given(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    url = httpd.add(httpd.new_path("f"), DATA)
    assert main(["-q", "-O", name, url]) == 0
    assert Path(name).read_bytes() == DATA and os.listdir() == [name]


# Bytes that are no UTF-8 in an argument (a name from an old latin-1 disk, a URL pasted
# from one): Python hands them over as lone surrogates ("\udce9" for the byte 0xe9).
E9 = os.fsdecode(b"\xe9")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["-H", f"X-Note: caf{E9}"], "argument -H/--header: header X-Note: its value is not UTF-8"),
        (["--user", f"us{E9}r:secret"], "argument --user: not UTF-8"),
    ],
)
def test_header_and_user_bytes_that_are_no_utf8_are_one_line(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    """Before: "internal error: UnicodeEncodeError: 'utf-8' codec can't encode character
    '\\udce9'", exit 1, at the request."""
    url = httpd.add(httpd.new_path("f"), DATA)
    assert main([*args, "-O", "f", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert said in err and "secret" not in err, err
    assert httpd.requests == [] and os.listdir() == []
