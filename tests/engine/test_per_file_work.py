"""Work a run of many small files does per file only when it is of use to someone: what it
skips must leave the files, the report and what listeners see exactly as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget.engine.job as job
from omniget import download
from omniget.cli import main
from omniget.engine.events import Event, Finished, Progress, Started
from omniget.settings import Settings


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the per-file events the jobs build (the real events, counted)."""
    names: list[str] = []

    def counted(cls: type[Event]) -> Callable[..., Event]:
        def make(*args: object, **kwargs: object) -> Event:
            names.append(cls.__name__)
            return cls(*args, **kwargs)  # type: ignore[arg-type]

        return make

    for cls in (Started, Progress, Finished):
        monkeypatch.setattr(job, cls.__name__, counted(cls))
    return names


def small_files(httpd: HTTPServer, n: int = 3) -> list[str]:
    return [httpd.add(f"/small/f{i}.bin", bytes([i]) * (100 + i)) for i in range(n)]


def test_a_run_nobody_listens_to_builds_no_per_file_events(
    httpd: HTTPServer, tmp_path: Path, built: list[str]
) -> None:
    urls = small_files(httpd)

    report = download(urls, tmp_path / "a", settings=Settings(state_dir=tmp_path / "st"))

    assert report.ok == 3 and built == []
    seen: list[Event] = []
    report = download(
        urls, tmp_path / "b", settings=Settings(state_dir=tmp_path / "st"), on_event=seen.append
    )
    assert report.ok == 3
    kinds = [type(e).__name__ for e in seen]
    assert sorted(built) == sorted(kinds)
    assert kinds.count("Started") == kinds.count("Finished") == 3
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]


def test_the_quiet_cli_builds_no_per_file_events(
    httpd: HTTPServer, tmp_path: Path, built: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    urls = small_files(httpd)
    state = ["--state-dir", str(tmp_path / "st")]

    assert main(["-q", "-o", str(tmp_path / "q"), *state, *urls]) == 0
    assert built == [] and capsys.readouterr().err == ""
    assert main(["-o", str(tmp_path / "loud"), *state, *urls]) == 0  # (lines per file)
    assert built.count("Finished") == 3
    assert capsys.readouterr().err.count("done ") == 3
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]
