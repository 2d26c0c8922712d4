"""Folders where creating a file is slow: part files are created on the run's file thread,
ahead of their answers, and every one made for nothing is removed again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget.engine.context as context
from omniget import download
from omniget.engine.assemble import PART_SUFFIX, create_part
from omniget.engine.events import Event, Finished
from omniget.settings import Settings


def test_a_folder_is_slow_after_a_few_slow_creates(tmp_path: Path) -> None:
    ctx = context.RunContext.__new__(context.RunContext)
    ctx._slow_creates = {}
    slow, fast = context.SLOW_CREATE, context.SLOW_CREATE / 10
    a, b = tmp_path / "a", tmp_path / "b"
    for seconds in (slow, fast, slow):
        ctx.timed_create(f"{a}/x{PART_SUFFIX}", seconds)
    ctx.timed_create(f"{b}/x{PART_SUFFIX}", slow * 5)
    assert not ctx.creates_slowly(a / "next.bin")
    ctx.timed_create(f"{a}/y{PART_SUFFIX}", slow)
    assert ctx.creates_slowly(a / "next.bin")
    assert not ctx.creates_slowly(b / "next.bin")
    assert not ctx.creates_slowly(a / "sub" / "next.bin")


def test_stray_slow_creates_do_not_make_a_folder_slow(tmp_path: Path) -> None:
    ctx = context.RunContext.__new__(context.RunContext)
    ctx._slow_creates = {}
    slow, fast = context.SLOW_CREATE, context.SLOW_CREATE / 10
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(2000):  # a slow one now and then (a busy moment): still fast
        ctx.timed_create(f"{a}/x{i}{PART_SUFFIX}", slow if i % 10 == 0 or i == 1001 else fast)
        assert not ctx.creates_slowly(a / "next.bin"), i
    for i in range(30):  # one in three for a while: slow
        ctx.timed_create(f"{b}/x{i}{PART_SUFFIX}", slow if i % 3 == 0 else fast)
        if ctx.creates_slowly(b / "next.bin"):
            break
    else:
        pytest.fail("one slow create in three never made the folder slow")


@pytest.fixture
def every_create_slow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Count every create as slow; log (thread name, part file) of each created ahead."""
    monkeypatch.setattr(context, "SLOW_CREATE", 0.0)
    monkeypatch.setattr(context, "SLOW_SCORE", 1.0)
    made: list[tuple[str, str]] = []
    real = create_part  # (the one context calls, patched below)

    def logged(
        final: Path, made_dirs: set[str] | None = None, folder: str | None = None,
        text: str | None = None,
    ) -> int:
        made.append((threading.current_thread().name, final.name))
        assert text is None or text == str(final)
        return real(final, made_dirs, folder, text)

    monkeypatch.setattr(context, "create_part", logged)
    return made


def parts_left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{PART_SUFFIX}"))


def test_slow_folder_creates_ahead_and_leaves_no_part_file(
    httpd: HTTPServer, tmp_path: Path, every_create_slow: list[tuple[str, str]]
) -> None:
    blobs = {f"f{i:02}.bin": bytes([i]) * (1000 + i) for i in range(16)}
    urls = [httpd.add(f"/d/{name}", data) for name, data in blobs.items()]
    missing = [httpd.url(f"/d/gone{i}.bin") for i in range(3)]
    renamed = httpd.add(
        "/d/download.php", b"named by the server",
        headers={"Content-Disposition": 'attachment; filename="real.bin"'},
    )
    out = tmp_path / "out"
    settings = Settings(state_dir=tmp_path / "state", jobs=1)
    report = download([*urls, *missing, renamed], out, settings=settings)

    assert (report.ok, report.failed) == (17, 3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        **blobs, "real.bin": b"named by the server"
    }
    assert parts_left(tmp_path) == []
    ahead = {name for thread, name in every_create_slow}
    assert {thread for thread, _ in every_create_slow} == {"omniget-files"}
    assert len(ahead) >= 14  # all but the first (set up before any create was timed)
    assert {"gone2.bin", "download.php"} <= ahead  # made ahead, then removed


