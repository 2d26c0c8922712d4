"""The ``--json`` stream as its consumers read it (jq, serde_json, Go's encoding/json,
Python's json): each line on stdout one strict JSON object (RFC 8259: no NaN, no lone
surrogate, no raw control character), nothing else there, the ``summary`` last."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

import omniget
from omniget.cli import main
from omniget.cli.output import Masker, json_line, print_list
from omniget.model import Item

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
README = Path(__file__).resolve().parents[2] / "README.md"
JQ = shutil.which("jq")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def strict(line: bytes | str) -> dict[str, Any]:
    """One line as the strictest consumer takes it: UTF-8, no ``NaN`` or ``Infinity``, no
    lone surrogate (serde_json refuses ``"\\udce9"``), an object."""
    text = line.decode("utf-8") if isinstance(line, bytes) else line

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    record = json.loads(text, parse_constant=refuse)
    assert isinstance(record, dict), line
    for s in _strings(record):
        s.encode("utf-8")  # (a lone surrogate: UnicodeEncodeError)
    return record


def cli(*args: str | bytes, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """``python -m omniget ARGS`` as a user runs it, stdout and stderr as bytes."""
    full = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1", "LC_ALL": "C.UTF-8",
            **(env or {})}
    return subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                          env=full, timeout=120, check=False)


def jq(stdout: bytes, program: str) -> list[Any]:
    """What ``jq -c PROGRAM`` makes of ``stdout``: each output as Python's json reads it."""
    assert JQ is not None
    res = subprocess.run([JQ, "-c", program], input=stdout, capture_output=True,
                         timeout=60, check=True)
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_a_folder_whose_name_is_no_utf8_is_said_in_strict_json(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``-o`` a folder of an old latin-1 disk (``caf\\xe9``): its bytes that are no UTF-8
    are U+FFFD in every line, as jq and Go read them. Before: ``"caf\\udce9/a.bin"``, a
    lone surrogate serde_json refuses (the download's events and the dry run's files)."""
    url = httpd.add(httpd.new_path("a.bin"), b"x" * 1000)
    folder = b"caf\xe9"
    for args in ((b"--json",), (b"--dry-run", b"--json")):
        res = cli(*args, b"-o", folder, url)
        assert res.returncode == 0, res.stderr
        lines = [strict(line) for line in res.stdout.splitlines()]
        assert lines[-1]["event"] == "summary"
        paths = {r["path"] for r in lines[:-1]}
        assert paths == {"caf\ufffd/a.bin"}, res.stdout
        if JQ is not None:
            assert {p for p in jq(res.stdout, ".path") if p} == paths
    assert os.path.isfile(os.path.join(folder, b"a.bin"))  # (the folder is the one given)


def test_a_run_failing_on_a_name_that_is_no_utf8_says_it_in_strict_json(
    httpd: HTTPServer,
) -> None:
    """The ``error`` event of a run that fails as a whole, naming such a folder (a file
    in the way of ``-o``): strict JSON too, then the summary."""
    Path(os.fsdecode(b"f\xe9")).write_bytes(b"")
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    res = cli("--json", "-o", os.fsdecode(b"f\xe9/sub"), url)
    assert res.returncode == 7, res.stderr
    error, summary = (strict(line) for line in res.stdout.splitlines())
    assert error["event"] == "error" and "f\ufffd" in error["error"], error
    assert (summary["event"], summary["exit_code"]) == ("summary", 7)
    assert b"f\xe9" in res.stderr  # (stderr writes the name's bytes, as ls does)


def test_a_number_that_is_not_finite_is_null() -> None:
    """``NaN`` and ``Infinity`` are no JSON (jq, serde_json and Go refuse them): a value
    that is not finite (a plugin source's ``modified``, a delay) is null, as unknown."""
    out = io.StringIO()
    json_line(out, {"event": "retrying", "delay": math.inf, "n": [math.nan, 1.5]})
    assert strict(out.getvalue()) == {"event": "retrying", "delay": None, "n": [None, 1.5]}
    item = Item(download_url="http://h/f", modified=math.nan, meta={"rate": -math.inf})
    out = io.StringIO()
    print_list([item], out, Masker(), as_json=True, table=False)  # (list --json)
    listed = strict(out.getvalue())
    assert listed["modified"] is None and listed["meta"] == {"rate": None}


def test_a_signal_as_the_command_starts_still_ends_json_with_a_summary(
    httpd: HTTPServer,
) -> None:
    """A SIGTERM (Ctrl+C, SIGHUP) while the command's modules load, before its
    arguments are read: ``--json``'s ``error`` event and summary, exit 130, as one a
    moment later has them. Before: stdout was empty (``omniget: error: interrupted`` on
    stderr only)."""
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    script = (
        "import os, signal, sys\n"
        "import omniget.__main__ as m\n"
        "m._asyncio_without_its_tls = lambda: os.kill(os.getpid(), signal.SIGTERM)\n"
        "sys.argv[1:] = sys.argv[2:]\n"  # (python -c's '-c' is argv[0]; ARGS after it)
        "m.run()\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    kinds = {("--json", url): ["ok", "skipped", "failed", "interrupted", "not_started",
                               "fetched", "resumed", "elapsed"],
             ("list", "--json", url): ["items", "skipped", "failed"],
             ("--dry-run", "--json", url): ["files", "size", "unknown", "skipped", "failed"]}
    for args, counts in kinds.items():
        res = subprocess.run([sys.executable, "-c", script, "x", *args], capture_output=True,
                             env=env, timeout=120, check=False)
        assert res.returncode == 130, res.stderr
        error, summary = (strict(line) for line in res.stdout.splitlines())
        assert error == {"event": "error", "error": "interrupted", "error_type": "Cancelled",
                         "exit_code": 130}
        assert summary == {"event": "summary", **dict.fromkeys(counts, 0), "exit_code": 130}
        assert res.stderr == b"omniget: error: interrupted\n"
    res = subprocess.run([sys.executable, "-c", script, "x", url], capture_output=True,
                         env=env, timeout=120, check=False)
    assert (res.returncode, res.stdout) == (130, b"")  # (no --json: stderr only)
    assert httpd.requests == []


def test_a_ctrl_c_as_the_arguments_are_read_still_ends_json_with_a_summary(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One a moment later, as the arguments are read (no command known yet): the same
    two lines. Before: none (``--json`` was not known to be asked for)."""
    import omniget.cli as cli_module

    def stopped(argv: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "parse_args", stopped)
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    assert main(["--json", "-o", "out", url]) == 130
    out, _ = capsys.readouterr()
    error, summary = (strict(line) for line in out.splitlines())
    assert (error["event"], error["exit_code"]) == ("error", 130)
    assert (summary["event"], summary["exit_code"], summary["ok"]) == ("summary", 130, 0)
    assert main(["list", "--json", url]) == 130
    out, _ = capsys.readouterr()
    assert list(strict(out.splitlines()[-1])) == ["event", "items", "skipped", "failed",
                                                  "exit_code"]


def _readme() -> str:
    return " ".join(README.read_text(encoding="utf-8").split())


def test_readme_names_each_field_of_a_listed_item_and_its_times() -> None:
    """``list --json``'s lines are items with fields the README names, each of them, the
    times said in what unit. Before: "its fields", and ``modified`` and ``expires`` were
    numbers no one said the meaning of."""
    from omniget.cli.output import item_to_dict

    fields = list(item_to_dict(Item(download_url="http://h/f"), Masker()))
    m = re.search(r"`list --json` prints each item[^(]*\(((?:[^()]|\([^()]*\))*)\)", _readme())
    assert m is not None
    assert re.findall(r"`(\w+)`", m[1]) == fields
    assert "`modified` (the file's time: seconds since 1970 UTC, or null)" in m[1]
    assert "`expires` (when its URL stops working: seconds since 1970 UTC, or null)" in m[1]


def test_readme_says_the_values_of_reason_and_verified_and_the_unit_of_delay() -> None:
    """Each value a ``skipped`` event's ``reason`` or a ``finished`` one's ``verified``
    takes, and that ``delay`` and ``elapsed`` are seconds."""
    text = _readme()
    assert "`retrying` (`attempt`, `delay`: seconds till the next try, and the error's" in text
    assert "`elapsed` seconds" in text
    said = re.search(r"A `skipped` event's `reason` is ([^.]*)\.", text)
    assert said is not None
    assert set(re.findall(r"`([\w-]+)` \(", said[1])) == {"exists", "same-name", "filtered"}
    verified = re.search(r"A `finished` event's `verified` is ([^.]*)\.", text)
    assert verified is not None and "`size`" in verified[1] and "null" in verified[1]
    assert "`sha256`" in verified[1]


def test_json_with_o_dash_is_refused_before_anything_as_the_readme_says(
    httpd: HTTPServer,
) -> None:
    """``-O -`` carries the file on stdout: ``--json`` is refused with it (exit 2, stdout
    empty, nothing asked of the server), and the README says so where it says ``-O -``
    and the errors of a command line."""
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    for out in ("-", "/dev/stdout"):
        res = cli("--json", "-O", out, url)
        assert (res.returncode, res.stdout) == (2, b""), res.stderr
        assert b"--json cannot be used with -O" in res.stderr
    assert httpd.requests == []
    text = _readme()
    assert "`--json` is refused with it (stdout carries the file; there is no event)" in text
    line_errors = text[text.index("An error in the command line itself"):]
    assert "`--json` with `-O -`" in line_errors[:1500]


@pytest.mark.skipif(JQ is None, reason="jq is not installed (scripts/test.sh installs it)")
@pytest.mark.parametrize("ending", ["ok-and-failed", "config-error", "sigterm", "sighup",
                                    "sigterm-twice"])
def test_jq_reads_each_line_and_the_summary_last_in_every_ending(
    httpd: HTTPServer, ending: str
) -> None:
    """What jq makes of stdout, however the run ends: a run with files ok and failed,
    one that fails as a whole on its config file, one stopped by SIGTERM or SIGHUP, and
    one quit by a second SIGTERM: every line JSON, the ``summary`` last, with the exit
    code the process ended with."""
    data = b"z" * 300_000
    slow = httpd.add(httpd.new_path("slow.bin"), data) + "?drip=20000"  # (15 s)
    ok, gone = httpd.add(httpd.new_path("ok.bin"), data), httpd.url(httpd.new_path("gone"))
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    if ending in ("ok-and-failed", "config-error"):
        Path("bad.toml").write_text("retries = \n")
        extra = ["--config", "bad.toml"] if ending == "config-error" else []
        res = cli("--json", *extra, "-o", "out", ok, gone)
        stdout, code, err = res.stdout, res.returncode, res.stderr
    else:
        proc = subprocess.Popen([sys.executable, "-m", "omniget", "--json", "-o", "out", slow],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # (the transfer has begun)
        assert json.loads(first)["event"] == "started", first
        sig = signal.SIGHUP if ending == "sighup" else signal.SIGTERM
        proc.send_signal(sig)
        if ending == "sigterm-twice":
            proc.send_signal(sig)
        rest, err = proc.communicate(timeout=60)
        stdout, code = first + rest, proc.returncode
    assert code == {"ok-and-failed": 6, "config-error": 2}.get(ending, 130), err
    events = [e for [e] in jq(stdout, "[.event]")]
    assert events[-1] == "summary" and "summary" not in events[:-1], events
    assert jq(stdout, "select(.event == \"summary\") | .exit_code") == [code]
    if ending == "config-error":
        assert events == ["error", "summary"]


def test_a_second_sigterm_as_a_stopped_start_says_its_lines_leaves_them_whole(
    httpd: HTTPServer,
) -> None:
    """A SIGTERM again, fast (a supervisor's, ``kill`` typed twice), as a run stopped while
    its arguments were read says its lines: they are said whole all the same, exit 130, as
    a second one during the download still has its summary said. Before: the process
    died of it (143) with stdout empty or cut after the ``error`` event."""
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    script = (
        "import os, signal, sys\n"
        "import omniget.cli as c\n"
        "signal.signal(signal.SIGTERM, signal.default_int_handler)\n"  # (as __main__ sets)
        "def stopped(argv):\n"
        "    raise KeyboardInterrupt\n"
        "said = c.print_error\n"
        "def again(text):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    said(text)\n"
        "c.parse_args, c.print_error = stopped, again\n"
        "sys.argv[1:] = sys.argv[2:]\n"
        "c.run()\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    res = subprocess.run([sys.executable, "-c", script, "x", "--json", "-o", "out", url],
                         capture_output=True, env=env, timeout=120, check=False)
    assert res.returncode == 130, (res.returncode, res.stderr)
    assert [strict(line)["event"] for line in res.stdout.splitlines()] == ["error", "summary"]
    assert res.stderr == b"omniget: error: interrupted\n"


def test_a_sigterm_as_a_run_failed_as_a_whole_says_its_lines_leaves_them_whole(
    httpd: HTTPServer,
) -> None:
    """A SIGTERM as a run that failed as a whole (its config file) says its lines: they
    are said whole, with the failure's exit code (the run had ended). Before: it raised
    out of them, exit 130, stdout cut after the ``error`` event or empty."""
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    Path("bad.toml").write_text("retries = \n")
    script = (
        "import os, signal, sys\n"
        "import omniget.cli as c\n"
        "signal.signal(signal.SIGTERM, signal.default_int_handler)\n"  # (as __main__ sets)
        "said = c.print_error\n"
        "def again(text):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    said(text)\n"
        "c.print_error = again\n"
        "sys.argv[1:] = sys.argv[2:]\n"
        "c.run()\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    res = subprocess.run([sys.executable, "-c", script, "x", "--json", "--config", "bad.toml",
                          url], capture_output=True, env=env, timeout=120, check=False)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert [strict(line)["event"] for line in res.stdout.splitlines()] == ["error", "summary"]
    assert strict(res.stdout.splitlines()[-1])["exit_code"] == 2


def test_readme_says_what_a_json_download_does_when_its_reader_goes_away() -> None:
    """It goes on, exit 7 (``tests/cli/test_cli_edges.py`` runs it): said nowhere before,
    where a listing's death by SIGPIPE and ``-O -``'s exit 7 were."""
    assert ("A `--json` download whose reader goes away (`omniget --json URL... | head -1`) "
            "goes on to its end, its files whole, and exits 7 saying its events are "
            "incomplete.") in _readme()


def test_a_journal_another_program_holds_locked_is_a_warning_event_then_the_run(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The resume journal locked by another program (another run's transaction) past the
    wait for it: a ``warning`` event (no ``path`` or ``url``) as the first line, then the
    file's events and the summary, every line strict JSON; stderr has the warning too."""
    from omniget.engine.journal import FILENAME, Journal

    state = tmp_path / "state-dir"
    Journal.in_dir(state).close()
    url = httpd.add(httpd.new_path("a.bin"), b"y" * 5000)
    db = sqlite3.connect(state / FILENAME, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        res = cli("--json", "--state-dir", str(state), "-o", "out", url)
    finally:
        db.close()
    assert res.returncode == 0, res.stderr
    lines = [strict(line) for line in res.stdout.splitlines()]
    warning = lines[0]
    assert set(warning) == {"event", "level", "message"} and warning["event"] == "warning"
    assert "database is locked" in warning["message"]
    assert [r["event"] for r in lines[1:] if r["event"] != "progress"] == [
        "started", "finished", "summary"]
    assert lines[-1]["ok"] == 1 and lines[-1]["exit_code"] == 0
    assert res.stderr.decode().startswith("omniget: warning: resume journal ")


def test_an_error_event_has_the_fields_the_readme_names(capsys: pytest.CaptureFixture[str],
                                                        httpd: HTTPServer) -> None:
    """A run that fails as a whole says so in one ``error`` event: its fields, named in the
    README as a ``failed`` event's are (before: only that there is one)."""
    Path("bad.toml").write_text("retries = \n")
    url = httpd.add(httpd.new_path("a.bin"), b"x")
    assert main(["--json", "--config", "bad.toml", url]) == 2
    error, _ = (strict(line) for line in capsys.readouterr().out.splitlines())
    assert list(error) == ["event", "error", "error_type", "exit_code"]
    assert ("says so in one `error` event (`error`, `error_type`, `exit_code`, as a `failed` "
            "event has them; no `path` or `url`)") in _readme()


class _StopsAtLine(io.StringIO):
    """A stdout whose ``n``-th line's write takes the line, then is cut by a Ctrl+C (as
    Python's buffered stdout does when the signal comes while it waits on a full pipe:
    the line goes out with the next flush all the same)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def write(self, text: str) -> int:
        done = super().write(text)
        if self.getvalue().count("\n") == self.n and text.endswith("\n"):
            self.n = -1
            raise KeyboardInterrupt
        return done


@pytest.mark.parametrize("command", [["list"], ["--dry-run"]], ids=["list", "dry-run"])
def test_a_ctrl_c_as_a_line_is_written_counts_that_line_in_the_summary(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A Ctrl+C while ``list --json`` or ``--dry-run --json`` waits to write a line (its
    reader slow: the pipe full): that line is out, and the summary counts it. Before: one
    line more on stdout than the summary's ``items`` or ``files`` said."""
    urls = [f"http://127.0.0.1:9/f{n}.bin" for n in range(10)]  # (plain links: no request)
    out = _StopsAtLine(3)
    monkeypatch.setattr(sys, "stdout", out)
    assert main([*command, "--json", *urls]) == 130
    *lines, error, summary = (strict(line) for line in out.getvalue().splitlines())
    assert len(lines) == 3 and error["event"] == "error", out.getvalue()
    assert summary["items" if command == ["list"] else "files"] == 3, summary


@pytest.mark.parametrize("command", [["list"], ["--dry-run"]], ids=["list", "dry-run"])
def test_a_ctrl_c_while_a_slow_reader_holds_the_pipe_full_counts_every_line_out(
    tmp_path: Path, command: list[str]
) -> None:
    """The same, as a user meets it: ``list --json`` into a reader that has not read yet
    (the pipe full, the command waiting to write), then Ctrl+C: every line on stdout is
    whole and the summary's count is the lines printed."""
    import fcntl
    import termios
    import time

    long = "p/" * 60
    Path("urls.txt").write_text("".join(f"http://127.0.0.1:9/{long}f{n}.bin\n"
                                        for n in range(20_000)))
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "omniget", *command, "--json", "-i",
                             "urls.txt"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None
    size = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
    queued = bytearray(4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # (till the pipe is full: the command waits)
        fcntl.ioctl(proc.stdout.fileno(), termios.FIONREAD, queued)
        if int.from_bytes(queued, sys.byteorder) >= size - 4096:  # (a page: lines split)
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    *printed, error, summary = (strict(line) for line in out.splitlines())
    assert error["event"] == "error" and len(printed) > 50
    assert summary["items" if command == ["list"] else "files"] == len(printed), summary
