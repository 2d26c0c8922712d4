"""``omniget list`` and ``omniget get --dry-run`` against the download they stand for, run
as a user runs them (a subprocess, the local test server): they write nothing and ask the
server for nothing, whatever the options; what they print is what ``get`` does (the
paths, the mirrors), and they refuse what ``get`` refuses, with its exit code and its
line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
#: This tree's README (not the one beside the omniget imported: a venv made in another
#: tree imports that tree's, which someone else may be editing)
README = Path(__file__).resolve().parents[2] / "README.md"
DATA = b"0123456789" * 100


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``python -m omniget ARGS`` in the test's folder and environment (see conftest)."""
    full = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "omniget", *args], input=stdin,
                          capture_output=True, text=True, env=full, timeout=120, check=False)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (the test's whole tmp_path: home, state, config, work),
    with its size and mtime: what a run that writes nothing leaves as it was."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size,
                                                                         st.st_mtime_ns)
    return found


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("omniget: error: ")]


# Options of get (and of list, where it has them), each with the URLs it goes with:
# "{a}" and "{b}" are two files of the server, "{list}" an -i file of them (a comment,
# blank lines, CRLF ends, a mirror line), "{cookies}" a cookies file.
OPTIONS: dict[str, list[str]] = {
    "plain": ["{a}", "{b}"],
    "output": ["-o", "new/deeper", "{a}", "{b}"],
    "output-file": ["-O", "sub/one.bin", "{a}"],
    "input-file": ["-i", "{list}"],
    "stdin": ["-i", "-"],
    "state-dir": ["--state-dir", "state-here", "{a}"],
    "cookies": ["--cookies", "{cookies}", "{a}"],
    "user": ["--user", "me:secret", "{a}"],
    "netrc": ["{a}"],  # (a ~/.netrc for the server, read by a download)
    "network": ["-H", "X-Test: 1", "-N", "2", "--retries", "0", "--timeout", "5",
                "--resolve", "files.test:80:127.0.0.1", "--proxy", "", "{a}"],
    "speed": ["-j", "1", "--split", "2", "--limit-rate", "1M", "{a}", "{b}"],
    "checksum": ["--checksum", f"sha256={hashlib.sha256(DATA).hexdigest()}", "{a}"],
    "on-exists": ["--on-exists", "rename", "{a}", "{a2}"],
    "filters": ["--include", "*.bin", "--exclude", "b*", "{a}", "{b}"],
    "source": ["--source", "http", "{a}"],
}
#: Those list does not take (a download's own)
NOT_LIST = {"output", "output-file", "state-dir", "speed", "checksum", "on-exists"}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_list_and_dry_run_write_nothing_and_ask_for_nothing(
    httpd: HTTPServer, tmp_path: Path, case: str
) -> None:
    """No output folder or file, no part file, no journal or state folder, no cookies
    file changed, and no request at all: a plain link's items are known without one."""
    a, b = (httpd.add(httpd.new_path(n), DATA) for n in ("a.bin", "b.bin"))
    a2 = httpd.add(httpd.new_path("a.bin"), DATA)
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n"
                       "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tabc\n")
    listed = tmp_path / "urls.txt"
    listed.write_bytes(f"# files\r\n\r\n{a}\t{a2}\r\n  \r\n{b}\r\n".encode())
    if case == "netrc":
        (tmp_path / "home").mkdir()
        (tmp_path / "home/.netrc").write_text("machine 127.0.0.1 login me password pw\n")
    values = {"a": a, "b": b, "a2": a2, "list": str(listed), "cookies": str(cookies)}
    args = [arg.format(**values) for arg in OPTIONS[case]]
    stdin = listed.read_text() if case == "stdin" else None
    before = snapshot(tmp_path)
    runs = [["--dry-run", *args], ["--dry-run", "--json", *args], ["-q", "--dry-run", *args]]
    if case not in NOT_LIST:
        runs += [["list", *args], ["list", "--json", *args]]
    for argv in runs:
        res = cli(*argv, stdin=stdin)
        assert res.returncode == 0, (argv, res.stderr)
        assert res.stdout, argv  # (-q too: the files are what it prints)
        if argv[0] == "-q":
            assert res.stderr == "", argv
        if "--json" in argv:
            *_, summary = json_lines(res.stdout)
            assert (summary["event"], summary["exit_code"]) == ("summary", 0)
        assert snapshot(tmp_path) == before, argv
        assert httpd.requests == [], argv


