"""A newcomer's first day with the command, run in-process against the local server: what a
curl, wget or aria2 user types first, and the lines that come back (one each, saying what
to do, before any request when it is the arguments that are wrong)."""

from __future__ import annotations

import os

import pytest
from tests.cli._timed import timed_lines_removed
from tests.servers.httpd import HTTPServer

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)

DATA = b"day one\n" * 64


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("omniget: error: "), err
    return err


@pytest.mark.parametrize(
    ("flag", "hint"),
    [("-4", "; there is no switch for IPv4 or IPv6 only: --resolve HOST:PORT:ADDR picks the "
            "address"),
     ("-6", "; there is no switch for IPv4 or IPv6 only"),
     ("-1", " (see 'omniget get --help')")],
)
def test_a_flag_that_looks_like_a_number_is_no_url(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str, hint: str
) -> None:
    """Before: curl's and wget's -4 was taken for a URL (argparse keeps words like negative
    numbers as positionals): the other URLs were downloaded, then "no source can handle
    '-4'", exit 2."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main([flag, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{flag} is not an option of 'omniget get'" in err and hint in err
    assert httpd.requests == [] and os.listdir() == []
    assert main(["list", url, flag]) == 2
    assert f"{flag} is not an option of 'omniget list'" in one_line(capsys.readouterr().err)
    assert main(["-q", "--", flag]) == 2  # (after --: a URL, as it says)
    assert f"no source can handle '{flag}'" in capsys.readouterr().err


def test_a_401_says_how_to_log_in(httpd: HTTPServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "access refused (HTTP 401 from URL)", as for a 403: nothing said a login
    was wanted, nor how to give one."""
    path = httpd.new_path("locked.bin")
    httpd.add(path, DATA)
    url = httpd.url(path, auth="u:p")
    hint = (": the server wants a login, or refused the one given (--user USER:PASSWORD, or "
            "~/.netrc)")
    for login in [[], ["--user", "u:wrong"]]:
        assert main(["-q", *login, url]) == 5
        err = one_line(capsys.readouterr().err)
        assert "access refused (HTTP 401 from http://" in err and err.endswith(f"){hint}\n")
    assert main(["-q", "--user", "u:p", url]) == 0
    assert os.listdir() == ["locked.bin"]


@pytest.mark.parametrize("word", ["download", "fetch"])
def test_a_word_before_the_urls_that_is_no_command_downloads_nothing(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], word: str
) -> None:
    """Before: `omniget download URL` downloaded URL, then "no source can handle
    'download'", exit 2 (as a command after the URLs did once)."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main([word, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"'{word}' is not a command (commands: get, list, help) nor a URL" in err
    assert httpd.requests == [] and os.listdir() == []
    assert main(["-q", word]) == 2  # (alone: as any word that is no URL)
    assert f"no source can handle '{word}'" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [["version"], ["version", "http://127.0.0.1:9/x"]])
def test_version_as_a_command_names_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Before: "no source can handle 'version' (is it a full http(s):// URL?)"."""
    assert main(argv) == 2
    assert "'version' is not a command; the version is --version" in one_line(
        capsys.readouterr().err)


SHA256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"