def test_a_part_file_already_there_is_opened_as_before(
    httpd: HTTPServer, tmp_path: Path, every_create_slow: list[tuple[str, str]]
) -> None:
    """An earlier run's part file without a journal record: the create ahead leaves it
    alone and the usual open starts it over."""
    names = [f"f{i}.bin" for i in range(8)]
    urls = [httpd.add(f"/{n}", n.encode() * 100) for n in names]
    out = tmp_path / "out"
    out.mkdir()
    (out / f"f7.bin{PART_SUFFIX}").write_bytes(b"x" * 5000)
    report = download(urls, out, settings=Settings(state_dir=tmp_path / "s", jobs=1))
    assert report.ok == 8
    assert (out / "f7.bin").read_bytes() == b"f7.bin" * 100
    assert parts_left(out) == []


def test_a_cancelled_run_removes_what_it_created_ahead(
    httpd: HTTPServer, tmp_path: Path, every_create_slow: list[tuple[str, str]]
) -> None:
    gate = threading.Event()

    def held(_req: object) -> tuple[int, dict[str, str], bytes]:
        gate.wait(60)  # (the test sets it in its finally)
        return 200, {}, b"late"

    urls = [httpd.add(f"/q{i}.bin", b"quick" * 10) for i in range(4)]
    urls += [httpd.handle(f"/slow{i}.bin", held) for i in range(6)]
    out = tmp_path / "out"
    cancel = threading.Event()

    def cancel_when_waiting(ev: Event) -> None:
        if isinstance(ev, Finished) and ev.path == out / "q3.bin":
            threading.Timer(0.2, cancel.set).start()

    try:
        report = download(
            urls, out, settings=Settings(state_dir=tmp_path / "s", jobs=2),
            on_event=cancel_when_waiting, cancel=cancel,
        )
    finally:
        gate.set()
    listed = [r.item.filename for r in report.results]
    assert report.ok == 4 and report.interrupted == len(listed) - 4 > 0
    # once cancelled, the run sets no more files up (it used to start one more, which
    # then ran to its end)
    assert all(httpd.requests_to(f"/slow{i}.bin") == [] for i in range(len(listed) - 4, 6))
    assert parts_left(out) == []
    assert any(name.startswith("slow") for _, name in every_create_slow)


def test_a_part_file_created_ahead_is_locked_against_another_run(
    httpd: HTTPServer, tmp_path: Path, every_create_slow: list[tuple[str, str]]
) -> None:
    """A part file created ahead is this run's from the start: another run on the folder
    (here a second download in a thread) is refused while the answer is still on its way.
    It was unlocked until then: the other run took it, finished and renamed it, and this
    run then wrote into the other's finished file and failed with "No such file or
    directory while finishing"."""
    gate = threading.Event()
    mine = b"the first run's bytes" * 100

    def held(_req: object) -> tuple[int, dict[str, str], bytes]:
        gate.wait(60)  # (the test sets it in its finally)
        return 200, {}, mine

    urls = [httpd.add(f"/q{i}.bin", b"quick" * 10) for i in range(3)]
    urls.append(httpd.handle("/a/x.bin", held))
    other = httpd.add("/b/x.bin", b"the other run's bytes" * 100)  # (the same name)
    out = tmp_path / "out"
    part = out / f"x.bin{PART_SUFFIX}"
    first: list[object] = []
    runner = threading.Thread(target=lambda: first.append(download(
        urls, out, settings=Settings(state_dir=tmp_path / "s1", jobs=1))))
    runner.start()
    try:
        for _ in range(500):
            if part.exists():
                break
            time.sleep(0.01)
        assert part.exists() and ("omniget-files", "x.bin") in every_create_slow
        second = download([other], out, settings=Settings(state_dir=tmp_path / "s2"))
    finally:
        gate.set()
        runner.join(10)
    assert second.failed == 1
    assert "being downloaded by another omniget run" in str(second.failures[0].error)
    [report] = first
    assert getattr(report, "ok", None) == 4, report
    assert (out / "x.bin").read_bytes() == mine
    assert parts_left(out) == []
