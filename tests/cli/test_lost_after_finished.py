"""A file the disk reported a write error for after it was put in place and reported
finished (its part-file sync slower than the run's wait for it, then EIO): what the
command says. The CLI in-process against the local server, its part-file syncs faked
(see tests/engine/_syncs.py)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.engine._syncs import slow_sync_after_place
from tests.servers.httpd import HTTPServer

import omniget
from omniget.cli import main
from omniget.settings import Settings

KiB = 1024

pytestmark = pytest.mark.isolated


def _lost(sync: Callable[[int], bool], fd: int) -> bool:
    os.close(fd)
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _command(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, Path]:
    """The file's URL and path; the command's downloads get the settings of its syncs."""
    body = payload(512 * KiB, 67)
    want, out, url, _ = slow_sync_after_place(httpd, body, tmp_path, monkeypatch, _lost)
    syncs = {k: getattr(want, k) for k in (
        "split", "retries", "fsync_seconds", "checkpoint_bytes", "checkpoint_seconds"
    )}
    real = omniget.download

    def download(*args: Any, settings: Settings, **kw: Any) -> omniget.Report:
        return real(*args, settings=dataclasses.replace(settings, **syncs), **kw)

    monkeypatch.setattr(omniget, "download", download)
    return url, out


def test_json_says_the_file_failed_after_it_finished_and_the_run_exits_7(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: a ``warned`` line after ``finished``, a summary of 1 ok, exit 0."""
    url, out = _command(httpd, payload, tmp_path, monkeypatch)
    assert main(["--json", url, "-o", "out"]) == 7
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ends = [d for d in lines if d["event"] in ("finished", "failed")]
    assert [d["event"] for d in ends] == ["finished", "failed"]
    assert ends[0]["path"] == ends[1]["path"] and ends[1]["path"].endswith(out.name)
    assert ends[1]["after_finished"] is True and ends[1]["exit_code"] == 7
    assert ends[1]["error_type"] == "StorageError"
    assert "run the same command again" in ends[1]["error"]
    assert not [d for d in lines if d["event"] == "warned"]
    summary = lines[-1]
    assert (summary["event"], summary["ok"], summary["failed"], summary["exit_code"]) == (
        "summary", 0, 1, 7
    )


def test_the_counts_line_and_the_failures_say_so(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    url, out = _command(httpd, payload, tmp_path, monkeypatch)
    assert main([url, "-o", "out"]) == 7
    said = capsys.readouterr()
    assert "0 files ok, 0 skipped, 1 failed" in said.err
    assert "omniget: error: " in said.err and "after it was put in place" in said.err
    assert "saved " not in said.err and out.exists()
