"""Argument parsing: shorthand, every flag -> a Settings field, -O / -i rules, bad values."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

import omniget
from omniget.cli import main
from omniget.cli.args import COMMANDS, flags_from_args, parse_args, parse_input
from omniget.cli.config import load_config
from omniget.engine.report import Report
from omniget.errors import UsageError
from omniget.model import Digest, Item

MD5 = "9e107d9d372bb6826bd81d3542a419d6"


pytestmark = pytest.mark.isolated


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """omniget.download replaced by a recorder that returns an empty Report."""
    seen: list[dict[str, Any]] = []

    def fake_download(items: Any, dest: Any = ".", **kw: Any) -> Report:
        seen.append({"items": list(items), "dest": dest, **kw})
        return Report()

    monkeypatch.setattr(omniget, "download", fake_download)
    return seen


def test_shorthand_is_get() -> None:
    short = parse_args(["https://example.com/a.bin", "-N", "3"])
    full = parse_args(["get", "https://example.com/a.bin", "-N", "3"])
    assert short.command == full.command == "get"
    assert short.urls == full.urls == ["https://example.com/a.bin"]
    assert short.connections == full.connections == 3


def test_options_first_is_get_too() -> None:
    ns = parse_args(["-o", "out", "https://example.com/a", "-v", "https://example.com/b"])
    assert ns.command == "get"
    assert ns.output == "out"
    assert ns.urls == ["https://example.com/a", "https://example.com/b"]
    assert ns.verbose


def test_list_is_a_subcommand() -> None:
    assert set(COMMANDS) >= {"get", "list"}
    ns = parse_args(["list", "--json", "https://example.com/"])
    assert ns.command == "list" and ns.json and ns.urls == ["https://example.com/"]


def test_every_flag_maps_to_settings(tmp_path: Path) -> None:
    ns = parse_args([
        "https://example.com/f", "-o", "dl", "-j", "3", "-N", "6", "--split", "2",
        "--limit-rate", "2M", "--retries", "7", "--timeout", "9.5",
        "-H", "Referer: https://example.com/", "-H", "X-Test: 1",
        "--cookies", "cookies.txt", "--user", "alice:pw", "--checksum", f"md5={MD5}",
        "--on-exists", "rename", "--state-dir", "st", "--proxy", "http://proxy:3128",
        "--insecure", "--ca-cert", "ca.pem", "--resolve", "example.com:443:127.0.0.1",
        "--resolve", "example.org:80:10.0.0.1", "--no-netrc",
    ])
    cfg = load_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "none")}, flags_from_args(ns))
    s, net = cfg.settings, cfg.settings.network
    assert cfg.output == Path("dl")
    assert (s.jobs, s.connections_per_host, s.split, s.retries) == (3, 6, 2, 7)
    assert s.limit_rate == 2 * 1024 * 1024
    assert s.checksum == Digest("md5", MD5)
    assert s.on_exists == "rename"
    assert s.state_dir == Path("st")
    assert net.connect_timeout == net.stall_timeout == 9.5
    assert net.headers == (("Referer", "https://example.com/"), ("X-Test", "1"))
    assert net.cookies_file == "cookies.txt"
    assert net.user == "alice:pw"
    assert net.proxy == "http://proxy:3128"
    assert net.insecure is True
    assert net.ca_cert == "ca.pem"
    assert net.resolve == ("example.com:443:127.0.0.1", "example.org:80:10.0.0.1")
    assert net.netrc is False


def test_resolve_and_proxy_values_libcurl_takes_are_kept_as_given(tmp_path: Path) -> None:
    resolve = ["*:443:1.2.3.4", "+example.com:443:[::1],10.0.0.1", "example.com:80:::1",
               "example.org:80:1.2.3.4,", "[::1]:8080:127.0.0.1", "+[fe80::1]:80:[::1]"]
    for proxy in ("proxy", "proxy:3128", "socks5h://u:p@proxy:1080", "http://[::1]:3128",
                  "socks://proxy:1080", "HTTP://proxy:3128/"):  # (socks://: SOCKS4 in curl)
        argv = ["https://example.com/f", "--proxy", proxy]
        for entry in resolve:
            argv += ["--resolve", entry]
        ns = parse_args(argv)
        cfg = load_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "none")}, flags_from_args(ns))
        assert cfg.settings.network.proxy == proxy
        assert cfg.settings.network.resolve == tuple(resolve)


def test_empty_proxy_means_no_proxy(tmp_path: Path) -> None:
    ns = parse_args(["https://example.com/f", "--proxy", ""])
    cfg = load_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "none")}, flags_from_args(ns))
    assert cfg.settings.network.proxy == ""  # not None: the *_proxy variables are ignored


def test_unset_flags_are_left_out() -> None:
    assert flags_from_args(parse_args(["https://example.com/"])) == {}


def test_parse_input_comments_blanks_and_mirrors() -> None:
    text = (
        "# a comment\n\n"
        "https://example.com/one\n"
        "   \n"
        "https://a.example/two.iso\thttps://b.example/two.iso\t https://c.example/two.iso \n"
        "  # indented comment\n"
        "https://example.com/three\n"
    )
    got = parse_input(text)
    assert got[0] == "https://example.com/one"
    assert got[2] == "https://example.com/three"
    mirror = got[1]
    assert isinstance(mirror, Item)
    assert mirror.download_url == "https://a.example/two.iso"
    assert mirror.mirrors == ("https://b.example/two.iso", "https://c.example/two.iso")
    assert mirror.name_from_server is True
    assert len(got) == 3


def test_input_file_and_stdin_reach_download(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("# list\nhttps://example.com/a\nhttps://m1.example/b\thttps://m2.example/b\n")
    assert main(["-q", "-i", str(listing), "https://example.com/first"]) == 0
    items = calls[0]["items"]
    assert items[:2] == ["https://example.com/first", "https://example.com/a"]
    assert isinstance(items[2], Item) and items[2].mirrors == ("https://m2.example/b",)

    monkeypatch.setattr("sys.stdin", io.StringIO("https://example.com/stdin\n"))
    assert main(["-q", "-i", "-"]) == 0
    assert calls[1]["items"] == ["https://example.com/stdin"]


def test_every_input_file_is_read(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """-i twice reads both lists, in order (before: the last one alone, the first one's URLs
    dropped without a word); an empty list among others is no error."""
    (tmp_path / "one.txt").write_text("https://example.com/1\n")
    (tmp_path / "two.txt").write_text("https://example.com/2\n")
    (tmp_path / "none.txt").write_text("# nothing yet\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("https://example.com/stdin\n"))
    argv = ["-q", "-i", "one.txt", "-i", "-", "-i", "none.txt", "-i", "two.txt"]
    assert main(argv) == 0
    assert calls[0]["items"] == [
        "https://example.com/1", "https://example.com/stdin", "https://example.com/2"
    ]


def test_urls_without_a_scheme_are_http(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("files.example.com/a.zip\nhttps://example.com/b\n")
    argv = ["-q", "example.com/f.iso", "127.0.0.1:8080/x", "localhost/y", "-i", str(listing)]
    assert main(argv) == 0
    assert calls[0]["items"] == [
        "http://example.com/f.iso",
        "http://127.0.0.1:8080/x",
        "http://localhost/y",
        "http://files.example.com/a.zip",
        "https://example.com/b",
    ]


def test_a_local_file_given_as_url_says_so(
    capsys: pytest.CaptureFixture[str], calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a\n")
    assert main(["urls.txt"]) == 2
    err = capsys.readouterr().err
    want = "'urls.txt' is a local file, not a URL (to read URLs from it: -i urls.txt)"
    assert err == f"omniget: error: {want}\n"
    assert calls == []
    assert main(["nodots"]) == 2  # neither a host name nor a file
    assert "no source can handle 'nodots'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[""], [" "], ["\t\n"], ["https://example.com/a", ""],
                                  ["list", ""], ["--", ""]])
def test_an_empty_url_says_so(
    capsys: pytest.CaptureFixture[str], calls: list[dict[str, Any]], argv: list[str]
) -> None:
    """`omniget "$UNSET"`: before, "no source can handle ''" (as if the URL were of an
    unknown kind)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == 'omniget: error: the URL is empty (an argument is "" or only blanks)\n'
    assert calls == []


