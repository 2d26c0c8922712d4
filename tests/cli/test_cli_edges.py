"""Edges from a newcomer's audit of the CLI, run in-process against the local server:
options before ``list``, ``-O`` onto something that exists, spaces in ``-i`` files,
header-less cookies files, abbreviations, ``checksum`` in a config file, retries on
``-O -`` and the ``--dry-run`` summary. Then a user's audit, in a subprocess where it is
about the process (exit codes, stdout, signals): stdout that cannot be written, ``--json``
runs that fail, ``-i`` files with a BOM or no URL, ``omniget help``, interruptions."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import pty
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest
from tests.cli._timed import timed_lines_removed
from tests.servers.httpd import HTTPServer

import omniget
from omniget import Item, download
from omniget.cli import main
from omniget.cli.args import COMMANDS, build_parser, parse_args, parse_input
from omniget.cli.config import load_settings
from omniget.cli.dryrun import DryRun
from omniget.engine.transports.cookies import load_cookies
from omniget.errors import IntegrityError, UsageError
from omniget.settings import Settings

DATA = b"0123456789" * 100
SKIP_LINE = "it already exists (--on-exists overwrite replaces it)"


pytestmark = pytest.mark.isolated(work=True)


def serve(httpd: HTTPServer, name: str = "small", data: bytes = DATA) -> str:
    return httpd.add(httpd.new_path(name), data)


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("omniget: error: "), err
    return err


# --- 1. options before the subcommand ---


def test_options_before_list_still_list(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    assert main(["--json", "list", url]) == 0
    out, err = capsys.readouterr()
    item, summary = map(json.loads, out.splitlines())
    assert item["download_url"] == url and err == ""
    assert summary == {"event": "summary", "items": 1, "skipped": 0, "failed": 0,
                       "exit_code": 0}
    assert main(["-q", "list", url]) == 0
    assert capsys.readouterr().out == f"small\t\thttp\t{url}\n"
    assert os.listdir() == []  # nothing downloaded
    assert all(r.method != "GET" for r in httpd.requests)


@pytest.mark.parametrize(
    ("before", "flag"),
    [(["-o", "d"], "-o"), (["--dry-run"], "--dry-run"), (["-q", "-j", "2"], "-j"),
     (["-O", "f.bin"], "-O"), (["--on-exists=overwrite"], "--on-exists"),
     (["--state-dir", "st"], "--state-dir")],  # (list keeps no journal)
)
def test_get_options_before_list_are_a_usage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], before: list[str], flag: str
) -> None:
    url = serve(httpd)
    assert main([*before, "list", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{flag} is not an option of 'omniget list'" in err
    assert httpd.requests == [] and os.listdir() == []


def test_list_help_offers_only_what_list_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--state-dir" not in text  # (list keeps no journal)
    assert "print nothing but errors" not in text and "a line per file" not in text
    assert "-q, --quiet no warnings on stderr (the items and errors are still printed)" in text
    assert main(["get", "--help"]) == 0  # (get's help is as it was)
    text = " ".join(capsys.readouterr().out.split())
    assert "--state-dir DIR" in text and "-q, --quiet print nothing but errors" in text


def test_the_command_is_the_first_argument_that_is_no_option_or_value() -> None:
    url = "https://example.com/a"
    assert parse_args(["-q", "list", url]).command == "list"
    assert parse_args(["--json", "-v", "list", url]).urls == [url]
    assert parse_args(["-q", "get", url]).urls == [url]
    for argv in (["-o", "list", url], ["-qo", "list", url], ["--output", "list", url]):
        ns = parse_args(argv)  # "list" is -o's value here: a folder named list
        assert (ns.command, ns.output, ns.urls) == ("get", "list", [url])
    assert parse_args(["-olist", url]).output == "list"
    with pytest.raises(UsageError, match="'list' is a command, not a URL"):
        parse_args([url, "list"])  # only the first one names the command: see below
    assert parse_args([url, "--", "list"]).urls == [url, "list"]


# --- 2. -O onto something that exists ---


def test_output_file_naming_a_directory_is_a_usage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    Path("adir").mkdir()
    assert main(["-O", "adir", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert "adir: is a directory" in err and "-o adir" in err
    assert httpd.requests == [] and os.listdir("adir") == []


@pytest.mark.parametrize("name", ["newdir/", "x/..", "."])
def test_output_file_that_can_only_be_a_folder_is_a_usage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # (was: "newdir/" saved a file called newdir, "x/.." one called x/_)
    url = serve(httpd)
    assert main(["-O", name, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"-O {name}: is a directory" in err
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize(("name", "size"), [("b" * 241, 241), ("é" * 200, 400),
                                           ("d/" + "b" * 300, 300)])
def test_output_file_whose_name_is_past_the_limit_is_refused(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], name: str, size: int
) -> None:
    """Before: saved under the name cut to 240 bytes, exit 0 (a script looking for the
    file it named found none). Its part file needs room for its suffix beside it."""
    url = serve(httpd)
    assert main(["-O", name, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"its name is {size} bytes; omniget takes 240 at most" in err
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize("name", ["d/" + "b" * 300 + "/f"])
def test_output_file_with_a_name_past_the_limit_is_no_internal_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Before: "internal error: OSError: [Errno 36] File name too long", exit 1 (the look
    for a folder of that name)."""
    url = serve(httpd)
    code = main(["-O", name, url])
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err
    if code == 0:  # (a name too long is cut, as the server's names are)
        [saved] = os.listdir()
        assert Path(saved).read_bytes() == DATA
    else:
        assert code in (2, 7)
        one_line(err)


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="needs /dev/null")
def test_output_file_that_is_a_device_is_written(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "skipped /dev/null: it already exists", exit 0, nothing fetched."""
    url = serve(httpd)
    assert main(["-v", "-O", os.devnull, url]) == 0
    err = capsys.readouterr().err
    assert "skipped" not in err and f"wrote 1000 B to {os.devnull}" in err
    assert [r.method for r in httpd.requests] == ["GET"]
    assert os.listdir() == []  # (no part file, no journal beside the run)
    assert main(["--dry-run", "-O", os.devnull, url]) == 0
    assert capsys.readouterr().out == f"{os.devnull}\t?\t{url}\n"
    assert main(["--json", "-O", os.devnull, url]) == 0
    started, finished, summary = json_lines(capsys.readouterr().out)
    assert (started["event"], started["path"], started["size"]) == ("started", os.devnull, 1000)
    assert (finished["event"], finished["path"], finished["fetched"]) == (
        "finished", os.devnull, 1000)
    assert summary == {**summary, "ok": 1, "failed": 0, "fetched": 1000, "exit_code": 0}


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="needs /dev/null")
def test_quiet_json_run_onto_a_device_still_prints_its_events(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """-q leaves --json's stdout as it is, as for a download into a folder (before:
    `-q --json -O /dev/null` printed nothing at all, not even its summary)."""
    url = serve(httpd)
    assert main(["-q", "--json", "-O", os.devnull, url]) == 0
    out, err = capsys.readouterr()
    events = [e for e in json_lines(out) if e["event"] != "progress"]
    assert [e["event"] for e in events] == ["started", "finished", "summary"]
    assert events[-1] == {**events[-1], "ok": 1, "fetched": 1000, "exit_code": 0}
    assert err == ""


def test_output_file_that_is_a_fifo_gets_the_bytes_in_order(httpd: HTTPServer) -> None:
    url = serve(httpd, data=bytes(range(256)) * 400)
    os.mkfifo("pipe")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(Path("pipe").read_bytes()))
    reader.start()
    try:
        assert main(["-q", "-O", "pipe", url]) == 0
    finally:
        reader.join(10)
        if reader.is_alive():  # (nothing opened it to write: let the reader go)
            os.close(os.open("pipe", os.O_WRONLY | os.O_NONBLOCK))
    assert got == [bytes(range(256)) * 400]
    assert os.listdir() == ["pipe"] and stat.S_ISFIFO(os.stat("pipe").st_mode)


@pytest.mark.skipif(not os.path.exists("/proc/self/wchan"), reason="needs /proc/PID/wchan")
def test_sigterm_while_a_fifo_waits_for_its_reader_is_an_interrupt(httpd: HTTPServer) -> None:
    """``-O FIFO`` waits in open() until a reader comes; SIGTERM there killed the process
    (143, nothing said). Now it is an interrupt as during the transfer: 130, one line."""
    os.mkfifo("pipe")
    proc = spawn("-O", "pipe", serve(httpd))
    wchan = Path(f"/proc/{proc.pid}/wchan")
    for _ in range(3000):  # until it waits for the FIFO's reader
        if wchan.read_text() == "wait_for_partner":
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, "omniget: error: interrupted\n")
    assert os.listdir() == ["pipe"] and httpd.requests == []


def test_output_file_that_is_a_socket_is_a_storage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        assert main(["-O", "sock", serve(httpd)]) == 7
    assert one_line(capsys.readouterr().err).startswith("omniget: error: cannot write to sock: ")


def test_empty_output_file_is_a_usage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-O", "", serve(httpd)]) == 2
    assert "-O needs a file name" in one_line(capsys.readouterr().err)
    assert httpd.requests == []


def test_output_folder_naming_a_file_says_so(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    Path("afile").write_bytes(b"mine")
    assert main(["-o", "afile", url]) == 7  # a storage error
    err = one_line(capsys.readouterr().err).strip()
    assert err.startswith("omniget: error: cannot create output folder ")
    assert err.endswith("afile: a file is in the way")
    assert httpd.requests == [] and Path("afile").read_bytes() == b"mine"


@pytest.mark.parametrize(("given", "shown"), [
    ("./x/../afile/", "afile: a file is in the way"),
    ("./afile/../afile/sub", "afile/sub: afile is a file, not a folder"),
    ("{cwd}/./x/../afile", "afile: a file is in the way"),
])
@pytest.mark.parametrize("dry", [[], ["--dry-run"]], ids=["get", "dry-run"])
def test_an_output_folder_that_cannot_be_made_is_shown_as_other_paths_are(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], given: str, shown: str,
    dry: list[str],
) -> None:
    """The folder in the error is normalised and, under the current directory, relative
    to it, as the files' paths are. Before: absolute and as typed,
    ``cannot create output folder /.../x/../afile``."""
    url = serve(httpd)
    Path("afile").write_bytes(b"mine")
    assert main([*dry, "-o", given.format(cwd=os.getcwd()), url]) == 7
    err = one_line(capsys.readouterr().err).strip()
    assert err == f"omniget: error: cannot create output folder {shown}"
    assert httpd.requests == [] and Path("afile").read_bytes() == b"mine"


LONG = "n" * 300
DEEP = "/".join(["d" * 200] * 25)


@pytest.mark.parametrize(("given", "code", "said"), [
    ("/proc/x", 7, "cannot create output folder /proc/x: /proc takes no new folders (a special"
     " filesystem): choose another output folder"),
    ("/dev/null/x", 7, "cannot create output folder /dev/null/x: /dev/null is a device, not a"
     " folder"),
    ("/dev/null", 7, "cannot create output folder /dev/null: a device is in the way"),
    ("dangling", 7, "cannot create output folder nowhere: a symbolic link to it is in the way,"
     " and it is not there: make it, or remove the link"),
    ("loop", 7, "cannot create output folder loop: a loop of symbolic links is in the way:"
     " remove it"),
    ("afile/x", 7, "cannot create output folder afile/x: afile is a file, not a folder"),
    ("afile/x/y", 7, "cannot create output folder afile/x/y: afile is a file, not a folder"),
    ("", 2, "-o '': names no folder (the current folder: -o . or no -o)"),
    (f"{LONG}/x", 7, f"cannot create output folder {LONG}/x: the name {LONG[:16]}... is 300"
     " bytes, more than the 255 a name may have there"),
    (f"{DEEP}/x", 7, "cannot create output folder {DEEP}/x: the path is {size} bytes, more"
     " than the 4096 the system takes"),
], ids=["proc", "dev-null", "a-device", "dangling-link", "link-loop", "through-a-file", "deeper",
        "empty", "long-name", "long-path"])
def test_an_output_folder_that_cannot_be_made_says_why_in_one_line(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], given: str, code: int, said: str
) -> None:
    """Before: the kernel's words alone ("/proc/x: No such file or directory", "Not a
    directory", "File name too long": which part?), and "--output: expected a value, got
    an empty string" for -o ''."""
    if given.startswith("/proc/") and not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc here")
    if given.startswith("/dev/") and not Path("/dev/null").is_char_device():
        pytest.skip("no /dev/null device here")
    url = serve(httpd)
    Path("afile").write_text("mine")
    os.symlink("nowhere", "dangling")
    os.symlink("loop", "loop")
    assert main(["-o", given, url]) == code
    size = len(os.fsencode(os.path.join(os.getcwd(), DEEP, "x")))
    assert one_line(capsys.readouterr().err) == (
        "omniget: error: " + said.format(DEEP=DEEP, size=f"{size:,}") + "\n")
    assert httpd.requests == [] and Path("afile").read_text() == "mine"