@pytest.mark.parametrize("mode", ["skip", "overwrite"])
def test_a_folder_in_the_file_s_place_fails_the_dry_run_as_the_download(
    httpd: HTTPServer, mode: str
) -> None:
    """Before: the dry run said it would skip it (or write it), exit 0; the download
    fails it, exit 7 (no file can take a folder's place; rename saves beside it)."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    Path("a.bin").mkdir()
    got = cli("--on-exists", mode, url)
    assert got.returncode == 7, got.stderr
    said = error_lines(got.stderr)
    assert len(said) == 1 and "is a folder" in said[0]
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    dry = cli("--dry-run", "--on-exists", mode, url)
    assert (dry.returncode, error_lines(dry.stderr), dry.stdout) == (7, said, "")
    dry = cli("--dry-run", "--json", "--on-exists", mode, url)
    failed, summary = json_lines(dry.stdout)
    assert (failed["event"], failed["exit_code"], failed["path"]) == ("failed", 7, "a.bin")
    assert (summary["failed"], summary["files"], summary["exit_code"]) == (1, 0, 7)
    renamed = cli("--dry-run", "--on-exists", "rename", url)
    assert (renamed.returncode, renamed.stdout) == (0, f"a_1.bin\t?\t{url}\n")
    assert httpd.requests == []


def test_a_file_in_the_place_of_a_folder_of_the_path_fails_the_dry_run_as_the_download(
    httpd: HTTPServer,
) -> None:
    """A URL whose name makes a folder (``a\\b.bin`` is saved as ``a/b.bin``) with a file
    ``a`` there. Before: the dry run said it would write a/b.bin, exit 0."""
    url = httpd.add(httpd.new_path("a\\b.bin"), DATA).replace("\\", "%5C")
    Path("a").write_text("mine")
    got = cli(url)
    assert got.returncode == 7, got.stderr
    said = error_lines(got.stderr)
    assert len(said) == 1 and "is a file, not a folder" in said[0], said
    dry = cli("--dry-run", url)
    assert (dry.returncode, error_lines(dry.stderr), dry.stdout) == (7, said, "")
    assert Path("a").read_text() == "mine"


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_a_file_there_that_checksum_refuses_fails_the_dry_run_as_the_download(
    httpd: HTTPServer, wrong: str
) -> None:
    """--checksum with a file of that name there: the download checks it before it skips
    it (exit 4 when it does not match). Before: the dry run said it would skip it, exit 0."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    Path("a.bin").write_bytes(DATA[:-1] + b"x" if wrong == "digest" else DATA[:10])
    checksum = f"sha256={hashlib.sha256(DATA).hexdigest()}"
    got = cli("--checksum", checksum, url)
    assert got.returncode == 4, got.stderr
    said = error_lines(got.stderr)
    assert len(said) == 1 and "already exists" in said[0], said
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    dry = cli("--dry-run", "--checksum", checksum, url)
    assert (dry.returncode, error_lines(dry.stderr), dry.stdout) == (4, said, "")
    Path("a.bin").write_bytes(DATA)  # (the right file: skipped by both)
    dry = cli("--dry-run", "--checksum", checksum, url)
    assert (dry.returncode, dry.stdout) == (0, "")
    assert "would skip a.bin" in dry.stderr
    assert httpd.requests == []


@pytest.mark.parametrize("case", ["cookies", "ca-cert", "proxy"])
def test_a_setting_that_fails_the_whole_download_fails_list_and_dry_run_once(
    httpd: HTTPServer, tmp_path: Path, case: str
) -> None:
    """A cookies file or CA file that cannot be read, a proxy variable libcurl cannot
    use: the download says so in one line (exit 2) before any request. Before: list and
    the dry run said it once per URL (10,000 lines for a list of 10,000), or, for the
    proxy, nothing at all (exit 0)."""
    urls = [httpd.url(httpd.new_path(f"f{i}.bin")) for i in range(3)]
    args = {"cookies": ["--cookies", str(tmp_path / "none.txt")],
            "ca-cert": ["--ca-cert", str(tmp_path / "none.pem")], "proxy": []}[case]
    env = {"http_proxy": "http://a b:1"} if case == "proxy" else {}
    got = cli(*args, *urls, env=env)
    said = error_lines(got.stderr)
    assert got.returncode == 2 and len(said) == 1, got.stderr
    for how in (["--dry-run"], ["list"]):
        res = cli(*how, *args, *urls, env=env)
        assert (res.returncode, error_lines(res.stderr), res.stdout) == (2, said, ""), how
        res = cli(*how, "--json", *args, *urls, env=env)
        error, summary = json_lines(res.stdout)
        assert (error["event"], error["exit_code"]) == ("error", 2)
        assert (summary["event"], summary["exit_code"]) == ("summary", 2)
    assert httpd.requests == []


