"""The state folder as the output folder: a file named as omniget's resume journal, or a
file SQLite keeps beside it, is saved beside them under another name, never in their
place (the journal stays, with its records)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine.events import Event, Warned

NAMES = ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "JOURNAL.sqlite"]


def _run(urls: list[str], out: Path, events: list[Event], mode: str) -> omniget.Report:
    settings = omniget.Settings(state_dir=out, on_exists=mode, retries=0)  # type: ignore[arg-type]
    return omniget.download(urls, out, settings=settings, on_event=events.append)


@pytest.mark.parametrize("mode", ["overwrite", "skip", "rename"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("how", ["url", "content-disposition"])
def test_a_file_named_as_the_journal_is_saved_beside_it(
    httpd: HTTPServer, tmp_path: Path, name: str, how: str, mode: str
) -> None:
    """Before: with on_exists="overwrite" the file took the journal's place (the run
    warned it was damaged or removed, moved it aside, and its records were lost); with
    "skip" the journal was taken for the file, skipped as there already."""
    out = tmp_path / "out"
    first = httpd.add(httpd.new_path("a.bin"), b"a" * 100)
    assert _run([first], out, [], mode).ok == 1
    assert (out / "journal.sqlite").is_file()
    body = b"not omniget's journal" * 10
    if how == "url":
        url = httpd.add(httpd.new_path(name), body)
    else:
        path = httpd.new_path("x.bin")
        httpd.add(path, body)
        url = httpd.url(path, cd=name)
    events: list[Event] = []
    report = _run([url, first], out, events, mode)
    assert report.failed == 0, report.failures
    [result] = [r for r in report.results if r.item.download_url == url]
    assert result.status == "ok" and result.path is not None
    assert result.path.parent == out and result.path.name.lower() != name.lower()
    assert result.path.read_bytes() == body
    said = [e.message for e in events if isinstance(e, Warned)]
    assert any("resume journal" in m for m in said), said
    assert not [n for n in os.listdir(out) if ".corrupt-" in n]
    # the journal kept its record of a.bin: a third run skips it with no word of damage
    again: list[Event] = []
    assert _run([first], out, again, "skip").skipped == 1
    assert not [e for e in again if isinstance(e, Warned)]


def test_a_file_named_as_the_journal_elsewhere_keeps_its_name(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    url = httpd.add(httpd.new_path("journal.sqlite"), b"j" * 10)
    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0)
    report = omniget.download(url, tmp_path / "out", settings=settings)
    assert [r.path for r in report.results] == [tmp_path / "out" / "journal.sqlite"]
