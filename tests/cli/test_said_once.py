"""A cause many files share is said once, with their count: a host found down (its
other files not tried), a proxy nobody answers at. The ``--json`` stream keeps one end
event per file, and the summary and the exit code count each file as failed."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses every connection (bound, not listening: no one
    else takes it while the test runs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def url_list(urls: list[str]) -> str:
    Path("urls.txt").write_text("".join(u + "\n" for u in urls))
    return "urls.txt"


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("omniget: error: ")]


def test_files_of_a_host_found_down_are_one_line_with_their_count(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    files = 12  # (at most 4 + 1 are tried: -N 4, and two give up to find it down)
    urls = [f"http://127.0.0.1:{closed_port}/f{i}" for i in range(files)]
    assert main(["-i", url_list(urls), "-o", "out", "--retries", "0"]) == 3
    lines = errors(capsys.readouterr().err)
    down = [line for line in lines if "not tried" in line]
    assert len(down) == 1, lines
    count = int(down[0].split()[2])
    assert down[0].startswith(f"omniget: error: {count} files not tried: 127.0.0.1:"
                              f"{closed_port} is down, another file gave up on it: ")
    assert count >= files - 5 and count + len(lines) - 1 == files, lines


def test_a_host_found_down_keeps_one_json_end_event_per_file(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    files = 12
    urls = [f"http://127.0.0.1:{closed_port}/f{i}" for i in range(files)]
    assert main(["--json", "-i", url_list(urls), "-o", "out", "--retries", "0"]) == 3
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    ended = [e for e in events if e["event"] == "failed"]
    assert len(ended) == files
    assert sum("not tried" in e["error"] for e in ended) >= files - 5
    assert events[-1]["failed"] == files and events[-1]["exit_code"] == 3
    assert sum("not tried" in line for line in errors(err)) == 1  # (stderr: once)


def test_files_not_tried_are_counted_failed_in_the_summary(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [f"http://127.0.0.1:{closed_port}/f{i}" for i in range(12)]
    assert main(["-i", url_list(urls), "-o", "out", "--retries", "0"]) == 3
    err = capsys.readouterr().err
    assert "0 files ok, 0 skipped, 12 failed" in err.splitlines()[-1]


def test_a_proxy_nobody_answers_at_is_one_line_for_the_run(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    files = 6  # (each of another host: none is found down)
    urls = [f"http://h{i}.test/f{i}" for i in range(files)]
    proxy = f"http://me:s3cr3t@127.0.0.1:{closed_port}"
    code = main(["-i", url_list(urls), "-o", "out", "--retries", "0", "--proxy", proxy])
    assert code == 3
    err = capsys.readouterr().err
    assert "s3cr3t" not in err
    assert errors(err) == [
        f"omniget: error: {files} files failed: could not connect to the proxy "
        f"http://me:***@127.0.0.1:{closed_port}: Connection refused (check --proxy)"
    ]
    assert f"0 files ok, 0 skipped, {files} failed" in err.splitlines()[-1]


def test_one_file_through_a_proxy_nobody_answers_at_keeps_its_own_line(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = f"http://127.0.0.1:{closed_port}"
    assert main(["http://h.test/f", "-o", "out", "--retries", "0", "--proxy", proxy]) == 3
    (line,) = errors(capsys.readouterr().err)
    assert line.startswith(f"omniget: error: out/f: could not connect to the proxy {proxy}"
                           " for http://h.test/f: Connection refused (check --proxy)")


def test_files_of_one_host_behind_a_proxy_that_is_down_are_one_line_too(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its host is found down, for the proxy's failure: the files not tried count with
    the proxy's line (not a second one for the host)."""
    files = 12
    urls = [f"http://h.test/f{i}" for i in range(files)]
    proxy = f"http://127.0.0.1:{closed_port}"
    assert main(["-i", url_list(urls), "-o", "out", "--retries", "0", "--proxy", proxy]) == 3
    assert errors(capsys.readouterr().err) == [
        f"omniget: error: {files} files failed: could not connect to the proxy {proxy}: "
        "Connection refused (check --proxy)"
    ]