def test_dry_run_shows_the_mirrors_of_a_file(httpd: HTTPServer, tmp_path: Path) -> None:
    """An -i line of TAB-separated URLs is one file with mirrors: the dry run and list
    say them, as the list file has them (TAB-separated after the URL) and in --json
    (``mirrors``). Before: they said the first URL alone (list --json had them)."""
    a, m1, m2 = (httpd.url(f"/{d}/a.bin") for d in ("x", "y", "z"))
    b = httpd.url("/x/b.bin")
    listed = tmp_path / "urls.txt"
    listed.write_text(f"{a}\t{m1}\t{m2}\n{b}\n")
    res = cli("--dry-run", "-i", str(listed))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"a.bin\t?\t{a}\t{m1}\t{m2}\nb.bin\t?\t{b}\n"
    res = cli("--dry-run", "--json", "-i", str(listed))
    first, second, _ = json_lines(res.stdout)
    assert (first["mirrors"], second["mirrors"]) == ([m1, m2], [])
    res = cli("list", "-i", str(listed))  # (list too: after the source, TAB-separated)
    assert res.stdout == f"a.bin\t\thttp\t{a}\t{m1}\t{m2}\nb.bin\t\thttp\t{b}\n"
    one = tmp_path / "one.txt"  # (-O: to stdout, a device or a file, as the others)
    one.write_text(f"{a}\t{m1}\n")
    for where in ("-", os.devnull, "f.bin"):
        res = cli("--dry-run", "-O", where, "-i", str(one))
        assert res.stdout == f"{where}\t?\t{a}\t{m1}\n", where
        if where != "-":
            res = cli("--dry-run", "--json", "-O", where, "-i", str(one))
            assert json_lines(res.stdout)[0]["mirrors"] == [m1]
    assert httpd.requests == [] and not Path("f.bin").exists()


