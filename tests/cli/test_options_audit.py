"""Edges from a curl/wget/aria2 user's run through every option, in-process against the local
server: what an option does where it cannot apply, and what bad values say."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import load_settings, main

DATA = b"0123456789" * 100


pytestmark = pytest.mark.isolated(work=True)


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


@pytest.mark.parametrize(
    ("argv", "hint"),
    [(["-x", "4"], "connections per host are -N N (aria2's -x); a proxy is --proxy URL"),
     (["-x4"], "connections per host are -N N"),
     (["-s", "4"], "connections per file are --split N (aria2's -s); quiet is -q"),
     (["-d", "dl"], "the output folder is -o DIR (one URL to one file: -O FILE)"),
     (["--directory-prefix=dl"], "the output folder is -o DIR"),
     (["-c"], "a download resumes by itself: run the same command again"),
     (["-L"], "redirects are always followed"),
     (["--connect-timeout", "3"], "connect and stall timeouts are --timeout SECONDS"),
     (["-A", "curl/8"], "the User-Agent is --user-agent TEXT"),
     (["-k"], "not verifying TLS is --insecure"),
     (["-nc"], "a file already there is skipped by default (--on-exists skip)"),
     (["-Z"], "files at once are -j N"),
     (["-V"], "the version is --version (-v: a line per file)")],
)
def test_a_flag_of_curl_wget_or_aria2_says_what_it_is_here(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    # (was: "-x is not an option of 'omniget get'" and nothing more)
    url = serve(httpd)
    assert main([*argv, url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"omniget: error: {argv[0].partition('=')[0]} is not an option of "
                          f"'omniget get'; {hint}"), err
    assert err.count("\n") == 1 and err.endswith(" (see 'omniget get --help')\n")
    assert httpd.requests == [] and os.listdir() == []


def test_a_peer_flag_for_an_option_the_command_lacks_gets_no_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # (list writes no files: "-o DIR" would send the user to another error)
    assert main(["list", "-d", "dl", "https://example.com/"]) == 2
    assert capsys.readouterr().err == ("omniget: error: -d is not an option of 'omniget list' "
                                       "(see 'omniget list --help')\n")


@pytest.mark.parametrize(
    ("flag", "wants"),
    [("-o", "-o wants a folder"),
     ("-O", "-O wants a file name before the URL; to keep the URL's own file name, as curl's "
      "-O does, leave -O out)"),
     ("--state-dir", "--state-dir wants a folder"), ("--cookies", "--cookies wants a file")],
)
def test_a_url_taken_by_an_option_is_refused_beside_other_urls(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str, wants: str
) -> None:
    # (was, with -o: the second URL saved under ./http:/127.0.0.1:PORT/NAME/, exit 0;
    # with -O: into a file of that name)
    first, second = serve(httpd, "a.bin"), serve(httpd, "b.bin")
    assert main([flag, first, second]) == 2
    err = capsys.readouterr().err
    if not wants.endswith(")"):
        wants += " before the URL)"
    assert err == f"omniget: error: {flag} took {first!r} for its value ({wants}\n"
    assert httpd.requests == [] and os.listdir() == []


def test_a_cookie_line_of_six_fields_is_an_empty_cookie_as_in_curl(httpd: HTTPServer) -> None:
    # (curl reads a line whose empty value lost its TAB, an editor stripping the line's
    # end, as that cookie with an empty value; it was "not in Netscape cookies.txt format")
    url = serve(httpd)
    Path("c.txt").write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tempty\n"
                             "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tabc\n")
    assert main(["-q", "--cookies", "c.txt", "-o", "out", url]) == 0
    (request,) = httpd.requests
    assert sorted((request.header("cookie") or "").split("; ")) == ["empty=", "sid=abc"]


def test_a_cookie_given_as_cookies_says_how_to_send_one(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # (curl -b NAME=VALUE sends that cookie; here it was "cannot read cookies file
    # sid=abc: No such file or directory" and no more)
    assert main(["--cookies", "sid=abc", "-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == (
        "omniget: error: cannot read cookies file sid=abc: No such file or directory "
        "(--cookies reads a cookies.txt file; a cookie as it is goes in a Cookie header, "
        "with -H)\n")
    assert httpd.requests == [] and os.listdir() == []


def test_curl_s_o_for_each_url_says_to_leave_it_out(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # (curl -O URL1 -O URL2 saves each under its own name; here it was "given more than
    # once (one URL goes to one file)", with no word on what -O is)
    first, second = serve(httpd, "a.bin"), serve(httpd, "b.bin")
    assert main(["-O", first, "-O", second]) == 2
    assert capsys.readouterr().err == (
        "omniget: error: argument -O: given more than once (one URL goes to one file; to keep "
        "the URL's own file name, as curl's -O does, leave -O out) (see 'omniget get "
        "--help')\n")
    assert main(["-O", "a.out", "-O", "b.out", first]) == 2  # (wget's -O twice: as it was)
    assert capsys.readouterr().err == (
        "omniget: error: argument -O: given more than once (one URL goes to one file) (see "
        "'omniget get --help')\n")
    assert httpd.requests == [] and os.listdir() == []


def test_a_file_in_the_config_file_may_start_with_a_tilde(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # (a config file has no shell to expand ~, as output and state-dir there were; the
    # cookies file was "cannot read cookies file ~/c.txt", the netrc file silently unread)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (home / "c.txt").write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tabc\n")
    (home / "n").write_text("machine 127.0.0.1 login bob password pw\n")
    (home / "ca.pem").write_text("")
    config = tmp_path / "config.toml"
    config.write_text('cookies = "~/c.txt"\nnetrc-file = "~/n"\nca-cert = "~/ca.pem"\n')
    settings, _ = load_settings(config, {})
    assert (settings.network.cookies_file, settings.network.netrc_file,
            settings.network.ca_cert) == tuple(str(home / n) for n in ("c.txt", "n", "ca.pem"))
    assert main(["-q", "--config", str(config), "-o", "out", serve(httpd)]) == 0
    (request,) = httpd.requests
    assert request.header("cookie") == "sid=abc"
    assert request.header("authorization") == "Basic Ym9iOnB3"


def test_an_aria2_option_line_in_an_input_file_is_refused_before_any_request(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # (aria2's input files name each download's options on the indented lines after its
    # URL; they were taken for URLs: the file saved under its own name, not out=, then
    # "no source can handle 'out=renamed.bin'", exit 2, after the downloads)
    url = serve(httpd, "a.bin")
    Path("urls.txt").write_text(f"{url}\n  out=renamed.bin\n\tdir=sub\n")
    assert main(["-i", "urls.txt"]) == 2
    assert capsys.readouterr().err == (
        "omniget: error: input file urls.txt, line 2: 'out=renamed.bin' is an option line "
        "(aria2's); omniget reads URLs only (one per line, mirrors separated by a TAB)\n")
    assert httpd.requests == [] and os.listdir() == ["urls.txt"]


def test_text_beyond_ascii_in_headers_and_credentials_goes_as_utf8_as_curl_sends_it(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (was "internal error: UnicodeEncodeError: 'ascii' codec can't encode ...", exit 1,
    # for -H "X-Name: café", --user bob:pässwörd, a user-agent or a cookie like that)
    monkeypatch.setenv("OMNIGET_USER_AGENT", "omniget ☃")
    Path("c.txt").write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tcafé\n")
    url = serve(httpd)
    argv = ["-q", "-H", "X-Name: café", "--user", "bøb:pässwörd", "--cookies", "c.txt"]
    assert main([*argv, "-o", "out", url]) == 0
    (request,) = httpd.requests

    def sent(name: str) -> str:
        return (request.header(name) or "").encode("latin-1").decode()  # (the server's view)

    assert sent("x-name") == "café" and sent("user-agent") == "omniget ☃"
    assert sent("cookie") == "sid=café"
    assert sent("authorization") == "Basic " + base64.b64encode("bøb:pässwörd".encode()).decode()
    assert (Path("out") / url.rsplit("/", 1)[1]).read_bytes() == DATA


def test_a_host_name_beyond_ascii_is_asked_for_as_punycode(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # (was "internal error: UnicodeEncodeError", exit 1, for the URL and for --resolve;
    # curl and wget ask for xn--exmple-cua.com)
    url = serve(httpd).replace("127.0.0.1", "exämple.com")
    resolve = f"exämple.com:{httpd.port}:127.0.0.1"
    assert main(["-q", "--resolve", resolve, "-o", "out", url]) == 0
    (request,) = httpd.requests
    assert request.header("host") == f"xn--exmple-cua.com:{httpd.port}"
    assert (Path("out") / url.rsplit("/", 1)[1]).read_bytes() == DATA


def test_files_in_folders_named_beyond_ascii_are_read(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    # (--ca-cert or netrc-file in such a folder was "internal error: UnicodeEncodeError")
    folder = tmp_path / "dossier é"
    folder.mkdir()
    (folder / "ca.pem").write_text("")
    (folder / "n").write_text("machine 127.0.0.1 login bob password pw\n")
    config = tmp_path / "config.toml"
    config.write_text(f'netrc-file = "{folder / "n"}"\n')
    argv = ["-q", "--config", str(config), "--ca-cert", str(folder / "ca.pem"), "-o", "out"]
    assert main([*argv, serve(httpd)]) == 0
    (request,) = httpd.requests
    assert request.header("authorization") == "Basic Ym9iOnB3"


def test_a_proxy_beyond_ascii_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # (was "internal error: UnicodeEncodeError", exit 1, at the first request)
    assert main(["--proxy", "http://prøxy.example:3128", "https://example.com/"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omniget: error: argument --proxy: expected a proxy URL in ASCII"), err
    assert err.count("\n") == 1
