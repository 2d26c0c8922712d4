"""What a run says about itself, through the command in a subprocess against the local
server: a URL given twice, a message that names its file, a stalled file in a log, ``-O``
whose one file is left out, and retry lines for one cause folded."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.cli._timed import timed_lines_removed
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
DATA = bytes(range(256)) * 40


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a subprocess, stderr not a terminal (a log's lines), without the
    lines that come with time (tests/cli/_timed.py)."""
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    res = subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                         text=True, env=env, timeout=120)
    res.stderr = timed_lines_removed(res.stderr)
    return res


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


# --- 1. the same URL given twice ---


def test_the_same_url_given_twice_is_one_download_said_once(httpd: HTTPServer) -> None:
    """Before: the second was skipped, "an earlier URL of this run has the same file name
    (--on-exists rename keeps both)": wrong advice for one and the same file."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    Path("list.txt").write_text(f"{url}\n")
    res = cli("-o", "out", url, "-i", "list.txt", url)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == f"omniget: warning: {url} is given 3 times: it is downloaded once"
    assert lines[1] == "saved out/a.bin"
    assert lines[2].startswith("1 file ok, 0 skipped, 0 failed, "), lines
    assert len(lines) == 3, lines
    assert Path("out/a.bin").read_bytes() == DATA
    gets = [r for r in httpd.requests if r.method == "GET"]
    assert len(gets) == 1


def test_the_same_url_given_twice_in_json_is_one_file_and_a_warning(httpd: HTTPServer) -> None:
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    res = cli("--json", "-o", "out", url, url)
    assert res.returncode == 0, res.stderr
    events = json_lines(res.stdout)
    assert events[0] == {"event": "warning", "level": "warning",
                         "message": f"{url} is given 2 times: it is downloaded once"}
    ends = [e for e in events if e["event"] in ("finished", "failed", "skipped")]
    assert [e["event"] for e in ends] == ["finished"]
    summary = events[-1]
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (1, 0, 0)


def test_urls_given_twice_are_a_few_lines_unless_verbose(httpd: HTTPServer) -> None:
    urls = [httpd.add(httpd.new_path(f"f{i}.bin"), DATA) for i in range(8)]
    for verbose in (False, True):
        res = cli("--dry-run", *(["-v"] if verbose else []), *urls, *urls)
        assert res.returncode == 0, res.stderr
        said = [line for line in res.stderr.splitlines() if "is given 2 times" in line]
        assert len(said) == (8 if verbose else 5), res.stderr
        more = ("omniget: warning: 3 more URLs are given more than once: each is "
                "downloaded once (-v lists each)")
        assert (more in res.stderr.splitlines()) is not verbose, res.stderr
        assert len(res.stdout.splitlines()) == 8  # (each file once)
        assert "would skip" not in res.stderr


def test_two_urls_of_one_name_still_say_rename_keeps_both(httpd: HTTPServer) -> None:
    a = httpd.add(httpd.new_path("same.bin"), b"one")
    b = httpd.add(httpd.new_path("same.bin"), b"two")
    res = cli(a, b)
    assert res.returncode == 0, res.stderr
    assert ("skipped same.bin: an earlier URL of this run has the same file name "
            "(--on-exists rename keeps both)") in res.stderr.splitlines()
    assert "given" not in res.stderr


# --- 2. a message that names its file ---

WRONG = "0" * 64


def test_a_warning_and_a_failure_name_their_file_once(httpd: HTTPServer) -> None:
    """Before: ``omniget: warning: s: sha256 mismatch for s: ...`` (and ``out/s: sha256
    mismatch for s``, ``failed out/s: sha256 mismatch for s``)."""
    import hashlib

    url = httpd.add(httpd.new_path("s"), DATA)
    got = hashlib.sha256(DATA).hexdigest()
    why = f"expected {WRONG}, got {got}"
    again = f"omniget: warning: sha256 mismatch for {{}}: {why}; downloading again"
    twice = (f"sha256 mismatch for {{}}: {why} twice (the server sends the same bytes each "
             "time: is the checksum right?); kept as s.omniget-part")
    res = cli("--checksum", f"sha256={WRONG}", url)
    assert res.returncode == 4
    assert res.stderr.splitlines()[:2] == [again.format("s"),
                                           "omniget: error: " + twice.format("s")]
    res = cli("-v", "-o", "out", "--checksum", f"sha256={WRONG}", url)
    assert res.returncode == 4
    lines = res.stderr.splitlines()
    assert lines[1:4] == [again.format("out/s"), "failed: " + twice.format("out/s"),
                          "omniget: error: " + twice.format("out/s")], lines


@pytest.mark.parametrize(("label", "text", "line"), [
    ("s", "sha256 mismatch for s: expected a", "sha256 mismatch for s: expected a"),
    ("out/s", "sha256 mismatch for s: x", "sha256 mismatch for out/s: x"),
    ("out/s", "piece of s: expected 3 bytes", "piece of out/s: expected 3 bytes"),
    # a URL that ends in the name is no mention of the file
    ("s.bin", "HTTP 503 from http://h/s.bin", "s.bin: HTTP 503 from http://h/s.bin"),
    ("o/s.bin", "HTTP 503 from http://h/s.bin", "o/s.bin: HTTP 503 from http://h/s.bin"),
    # nor a word that has it, nor a longer name
    ("s", "it exists", "s: it exists"),
    ("o/s", "kept as s.omniget-part", "o/s: kept as s.omniget-part"),
    # the name twice: which one is the file's? as it was
    ("o/size", "size mismatch for size: 3", "o/size: size mismatch for size: 3"),
    ("http://h/x", "gone", "http://h/x: gone"),
])
def test_a_message_names_its_file_once(label: str, text: str, line: str) -> None:
    from omniget.cli.output import naming

    assert naming(label, text) == line


def test_a_retry_line_names_its_file_once() -> None:
    import io

    from omniget.cli.output import Masker
    from omniget.cli.progress import PlainProgress
    from omniget.engine.events import Retrying
    from omniget.errors import IntegrityError
    from omniget.model import Item

    out = io.StringIO()
    error = IntegrityError("size mismatch for s: expected 3 bytes, got 2")
    with PlainProgress(out, Masker(), clock=lambda: 0.0) as plain:
        plain(Retrying(Item(download_url="http://h/s"), Path("o/s"), error=error, attempt=1,
                       delay=0.5))
    assert out.getvalue() == ("omniget: warning: size mismatch for o/s: expected 3 bytes, "
                              "got 2; retrying in 0.5s (retry 1)\n")


# --- 3. a stalled file in a log ---


def test_the_run_line_comes_while_a_file_is_stalled_and_says_it_is_not_moving(
    httpd: HTTPServer,
) -> None:
    """Not a terminal: the line on the whole run every 2 s comes while no byte does, and
    its speed falls to 0 B/s (before: nothing until the stall timeout's retry line)."""
    import queue
    import threading
    import time

    data = bytes(range(256)) * 4096  # 1 MiB
    path = httpd.new_path("slow.bin")
    httpd.add(path, data)
    url = httpd.url(path, hold="h", stall_after=65536)
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "omniget", "--timeout", "600", "--split",
                             "1", "-o", "out", url], stderr=subprocess.PIPE, text=True,
                            env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    def read() -> None:
        for line in proc.stderr or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert httpd.held("h", timeout=60)
        said: list[str] = []
        deadline = time.monotonic() + 60
        while not any(x.endswith(" 0 B/s\n") for x in said) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                said.append(lines.get(timeout=0.5))
        assert any(x.endswith(" 0 B/s\n") for x in said), said
        run = [x for x in said if x.startswith("[")]
        assert len(run) >= 2, said
        assert all(" 0/1 files, " in x and " of 1.0 MiB, " in x for x in run), said
        assert not any("retrying" in x for x in said), said
    finally:
        httpd.release("h")
        proc.wait(timeout=120)
    reader.join(timeout=30)
    assert proc.returncode == 0
    assert Path("out/slow.bin").read_bytes() == data