def test_json_lines_of_list_and_dry_run_keep_the_fields_the_readme_names(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Each line is JSON, hostile names too (quotes, a backslash, bytes that are no UTF-8,
    an escape asked for percent-encoded), and each record has the fields README.md names:
    a file's, a failure's and the summary's."""
    readme = " ".join(README.read_text(encoding="utf-8").split())
    names = ['q%22uote.bin', 'back%5Cslash.bin', '%FF%FE.bin', 'esc%1B%5B31m.bin']
    urls = [httpd.url(f"/{n}") for n in names]
    res = cli("--dry-run", "--json", *urls, "gopher://127.0.0.1:9/x")
    assert res.returncode == 2, res.stderr
    *files, failed, summary = json_lines(res.stdout)
    for line in files:
        assert list(line) == ["path", "url", "mirrors", "size", "source", "action"]
        assert line["path"].isprintable() and line["url"].isprintable()
    assert "`--dry-run --json` prints each file (`path`, `url`, `mirrors`: a list, `size`: " \
           "null when not known, `source`, `action`: " in readme
    assert (failed["event"], failed["exit_code"]) == ("failed", 2)
    assert list(summary) == ["event", "files", "size", "unknown", "skipped", "failed",
                             "exit_code"]
    assert "`--dry-run`: `files`, `size`, `unknown` sizes, `skipped`, `failed`." in readme
    res = cli("list", "--json", *urls)
    *items, summary = json_lines(res.stdout)
    assert [i["output_path"] for i in items] == [f["path"] for f in files]
    assert all("event" not in i and i["source"] == "http" for i in items)
    assert list(summary) == ["event", "items", "skipped", "failed", "exit_code"]
    assert ("- `list`: `items`, `skipped` (left out by `--include`, `--exclude`), `failed`;"
            in readme)
    assert httpd.requests == []


def test_hostile_names_are_shown_as_the_download_saves_them(httpd: HTTPServer) -> None:
    """The dry run's path of each URL is the download's (its events' path): traversal,
    a device name, a trailing dot, a NUL, a bidi override, a part file's ending, a name
    past the length limit, accents apart, bytes that are no UTF-8, only dots."""
    names = ["%2e%2e%2fetc%2fpasswd", "CON", "name.", "a%00b", "%E2%80%AEfdp.exe",
             "x.omniget-part", "n" * 300 + ".bin", "cafe%CC%81.bin", "%FF%FE.bin", ".."]
    urls = [httpd.url(f"{httpd.new_path('d')}/{name}") for name in names]
    dry = cli("--dry-run", "--json", *urls)
    assert dry.returncode == 0, dry.stderr
    shown = [line["path"] for line in json_lines(dry.stdout)[:-1]]
    assert httpd.requests == [] and os.listdir() == []
    got = cli("--json", "--retries", "0", *urls)  # (each a 404: its path all the same)
    ended = {line["url"]: line["path"] for line in json_lines(got.stdout)
             if line["event"] == "failed"}
    assert [ended[url] for url in urls] == shown
    assert len(set(shown)) == len(shown) and all(".." not in p for p in shown)


@pytest.mark.parametrize("given", ["missing", "comments", "folder", "empty-stdin"])
def test_an_input_list_that_fails_fails_list_and_dry_run_as_the_download(
    httpd: HTTPServer, tmp_path: Path, given: str
) -> None:
    """An -i file that is not there, has only comments and blank lines (CRLF ends), is a
    folder, or an empty stdin: one line, exit 2, an ``error`` event with --json, the same
    for get, list and --dry-run."""
    (tmp_path / "comments.txt").write_bytes(b"# none\r\n\r\n   \r\n")
    path = {"missing": str(tmp_path / "missing.txt"), "comments": str(tmp_path / "comments.txt"),
            "folder": str(tmp_path), "empty-stdin": "-"}[given]
    got = cli("-i", path, stdin="")
    said = error_lines(got.stderr)
    assert got.returncode == 2 and len(said) == 1, got.stderr
    for how in (["--dry-run"], ["list"]):
        res = cli(*how, "-i", path, stdin="")
        assert (res.returncode, error_lines(res.stderr), res.stdout) == (2, said, ""), how
        res = cli(*how, "--json", "-i", path, stdin="")
        error, summary = json_lines(res.stdout)
        assert (error["event"], error["exit_code"], summary["exit_code"]) == ("error", 2, 2)
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize("kind", ["folder", "link", "fifo"])
def test_a_part_file_s_name_holding_no_file_fails_the_dry_run_as_the_download(
    httpd: HTTPServer, kind: str
) -> None:
    """What is at ``a.bin.omniget-part`` is no part file omniget made: the download leaves
    it and fails the file (exit 7). Before: the dry run said it would write a.bin, exit 0."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    part = Path("a.bin.omniget-part")
    if kind == "folder":
        part.mkdir()
    elif kind == "link":
        part.symlink_to("elsewhere")
    else:
        os.mkfifo(part)
    got = cli("--retries", "0", url)
    assert got.returncode == 7, got.stderr
    said = error_lines(got.stderr)
    assert len(said) == 1 and "not a part file omniget made" in said[0], said
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    for mode in ("skip", "overwrite"):
        dry = cli("--dry-run", "--on-exists", mode, url)
        assert (dry.returncode, error_lines(dry.stderr), dry.stdout) == (7, said, ""), mode
    dry = cli("--dry-run", "--on-exists", "rename", url)  # (a.bin is free: it is written)
    assert (dry.returncode, dry.stdout) == (7, "")
    Path("a.bin").write_bytes(DATA)  # (skipped: its part file's name is not looked at)
    dry = cli("--dry-run", url)
    assert (dry.returncode, dry.stdout) == (0, "")
    assert httpd.requests == [] and os.path.lexists(part) and sorted(os.listdir()) == [
        "a.bin", "a.bin.omniget-part"]


@pytest.mark.parametrize("bad", [["-j", "0"], ["--on-exists", "bogus"], ["--timeout", "-1"],
                                 ["--checksum", "md5=zz"], ["-O", "a/"]])
def test_a_bad_option_value_is_refused_by_the_dry_run_and_list_as_by_the_download(
    httpd: HTTPServer, bad: list[str]
) -> None:
    """Refused in the download's one line, exit 2, nothing on stdout (list: where it takes
    the option; else it says the option is not one of its own, exit 2 too)."""
    url = httpd.url("/a.bin")
    got = cli(*bad, url)
    said = error_lines(got.stderr)
    assert (got.returncode, got.stdout, len(said)) == (2, "", 1), got.stderr
    dry = cli("--dry-run", *bad, url)
    assert (dry.returncode, dry.stdout, error_lines(dry.stderr)) == (2, "", said)
    listed = cli("list", *bad, url)
    assert (listed.returncode, listed.stdout) == (2, "")
    if bad[0] == "--timeout":
        assert error_lines(listed.stderr) == [said[0].replace("get --help", "list --help")]
    assert httpd.requests == []


@pytest.mark.parametrize("mode", ["skip", "overwrite"])
def test_a_file_named_as_the_journal_in_the_state_folder_is_shown_renamed_as_saved(
    httpd: HTTPServer, mode: str
) -> None:
    """Output folder = state folder, and a URL named journal.sqlite: the download saves
    it as journal.sqlite_ (the journal stays). Before: the dry run said it would skip the
    journal, or, with overwrite, write over it."""
    url = httpd.add(httpd.new_path("journal.sqlite"), DATA)
    first = httpd.add(httpd.new_path("first.bin"), DATA)
    assert cli("-q", "--state-dir", "sd", "-o", "sd", first).returncode == 0  # (its journal)
    assert os.path.exists("sd/journal.sqlite")
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    dry = cli("--dry-run", "--on-exists", mode, "--state-dir", "sd", "-o", "sd", url)
    assert (dry.returncode, dry.stdout) == (0, f"sd/journal.sqlite_\t?\t{url}\n"), dry.stderr
    assert httpd.requests == []
    got = cli("-q", "--on-exists", mode, "--state-dir", "sd", "-o", "sd", url)
    assert got.returncode == 0 and Path("sd/journal.sqlite_").read_bytes() == DATA


def test_a_link_out_of_the_folder_fails_the_dry_run_as_the_download(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``a.bin`` a link to a file outside the output folder: refused content (exit 8), in
    the download's line, which names the URL (before: the dry run named the path)."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    (tmp_path / "outside").write_text("mine")
    Path("a.bin").symlink_to(tmp_path / "outside")
    got = cli(url)
    said = error_lines(got.stderr)
    assert got.returncode == 8 and len(said) == 1 and url in said[0], got.stderr
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    for mode in ("skip", "overwrite", "rename"):
        dry = cli("--dry-run", "--on-exists", mode, url)
        assert (dry.returncode, error_lines(dry.stderr), dry.stdout) == (8, said, ""), mode
    assert httpd.requests == [] and (tmp_path / "outside").read_text() == "mine"


@pytest.mark.parametrize("login", [[], ["--user", "u:p"], ["netrc"]], ids=["none", "user", "netrc"])
def test_links_that_would_fail_are_listed_as_given_without_a_request(
    httpd: HTTPServer, tmp_path: Path, refused_port: int, login: list[str]
) -> None:
    """A host that is down, a 404, a redirect loop, a 401 (with a login or without): list
    and the dry run take plain links as given (exit 0), as README.md says; the download
    finds what is wrong with them."""
    urls = [f"http://127.0.0.1:{refused_port}/down.bin", httpd.url("/gone.bin"),
            httpd.url("/loop.bin", loop=1), httpd.url("/locked.bin", auth="u:p")]
    if login == ["netrc"]:
        (tmp_path / "home").mkdir()
        (tmp_path / "home/.netrc").write_text("machine 127.0.0.1 login u password p\n")
        login = []
    names = ["down.bin", "gone.bin", "loop.bin", "locked.bin"]
    res = cli("--dry-run", *login, *urls)
    assert res.returncode == 0, res.stderr
    assert [line.split("\t")[0] for line in res.stdout.splitlines()] == names
    res = cli("list", "--json", *login, *urls)
    assert res.returncode == 0, res.stderr
    assert [line["output_path"] for line in json_lines(res.stdout)[:-1]] == names
    assert httpd.requests == [] and os.listdir() == []
    assert "a 404, a 401 or a host that is down is found by the download" in " ".join(
        README.read_text(encoding="utf-8").split())
