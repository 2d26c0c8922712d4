"""What a whole run prints, against the local server: its ``--json`` events against its
summary, and against the counts line the same run says without ``--json``."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)

ENDS = ("finished", "failed", "skipped")


def strict(line: str) -> dict[str, Any]:
    """One JSON line, refused if it holds what JSON has not (NaN, Infinity)."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    record = json.loads(line, parse_constant=refuse)
    assert isinstance(record, dict), line
    return record


def a_mix(httpd: HTTPServer, folder: str) -> list[str]:
    """The arguments of a run of every kind of file: fetched whole, after a 503 and after a
    reset (resumed), from a mirror, chunked, named by the server in CJK, not found, left
    out by --exclude, there already, and named as an earlier one."""
    data = bytes(range(256)) * 200
    urls = {name: httpd.add(httpd.new_path(name), data) for name in
            ("plain.bin", "busy.bin", "cut.bin", "chunked.bin", "cd.bin", "same.bin",
             "there.bin", "left.out")}
    gone = httpd.url(httpd.new_path("gone.bin"))
    mirror = httpd.add(httpd.new_path("mirror.bin"), data)
    Path(folder).mkdir()
    Path(folder, "there.bin").write_bytes(b"mine")
    Path(f"{folder}.txt").write_text(f"{httpd.url(httpd.new_path('mirror.bin'))}\t{mirror}\n")
    other = httpd.add(httpd.new_path("same.bin"), data)
    return ["-o", folder, "-i", f"{folder}.txt", "--exclude", "*.out", "--retries", "3",
            urls["plain.bin"], urls["busy.bin"] + "?status=503&times=1",
            urls["cut.bin"] + "?reset=20000&times=1", urls["chunked.bin"] + "?chunked=1",
            urls["cd.bin"] + "?cd=%E6%97%A5%E6%9C%AC.bin", urls["same.bin"], other,
            urls["there.bin"], urls["left.out"], gone]


def test_every_file_of_a_mixed_run_ends_once_and_the_summary_counts_the_events(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--json", *a_mix(httpd, "json")])
    out, err = capsys.readouterr()
    events = [strict(line) for line in out.splitlines()]  # (nothing else on stdout)
    summary = events.pop()
    assert summary["event"] == "summary" and summary["exit_code"] == code == 6, events
    started = Counter(e["url"] for e in events if e["event"] == "started")
    ended = Counter(e["url"] for e in events if e["event"] in ENDS)
    assert set(started) <= set(ended) and set(ended.values()) == {1}, (started, ended)
    assert len(ended) == 11, ended
    assert "json/日本.bin" in {e["path"] for e in events if e["event"] == "finished"}
    kinds = Counter(e["event"] for e in events if e["event"] in ENDS)
    assert (kinds["finished"], kinds["skipped"], kinds["failed"]) == (
        summary["ok"], summary["skipped"], summary["failed"]) == (7, 3, 1), events
    fetched = sum(e["fetched"] for e in events if e["event"] == "finished")
    assert summary["fetched"] == fetched >= 7 * 51200, (summary, fetched)
    assert err.count("omniget: error: ") == 1, err

    # the same run without --json: the same counts, and stderr alone
    assert main(a_mix(httpd, "plain")) == 6
    out, err = capsys.readouterr()
    assert out == ""
    last = err.splitlines()[-1]
    assert re.fullmatch(r"7 files ok, 3 skipped, 1 failed, \d+\.\d KiB in [0-9.]+s "
                        r"\([0-9.]+ [KM]iB/s\)", last), err