def test_a_speed_falls_to_0_when_nothing_came_for_its_window() -> None:
    """A burst shorter than the speed's least mark (0.5 s), then nothing: the speed was
    the burst over all the time since (16 KiB in 60 s: 273 B/s, falling, never 0)."""
    from omniget.cli.tally import Rate

    now = [0.0]
    rate = Rate(lambda: now[0])
    now[0] = 0.2
    rate.add(16384)
    now[0] = 1.0
    assert rate.speed() == 16384 / 1.0
    now[0] = 5.3  # (the window: 5 s)
    assert rate.speed() == 0.0 and rate.left(1000) is None


# --- 4. -O whose one file is left out ---


@pytest.mark.parametrize("flag", ["", "-v"])
@pytest.mark.parametrize("target", ["-", "/dev/null"])
def test_o_whose_one_file_is_left_out_says_so_in_one_line(
    httpd: HTTPServer, target: str, flag: str
) -> None:
    """Before: ``-O -`` said nothing at all, -v or not, and ``-O /dev/null`` nothing or
    ``skipped /dev/null (filtered)`` (the URL's file was, not the device); exit 0, as
    every run whose files are all left out."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    res = cli(*([flag] if flag else []), "-O", target, "--exclude", "*.bin", url)
    assert (res.returncode, res.stdout) == (0, "")
    where = "stdout" if target == "-" else target
    assert res.stderr == (f"nothing written to {where}: its file a.bin is left out "
                          "(--include, --exclude)\n")
    assert [r for r in httpd.requests if r.method == "GET"] == []
    res = cli("-q", "-O", target, "--include", "*.zip", url)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


# --- 5. retry lines folded ---


def test_retry_lines_of_one_cause_are_folded_unless_verbose(
    refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts nobody answers at, 6 files each: each retry was a line (2 a file: 24
    lines; 500 files, 1,000). Now the first five, then one line with the count of the
    rest, at the end; -v keeps every line, --json every event. (Two files of each host
    spend their retries before it is found down: 8 lines at least. A proxy nobody
    answers at is no longer the way to many: one file retries it.)"""
    import socket

    # waits of at most 0.1 s (the lines do not hang on how long they are; 9 s before)
    monkeypatch.setenv("OMNIGET_RETRY_MAX_WAIT", "0.1")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))  # (bound, not listening: refuses, as refused_port)
        ports = (refused_port, other.getsockname()[1])
        Path("urls.txt").write_text("".join(f"http://127.0.0.1:{ports[i % 2]}/f{i}\n"
                                            for i in range(12)))
        args = ["-i", "urls.txt", "-o", "out"]
        res = cli(*args)
        assert res.returncode == 3
        lines = res.stderr.splitlines()
        retries = [x for x in lines if "retrying in" in x]
        assert len(retries) == 5, lines
        folded = [x for x in lines if "more retr" in x]
        assert len(folded) == 1, lines
        m = re.fullmatch(r"omniget: warning: (\d+) more retr(?:y|ies) of (\d+) files? for "
                         r"the same cause \(-v shows each\): could not connect "
                         r"\(http://127\.0\.0\.1:\d+\): .*", folded[0])
        assert m and int(m[1]) >= 3 and 1 <= int(m[2]) <= 12, folded
        assert lines.index(folded[0]) > lines.index(retries[-1])
        errors = [x for x in lines if x.startswith("omniget: error: ")]
        assert errors and lines.index(errors[0]) > lines.index(folded[0]), lines

        res = cli("-v", *args)
        assert len([x for x in res.stderr.splitlines() if "retrying in" in x]) > 5
        assert "more retr" not in res.stderr
        res = cli("--json", *args)
        events = json_lines(res.stdout)
        assert len([e for e in events if e["event"] == "retrying"]) > 5
        assert "retrying in" not in res.stderr


