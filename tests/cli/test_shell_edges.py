"""A user's shell against the command: names and URLs in bytes that are no UTF-8, a
locale that is no UTF-8, the names ``-O`` is given. In a subprocess where it is about the
process (its locale, its argv as bytes), else in-process, against the local server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

DATA = b"0123456789" * 100
SRC = str(Path(__file__).resolve().parents[2] / "src")
#: A locale of ASCII alone, as Python has it where no C.UTF-8 locale can be set.
ASCII_LOCALE = {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}

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
        (os.fsdecode(b"caf\xe9.txt"), "caf_.txt"),
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


def test_an_output_file_name_in_decomposed_form_is_refused_saying_so(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``e`` and a combining accent (as macOS writes names) is saved composed: the two look
    the same, so the error says what differs."""
    url = httpd.add(httpd.new_path("f"), DATA)
    assert main(["-O", "cafe\u0301.txt", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert "its accents apart from their letters (NFD, " in err, err
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


def cli(
    *args: str | bytes, env: dict[str, str] | None = None, cwd: bytes = b".", close: str = ""
) -> subprocess.CompletedProcess[bytes]:
    """The command in a subprocess, its arguments as bytes where given so; ``close``:
    descriptors the shell closes (``>&-``)."""
    environ = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1", **(env or {})}
    cmd: list[str | bytes] = [sys.executable, "-m", "omniget", *args]
    if close:
        cmd = ["sh", "-c", f'exec "$@" {close}', "sh", *cmd]
    return subprocess.run(cmd, capture_output=True, env=environ, cwd=cwd, timeout=60)


def test_a_url_with_bytes_that_are_no_utf8_asks_for_them_percent_encoded(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "internal error: UnicodeEncodeError: 'utf-8' codec can't encode character
    '\\udce9'", exit 1. A browser sends such bytes percent-encoded, as does curl."""
    httpd.add("/u/caf\ufffd.txt", DATA)  # (the server reads %E9 as no UTF-8: U+FFFD)
    url = httpd.url("/u/") + f"caf{E9}.txt"
    assert main(["-q", "-O", "f", url]) == 0, capsys.readouterr().err
    assert [r.target for r in httpd.requests] == ["/u/caf%E9.txt"]
    assert Path("f").read_bytes() == DATA
    assert main(["list", url]) == 0
    assert capsys.readouterr().out.split("\t")[-1] == httpd.url("/u/") + "caf%E9.txt\n"


def test_a_url_in_utf8_read_in_a_locale_of_ascii_is_asked_for_as_utf8(
    httpd: HTTPServer,
) -> None:
    """Python reads an argument's bytes in such a locale as lone surrogates, each byte
    of the UTF-8 of an ``é`` one: they are that ``é`` again, as curl would send it."""
    httpd.add("/u/caf\u00e9.txt", DATA)
    url = httpd.url("/u/").encode() + "café.txt".encode()
    res = cli("-O", "-", url, env=ASCII_LOCALE)
    assert (res.returncode, res.stdout, res.stderr) == (0, DATA, b"")
    assert [r.target for r in httpd.requests] == ["/u/caf%C3%A9.txt"]


@pytest.mark.parametrize("where", ["cwd", "-o"])
def test_a_folder_named_in_bytes_that_are_no_utf8_downloads_and_resumes(
    httpd: HTTPServer, where: str
) -> None:
    """A folder from an old latin-1 disk, as the current one or ``-o``. Before: "internal
    error: UnicodeEncodeError: ... surrogates not allowed", exit 1, whatever the URL (the
    journal's key has the folder's name in it). Its name is said in its own bytes."""
    folder = b"caf\xe9"
    os.mkdir(folder)
    out: list[str | bytes] = ["-o", folder] if where == "-o" else []
    cwd = folder if where == "cwd" else b"."
    data = os.urandom(3 << 20)
    path = httpd.new_path("big.bin")
    httpd.add(path, data)
    cut = httpd.url(path, reset=2 << 20, k="cut", times=1)
    first = cli("--retries", "0", *out, cut, cwd=cwd)
    assert first.returncode == 3, first.stderr
    again = cli(*out, cut, cwd=cwd)
    assert again.returncode == 0, again.stderr
    saved = b"caf\xe9/big.bin" if where == "-o" else b"big.bin"
    assert f"saved {os.fsdecode(saved)}\n".encode("utf-8", "surrogateescape") in again.stderr
    assert Path(os.fsdecode(folder), "big.bin").read_bytes() == data
    assert httpd.requests[-1].headers.get("Range", "").startswith("bytes=")


def test_a_path_in_bytes_that_are_no_utf8_is_listed_in_its_bytes(httpd: HTTPServer) -> None:
    """Before, with stdout strict about UTF-8 (a locale such as en_US.UTF-8): "internal
    error: UnicodeEncodeError", exit 1; a name the locale's encoding has no character for
    is written escaped."""
    url = httpd.add(httpd.new_path("f"), DATA)
    res = cli("--dry-run", "-o", b"caf\xe9/new", url, env={"PYTHONIOENCODING": "utf-8:strict"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(b"caf\xe9/new/f\t")
    assert b"written to caf\xe9/new" in res.stderr
    name = "\u540d"  # (no latin-1 character)
    res = cli("--dry-run", "-o", name, url, env={"PYTHONIOENCODING": "latin-1:strict"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(b"\\u540d/f\t")


def test_a_name_a_locale_of_ascii_cannot_write_is_saved_made_safe(httpd: HTTPServer) -> None:
    """Before: "internal error: UnicodeEncodeError: 'ascii' codec can't encode
    characters", exit 1 (a locale of latin-1 the same, for a name in Chinese). Such a
    character is one the file system cannot take there: replaced with ``_``, as a control
    character is."""
    url = httpd.add("/u/caf\u00e9.txt", DATA)
    res = cli("-o", "out", url, env=ASCII_LOCALE)
    assert res.returncode == 0, res.stderr
    assert os.listdir("out") == ["caf_.txt"]
    assert b"saved out/caf_.txt\n" in res.stderr


STDOUT_NAMES = ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]


@pytest.mark.skipif(not os.path.exists("/proc/self/fd/1"), reason="needs /proc")
@pytest.mark.parametrize("name", STDOUT_NAMES)
def test_output_file_naming_stdout_is_stdout(httpd: HTTPServer, name: str) -> None:
    """curl's ``-o /dev/stdout`` is ``-O -``. Before: with ``--json``, the events and the
    file's bytes went out mixed on stdout, exit 0; with stdout closed (``>&-``), the bytes
    went to the /dev/null put in its place, exit 0; with stdout a file (``>out.bin``), that
    file was "skipped: it already exists", left empty, exit 0."""
    url = httpd.add(httpd.new_path("f"), DATA)
    res = cli("-O", name, url)
    assert (res.returncode, res.stdout) == (0, DATA), res.stderr
    res = cli("--json", "-O", name, url)
    assert (res.returncode, res.stdout) == (2, b"")
    assert res.stderr == (f"omniget: error: --json cannot be used with -O {name} (stdout "
                          "carries the file)\n").encode()
    res = cli("-O", name, url, close=">&-")
    closed = b"omniget: error: cannot write to stdout: it is closed\n"
    assert (res.returncode, res.stderr) == (7, closed)
    res = cli("-O", name, url, close=">out.bin")  # (before: "skipped out.bin", empty)
    assert res.returncode == 0 and Path("out.bin").read_bytes() == DATA, res.stderr
    assert [r.method for r in httpd.requests] == ["GET", "GET"]


@pytest.mark.parametrize("urls", [1, 2])
def test_curl_s_o_dash_is_refused_before_a_folder_is_made(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], urls: int
) -> None:
    """curl's ``-o -`` (stdout) here: before, a folder named ``-`` was made, the file
    saved in it, exit 0, and nothing on stdout (``omniget -o - URL | tar x`` read none)."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main(["-o", "-", *[url] * urls]) == 2
    err = one_line(capsys.readouterr().err)
    assert "-o -: -o names a folder (here one named '-'); to write to stdout, use -O -" in err
    assert httpd.requests == [] and os.listdir() == []


def test_a_folder_named_dash_is_still_taken_when_it_is_there_or_said_so(
    httpd: HTTPServer,
) -> None:
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main(["-q", "-o", "./-", url]) == 0
    assert os.listdir("-") == ["a.txt"]
    other = httpd.add(httpd.new_path("b.txt"), DATA)
    assert main(["-q", "-o", "-", other]) == 0  # (there now: a folder it is)
    assert sorted(os.listdir("-")) == ["a.txt", "b.txt"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(("args", "code"), [(["-v"], 0), ([], 6), (["--json"], 6)])
def test_a_stderr_on_a_full_disk_is_a_silent_one(
    httpd: HTTPServer, args: list[str], code: int
) -> None:
    """As a closed stderr, or one whose reader went away: the run ends with its own exit
    code. Before: "internal error: OSError: [Errno 28] No space left on device" (said
    nowhere), exit 1."""
    url = httpd.add(httpd.new_path("f"), DATA) if code == 0 else httpd.url("/nothere")
    res = cli(*args, "-o", "out", url, close="2>/dev/full")
    assert res.returncode == code, res.stdout
    if code == 0:
        assert Path("out/f").read_bytes() == DATA


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["help", "list"]])
def test_help_and_version_onto_a_full_disk_say_so(args: list[str]) -> None:
    """As any output on stdout: exit 7 (README's table). Before: exit 0, nothing said."""
    res = cli(*args, close=">/dev/full")
    assert (res.returncode, res.stderr) == (
        7, b"omniget: error: cannot write to stdout: disk full\n")


@pytest.mark.parametrize("agent", ["a\nX-Injected: 1", "a\rX-Injected: 1", f"caf{E9}"])
def test_a_user_agent_with_a_line_break_or_bytes_that_are_no_utf8_is_refused(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    agent: str,
) -> None:
    """As a -H value is. Before: sent as it was, its line break splitting the request's
    head (a header more); bytes that are no UTF-8 were an internal error."""
    url = httpd.add(httpd.new_path("f"), DATA)
    monkeypatch.setenv("OMNIGET_USER_AGENT", agent)
    assert main(["-O", "f", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert "OMNIGET_USER_AGENT" in err, err
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize("out", ["-", os.devnull])
def test_quiet_beats_verbose_on_a_stream_as_in_a_download(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    """``-q``: nothing but errors, ``-v`` or not. Before: ``-q -v -O -`` said "wrote 1000 B
    to stdout" (a download into a folder said nothing)."""
    url = httpd.add(httpd.new_path("f"), DATA)
    assert main(["-q", "-v", "-O", out, url]) == 0
    assert capsys.readouterr().err == ""


def test_a_mix_of_ok_skipped_and_failed_files_exits_with_the_first_failure_s_code(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: "When several files fail, the exit code is the first failure's" (in the
    order of the URLs, not of the failures: the 503 is the slower one), "and every
    failure is listed"; skipped files are no failure."""
    ok = httpd.add(httpd.new_path("ok.bin"), DATA)
    there = httpd.add(httpd.new_path("there.bin"), DATA)
    Path("there.bin").write_bytes(DATA)
    busy = httpd.url(httpd.new_path("busy.bin"), status=503, delay=0.5)
    gone = httpd.url("/gone.bin")
    assert main(["--retries", "0", busy, gone, ok, there]) == 3
    err = capsys.readouterr().err
    assert err.count("omniget: error: ") == 2 and "busy.bin" in err and "gone.bin" in err
    assert "1 file ok, 1 skipped, 2 failed" in err
    Path("ok.bin").unlink()
    assert main(["--retries", "0", gone, busy, ok, there]) == 6
    capsys.readouterr()
    assert main([ok, there]) == 0
    assert "0 files ok, 2 skipped, 0 failed" in capsys.readouterr().err


@pytest.mark.parametrize("var", ["COLUMNS", "LINES"])
def test_a_terminal_whose_size_variable_says_0_still_gets_its_bars(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    """``COLUMNS=0`` (or ``LINES=0``) says nothing of the terminal: its own size is taken.
    Before: rich took it for a screen 0 cells wide (or high), and drew nothing at all
    the whole run."""
    import pty

    from omniget.cli.bars import RichProgress
    from omniget.cli.output import Masker
    from omniget.cli.progress import make_progress

    monkeypatch.setenv(var, "0")
    monkeypatch.delenv("TERM", raising=False)
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as err:
            shown = make_progress(Masker(), stderr=err)
            assert isinstance(shown, RichProgress)
            assert shown.console.width > 0 and shown.console.height > 0
    finally:
        os.close(master)
        os.close(slave)


def test_a_file_stopped_before_it_had_a_place_is_said_under_the_output_folder(
    httpd: HTTPServer,
) -> None:
    """A second URL of the same name waits for the first one's; a SIGTERM then stops it
    before it had a path of its own. Its ``failed`` event said its name alone (``"path":
    "same.bin"``, as if in the current folder), the other events ``out/same.bin``."""
    first = httpd.add("/a/same.bin", DATA)
    second = httpd.add("/b/same.bin", DATA)
    environ = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniget", "--json", "-o", "out",
         first + "?hold=h&stall_after=10", second],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
    try:
        assert httpd.held("h")
        assert proc.stdout is not None
        assert b'"event": "started"' in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        httpd.release("h")
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    events = [json.loads(line) for line in out.decode().splitlines()]
    paths = {e["path"] for e in events if e["event"] != "summary"}
    assert paths == {"out/same.bin"}, events


ESC_URL_PATH = "/u/a\x1b[31mRED\x1b]0;title\x07.txt"


@pytest.mark.parametrize("given", ["argument", "-i"])
def test_control_characters_of_a_url_never_reach_the_terminal(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """A URL list from elsewhere (a page, a scraper) with an escape sequence in a URL:
    before, ``list``, ``--dry-run`` and the error of a download wrote it as it was, the
    terminal taking it for its own (colours, a window title). Such characters are asked
    for percent-encoded, as a browser asks for them, and said so."""
    url = httpd.url("/") + ESC_URL_PATH[1:]
    args = [url] if given == "argument" else ["-i", "urls.txt"]
    Path("urls.txt").write_text(url + "\n")
    encoded = httpd.url("/") + "u/a%1B[31mRED%1B]0;title%07.txt"
    assert main(["list", *args]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"\t{encoded}\n") and not any(c in out for c in "\x1b\x07"), out
    assert main(["--dry-run", "-o", "out", *args]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"\t{encoded}\n") and not any(c in out for c in "\x1b\x07"), out
    assert main(["-o", "out", *args]) == 6
    err = capsys.readouterr().err
    assert encoded in err and not any(c in err for c in "\x1b\x07"), err


def test_a_filtered_file_is_named_as_a_download_would_write_it(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``-v``'s ``skipped NAME (filtered)`` wrote the name decoded from ``%1B``
    (an escape) and ``%07`` as it was, to the terminal; its ``--json`` path too."""
    url = httpd.url("/") + "u/%1B[31mred%07tab.txt"
    assert main(["-v", "--exclude", "*.txt", "-o", "out", url]) == 0
    err = capsys.readouterr().err
    assert err.startswith("skipped out/_[31mred_tab.txt (filtered)\n"), err
    assert main(["--json", "--exclude", "*.txt", "-o", "out", url]) == 0
    event = json.loads(capsys.readouterr().out.splitlines()[0])
    assert event["path"] == "out/_[31mred_tab.txt", event
    assert httpd.requests == []


def test_list_shows_a_name_as_a_download_would_write_it(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the name decoded from ``%1B`` (an escape) was listed as it was."""
    url = httpd.url("/") + "u/%1B[31mred%09tab.txt"
    assert main(["list", url]) == 0
    assert capsys.readouterr().out == f"_[31mred_tab.txt\t\thttp\t{url}\n"


@pytest.mark.skipif(not os.path.exists("/proc/self/fd/2"), reason="needs /proc")
@pytest.mark.parametrize("name", ["/dev/stderr", "/dev/fd/2"])
def test_output_file_naming_stderr_is_refused(httpd: HTTPServer, name: str) -> None:
    """Its lines would go between the file's bytes. Before: with stderr a file
    (``2>err.txt``), "unsafe output path 'stderr': it resolves to .../err.txt, outside
    /dev", exit 8."""
    url = httpd.add(httpd.new_path("f"), DATA)
    res = cli("-O", name, url, close="2>err.txt")
    said = Path("err.txt").read_text()
    assert res.returncode == 2 and said.startswith(f"omniget: error: -O {name}: stderr"), said
    assert said.count("\n") == 1 and httpd.requests == []