@pytest.mark.parametrize(
    ("given", "algo"),
    [(SHA256, "sha256"), (f"{SHA256}  a.txt", "sha256"), ("d" * 32, "md5"),
     ("D" * 40, "sha1"), ("a" * 128, "sha512")],
    ids=["sha256", "sha256sum-line", "md5", "sha1", "sha512"],
)
def test_a_checksum_without_its_algorithm_names_the_one_its_length_fits(
    capsys: pytest.CaptureFixture[str], given: str, algo: str
) -> None:
    """Before: "expected ALGO=HEX, got '...'" for the hex that sha256sum prints (alone or
    with its file name), leaving the newcomer to find which ALGO."""
    assert main(["--checksum", given, "http://127.0.0.1:9/a.txt"]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"expected ALGO=HEX, got {given!r}; {len(given.split()[0])} hex digits are " \
           f"{algo}'s: give {algo}=HEX (see" in err
    assert os.listdir() == []


def test_a_checksum_that_is_no_hex_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--checksum", "abcdefgh", "http://127.0.0.1:9/a.txt"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "expected ALGO=HEX, got 'abcdefgh' (see" in err


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_an_input_file_saved_as_utf16_is_read(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    """Windows PowerShell's `>` and Notepad's "Unicode" write UTF-16 with a BOM. Before:
    "cannot read input file urls.txt: not UTF-8 text (invalid start byte at byte 0)"."""
    a = httpd.add(httpd.new_path("a.txt"), DATA)
    b = httpd.add(httpd.new_path("b.txt"), DATA)
    text = f"# two files\r\n{a}\r\n\r\n{b}\r\n"
    data = text.encode(encoding) if encoding == "utf-16" else b"\xfe\xff" + text.encode(encoding)
    with open("urls.txt", "wb") as f:
        f.write(data)
    assert main(["-q", "-i", "urls.txt", "-o", "out"]) == 0
    assert capsys.readouterr().err == ""
    assert sorted(os.listdir("out")) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("port", ["abc", "-1", "80a", "8o", "\u0668\u0660", "\uff18\uff10"])
def test_a_port_that_is_no_number_says_so(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    """Before: Python's own words, "Port could not be cast to integer value as 'abc'";
    a port in other digits than ASCII's (Arabic-Indic, full-width) was an internal error."""
    url = f"http://127.0.0.1:{port}/a.txt"
    assert main([url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"not a valid URL: the port {port!r} is not a number (in {url!r})" in err


@pytest.mark.parametrize(
    ("text", "hint"),
    [('[{"domain": ".example.com", "name": "sid", "value": "abc"}]\n',
      "; it is JSON (an extension's JSON export): export the cookies as cookies.txt "
      "(Netscape format) instead"),
     ('{\n  "cookies": []\n}\n', "; it is JSON"),
     ("127.0.0.1  FALSE  /  FALSE  0  sid  abc\n",
      "; its fields are separated by spaces, not TABs (an editor may have changed them)")],
    ids=["json-list", "json-object", "spaces"],
)
def test_a_cookies_file_in_another_format_says_which(
    capsys: pytest.CaptureFixture[str], text: str, hint: str
) -> None:
    """Before: "not in Netscape cookies.txt format (7 TAB-separated fields: ...)" alone,
    for what Cookie-Editor and EditThisCookie export by default (JSON) too."""
    with open("c.txt", "w") as f:
        f.write(text)
    assert main(["--cookies", "c.txt", "http://127.0.0.1:9/a.txt"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "cookies file c.txt, line 1: not in Netscape cookies.txt format (7 TAB-separated " \
           f"fields: domain, subdomains, path, secure, expiry, name, value){hint}" in err
    assert "abc" not in err


def test_json_with_stdout_as_the_file_writes_nothing_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: "--json cannot be used with -O - (stdout carries the file)" was said on stderr
    and then written to stdout, as an error event and a summary, where the file would go."""
    assert main(["--json", "-O", "-", "http://127.0.0.1:9/a.txt"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line(err) == ("omniget: error: --json cannot be used with -O - (stdout carries "
                             "the file)\n")


@pytest.mark.parametrize("given", ["saved.txt", "sub/Saved.TXT"])
def test_curl_s_o_file_is_refused_before_a_folder_is_made(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """curl's `-o FILE` here: before, a folder named saved.txt was made, the file saved in
    it as saved.txt/a.txt, and nothing said so ("1 file ok")."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main([url, "-o", given]) == 2
    err = one_line(capsys.readouterr().err)
    assert (f"-o {given}: -o names a folder here (the file would be {given}/a.txt); to "
            f"save the URL as {given}, use -O {given} (curl's -o)") in err
    assert httpd.requests == [] and os.listdir() == []
    assert main(["-q", url, "-O", given]) == 0
    with open(given, "rb") as f:
        assert f.read() == DATA


def test_a_folder_named_like_a_file_is_still_taken_when_it_is_there_or_for_a_list(
    httpd: HTTPServer,
) -> None:
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    os.mkdir("made.txt")
    assert main(["-q", url, "-o", "made.txt"]) == 0  # (there already: a folder it is)
    assert os.listdir("made.txt") == ["a.txt"]
    other = httpd.add(httpd.new_path("b.txt"), DATA)
    assert main(["-q", url, other, "-o", "two.txt"]) == 0  # (two files: a folder, plainly)
    assert sorted(os.listdir("two.txt")) == ["a.txt", "b.txt"]
    assert main(["-q", url, "-o", "v1.2"]) == 0  # (not the file's own extension)
    assert os.listdir("v1.2") == ["a.txt"]
    assert main(["-q", url, "-o", "slash.txt/"]) == 0  # (a folder, plainly)
    assert os.listdir("slash.txt") == ["a.txt"]


@pytest.mark.parametrize(
    ("argv", "hint"),
    [(["-f"], "; an HTTP error fails the file by itself (a 404: exit 6) (see"),
     (["--fail"], "; an HTTP error fails the file by itself"),
     (["-S"], "; errors are always shown (with -q too) (see"),
     (["-J"], "; the server's file name (Content-Disposition) is taken by itself (see"),
     (["--remote-name"], "; the URL's own file name is the default: leave -O out (see"),
     (["-fsSL"], "; -f: an HTTP error fails the file by itself (a 404: exit 6); -s: "
                 "connections per file are --split N (aria2's -s); quiet is -q (curl's -s); "
                 "-S: errors are always shown (with -q too); -L: redirects are always "
                 "followed (up to --max-redirects N, 10 by default) (see"),
     (["-sSLf"], "; -s: connections per file"),
     (["-LOJ"], "; -L: redirects are always followed"),
     (["-nd"], " (see")],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_curl_s_everyday_flags_say_what_they_are_here(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    """Before: `curl -fsSL URL` gave "-fsSL is not an option of 'omniget get'" and nothing
    more (-sS named -s alone); -f, -S, -J and --remote-name no hint either."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main([*argv, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"omniget: error: {argv[0]} is not an option of 'omniget get'{hint}")
    assert httpd.requests == [] and os.listdir() == []


def test_curl_s_empty_header_form_says_what_is_here(capsys: pytest.CaptureFixture[str]) -> None:
    """curl's -H 'X-Empty;' sends the header with no value. Before: "expected 'Name: value',
    got 'X-Empty;'" and no word of that form."""
    assert main(["-H", "X-Empty;", "http://127.0.0.1:9/a.txt"]) == 2
    err = one_line(capsys.readouterr().err)
    assert ("expected 'Name: value', got 'X-Empty;' (curl's 'Name;' sends it empty: omniget "
            "sends no empty header; 'Name:' leaves it out)") in err


def test_a_one_file_run_says_where_its_file_went(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "1 file ok, ..." and nothing more once the bar was gone: the name a server
    chose (Content-Disposition) was left to guess, as wget and aria2 do not."""
    url = httpd.add(httpd.new_path("get.php"), DATA,
                    headers={"Content-Disposition": 'attachment; filename="report.txt"'})
    assert main([url, "-o", "out"]) == 0
    lines = timed_lines_removed(capsys.readouterr().err).splitlines()
    assert lines[0] == f"saved {os.path.join('out', 'report.txt')}"
    assert lines[1].startswith("1 file ok, 0 skipped, 0 failed, 512 B in ")
    assert len(lines) == 2
    assert main(["-v", url, "-o", "again"]) == 0  # (-v: its "done" line says it already)
    assert not [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("saved ")]
    assert main(["-q", url, "-o", "quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_run_of_several_files_names_none_in_its_summary(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [httpd.add(httpd.new_path(f"{n}.txt"), DATA) for n in "ab"]
    assert main([*urls, "-o", "out"]) == 0
    lines = timed_lines_removed(capsys.readouterr().err).splitlines()
    assert len(lines) == 1 and lines[0].startswith("2 files ok, ")


@pytest.mark.parametrize(
    ("flag", "hint"),
    [("-I", "; there is no header-only request: --debug shows each request and answer of a "
            "download"),
     ("--head", "; there is no header-only request"),
     ("--spider", "; there is no header-only request"),
     ("--timestamping", "; a file already there is skipped (--on-exists); nothing compares "
                        "dates"),
     ("-nv", "; the default shows bars on a terminal, else a line every 2 s; -q: errors only"),
     ("--compressed", "; a compressed answer is saved decoded by itself"),
     ("-w", "; there is no wait between files (wget's -w) and no --write-out (curl's -w): "
            "--json gives each file's numbers")],
)
def test_curl_s_and_wget_s_other_everyday_flags_say_what_is_here(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str, hint: str
) -> None:
    """Before: curl's -I and --head were met with "did you mean --header?" (a header to
    send: not what was meant); wget's --spider, --timestamping, -nv, -w and curl's
    --compressed had no hint."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main([flag, url]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"omniget: error: {flag} is not an option of 'omniget get'{hint}")
    assert httpd.requests == [] and os.listdir() == []


def test_wget_s_n_before_a_url_says_what_n_is_here(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wget -N URL` (timestamping) typed here: -N took the URL as its number and said
    only that it expected one."""
    url = httpd.add(httpd.new_path("a.txt"), DATA)
    assert main(["-N", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"got '{url}'; -N is connections per host here: wget's -N (timestamping) has no " \
           "counterpart, a file already there is skipped (--on-exists)" in err
    assert httpd.requests == [] and os.listdir() == []
    assert main(["-N", "x"]) == 2
    assert "timestamping" not in capsys.readouterr().err