def test_an_output_folder_in_a_read_only_folder_says_so(httpd: HTTPServer) -> None:
    """Before: "cannot create output folder ro/x: Permission denied"."""
    from tests.integration._cli import drop_mode_overrides

    url = serve(httpd)
    os.mkdir("ro", 0o555)
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    res = subprocess.run(command("-o", "ro/x", url), capture_output=True, text=True, env=env,
                         timeout=60, preexec_fn=drop_mode_overrides if os.geteuid() == 0 else None)
    if os.geteuid() == 0 and res.returncode == 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
    assert (res.returncode, res.stdout) == (7, "")
    assert res.stderr == ("omniget: error: cannot create output folder ro/x: no permission to"
                          " make folders in ro: choose another output folder\n")
    assert httpd.requests == [] and os.listdir("ro") == []


def test_existing_output_file_is_skipped_out_loud(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    Path("exist.bin").write_text("old\n")
    assert main(["-O", "exist.bin", url]) == 0
    assert f"skipped exist.bin: {SKIP_LINE}\n" in capsys.readouterr().err
    assert Path("exist.bin").read_text() == "old\n"
    assert main(["-O", "exist.bin", "--on-exists", "overwrite", url]) == 0
    assert Path("exist.bin").read_bytes() == DATA


def test_skips_are_shown_without_verbose_but_not_with_quiet(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    assert main(["-o", "out", url]) == 0
    capsys.readouterr()
    assert main(["-o", "out", url]) == 0
    assert f"skipped {Path('out/small')}: {SKIP_LINE}\n" in capsys.readouterr().err
    assert main(["-q", "-o", "out", url]) == 0
    assert capsys.readouterr().err == ""


# --- 3. -i files ---


def test_space_separated_urls_in_an_input_file_are_a_usage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = serve(httpd, "a.bin"), serve(httpd, "b.bin")
    Path("sp.txt").write_text(f"# two files\n\n{a} {b}\n")
    assert main(["-i", "sp.txt", "-o", "out"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "sp.txt, line 3" in err and "TAB" in err and "separate lines" in err
    assert httpd.requests == [] and not Path("out").exists()
    with pytest.raises(UsageError, match="stdin, line 1"):
        parse_input(f"{a}\t{b} {a}\n", "stdin")


def test_a_comment_after_a_url_in_an_input_file_is_named(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "a space inside a URL (separate files go on separate lines ...)"."""
    url = serve(httpd)
    Path("c.txt").write_text(f"# ok\n{url}   # the big one\n")
    assert main(["-i", "c.txt", "-o", "out"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "omniget: error: input file c.txt, line 2: a comment after a URL (a comment is a line "
        "of its own, starting with #)\n")
    assert httpd.requests == [] and not Path("out").exists()
    with pytest.raises(UsageError, match="line 1: a space inside a URL"):
        parse_input(f"{url} {url}#frag\n", "stdin")  # (a # in a URL: no comment)


def test_tab_mirrors_comments_and_blank_lines_still_work(httpd: HTTPServer) -> None:
    a, b = serve(httpd, "a.bin"), serve(httpd, "b.bin", b"bee")
    mirror = httpd.add(httpd.new_path("a.bin"), DATA)
    Path("urls.txt").write_text(f"# mirrors\n\n  {a}\t{mirror}  \n{b}\n")
    assert main(["-q", "-i", "urls.txt", "-o", "out"]) == 0
    assert Path("out/a.bin").read_bytes() == DATA and Path("out/b.bin").read_bytes() == b"bee"


# --- 4. cookies files ---

COOKIES = (
    "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tabc\n"
    "#HttpOnly_127.0.0.1\tFALSE\t/\tFALSE\t0\thid\txyz\n"
    "# a comment\n"
    "\n"
    "127.0.0.1\tFALSE\t/\tFALSE\t1\told\tgone\n"  # expired in 1970
)


@pytest.mark.parametrize(
    "text",
    [COOKIES, "# Netscape HTTP Cookie File\n" + COOKIES,
     "\ufeff" + COOKIES.replace("\n", "\r\n")],
    ids=["no-header", "header", "bom-crlf"],
)
def test_cookies_file_with_or_without_header(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cookies.txt"
    path.write_bytes(text.encode())
    by_name = {c.name: c for c in load_cookies(str(path))}
    assert sorted(by_name) == ["hid", "sid"]
    assert by_name["hid"].value == "xyz" and by_name["hid"].has_nonstandard_attr("HTTPOnly")
    assert by_name["sid"].expires is None  # expiry 0: a session cookie, kept


def test_header_less_cookies_are_sent(httpd: HTTPServer) -> None:
    url = serve(httpd)
    Path("c.txt").write_text(COOKIES)
    assert main(["-q", "--cookies", "c.txt", "-o", "out", url]) == 0
    (request,) = httpd.requests
    cookie = request.header("cookie")
    assert cookie is not None
    assert sorted(cookie.split("; ")) == ["hid=xyz", "sid=abc"]


@pytest.mark.parametrize(
    "text",
    ["<!DOCTYPE html>\n<html></html>\n", '[{"name": "sid", "value": "abc"}]\n',
     "127.0.0.1 FALSE / FALSE 0 sid abc\n", "127.0.0.1\tFALSE\t/\tFALSE\tsoon\tsid\tabc\n"],
    ids=["html", "json", "spaces", "bad-expiry"],
)
def test_not_a_cookies_file_is_one_line(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    url = serve(httpd)
    Path("bad.txt").write_text("# Netscape HTTP Cookie File\n" + text)
    assert main(["--cookies", "bad.txt", "-o", "out", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert "cookies file bad.txt, line 2: not in Netscape cookies.txt format" in err
    assert "abc" not in err and httpd.requests == []


def test_missing_cookies_file_leaves_no_output_folder(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    assert main(["--cookies", "nope.txt", "-o", "new/sub", url]) == 2
    err = one_line(capsys.readouterr().err)
    want = "omniget: error: cannot read cookies file nope.txt: No such file or directory"
    assert err.strip() == want
    assert not Path("new").exists() and httpd.requests == []


def test_a_failed_run_leaves_no_empty_output_folder(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """As wget: a typo in the URL (a 404) does not leave the folders it named behind;
    a folder that was there stays, and one that got a file stays too."""
    missing = httpd.url("/missing.bin")
    assert main(["-o", "new/sub", missing]) == 6
    assert not Path("new").exists()
    Path("kept").mkdir()
    assert main(["-o", "kept", missing]) == 6
    assert Path("kept").is_dir()
    assert main(["-o", "new/sub", serve(httpd), missing]) == 6
    assert [p.name for p in Path("new/sub").iterdir()] == ["small"]
    capsys.readouterr()


# --- 5. small ones ---


@pytest.mark.parametrize(
    "argv",
    [["--out", "d", "u"], ["--conn", "3", "u"], ["list", "--js", "u"], ["--js", "list", "u"]],
)
def test_long_options_are_never_abbreviated(argv: list[str]) -> None:
    with pytest.raises(UsageError, match="is not an option of"):
        parse_args(argv)
    assert not build_parser().allow_abbrev
    assert not any(build_parser(name).allow_abbrev for name in COMMANDS)


def test_a_flag_takes_a_value_in_every_command_or_in_none() -> None:
    # (the command is found by looking each leading flag up in the first parser that has it)
    takes: dict[str, set[bool]] = {}
    for name in COMMANDS:
        for action in build_parser(name)._actions:
            for flag in action.option_strings:
                takes.setdefault(flag, set()).add(action.nargs != 0)
    assert all(len(v) == 1 for v in takes.values()), takes
    ns = parse_args(["-qo", "d", "get", "u"])
    assert (ns.command, ns.output, ns.urls) == ("get", "d", ["u"])
    assert parse_args(["-q", "list", "u"]).command == "list"


def test_checksum_in_a_config_file_says_why(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('checksum = "md5=00"\n')
    with pytest.raises(UsageError, match="belongs to one URL") as e:
        load_settings(path, {})
    assert "unknown key" not in str(e.value) and "--checksum" in str(e.value)


def test_checksum_in_the_environment_says_why(tmp_path: Path) -> None:
    # ignored silently it would look like verification that never happens
    with pytest.raises(UsageError, match="OMNIGET_CHECKSUM cannot be used") as e:
        load_settings(None, {"OMNIGET_CHECKSUM": "md5=00", "XDG_CONFIG_HOME": str(tmp_path)})
    assert "--checksum" in str(e.value)


def test_stdout_download_reports_retries(
    httpd: HTTPServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = httpd.new_path("s.bin")
    httpd.add(path, DATA)
    assert main(["-O", "-", "--retries", "1", httpd.url(path, status=503, times=1)]) == 0
    out, err = capsysbinary.readouterr()
    assert out == DATA
    assert err.startswith(b"omniget: warning: s.bin: HTTP 503 from ") and b"retrying in" in err
    assert len(httpd.requests_to(path)) == 2


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("verbose", [False, True])
def test_retry_and_warning_lines_begin_as_every_other_line(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, terminal: bool, verbose: bool,
) -> None:
    """Was: ``retry o/s.bin (attempt 1 in 0.4s): HTTP 503 ...`` beside ``omniget:
    warning: ...`` lines, and with -v the library's warnings read ``omniget: WARNING:
    omniget.engine.core: ...``. Now one shape on a terminal and off it, with -v or not."""
    from tests.cli._screen import Screen

    if terminal:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("COLUMNS", "400")  # (rich wraps longer lines)
    state = tmp_path / "state"
    state.write_text("not a folder")  # (a warning from the library's log)
    path = httpd.new_path("s.bin")
    httpd.add(path, DATA)
    url = httpd.url(path, status=503, times=1)
    flags = ["-v"] if verbose else []
    assert main([*flags, "--retries", "1", "--state-dir", str(state), "-o", "o", url]) == 0
    err = capsys.readouterr().err
    lines = Screen(400, 60).feed(err).lines() if terminal else err.splitlines()
    said = [line for line in lines if "warning" in line.lower() or "503" in line]
    assert said[0] == (f"omniget: warning: resume journal {state / 'journal.sqlite'}: open "
                       f"failed: {state} is a file, not a folder (see --state-dir); "
                       "downloading without resume state")
    assert said[1] == f"omniget: warning: o/s.bin: HTTP 503 from {url}; retrying in " + (
        said[1].rpartition(" in ")[2])
    assert re.fullmatch(r"\d+\.\ds \(retry 1\)", said[1].rpartition(" in ")[2]), said[1]
    assert len(said) == 2, said


@pytest.mark.parametrize("flag", ["", "-q", "-v"])
def test_json_runs_tell_the_library_s_warnings_as_events(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str,
) -> None:
    """An unusable resume journal is a `warning` event too, masked as its stderr line
    (before: stderr only, so a program reading --json never knew the run kept no resume
    state). A retry (without --json, a warning line too) stays its `retrying` event."""
    state = tmp_path / "pw-s3cr3t-x"
    state.write_text("not a folder")
    path = httpd.new_path("w.bin")
    httpd.add(path, DATA)
    url = httpd.url(path, status=503, times=1)
    flags = [flag] if flag else []
    assert main([*flags, "--json", "--user", "bob:pw-s3cr3t-x", "--retries", "1",
                 "--state-dir", str(state), "-o", "o", url]) == 0
    out, err = capsys.readouterr()
    assert "s3cr3t" not in out + err
    events = json_lines(out)
    masked = tmp_path / "***"
    said = (f"resume journal {masked / 'journal.sqlite'}: open failed: {masked} is a file, "
            "not a folder (see --state-dir); downloading without resume state")
    warnings = [e for e in events if e["event"] == "warning"]
    assert warnings == [{"event": "warning", "level": "warning", "message": said}]
    assert [e["event"] for e in events].count("retrying") == 1
    assert events[-1]["event"] == "summary" and events[-1]["ok"] == 1
    assert err == ("" if flag == "-q" else f"omniget: warning: {said}\n")


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="needs /dev/null")
@pytest.mark.parametrize("flag", ["", "-q"])
@pytest.mark.parametrize("where", [["-o", "o"], ["-O", os.devnull], ["--dry-run", "-o", "o"]],
                         ids=["folder", "device", "dry-run"])
def test_json_runs_tell_the_cli_s_own_warnings_as_events(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str, where: list[str]
) -> None:
    """The CLI's own warnings are `warning` events too, in every kind of --json run,
    their stderr lines as before (-q: --insecure's alone). Before: stderr only, and
    `-O DEVICE --json` turned no warning at all into an event."""
    url = serve(httpd)
    flags = [flag] if flag else []
    assert main([*flags, "--json", "--insecure", "--split", "4", *where, url]) == 0
    out, err = capsys.readouterr()
    events = json_lines(out)
    said = ["TLS certificates are not verified (--insecure)"]
    if where[0] == "-O":
        said.append(f"--split 4 is not used with -O {os.devnull}: a stream is written in "
                    "order, over one connection")
    warnings = [e for e in events if e.get("event") == "warning"]
    assert warnings == [{"event": "warning", "level": "warning", "message": m} for m in said]
    assert events[0] == warnings[0]  # (said before anything is fetched)
    assert events[-1]["event"] == "summary" and events[-1]["exit_code"] == 0
    shown = said[:1] if flag == "-q" else said
    assert err == "".join(f"omniget: warning: {m}\n" for m in shown)


def test_stdout_stops_when_an_encoded_answer_fails_its_check_after_bytes_went_out(
    httpd: HTTPServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """gzip forced on us, corrupt: what was decoded before the check failed is already
    on stdout. A retry could only skip those bytes, so it stops with exit 4 instead."""
    data = random.Random(3).randbytes(600_000)  # (incompressible: many reads, not one)
    path = httpd.new_path("g.bin")
    httpd.add(path, data)
    assert main(["-O", "-", httpd.url(path, gzip=1, corrupt=1, times=1)]) == 4
    out, err = capsysbinary.readouterr()
    assert out != data
    assert b"could not decode the body" in err and b"cannot be taken back" in err
    assert len(httpd.requests_to(path)) == 1


def test_dry_run_skips_existing_files_and_admits_unknown_sizes(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = serve(httpd, "a.bin"), serve(httpd, "b.bin")
    Path("a.bin").write_text("old")
    assert main(["--dry-run", a, b]) == 0
    out, err = capsys.readouterr()
    assert out == f"b.bin\t?\t{b}\n"
    assert err.splitlines() == [
        f"would skip a.bin: {SKIP_LINE}",
        "1 file (size unknown) would be written to .; 1 would be skipped (already there)",
    ]
    assert main(["--dry-run", "--json", "--on-exists", "overwrite", a, b]) == 0
    *lines, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["path"], d["action"]) for d in lines] == [("a.bin", "overwrite"), ("b.bin", "write")]
    assert (summary["event"], summary["files"], summary["exit_code"]) == ("summary", 2, 0)
    assert Path("a.bin").read_text() == "old" and not Path("b.bin").exists()


@pytest.mark.parametrize("args", [["-o", "afile"], ["-o", "afile/sub"], ["-O", "afile/x.bin"]])
def test_dry_run_fails_on_a_file_in_the_output_folder_s_place_as_the_download(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Before: the dry run said "unsafe output path 'a.bin': [Errno 20] Not a directory",
    exit 8 (refused content), where the download says the folder cannot be made, exit 7."""
    url = serve(httpd, "a.bin")
    Path("afile").write_text("keep")
    assert main([*args, url]) == 7
    said = one_line(capsys.readouterr().err)
    assert said.startswith("omniget: error: cannot create output folder ")
    assert main(["--dry-run", *args, url]) == 7
    assert one_line(capsys.readouterr().err) == said
    assert main(["--dry-run", "--json", *args, url]) == 7
    error, summary = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (error["event"], error["exit_code"], summary["exit_code"]) == ("error", 7, 7)
    assert Path("afile").read_text() == "keep" and httpd.requests == []

def test_dry_run_counts_the_files_include_and_exclude_leave_out(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: its --json summary said "skipped": 0 (the download's says 1) and the text
    summary left them out: the count was taken before the lazy items were looked at."""
    a, b = serve(httpd, "a.bin"), serve(httpd, "b.txt")
    assert main(["--dry-run", "--include", "*.txt", a, b]) == 0
    assert capsys.readouterr().err == (
        "1 file (size unknown) would be written to .; 1 left out (--include, --exclude)\n")
    assert main(["--dry-run", "--json", "--exclude", "*.txt", a, b]) == 0
    line, summary = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["path"] == "a.bin"
    assert summary == {"event": "summary", "files": 1, "size": 0, "unknown": 1, "skipped": 1,
                       "failed": 0, "exit_code": 0}
    assert main(["--json", "--exclude", "*.txt", a, b]) == 0  # (as the download counts it)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["skipped"] == 1

@pytest.mark.parametrize("verbose", [False, True])
def test_dry_run_lists_a_few_skipped_files_unless_verbose(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], verbose: bool
) -> None:
    # (as a download: a dry run of a list of 1,999 files there gave 1,999 lines)
    urls = [serve(httpd, f"s{i}.bin") for i in range(8)]
    for i in range(8):
        Path(f"s{i}.bin").write_text("old")
    assert main(["--dry-run", *(["-v"] if verbose else []), *urls]) == 0
    lines = capsys.readouterr().err.splitlines()
    skips = [line for line in lines if line.startswith("would skip")]
    if verbose:
        assert len(skips) == 8
    else:
        assert len(skips) == 5
        assert lines[5] == "more files would be skipped: the summary counts them (-v lists each)"
    assert lines[-1].endswith("8 would be skipped (already there)")


def test_same_name_in_one_run_is_said_so(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two URLs with one file name: the second is skipped, and the line says why (not
    "it already exists", which it did not before the run); --dry-run says it beforehand."""
    a, b = serve(httpd, "x/same.bin", b"one"), serve(httpd, "y/same.bin", b"two")
    why = "an earlier URL of this run has the same file name (--on-exists rename keeps both)"
    assert main(["--dry-run", a, b]) == 0
    out, err = capsys.readouterr()
    assert out == f"same.bin\t?\t{a}\n"
    assert err.splitlines() == [
        f"would skip same.bin: {why}",
        "1 file (size unknown) would be written to .; "
        "1 would be skipped (the name of an earlier URL)",
    ]
    assert main([a, b]) == 0
    err = capsys.readouterr().err
    assert f"skipped same.bin: {why}" in err.splitlines()
    assert Path("same.bin").read_bytes() == b"one"
    assert main([a, b]) == 0  # a rerun: now it is simply there
    assert capsys.readouterr().err.count(f"skipped same.bin: {SKIP_LINE}") == 2


def test_dry_run_shows_the_names_rename_would_choose(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run --on-exists rename prints the paths the run writes (before: the name that
    is taken, once per URL, none of them what the run wrote)."""
    a, b = serve(httpd, "x/same.bin", b"one"), serve(httpd, "y/same.bin", b"two")
    Path("same.bin").write_text("old")
    assert main(["--dry-run", "--on-exists", "rename", a, b]) == 0
    out = capsys.readouterr().out
    assert out == f"same_1.bin\t?\t{a}\nsame_2.bin\t?\t{b}\n"
    assert main(["--dry-run", "--json", "--on-exists", "rename", a, b]) == 0
    *lines, _ = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["path"], d["action"]) for d in lines] == [
        ("same_1.bin", "rename"), ("same_2.bin", "rename")
    ]
    assert main(["-q", "--on-exists", "rename", a, b]) == 0  # what the run does
    assert sorted(p.name for p in Path().glob("same*")) == [
        "same.bin", "same_1.bin", "same_2.bin"
    ]
    assert Path("same_1.bin").read_bytes() == b"one" and Path("same_2.bin").read_bytes() == b"two"


def test_dry_run_summary_grammar() -> None:
    assert DryRun(files=1, size=1000).summary("d") == "1 file, 1000 B would be written to d"
    assert (DryRun(files=2, unknown=2).summary("d")
            == "2 files (sizes unknown) would be written to d")
    assert (DryRun(files=3, size=2048, unknown=1).summary("d")
            == "3 files, 2.0 KiB + 1 of unknown size would be written to d")
    assert (DryRun(skipped=2).summary("d")
            == "nothing would be written to d; 2 would be skipped (already there)")
    assert (DryRun(skipped=1, same_name=2).summary("d")
            == "nothing would be written to d; 1 would be skipped (already there); "
            "2 would be skipped (the name of an earlier URL)")


@pytest.mark.parametrize(
    ("argv", "hint"),
    [(["--conections", "3", "u"], "did you mean --connections?"),
     (["--on-exist", "skip", "u"], "did you mean --on-exists?"),
     (["list", "--jsno", "u"], "did you mean --json?"),
     (["--zzz", "u"], None)],
)
def test_a_mistyped_long_option_gets_the_nearest_one(argv: list[str], hint: str | None) -> None:
    with pytest.raises(UsageError) as info:
        parse_args(argv)
    message = str(info.value)
    assert "is not an option of" in message
    if hint is None:
        assert "did you mean" not in message
    else:
        assert f"; {hint} (see 'omniget " in message


@pytest.mark.parametrize("word", ["lsit", "lst", "gte"])
def test_a_mistyped_command_downloads_nothing(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], word: str
) -> None:
    url = serve(httpd)
    assert main([word, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"'{word}' is not a command; did you mean" in err
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize(
    "argv",
    [["-output", "dl", "<u>"], ["-output=dl", "<u>"], ["<u>", "-json"], ["list", "-quiet", "<u>"]],
    ids=["output", "output=", "json", "list-quiet"],
)
def test_a_long_option_with_one_dash_downloads_nothing(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Before: -output DIR was -o utput: the URL saved into ./utput, DIR taken for a URL;
    -json was -j son (a bad number), -quiet "-q: ignored explicit argument 'uiet'"."""
    url = serve(httpd)
    assert main([url if a == "<u>" else a for a in argv]) == 2
    flag = next(a for a in argv if a.startswith("-")).partition("=")[0]
    assert f"{flag} is not an option; did you mean -{flag}? (long options take two dashes)" in (
        one_line(capsys.readouterr().err))
    assert httpd.requests == [] and os.listdir() == []
    assert main(["-q", "-odl", url]) == 0  # (-o's value joined to it: as before)
    assert os.listdir("dl") == [url.rsplit("/", 1)[-1]]

@pytest.mark.parametrize(
    ("argv", "says"),
    [(["<u>", "list"], "'list' is a command, not a URL: it goes first ('omniget list URL...')"),
     (["-o", "out", "<u>", "get"], "'get' is a command, not a URL"),
     (["list", "<u>", "help"], "'help' is a command, not a URL: it goes first ('omniget help "
                               "list')")],
    ids=["list", "get", "help"],
)
def test_a_command_after_the_urls_downloads_nothing(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """Before: the URL was downloaded (or listed), then "no source can handle 'list'"."""
    url = serve(httpd)
    assert main([url if a == "<u>" else a for a in argv]) == 2
    assert says in one_line(capsys.readouterr().err)
    assert httpd.requests == [] and os.listdir() == []
    assert main(["-q", "-o", "out", "--", url, "list"]) == 2  # (after --: a URL, as it says)
    assert "no source can handle 'list'" in capsys.readouterr().err


NEWCOMER = [
    (["-o", "<u>"], "no URL given: -o took '<u>' for its value (-o wants a folder before "
                    "the URL)"),
    (["-q", "-O", "<u>"], "no URL given: -O took '<u>' for its value (-O wants a file name "
                          "before the URL; to keep the URL's own file name, as curl's -O "
                          "does, leave -O out)"),
    (["list", "--source", "<u>"], "no URL given: --source took '<u>' for its value"),
    (["-i", "<u>"], ": No such file or directory (-i reads URLs from a file; to download "
                    "<u>, leave out -i)"),
    (["help", "lst"], "'lst' is not a command (commands: get, list); did you mean 'list'?"),
    (["--checksum", "md5:abc", "<u>"], "not a valid md5 digest: 'abc' (32 hex digits "
                                       "expected)"),
    (["--checksum", "sha265=ab", "<u>"], "unsupported hash algorithm 'sha265' (known: md5, "
                                         "sha1, sha224, sha256, sha384, sha512); did you "
                                         "mean sha256?"),
]


@pytest.mark.parametrize(("argv", "says"), NEWCOMER, ids=[" ".join(a) for a, _ in NEWCOMER])
def test_a_newcomer_s_slip_is_named(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """A URL taken as an option's value was "no URL given" (-i: "No such file"), and the
    other messages gave no hint of what was meant."""
    url = serve(httpd)
    assert main([url if a == "<u>" else a for a in argv]) == 2
    assert says.replace("<u>", url) in one_line(capsys.readouterr().err)
    assert httpd.requests == [] and os.listdir() == []


def test_a_bare_host_name_is_still_a_url() -> None:
    assert parse_args(["localhost", "-o", "d"]).command == "get"


# --- 9. filters while downloading (extraction runs inside the engine's loop) ---


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_empty_proxy_switches_the_proxy_variables_off(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    args = ["--retries", "0", "-O", "-", serve(httpd)]
    if how == "flag":
        args = ["--proxy", "", *args]
    else:
        monkeypatch.setenv("OMNIGET_PROXY", "")
    assert main(args) == 0
    assert capsys.readouterr().out.encode() == DATA


def test_user_without_a_password_is_refused_without_a_terminal(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))  # (no terminal: not read)
    assert main(["--user", "bob", "-O", "f", serve(httpd)]) == 2
    assert one_line(capsys.readouterr().err) == (
        "omniget: error: --user bob: no password, and no terminal to ask for it on "
        "(give --user bob:PASSWORD)\n")
    assert httpd.requests == [] and not Path("f").exists()


def test_ctrl_c_at_the_password_prompt_ends_its_line_first(httpd: HTTPServer) -> None:
    """Before: ``Enter host password for user 'bob': omniget: error: interrupted...``,
    the error on the prompt's line (getpass ends it only for an answer)."""
    url = serve(httpd)
    main_fd, term = pty.openpty()
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    with subprocess.Popen(  # (a session of its own: no /dev/tty but this terminal)
        command("--user", "bob", "-O", "f", url), stdin=term,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
    ) as proc:
        os.close(term)
        assert proc.stderr is not None
        prompt = b"Enter host password for user 'bob': "
        assert proc.stderr.read(len(prompt)) == prompt  # (it waits for the answer)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    os.close(main_fd)
    assert (proc.returncode, out) == (130, b"")
    assert err.startswith(b"\nomniget: error: interrupted") and err.count(b"\n") == 2, err
    assert httpd.requests == [] and not Path("f").exists()


def test_include_and_exclude_filter_a_real_download(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, any --include/--exclude download failed: the filter drove the synchronous
    extract from inside the running engine ("internal error: RuntimeError")."""
    urls = [serve(httpd, name, name.encode()) for name in ("a.bin", "b.bin", "c.txt")]
    assert main(["-o", "out", "--include", "*.bin", "--exclude", "b.*", *urls]) == 0
    assert os.listdir("out") == ["a.bin"] and Path("out/a.bin").read_bytes() == b"a.bin"
    assert "1 file ok, 2 skipped, 0 failed" in capsys.readouterr().err
    assert main(["-q", "-o", "out", "--exclude", "*.bin", *urls]) == 0
    assert sorted(os.listdir("out")) == ["a.bin", "c.txt"]


def test_a_filtered_file_s_event_has_its_path_under_the_output_folder(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: {"event": "skipped", "path": "a.bin", ...} (and -v "skipped a.bin") where
    the other files' events said "out/c.txt"."""
    urls = [serve(httpd, name, name.encode()) for name in ("a.bin", "c.txt")]
    assert main(["--json", "-o", "out", "--exclude", "*.bin", *urls]) == 0
    events = {d["event"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    assert events["skipped"]["path"] == str(Path("out/a.bin"))
    assert events["finished"]["path"] == str(Path("out/c.txt"))
    assert main(["-v", "-o", "out", "--exclude", "*.txt", *urls]) == 0
    assert f"skipped {Path('out/c.txt')} (filtered)" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["sub/x.bin", os.devnull], ids=["file", "device"])
def test_a_file_filtered_out_of_an_output_file_run_is_said_by_that_file(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """``-O sub/x.bin`` names the file: a failure says ``sub/x.bin``, and so does a file
    left out. Before: {"event": "skipped", "path": "sub/a.bin", ...}, a file the run
    never writes (``/dev/a.bin`` for ``-O /dev/null``), and -v "skipped a.bin"."""
    url = serve(httpd, "a.bin", b"a")
    assert main(["--json", "-O", given, "--exclude", "*.bin", url]) == 0
    skipped, _ = map(json.loads, capsys.readouterr().out.splitlines())
    assert skipped["path"] == str(Path(given)), skipped
    assert main(["-v", "-O", given, "--exclude", "*.bin", url]) == 0
    said = (f"skipped {Path(given)} (filtered)\n" if given != os.devnull else  # (one line)
            f"nothing written to {given}: its file a.bin is left out (--include, --exclude)\n")
    assert capsys.readouterr().err.startswith(said)
    assert httpd.requests == []


# --- 10. mirrors on servers of their own ---


def test_mirrors_with_their_own_validators_are_one_file(httpd: HTTPServer) -> None:
    """Two mirrors of one file answer with their own ETag and Last-Modified, as separate
    servers do. Before, a span from the second mirror looked like the file changing on
    the server: restarts, bytes fetched again, and half the time exit 3."""
    data = random.Random(10).randbytes(6_000_000)
    one = httpd.add(httpd.new_path("m.bin"), data, etag="one", last_modified=1_000_000)
    two = httpd.add(httpd.new_path("m.bin"), data, etag="two", last_modified=2_000_000)
    Path("list.txt").write_text(f"{one}?drip=20000000\t{two}?drip=20000000\n")  # 0.3 s
    assert main(["-q", "-o", "out", "--split", "4", "-i", "list.txt"]) == 0
    assert Path("out/m.bin").read_bytes() == data
    paths = {urlsplit(one).path, urlsplit(two).path}
    answers = [r for r in httpd.requests if r.path in paths]
    assert {r.path for r in answers} == paths  # both mirrors served it
    assert answers[0].range is None  # the only request of the whole file: no restart
    assert all(r.range is not None for r in answers[1:])


def test_a_file_that_keeps_changing_mid_split_fails_cleanly(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Every request gets another version: the download gives up with one line. Before,
    the errors of spans that ended beside the one raised were never retrieved, and asyncio
    printed their tracebacks."""
    url = serve(httpd, "c.bin", random.Random(11).randbytes(6_000_000))
    assert main(["-q", "-o", "out", "--split", "4", url + "?etag_change=1&drip=20000000"]) == 3
    gc.collect()  # (asyncio reports an unretrieved error when its task is collected)
    assert "never retrieved" not in caplog.text
    err = one_line(capsys.readouterr().err)
    assert "the file changed on the server (gave up after" in err


# --- 11. a file already there is skipped only if it can be the one asked for ---


def test_an_existing_file_is_checked_against_the_checksum(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd, "have.bin")
    right = "sha256=" + hashlib.sha256(DATA).hexdigest()
    os.mkdir("out")
    Path("out/have.bin").write_bytes(b"garbage")
    asked = len(httpd.requests)
    assert main(["-o", "out", "--checksum", right, url]) == 4
    err = capsys.readouterr().err
    assert "out/have.bin: it already exists and its sha256 does not match" in err
    assert Path("out/have.bin").read_bytes() == b"garbage"  # left as it was
    Path("out/have.bin").write_bytes(DATA)
    assert main(["-o", "out", "--checksum", right, url]) == 0
    assert "skipped out/have.bin" in capsys.readouterr().err
    assert len(httpd.requests) == asked  # neither run asked the server


def test_a_wrong_checksum_says_the_same_bytes_came_twice_and_keeps_them(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --checksum: two downloads (not three), one line that says why and
    where the bytes are; the rerun with the right checksum asks the server nothing."""
    data = random.Random(5).randbytes(300_000)
    url = serve(httpd, "f.bin", data)
    path = urlsplit(url).path
    got = hashlib.sha256(data).hexdigest()
    assert main(["-o", "out", "--checksum", "sha256=" + "a" * 64, url]) == 4
    err = capsys.readouterr().err.splitlines()
    assert (f"omniget: error: sha256 mismatch for out/f.bin: expected {'a' * 64}, got"
            f" {got} twice (the server sends the same bytes each time: is the checksum"
            " right?); kept as f.bin.omniget-part") in err
    assert len(httpd.requests_to(path)) == 2
    assert sorted(os.listdir("out")) == ["f.bin.omniget-part"]
    assert main(["-o", "out", "--checksum", "sha256=" + got, url]) == 0
    assert len(httpd.requests_to(path)) == 2
    assert Path("out/f.bin").read_bytes() == data and os.listdir("out") == ["f.bin"]


def test_an_existing_file_of_another_size_is_not_taken_as_complete(tmp_path: Path) -> None:
    """An item that gives its size (as file hosts and GOG do): a file of another size
    there is not the complete one. Before, it was skipped as done."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.bin").write_bytes(b"short")
    item = Item(download_url="http://127.0.0.1:9/f.bin", filename="f.bin", size_bytes=10)
    report = download([item], out, settings=Settings(state_dir=tmp_path / "st"))
    (result,) = report.results
    assert result.status == "failed" and isinstance(result.error, IntegrityError)
    assert "already exists with 5 bytes, not 10" in str(result.error)
    (out / "f.bin").write_bytes(b"0123456789")
    assert download([item], out, settings=Settings(state_dir=tmp_path / "st")).skipped == 1


# --- 12. bad input found before any request ---


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["http://[::1/x"], "not a valid URL: Invalid IPv6 URL"),
        (["http://host:99999/x"], "not a valid URL: Port out of range"),
        (["http://exa mple.com/x"], "not a valid URL: 'exa mple.com' is no host name"),
        (["http://:80/x"], "not a valid URL: no host name in 'http://:80/x'"),
        # (a user name alone is masked: it may be a token)
        (["http://user@/x"], "not a valid URL: no host name in 'http:///x'"),
        (["--ca-cert", "no-such.pem", "https://127.0.0.1:9/x"], "--ca-cert no-such.pem: no such"),
    ],
)
def test_bad_urls_and_files_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """Before: an unbalanced IPv6 bracket was an internal error (exit 1); a missing
    --ca-cert, or a URL with a port but no host, failed as a network error (exit 3) once a
    request was tried (list printed that URL's item, exit 0)."""
    assert main(["-q", *args]) == 2
    assert says in one_line(capsys.readouterr().err)
    assert main(["-q", "list", *args]) == 2


@pytest.mark.parametrize("url", ["http://[::1/x", "http://host:99999/x", "http://:80/x"])
@pytest.mark.parametrize("how", [[], ["--dry-run"], ["-O", "f.bin"]], ids=["get", "dry", "-O"])
def test_a_lone_malformed_url_is_one_line_as_a_url_of_no_source_is(
    capsys: pytest.CaptureFixture[str], url: str, how: list[str]
) -> None:
    """Before: the error, then a summary of the run that never began ("0 files ok, 0
    skipped, 1 failed", or "nothing would be written to ."), where a URL no source takes
    (htps://) is one line. With a usable URL beside it, it fails as one of the run's."""
    assert main([*how, url]) == 2
    line = one_line(capsys.readouterr().err)
    assert "not a valid URL" in line and url in line
    assert main(["--dry-run", url, "http://127.0.0.1:9/ok"]) == 2
    err = capsys.readouterr().err
    assert "not a valid URL" in err and url in err and "1 file (size unknown)" in err


# --- 13. a user's audit: the process (stdout, --json, -i, help, signals) ---

SRC = str(Path(omniget.__file__).resolve().parent.parent)
RESUME = "omniget: error: interrupted; run the same command again to resume"
NO_SOURCE = "gopher://127.0.0.1:9/y"  # (a scheme no source takes)


def command(*args: str, close: str = "") -> list[str]:
    """``python -m omniget ARGS``; ``close``: descriptors closed by the shell (``>&-``)."""
    cmd = [sys.executable, "-m", "omniget", *args]
    return ["sh", "-c", f'exec "$@" {close}', "sh", *cmd] if close else cmd


def cli(
    *args: str, stdout: int | IO[Any] = subprocess.PIPE, close: str = ""
) -> subprocess.CompletedProcess[str]:
    """The command in a subprocess (environment and folder: the test's, see _isolated in
    conftest.py)."""
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    return subprocess.run(command(*args, close=close), stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=60)


def spawn(*args: str) -> subprocess.Popen[bytes]:
    """The command, its stdout and stderr unbuffered pipes: a test reads a line or two,
    then ``communicate()``, which reads the pipes themselves. A buffered pipe's
    ``readline`` took whatever was there (on a loaded machine, lines written after the
    one it gave): those were in its buffer, and ``communicate()`` never saw them."""
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, bufsize=0)


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_a_spawned_command_s_lines_after_the_one_read_are_communicate_s() -> None:
    """What the tests that read a line, then ``communicate()``, rely on: every line
    written after the one read reaches ``communicate()``, however late the test reads
    (here: once the command has ended, all of its lines waiting in the pipe)."""
    whole = cli("--help").stdout
    proc = spawn("--help")
    assert proc.stdout is not None
    proc.wait(timeout=60)
    first = proc.stdout.readline()
    rest = proc.communicate(timeout=30)[0]
    assert (first + rest).decode() == whole and rest


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("args", "tail"),
    [(["-O", "-"], " (the file there is incomplete)"), (["list"], ""), (["--dry-run"], ""),
     (["--json", "-o", "out"], " (the --json events are incomplete)")],
    ids=["stdout-file", "list", "dry-run", "json"],
)
def test_a_full_stdout_is_a_storage_error(httpd: HTTPServer, args: list[str], tail: str) -> None:
    """Before: "internal error: OSError: [Errno 28]", exit 1 (with --json even though the
    file was downloaded)."""
    url = serve(httpd)
    with open("/dev/full", "w") as full:
        res = cli(*args, url, stdout=full)
    assert (res.returncode, res.stderr) == (
        7, f"omniget: error: cannot write to stdout: disk full{tail}\n"
    )
    if "--json" in args:  # the download itself went on
        assert Path("out/small").read_bytes() == DATA


@pytest.mark.parametrize("args", [["-O", "-"], ["list"], ["--json"], ["--dry-run"]],
                         ids=["stdout-file", "list", "json", "dry-run"])
def test_a_closed_stdout_is_a_storage_error_before_any_request(
    httpd: HTTPServer, args: list[str]
) -> None:
    """Before: "internal error: AttributeError: 'NoneType' object has no attribute
    'buffer'", then a traceback from run()'s last flush."""
    url = serve(httpd)
    res = cli(*args, url, close=">&-")
    closed = "omniget: error: cannot write to stdout: it is closed\n"
    assert (res.returncode, res.stderr) == (7, closed)
    assert all(r.method != "GET" for r in httpd.requests) and not Path("small").exists()


@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["--dry-run"]])
def test_a_reader_that_goes_away_ends_the_listing_quietly(
    tmp_path: Path, args: list[str]
) -> None:
    """``omniget list URL... | head -1`` dies of SIGPIPE as git and ls do (the shell shows
    141), saying nothing; it ended with exit 1."""
    urls = tmp_path / "urls.txt"  # (well over a pipe's buffer of lines, and no request)
    long = "a-long-path/" * 30  # (long lines: few URLs fill it, each costs a listing step)
    urls.write_text("".join(f"http://127.0.0.1:9/{long}f{n}.bin\n" for n in range(700)))
    proc = spawn(*args, "-i", str(urls))
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    assert (proc.wait(timeout=60), proc.stderr.read()) == (-signal.SIGPIPE, b"")
    assert main([*args, "-i", str(urls)]) == 0  # (in-process, stdout whole: 0)


def test_a_reader_of_json_events_that_goes_away_leaves_the_download_going(
    httpd: HTTPServer
) -> None:
    """``omniget --json URL... | head -1``: the files are downloaded, and one line says the
    events are incomplete, as with a full disk (was: a traceback, then exit 1)."""
    first, late = serve(httpd, "first"), serve(httpd, "late") + "?delay=1"
    proc = spawn("--json", "-o", "out", first, late)
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["event"] == "started"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 7
    assert proc.stderr.read().decode() == ("omniget: error: stdout closed before the whole "
                                           "output was written (the --json events are "
                                           "incomplete)\n")
    assert Path("out/first").read_bytes() == Path("out/late").read_bytes() == DATA


def test_a_download_needs_no_stdout_and_a_closed_stderr_is_a_silent_one(
    httpd: HTTPServer
) -> None:
    res = cli(serve(httpd), close=">&-")
    assert res.returncode == 0 and "1 file ok" in res.stderr
    Path("small").unlink()
    res = cli(serve(httpd), close="2>&-")
    assert (res.returncode, res.stdout) == (0, "")
    assert Path("small").read_bytes() == DATA
    assert cli(NO_SOURCE, close="2>&-").returncode == 2


def test_a_reader_of_stderr_that_goes_away_silences_it_and_the_run_ends_as_its_own(
    httpd: HTTPServer
) -> None:
    """``omniget -v URL... 2>&1 | head -1``: stderr is then silent, as a closed one, and the
    exit code the run's (it went on, then died of SIGPIPE at its summary line: 141 for
    files all downloaded); the same when its last line would be an error."""
    first, late = serve(httpd, "first"), serve(httpd, "late") + "?delay=1"
    for urls, code in (([first, late], 0), ([first, late + "&status=404"], 6)):
        proc = spawn("-v", "-o", "out", *urls)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stderr.readline().startswith(b"start ")
        proc.stderr.close()
        assert proc.wait(timeout=60) == code
        assert Path("out/first").read_bytes() == DATA
        assert Path("out/late").exists() == (code == 0)
        shutil.rmtree("out")


def test_json_one_unusable_url_is_a_failed_event_as_among_several(httpd: HTTPServer) -> None:
    """Before: one such URL printed nothing on stdout; among several, a failed event."""
    one = cli("--json", NO_SOURCE)
    several = cli("--json", NO_SOURCE, serve(httpd))
    assert one.returncode == several.returncode == 2
    assert one.stderr == several.stderr  # the same line on stderr either way
    assert one.stderr.startswith("omniget: error: no source can handle")
    failed, summary = json_lines(one.stdout)
    assert failed == json_lines(several.stdout)[0]
    assert (failed["event"], failed["url"], failed["error_type"], failed["exit_code"]) == (
        "failed", NO_SOURCE, "UnsupportedURL", 2)
    assert summary == {**summary, "event": "summary", "ok": 0, "failed": 1, "exit_code": 2}
    assert json_lines(several.stdout)[-1]["ok"] == 1


def test_json_a_failed_run_ends_with_an_error_and_a_summary(httpd: HTTPServer) -> None:
    url = serve(httpd)
    res = cli("--json", "-i", "missing.txt", url)  # (what the run reads: not the arguments)
    assert res.returncode == 2
    assert res.stderr == ("omniget: error: cannot read input file missing.txt: No such file or"
                          " directory\n")
    error, summary = json_lines(res.stdout)
    assert error == {"event": "error", "error": res.stderr[16:-1], "error_type": "UsageError",
                     "exit_code": 2}
    assert (summary["event"], summary["ok"], summary["exit_code"]) == ("summary", 0, 2)
    bad = cli("--json", "--no-such-flag", url)  # (the arguments themselves: plain, as any CLI)
    assert (bad.returncode, bad.stdout) == (2, "")
    assert httpd.requests == []


@pytest.mark.parametrize(("args", "env", "code"), [
    (["-i", "empty.txt"], {}, 2),
    (["--config", "bad.toml", "{url}"], {}, 2),
    (["{url}"], {"OMNIGET_LIMIT_RATE": "fast"}, 2),
    (["-o", "afile/sub", "{url}"], {}, 7),
], ids=["empty-list", "config", "environment", "folder"])
def test_json_a_run_that_fails_as_a_whole_still_says_so_in_events(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    args: list[str], env: dict[str, str], code: int,
) -> None:
    """What the run reads or meets, not its arguments: an error event and the summary,
    as README says (the other side of the test below)."""
    url = serve(httpd)
    Path("empty.txt").write_text("# nothing yet\n")
    Path("bad.toml").write_text("jobs = 0\n")
    Path("afile").write_text("mine")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["--json", *[a.format(url=url) for a in args]]) == code
    out, err = capsys.readouterr()
    error, summary = json_lines(out)
    assert error == {"event": "error", "error": one_line(err)[16:-1],
                     "error_type": error["error_type"], "exit_code": code}
    assert (summary["event"], summary["exit_code"]) == ("summary", code)
    assert httpd.requests == []


#: Errors in the command line itself, found once it is parsed (how the options go
#: together, what a value names): with --json, as argparse's own, nothing on stdout.
ARGUMENT_ERRORS = [
    (["-O", "f.bin", "{url}", "{url}?b"], "-O takes exactly one URL (use -o DIR for several)"),
    (["-O", "f.bin", "-o", "d", "{url}"], "-O and -o cannot be used together"),
    (["-O", "", "{url}"], "-O needs a file name (or - for stdout)"),
    (["-O", "adir", "{url}"], "-O adir: is a directory (use -o adir to save into it)"),
    (["-O", "-", "{url}"], "--json cannot be used with -O - (stdout carries the file)"),
    (["--checksum", "md5=" + "0" * 32, "{url}", "{url}?b"], "--checksum needs exactly one URL"),
    (["-o", "x.bin", "{url}.bin"], "-o x.bin: -o names a folder here"),
    (["-o", "{url}"], "no URL given: -o took '{url}' for its value"),
    (["-o", "~no-such-user-here/x", "{url}"], "--output: ~no-such-user-here: no such user"),
    (["--config", "~no-such-user-here/c", "{url}"], "--config ~no-such-user-here/c: "),
    (["--user", "bob", "{url}"], "--user bob: no password, and no terminal to ask for it on"),
    (["--source", "no-such-source", "{url}"], "unknown source 'no-such-source'"),
    (["afile"], "'afile' is a local file, not a URL (to read URLs from it: -i afile)"),
    (["list", "--source", "no-such-source", "{url}"], "unknown source 'no-such-source'"),
]


@pytest.mark.parametrize(("args", "said"), ARGUMENT_ERRORS,
                         ids=[" ".join(a[:2]) for a, _ in ARGUMENT_ERRORS])
def test_json_an_error_in_the_arguments_puts_nothing_on_stdout(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    """README: an error in the arguments comes before any event, nothing on stdout: a
    consumer tells a run that never started from one that failed (an error event and a
    summary). Before, these checks of the run wrote both, as an unknown option did not."""
    url = serve(httpd, "f")
    os.mkdir("adir")
    Path("afile").write_text(url)
    argv = [a.format(url=url) for a in args]
    assert main(["--json", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"omniget: error: {said.format(url=url)}"), err
    assert err.count("\n") == 1
    assert httpd.requests == []


@pytest.mark.parametrize("after", ["3600", "date:3600"])
def test_a_retry_after_longer_than_the_wait_budget_says_why_it_gave_up(
    httpd: HTTPServer, after: str
) -> None:
    """A 503 asking for an hour, more than the 5 minutes a file may wait: it fails at once.
    Before, with only the server's words ("HTTP 503 from URL (Retry-After: 1 h)"): nothing
    said why it was not tried again, nor what to do."""
    path = httpd.new_path("later.bin")
    httpd.add(path, DATA)
    url = httpd.url(path, status=503, retry_after=after)
    res = cli("-o", "out", url)
    assert res.returncode == 3
    why = ("gave up at once: a file waits at most 5 min in all (retry-max-time); run again"
           " later, or raise retry-max-time and retry-max-wait above 1 h")
    line = [x for x in res.stderr.splitlines() if x.startswith("omniget: error: ")]
    assert line == [f"omniget: error: out/later.bin: HTTP 503 from {url} (Retry-After: 1 h):"
                    f" {why}"], res.stderr
    res = cli("--json", "-o", "out", url)
    failed = json_lines(res.stdout)[-2]
    assert (failed["event"], failed["error"]) == ("failed", line[0][16:].split(": ", 1)[1])
    assert len(httpd.requests_to(path)) == 2  # (once a run: no retry)
    # the settings it names are there to raise (config file or environment)
    env = {"OMNIGET_RETRY_MAX_TIME": "7200", "OMNIGET_RETRY_MAX_WAIT": "3600"}
    settings, _ = load_settings(environ=env)
    assert (settings.retry_max_time, settings.retry_max_wait) == (7200, 3600)


def test_list_json_reports_a_bad_url_as_an_event(httpd: HTTPServer) -> None:
    url = serve(httpd)
    res = cli("list", "--json", url, NO_SOURCE)
    assert res.returncode == 2
    assert res.stderr.startswith("omniget: error: no source can handle")
    item, failed, summary = json_lines(res.stdout)
    assert item["download_url"] == url and "event" not in item
    assert (failed["event"], failed["url"]) == ("failed", NO_SOURCE)
    assert summary == {"event": "summary", "items": 1, "skipped": 0, "failed": 1,
                       "exit_code": 2}


@pytest.mark.parametrize(
    "args",
    [["--json"], ["--json", "-o", "out"], ["list", "--json"], ["--dry-run", "--json"]],
    ids=["one", "several", "list", "dry-run"],
)
def test_a_url_no_source_takes_names_no_file(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Before: its failed event had "path": "index.html", a name made up from the URL."""
    urls = [NO_SOURCE, serve(httpd)] if "-o" in args else [NO_SOURCE]
    assert main([*args, *urls]) == 2
    out, err = capsys.readouterr()
    failed = json_lines(out)[0]
    assert failed == {"event": "failed", "path": None, "url": NO_SOURCE,
                      "error": err[16:-1],
                      "error_type": "UnsupportedURL", "exit_code": 2}
    assert err.startswith("omniget: error: no source can handle")
    assert err.count(NO_SOURCE) == 1  # (was: "URL: no source can handle 'URL' ...")


def test_verbose_names_a_url_no_source_takes_by_the_url(httpd: HTTPServer) -> None:
    """Before: -v said "failed index.html: no source can handle ..."."""
    res = cli("-v", "-o", "out", NO_SOURCE, serve(httpd))
    assert res.returncode == 2
    assert f"failed {NO_SOURCE}: no source can handle" in res.stderr
    assert "index.html" not in res.stderr


def test_dry_run_json_has_failures_and_a_summary(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(httpd)
    assert main(["--dry-run", "--json", NO_SOURCE, url]) == 2
    out, err = capsys.readouterr()
    failed, line, summary = json_lines(out)
    assert (failed["event"], failed["url"], failed["exit_code"]) == ("failed", NO_SOURCE, 2)
    assert (line["path"], line["action"]) == ("small", "write")
    assert summary == {"event": "summary", "files": 1, "size": 0, "unknown": 1, "skipped": 0,
                       "failed": 1, "exit_code": 2}
    assert err.startswith("omniget: error: no source can handle")
    assert not Path("small").exists()


def test_a_url_pasted_with_blanks_around_it_is_the_url(httpd: HTTPServer) -> None:
    """Before: 'URL ' went out as it was (GET /small%20: a 404), ' URL' had no source.
    A space inside the URL goes out as %20."""
    url = httpd.add(httpd.new_path("a b.bin"), DATA)
    pasted = url.replace("%20", " ")
    assert main(["-q", "-O", "one", f"{pasted} \n"]) == 0
    assert main(["-q", "--", f"\t {pasted}"]) == 0
    assert Path("one").read_bytes() == Path("a b.bin").read_bytes() == DATA
    assert [r.target for r in httpd.requests] == [urlsplit(url).path] * 2


def test_an_input_file_with_a_bom_is_read(httpd: HTTPServer) -> None:
    """Windows editors start UTF-8 files with a BOM: before, the first URL was
    '\\ufeffhttp://...', which no source can handle."""
    a, b = serve(httpd, "a.bin"), serve(httpd, "b.bin", b"bee")
    Path("urls.txt").write_bytes(f"\ufeff{a}\r\n{b}\r\n".encode())
    assert main(["-q", "-i", "urls.txt", "-o", "out"]) == 0
    assert Path("out/a.bin").read_bytes() == DATA and Path("out/b.bin").read_bytes() == b"bee"


@pytest.mark.parametrize(
    ("text", "why"),
    [(b"", "it is empty"), (b"\xef\xbb\xbf\n \n", "it is empty"),
     (b"# later\n\n", "only blank lines and comments")],
    ids=["empty", "bom-and-blanks", "comments"],
)
def test_an_input_file_without_urls_is_named(
    capsys: pytest.CaptureFixture[str], text: bytes, why: str
) -> None:
    Path("urls.txt").write_bytes(text)
    assert main(["-i", "urls.txt"]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"omniget: error: no URL in input file urls.txt: {why}\n"
    )


def test_help_is_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    res = cli("help")
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.startswith("usage: omniget [COMMAND]") and "commands:" in res.stdout
    assert main(["help", "list"]) == 0
    assert capsys.readouterr().out.startswith("usage: omniget list ")
    assert main(["help", "help"]) == 0  # (was exit 2: "'help' is not a command")
    assert capsys.readouterr().out.startswith("usage: omniget [COMMAND]")
    assert main(["help", "lits"]) == 2
    assert "'lits' is not a command (commands: get, list)" in one_line(capsys.readouterr().err)
    assert main(["hepl"]) == 2
    assert "did you mean 'help'?" in one_line(capsys.readouterr().err)


def slow(httpd: HTTPServer, name: str, drip: int = 2_000_000) -> str:
    """A 4 MB file sent at 2 MB/s (or ``drip`` B/s): a run is interrupted long before its
    end."""
    path = httpd.new_path(name)
    httpd.add(path, random.Random(13).randbytes(4_000_000))
    return httpd.url(path, drip=drip)


def test_sigterm_saves_state_without_talking_of_ctrl_c(httpd: HTTPServer) -> None:
    """design.md has one code for an interrupted run, 130 (Ctrl+C or SIGTERM alike)."""
    proc = spawn("-v", "-o", "out", slow(httpd, "t.bin"))
    assert proc.stderr is not None
    first = proc.stderr.readline()  # (the transfer has begun)
    assert first.startswith(b"start out/t.bin"), first
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 130, err
    lines = err.splitlines()
    assert "omniget: SIGTERM: stopping and saving state (a second one quits now)" in lines
    assert "Ctrl+C" not in err and lines[-1] == RESUME
    assert Path("out/t.bin.omniget-part").exists() and not Path("out/t.bin").exists()


def test_files_stopped_while_waiting_for_their_turn_are_not_started(httpd: HTTPServer) -> None:
    """-j 1: the second file is set up ahead, waiting for its turn, as Ctrl+C comes.
    Before, it was counted "interrupted" (a failed event, and a result) though it never
    began; now, as the third (never set up), "not started", with no end event."""
    urls = [slow(httpd, f"w{i}.bin", drip=500_000) for i in range(3)]  # (8 s each)
    proc = spawn("--json", "-j", "1", "-o", "out", *urls)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    events = json_lines(out.decode())
    ends = [e for e in events if e["event"] in ("finished", "failed", "skipped")]
    assert [e["path"] for e in ends] == ["out/w0.bin"], ends
    summary = events[-1]
    assert (summary["interrupted"], summary["not_started"], summary["failed"]) == (1, 2, 0)
    proc = spawn("-v", "-j", "1", "-o", "again", *urls)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(b"start again/w0.bin")
    proc.send_signal(signal.SIGINT)
    said = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 130, said
    assert "0 files ok, 0 skipped, 0 failed, 1 interrupted, 2 not started, " in said, said


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_quiet_interrupt_prints_only_the_error(httpd: HTTPServer, sig: signal.Signals) -> None:
    proc = spawn("-q", "--json", "-o", "out", slow(httpd, "q.bin"))
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "started"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, RESUME + "\n")
    summary = json_lines(out.decode())[-1]
    assert (summary["event"], summary["interrupted"], summary["exit_code"]) == ("summary", 1, 130)


def test_a_second_ctrl_c_still_ends_the_json_events_with_a_summary(httpd: HTTPServer) -> None:
    """Ctrl+C twice quits without waiting for the state to be saved; the --json events
    still end with a summary (before: the last line was whatever event came last)."""
    proc = spawn("--json", "-o", "out", slow(httpd, "j.bin"))
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["event"] == "started"
    proc.send_signal(signal.SIGINT)
    assert proc.stderr.readline().startswith(b"omniget: stopping and saving state")
    proc.send_signal(signal.SIGINT)  # (the run polls its cancel every 50 ms: still running)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, RESUME + "\n")
    summary = json_lines(out.decode())[-1]
    assert (summary["event"], summary["ok"], summary["interrupted"], summary["exit_code"]) == (
        "summary", 0, 1, 130
    )


def test_a_second_ctrl_c_s_json_summary_has_the_bytes_the_events_told(
    httpd: HTTPServer,
) -> None:
    """The summary of a second Ctrl+C counts the bytes of the files it cut, as the
    progress events told them (before: only those of files that had ended, here 0),
    and the time the run took."""
    proc = spawn("--json", "--split", "1", "-o", "out", slow(httpd, "k.bin", drip=500_000))
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["event"] == "started"
    progress = json.loads(proc.stdout.readline())
    assert (progress["event"], progress["size"]) == ("progress", 4_000_000)
    assert progress["done"] > 0
    proc.send_signal(signal.SIGINT)
    assert proc.stderr.readline().startswith(b"omniget: stopping and saving state")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, RESUME + "\n")
    summary = json_lines(out.decode())[-1]
    assert (summary["event"], summary["interrupted"], summary["exit_code"]) == (
        "summary", 1, 130
    )
    assert summary["fetched"] >= progress["done"] and summary["elapsed"] > 0


def test_a_second_ctrl_c_s_counts_line_has_the_bytes_and_the_time(httpd: HTTPServer) -> None:
    """The counts line of a second Ctrl+C has the bytes and the time a run's end has,
    from what the display counted (before: the files only). Its first progress line
    comes 2 s after the file began: the run has taken that long at least."""
    proc = spawn("-v", "--split", "1", "-o", "out", slow(httpd, "b.bin", drip=500_000))  # (8 s)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(b"start out/b.bin")
    line = proc.stderr.readline()
    assert line.startswith(b"  out/b.bin: "), line
    proc.send_signal(signal.SIGINT)
    assert proc.stderr.readline().startswith(b"omniget: stopping and saving state")
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 130, err
    counts, resume = err.splitlines()[-2:]
    assert resume == RESUME
    said = re.fullmatch(r"0 files ok, 0 skipped, 0 failed, 1 interrupted, "
                        r"(?!0 B)[\d.]+ (B|KiB|MiB) in ([\d.]+)s \([\d.]+ (B|KiB|MiB)/s\)",
                        counts)
    assert said is not None, counts
    assert float(said[2]) >= 2.0  # (its seconds)


def test_a_second_ctrl_c_inside_a_libcurl_callback_quits_cleanly(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signals can land in Python code libcurl calls back (here its socket callback, as
    the transfer is removed). The second one's KeyboardInterrupt, raised there, made pycurl
    return with the exception set: "internal error: SystemError: <built-in method
    remove_handle ...> returned a result with an exception set", exit 1, no --json
    summary. Now the signal thread ends the process (its exit, here, returns)."""
    import pycurl

    from omniget.cli import signals as cli_signals
    from omniget.engine.transports.curlloop import CurlLoop

    on_socket = CurlLoop._on_socket
    signals: list[int] = []
    exits: list[int] = []
    monkeypatch.setattr(cli_signals, "end_process", exits.append)

    def signalled(loop: CurlLoop, what: int, fd: int, multi: object, data: object) -> None:
        # Ctrl+C as the first socket is watched, again as libcurl lets go of a socket
        if not signals or (len(signals) == 1 and what == pycurl.POLL_REMOVE):
            signals.append(what)
            signal.raise_signal(signal.SIGINT)  # (its handler runs here, at once)
        on_socket(loop, what, fd, multi, data)

    monkeypatch.setattr(CurlLoop, "_on_socket", signalled)
    assert main(["--json", "-o", "out", slow(httpd, "c.bin")]) == 130
    out, err = capsys.readouterr()
    assert len(signals) == 2 and exits == [130] and "internal error" not in err, err
    assert err.splitlines()[-1] == RESUME
    summary = json_lines(out)[-1]
    assert (summary["event"], summary["interrupted"], summary["exit_code"]) == (
        "summary", 1, 130
    )


def test_a_second_ctrl_c_says_the_counts_before_the_resume_line(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second signal's last word has the counts line a run's end has (before: the
    resume line alone, where the first signal's end said what was done), from what the
    display counted: the files, and the bytes of the progress it was shown. Both signals
    come as the file's first progress is shown (its exit, here, returns)."""
    from omniget.cli import signals as cli_signals
    from omniget.cli.output import format_size
    from omniget.cli.progress import PlainProgress
    from omniget.engine.events import Event, Progress

    exits: list[int] = []
    monkeypatch.setattr(cli_signals, "end_process", exits.append)
    shown: list[Progress] = []
    show = PlainProgress.__call__

    def shown_then_signalled(self: PlainProgress, event: Event) -> None:
        show(self, event)
        if isinstance(event, Progress) and not shown:
            shown.append(event)
            signal.raise_signal(signal.SIGINT)  # (its handler runs here, at once)
            signal.raise_signal(signal.SIGINT)
            for _ in range(3000):  # (the run held till the signal thread has said its last)
                if exits:
                    break
                time.sleep(0.01)

    monkeypatch.setattr(PlainProgress, "__call__", shown_then_signalled)
    assert main(["-o", "out", slow(httpd, "c.bin")]) == 130
    err = timed_lines_removed(capsys.readouterr().err).splitlines()
    assert len(shown) == 1 and exits == [130]
    counts = f"0 files ok, 0 skipped, 0 failed, 1 interrupted, {format_size(shown[0].done)} in "
    assert err[-2].startswith(counts) and err[-1] == RESUME, err


def reading_stdin(proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``proc`` waits in read(0, ...) for its list (30 s at most)."""
    syscall = Path(f"/proc/{proc.pid}/syscall")
    for _ in range(3000):
        if syscall.read_text().startswith("0 0x0 "):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)


@pytest.mark.skipif(not os.path.exists("/proc/self/syscall"), reason="needs /proc/PID/syscall")
def test_ctrl_c_before_the_run_says_so_on_a_line_of_its_own_on_a_terminal() -> None:
    """-i - waiting for its list on a terminal, stopped: the error begins a line (the
    terminal echoed ^C where the cursor was; before: ``^Comniget: error: ...``). It
    promises no resume: nothing began, and a rerun cannot read the same stdin again."""
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    main_fd, term = pty.openpty()
    with subprocess.Popen(command("-i", "-", "-o", "out"), stdin=term, stderr=term,
                          stdout=subprocess.PIPE, env=env, start_new_session=True) as proc:
        os.close(term)
        reading_stdin(proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    said = b""
    with contextlib.suppress(OSError):  # (EIO: the terminal's other end is gone)
        while chunk := os.read(main_fd, 1024):
            said += chunk
    os.close(main_fd)
    assert proc.returncode == 130
    assert said == b"\r\nomniget: error: interrupted\r\n"


@pytest.mark.skipif(not os.path.exists("/proc/self/syscall"), reason="needs /proc/PID/syscall")
def test_ctrl_c_while_reading_urls_from_stdin_ends_the_json_events() -> None:
    """-i - waiting for its list, stopped: the --json events are an error and a summary
    (before: nothing on stdout); stderr promises no resume (it did: see above)."""
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    # (SIGINT at its default: see conftest.py)
    proc = subprocess.Popen(command("--json", "-i", "-", "-o", "out"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    reading_stdin(proc)
    proc.send_signal(signal.SIGINT)
    # stdin stays open until it ends: closing it at once raced the signal (an end of the
    # list can reach read() first; then the list was empty: exit 2, 4 of 4 runs once)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, "omniget: error: interrupted\n")
    lines = json_lines(out.decode())
    assert [line["event"] for line in lines] == ["error", "summary"]
    assert (lines[0]["error"], lines[1]["exit_code"]) == ("interrupted", 130)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_stdout_download_does_not_promise_a_resume(
    httpd: HTTPServer, sig: signal.Signals
) -> None:
    """stdout cannot be resumed: a rerun sends the whole file again, and the line says so."""
    proc = spawn("-O", "-", slow(httpd, "o.bin"))
    assert proc.stdout is not None
    assert len(proc.stdout.read(1)) == 1  # (bytes are flowing)
    proc.send_signal(sig)
    err = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 130, err
    assert err == ("omniget: error: interrupted; the file on stdout is incomplete "
                   "(stdout cannot be resumed: run the command again to start over)\n")


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="needs /dev/null")
def test_an_interrupted_json_run_onto_a_device_ends_its_file(httpd: HTTPServer) -> None:
    """As an interrupted download's, its file has its end, a ``failed`` event of exit code
    130 (before: its ``started`` event had none, the summary alone counted it)."""
    proc = spawn("--json", "-O", os.devnull, slow(httpd, "d.bin", drip=200_000))
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert b'"event": "started"' in first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    events = [e for e in json_lines((first + out).decode()) if e["event"] != "progress"]
    assert [e["event"] for e in events] == ["started", "failed", "summary"], events
    assert events[1] == {**events[1], "path": os.devnull, "error_type": "Cancelled",
                         "exit_code": 130}
    assert events[1]["error"].startswith("interrupted; the file written to /dev/null is "
                                         "incomplete"), events
    assert events[2] == {**events[2], "ok": 0, "failed": 0, "interrupted": 1,
                         "exit_code": 130}


def test_an_interrupted_run_s_summary_counts_the_files_it_never_began(
    httpd: HTTPServer,
) -> None:
    """Ctrl+C before the end of a list: the files not begun are in the summary too
    (before: "0 files ok, 0 skipped, 0 failed, 2 interrupted" of 6 files given)."""
    urls = [slow(httpd, f"n{i}.bin") for i in range(6)]
    proc = spawn("-v", "-j", "1", "-o", "out", *urls)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(b"start out/n0.bin")
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 130, err
    summary = err.splitlines()[-2]
    found = re.fullmatch(r"0 files ok, 0 skipped, 0 failed, (\d+) interrupted, (\d+) not "
                         r"started, .*", summary)
    assert found is not None, summary
    assert int(found[1]) + int(found[2]) == 6 and int(found[2]) >= 1, summary


def interrupt_after_a_megabyte(url: str) -> None:
    """A run of ``url`` into ``out``, stopped by Ctrl+C once 1 MB of it is in."""
    proc = spawn("--json", "--split", "1", "-o", "out", url)
    assert proc.stdout is not None
    while json.loads(proc.stdout.readline()).get("done", 0) < 1_000_000:
        pass
    proc.send_signal(signal.SIGINT)
    assert proc.communicate(timeout=30) and proc.returncode == 130


def test_a_resumed_run_s_summary_tells_the_bytes_it_did_not_fetch_again(
    httpd: HTTPServer,
) -> None:
    """The rerun of an interrupted download fetches only the rest: its summary says how
    much was already there (before: "1 file ok, ... 2.4 MiB" of a 3.8 MiB file, no word
    of the rest)."""
    url = slow(httpd, "r.bin")
    interrupt_after_a_megabyte(url)
    proc = spawn("--split", "1", "-o", "out", url)
    err = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 0, err
    summary = err.splitlines()[-1]
    found = re.fullmatch(r"1 file ok, 0 skipped, 0 failed, ([0-9.]+) (KiB|MiB) \(\+([0-9.]+) "
                         r"(KiB|MiB) resumed\) in .*", summary)
    assert found is not None, summary
    scale = {"KiB": 1 / 1024, "MiB": 1.0}
    fetched, resumed = float(found[1]) * scale[found[2]], float(found[3]) * scale[found[4]]
    assert resumed > 0 and abs(fetched + resumed - 4_000_000 / 2**20) < 0.15, summary


def test_an_interrupted_run_s_json_summary_counts_the_files_it_never_began(
    httpd: HTTPServer,
) -> None:
    """The --json summary has the human line's "N not started" (before: no such count,
    so 1 interrupted of 6 files given left the other 5 unmentioned there)."""
    urls = [slow(httpd, f"j{i}.bin") for i in range(6)]
    proc = spawn("--json", "-j", "1", "-o", "out", *urls)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    summary = json_lines(out.decode())[-1]
    assert (summary["event"], summary["ok"], summary["failed"]) == ("summary", 0, 0), summary
    cut, left = summary["interrupted"], summary["not_started"]
    assert cut + left == 6 and left >= 1, summary


def test_a_resumed_run_s_json_summary_tells_the_bytes_it_did_not_fetch_again(
    httpd: HTTPServer,
) -> None:
    """The --json summary has the human line's "(+SIZE resumed)" (before: only `fetched`,
    the rest of a resumed file's bytes unsaid)."""
    url = slow(httpd, "jr.bin")
    interrupt_after_a_megabyte(url)
    proc = spawn("--json", "--split", "1", "-o", "out", url)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = json_lines(out.decode())
    started = next(e for e in events if e["event"] == "started")
    summary = events[-1]
    assert summary["event"] == "summary" and summary["ok"] == 1, summary
    assert summary["resumed"] == started["resumed"] > 0, (summary, started)
    assert summary["fetched"] + summary["resumed"] == 4_000_000, summary


def test_a_server_chosen_name_an_earlier_url_of_the_run_wrote_is_said_so(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two URLs whose server gives one name, the first done before the second's answer:
    the second is skipped for the name of an earlier URL, as with a URL's own name. Before:
    "it already exists (--on-exists overwrite replaces it)", of a file the run made."""
    first = httpd.url(httpd.new_path("a"), cd="same.bin")
    httpd.add(urlsplit(first).path, b"one")

    def after_the_first(request: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        deadline = time.monotonic() + 30
        while not Path("same.bin").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return 200, [("Content-Disposition", 'attachment; filename="same.bin"')], b"two"

    second = httpd.handle(httpd.new_path("b"), after_the_first)
    assert main([first, second]) == 0
    err = capsys.readouterr().err
    why = "an earlier URL of this run has the same file name (--on-exists rename keeps both)"
    assert f"skipped same.bin: {why}" in err.splitlines(), err
    assert Path("same.bin").read_bytes() == b"one"