@pytest.mark.parametrize("flag", ["--config", "-i"])
def test_an_empty_file_name_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], calls: list[dict[str, Any]], flag: str
) -> None:
    """As -o "" and --cookies "" are (`--config "$UNSET"`, say). Before: --config "" read the
    default config file instead, and -i "" said "cannot read input file : Is a directory"."""
    assert main([flag, "", "https://example.com/a"]) == 2
    err = capsys.readouterr().err
    assert "expected a file name, got an empty string" in err and err.count("\n") == 1
    assert calls == []


def test_missing_input_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.txt"
    assert main(["-i", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"omniget: error: cannot read input file {missing}: No such file or directory\n"
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfehttp://x/")
    assert main(["-i", str(tmp_path / "bin.txt")]) == 2
    err = capsys.readouterr().err
    assert err.endswith(": not UTF-8 text (invalid start byte at byte 0)\n")
    assert err.count("\n") == 1


BAD = [
    ["--connections", "zero", "https://example.com/"],
    ["-N", "0", "https://example.com/"],
    ["--limit-rate", "5Q", "https://example.com/"],
    ["--checksum", "md5=xyz", "https://example.com/"],
    ["--checksum", "crc99=abcd", "https://example.com/"],
    ["--on-exists", "maybe", "https://example.com/"],
    ["-j", "-2", "https://example.com/"],
    ["--retries", "many", "https://example.com/"],
    ["--timeout", "0", "https://example.com/"],
    # (these reached libcurl and ended in "internal error: OverflowError", exit 1)
    ["--timeout", "1e300", "https://example.com/"],
    ["-N", "99999999999999999999", "https://example.com/"],
    # (int(0.5) is 0: no limit at all, the opposite of what was asked)
    ["--limit-rate", "0.5", "https://example.com/"],
    # (numbers are ASCII digits, for every numeric option: -j \u0664 (an Arabic-Indic
    # 4) and --timeout 1_0 (Python's grouping) were taken, --retries 1_0 refused)
    ["-j", "\u0664", "https://example.com/"],
    ["-N", "\uff14", "https://example.com/"],
    ["--retries", "\u0664", "https://example.com/"],
    ["--timeout", "1_0", "https://example.com/"],
    ["--timeout", "\u0664", "https://example.com/"],
    ["--timeout", "1e3", "https://example.com/"],
    ["--limit-rate", "\u0664k", "https://example.com/"],
    ["--limit-rate", "1_0k", "https://example.com/"],
    ["--resolve", "example.com:\u0664\u0664\u0663:1.2.3.4", "https://example.com/"],
    ["-H", "no colon here", "https://example.com/"],
    # (a GET has no body: the server waited for one, and every file stalled)
    ["-H", "Content-Length: 5", "https://example.com/"],
    ["-H", "Transfer-Encoding: chunked", "https://example.com/"],
    ["--resolve", "example.com:https:1.2.3.4", "https://example.com/"],
    ["--user", ":nopassword", "https://example.com/"],  # (no user: bob alone asks, see edges)
    ["--proxy", "ftp://proxy.example:21", "https://example.com/"],
    # (these failed only at the first request: curl error 49 or "could not resolve the
    # proxy", exit 3 as if the network had failed)
    ["--resolve", "example.com:443:notanip", "https://example.com/"],
    ["--resolve", "example.com:443:127.1", "https://example.com/"],
    ["--resolve", "example.com:443:[::1", "https://example.com/"],
    ["--resolve", "[::1:443:127.0.0.1", "https://example.com/"],
    ["--resolve", "[::1]443:127.0.0.1", "https://example.com/"],
    ["--resolve", "[example.com]:443:127.0.0.1", "https://example.com/"],
    ["--resolve", "example.com:443:1.2.3.4, 1.2.3.5", "https://example.com/"],
    ["--proxy", "http://", "https://example.com/"],
    ["--proxy", ":3128", "https://example.com/"],
    ["--proxy", "http://proxy.example:99999", "https://example.com/"],
    ["--proxy", "http://[::1", "https://example.com/"],
    ["--proxy", "not a url", "https://example.com/"],
    ["--no-such-flag", "https://example.com/"],
    ["list", "--dry-run", "https://example.com/"],
    [],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) or "empty" for a in BAD])