def test_a_folded_cause_names_the_origin_of_its_urls() -> None:
    from omniget.cli.output import origins

    assert origins("could not connect (http://h:9/f1): refused after 3 ms") == (
        "could not connect (http://h:9): refused after 3 ms")
    assert origins("HTTP 503 from https://h.test/a/b.bin?x=1.") == (
        "HTTP 503 from https://h.test.")


def test_the_bars_fold_retry_lines_too() -> None:
    import io

    from rich.console import Console

    from omniget.cli.bars import RichProgress
    from omniget.cli.output import Masker
    from omniget.engine.events import Retrying
    from omniget.errors import TransientError
    from omniget.model import Item

    term = io.StringIO()
    rich = RichProgress(Console(file=term, force_terminal=True, width=200), Masker())
    with rich:
        for i in range(8):
            error = TransientError(f"HTTP 503 from http://h.test/f{i}")
            rich(Retrying(Item(download_url=f"http://h.test/f{i}"), None, error=error,
                          attempt=1, delay=0.5))
    text = term.getvalue()
    assert text.count("retrying in") == 5, text
    assert ("omniget: warning: 3 more retries of 3 files for the same cause (-v shows "
            "each): HTTP 503 from http://h.test") in text


def test_a_url_and_its_mirror_line_are_two_entries_each_counted() -> None:
    from omniget.cli.targets import once
    from omniget.model import Item

    def line() -> Item:
        return Item(download_url="http://a/x", mirrors=("http://b/x",), name_from_server=True)

    kept, again = once(["http://a/x", line(), "http://a/x", line(), line()])
    assert kept == ["http://a/x", line()]
    assert again == {"http://a/x": 2, "http://a/x (with its mirrors)": 3}
