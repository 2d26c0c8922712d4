"""The console script's last steps (:func:`omniget.cli.run`): a Ctrl+C that comes once
``main`` has returned, or that escapes it, ends the process with no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: main replaced; a SIGINT sent where the test says
SCRIPT = textwrap.dedent("""
    import logging, os, signal, sys
    import omniget.cli as cli
    where = sys.argv[1]

    def interrupt():
        os.kill(os.getpid(), signal.SIGINT)

    def main():
        if where == "escapes":
            raise KeyboardInterrupt
        return 3

    if where == "after":  # (run() shuts logging down after main: Ctrl+C lands there)
        real = logging.shutdown
        logging.shutdown = lambda: (interrupt(), real())
    cli.main = main
    cli.run()
""")


@pytest.mark.parametrize(("where", "code"), [("after", 3), ("escapes", 130)])
def test_a_late_ctrl_c_ends_with_the_run_s_code_and_no_traceback(where: str, code: int) -> None:
    """Before: a Ctrl+C between main's return and the exit printed a traceback (and the
    shell saw the interpreter's exit code for it)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, where], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr) == (code, "")


#: ``list --json``, stopped by a Ctrl+C (from the listing), and Ctrl+C again as each of the
#: last lines is written (two more typed fast), or as the streams are flushed at the end
#: after one that escaped main
AGAIN = textwrap.dedent("""
    import json, os, signal, sys
    import omniget.cli as cli
    where = sys.argv[1]

    def interrupt():
        os.kill(os.getpid(), signal.SIGINT)  # (Python's own handler: KeyboardInterrupt)

    def listing(ns, cfg, mask):
        interrupt()
        return 0

    write = cli.json_line
    def json_line(out, record):
        if where == "lines":
            interrupt()
        write(out, record)

    def escapes():  # (a Ctrl+C that came past main's own handling of one)
        print(json.dumps({"event": "error"}))
        print(json.dumps({"event": "summary"}))
        flush = sys.stdout.flush  # (the stream run() made)
        def flushed():
            interrupt()
            flush()
        sys.stdout.flush = flushed
        raise KeyboardInterrupt

    cli.RUNNERS["list"] = listing
    cli.json_line = json_line
    if where == "flush":
        cli.main = escapes
        sys.stderr.write("omniget: error: interrupted\\n")
    sys.argv[1:] = ["list", "--json", "http://127.0.0.1:9/a.bin"]
    cli.run()
""")


@pytest.mark.parametrize("where", ["lines", "flush"])
def test_ctrl_c_again_as_an_interrupted_list_says_its_last_lines_changes_nothing(
    where: str,
) -> None:
    """``list`` and ``--dry-run`` stop at the first Ctrl+C (Python's own handler). Typed
    thrice fast, the others landed as the last lines were written: the --json summary was
    lost, and one in the last flush printed a traceback (the process died of SIGINT)."""
    done = subprocess.run([sys.executable, "-c", AGAIN, where], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "omniget: error: interrupted\n")
    events = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert events == ["error", "summary"], done.stdout


#: ``get``, a Ctrl+C (a real SIGINT, to the run's own handler) landing once the handlers
#: are set, before the engine has taken the first URL of the list
EARLY = textwrap.dedent("""
    import os, signal, sys
    import omniget
    import omniget.cli as cli

    real = omniget.download
    def download(items, dest, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        assert kw["cancel"].wait(30)  # (the handler ran: the run is stopped)
        return real(items, dest, **kw)

    omniget.download = download
    urls = [f"http://127.0.0.1:9/{n}.bin" for n in "abc"]
    sys.argv[1:] = ["get", *sys.argv[1:], "-o", "out", *urls]
    cli.run()
""")


@pytest.mark.isolated
@pytest.mark.parametrize("json_out", [False, True], ids=["plain", "json"])
def test_a_ctrl_c_before_the_engine_took_the_list_counts_it_not_started(json_out: bool) -> None:
    """Before: "0 files ok, 0 skipped, 0 failed, 0 B in 0.52s", the three files given
    unsaid (the --json summary's ``not_started`` 0); now they are "not started", as the
    rest of a list is when a stop comes after some files began."""
    flags = ["--json"] if json_out else []
    done = subprocess.run([sys.executable, "-c", EARLY, *flags], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    if json_out:
        summary = json.loads(done.stdout.splitlines()[-1])
        assert summary["event"] == "summary", done.stdout
        assert (summary["ok"], summary["failed"], summary["interrupted"],
                summary["not_started"]) == (0, 0, 0, 3), summary
    else:
        assert "0 files ok, 0 skipped, 0 failed, 3 not started, 0 B in " in done.stderr, (
            done.stderr)


#: ``list --json`` or ``get --dry-run --json`` of a long list, a Ctrl+C (Python's own
#: handler: KeyboardInterrupt) landing as the line after the 1,500th is to be written
#: (as where a reader is slow: the write waits)
MIDWAY = textwrap.dedent("""
    import os, signal, sys
    import omniget.cli as cli
    import omniget.cli.dryrun as dryrun
    import omniget.cli.output as output

    real = output.put
    lines = 0
    def put(out, text, *taken):
        global lines
        if lines == 1500:
            os.kill(os.getpid(), signal.SIGINT)
        real(out, text, *taken)
        lines += 1

    output.put = dryrun.put = put
    with open("urls.txt", "w") as f:
        f.writelines(f"http://127.0.0.1:9/f{n}.bin\\n" for n in range(3000))
    sys.argv[1:] = [*sys.argv[1:], "--json", "-i", "urls.txt"]
    cli.run()
""")


@pytest.mark.isolated
@pytest.mark.parametrize(("args", "key"), [(["list"], "items"),
                                           (["get", "--dry-run", "-o", "out"], "files")],
                         ids=["list", "dry-run"])
def test_an_interrupted_listing_s_json_summary_counts_the_lines_it_printed(
    args: list[str], key: str,
) -> None:
    """Before: ``items: 0`` (``files: 0``) after some 1,500 items were printed: the count
    was made at the end, which the interrupt never reached; now it is made as they go."""
    done = subprocess.run([sys.executable, "-c", MIDWAY, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    *printed, error, summary = records
    assert (error["event"], summary["event"]) == ("error", "summary"), records[-3:]
    assert len(printed) >= 1500 and all("event" not in r or r["event"] not in (
        "error", "summary") for r in printed)
    assert summary[key] == len(printed), summary