def test_bad_values_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], calls: list[dict[str, Any]]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("omniget: error: ")
    assert err.count("\n") == 1, err
    assert "--help" in err
    assert "usage:" not in err and "Traceback" not in err
    assert calls == []


@pytest.mark.parametrize("proxy", ["http://me:s3c/r3t@proxy.example:3128",
                                   "me:s3c r3t@proxy.example:3128",
                                   "http://me:s3c@r3t@proxy.example:3128",
                                   "socks5h://me:s3c@r3t@proxy.example:1080",
                                   "ftp://me:s3c/r3t@proxy.example:21"])
def test_a_bad_proxy_url_is_one_line_without_its_password(
    proxy: str, capsys: pytest.CaptureFixture[str], calls: list[dict[str, Any]]
) -> None:
    """A password with a slash or a blank was shown (the mask wanted a scheme, and no
    slash in it); one with an ``@`` not written as %40 was taken, and libcurl, which
    splits at the first ``@``, failed every file at its first request (exit 3)."""
    assert main(["--proxy", proxy, "https://example.com/"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omniget: error: argument --proxy: ") and err.count("\n") == 1, err
    assert "s3c" not in err and "r3t" not in err, err
    assert "me:***@proxy.example" in err, err
    if proxy.count("@") > 1:
        assert "%40" in err, err
    assert calls == []


def test_bad_connections_message_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--connections", "zero", "https://example.com/"])
    err = capsys.readouterr().err
    assert "--connections" in err and "'zero'" in err


@pytest.mark.parametrize(
    ("header", "says"),
    [(": s3cret", "no header name before the ':'"),
     ("Bad Name: v", "not a valid header name: 'Bad' and more (the rest is not shown)"),
     ("B@d: v", "not a valid header name: 'B@d'")],
)
def test_a_bad_header_says_what_is_wrong(
    header: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: both said "not a valid header: ''" or "...: 'Bad Name'", the first naming
    nothing the user typed."""
    assert main(["-H", header, "https://example.com/"]) == 2
    err = capsys.readouterr().err
    assert f"argument -H/--header: {says}" in err
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-O", "f.bin", "https://example.com/a", "https://example.com/b"], "-O takes exactly"),
        (["-O", "f.bin", "-o", "dir", "https://example.com/a"], "cannot be used together"),
        (["-O", "-", "--json", "https://example.com/a"], "--json cannot be used"),
        (["-O", "a.bin", "-O", "b.bin", "https://example.com/a"], "-O: given more than once"),
        (["get", "https://example.com/a", "-O", "a", "-O", "a"], "-O: given more than once"),
        (["--checksum", f"md5={MD5}", "https://example.com/a", "https://example.com/b"],
         "--checksum needs exactly one URL"),
    ],
)
def test_single_url_rules(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], calls: list[dict[str, Any]]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert calls == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"omniget {omniget.__version__}"
    assert main(["get", "--version"]) == 0
    assert capsys.readouterr().out.strip() == f"omniget {omniget.__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "get" in out and "list" in out and "omniget URL" in out
    assert main(["get", "--help"]) == 0
    assert "--limit-rate" in capsys.readouterr().out


def test_usage_error_type_from_parse_args() -> None:
    with pytest.raises(UsageError, match="see 'omniget get --help'"):
        parse_args(["--split", "none", "https://example.com/"])


def test_top_level_help_names_only_real_options() -> None:
    """``omniget --help`` lists the options used most; each must be one of get's."""
    from omniget.cli.args import build_parser

    text = build_parser().format_help().split("--help'):", 1)[1]
    shown = {w.rstrip(",") for w in text.split() if w.startswith("-") and w != "-"}
    known = set(build_parser("get")._option_string_actions)
    assert shown and shown <= known, shown - known


def test_everything_after_a_double_dash_is_a_url() -> None:
    """(argparse's intermixed parsing still read ``-o`` after ``--`` as the option.)"""
    assert parse_args(["get", "--", "-o"]).urls == ["-o"]
    ns = parse_args(["-q", "list", "http://a/1", "--", "-x", "--json"])
    assert ns.command == "list" and ns.urls == ["http://a/1", "-x", "--json"]
    assert ns.quiet and not ns.json
