"""A run's end waits for the sync of its finished files' filesystems (durable.py): one
under way, and one of what is left. A disk that does not answer (NFS, a dying USB stick)
does not hold the run's end up: it waits SYNC_WAIT seconds at most, then says which
folder's files were not confirmed written; those keep their marks, made unconfirmed ones
(a rerun on another boot checks them, one on the same boot fetches them again), unless
that sync returns well later, which clears them as ever."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.engine._marks import marked_folder
from tests.engine._syncs import nth_sync
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import checkpoints, core, durable
from omniget.engine.durable import ATTR, Durability, read_mark
from omniget.engine.journal import boot_id
from omniget.engine.mark import Mark
from omniget.settings import Settings

WAIT = 30.0


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return marked_folder(tmp_path)


class Hung:
    """A sync of the filesystems that waits for ``go`` (WAIT seconds at most): ``started``
    once one waits, ``back`` once one returned."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started = threading.Event()
        self.back = threading.Event()

    def __call__(self, folders: list[str]) -> bool:
        self.started.set()
        self.go.wait(WAIT)
        self.back.set()
        return True


@pytest.fixture
def hung(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hung]:
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)
    sync = Hung()
    try:
        yield sync
    finally:
        sync.go.set()


def marked(path: Path) -> os.stat_result:
    path.write_bytes(b"x")
    os.setxattr(path, ATTR, Mark("b00t", 1).encode())
    return os.stat(path)


def test_a_sync_under_way_that_hangs_is_waited_for_a_while_and_named(
    out: Path, hung: Hung, caplog: pytest.LogCaptureFixture,
) -> None:
    """One file's sync began (fsync_seconds 0) and does not return; another finished
    since. settle() returns after SYNC_WAIT (before, it waited for ever), starts no other
    sync, and warns of the folder; both files keep their marks. The sync returning later
    clears the first's mark (it was written before it began), not the second's."""
    first, second = out / "a.bin", out / "b.bin"

    async def go() -> tuple[bool, int]:
        d = Durability(0.0, boot="b00t", sync=hung)
        d.finished(str(first), marked(first))
        assert await asyncio.to_thread(hung.started.wait, WAIT)
        d.finished(str(second), marked(second))
        try:
            await asyncio.wait_for(d.settle(), WAIT)
            return read_mark(str(first)) is not None and read_mark(str(second)) is not None, 1
        finally:
            hung.go.set()

    with caplog.at_level(logging.WARNING):
        kept, _ = asyncio.run(go())
    assert kept
    [said] = [r.getMessage() for r in caplog.records]
    assert str(out) in said and "2 finished files" in said
    assert hung.back.is_set()
    assert read_mark(str(first)) is None and read_mark(str(second)) is not None


def test_the_runs_own_sync_at_its_end_that_hangs_is_waited_for_a_while(
    out: Path, hung: Hung, caplog: pytest.LogCaptureFixture,
) -> None:
    """No sync under way; the one settle() starts for what is left hangs: the same."""
    first = out / "a.bin"

    async def go() -> bool:
        d = Durability(3600.0, boot="b00t", sync=hung)
        d.finished(str(first), marked(first))
        try:
            await asyncio.wait_for(d.settle(), WAIT)
            return read_mark(str(first)) is not None
        finally:
            hung.go.set()

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(go())
    [said] = [r.getMessage() for r in caplog.records]
    assert str(out) in said and "1 finished file " in said


def test_download_returns_while_the_sync_of_its_files_hangs(
    httpd: HTTPServer, out: Path, tmp_path: Path, hung: Hung,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The end-to-end case: download() returns (exit 0: the files are whole and in
    place) while the sync hangs; the file keeps its mark. Before, the run waited for the
    sync, and asyncio.run for the default executor's thread it ran on."""
    monkeypatch.setattr(durable, "sync_filesystems", hung)
    url = httpd.add("/d/x.bin", b"y" * 16384)
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, [url], out, settings=Settings(state_dir=tmp_path / "s"))
        try:
            report = run.result(WAIT)
            mark = read_mark(str(out / "x.bin"))
        finally:
            hung.go.set()
    assert report.exit_code == 0 and mark is not None
    assert any(str(out) in r.getMessage() for r in caplog.records)


def test_the_runs_end_has_one_deadline_for_all_its_syncs(
    httpd: HTTPServer, payload: Callable[..., bytes], out: Path, tmp_path: Path,
    hung: Hung, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finished file whose filesystem sync hangs, and a failed file whose last part-file
    sync hangs too. Before, the run's end waited SYNC_WAIT for the one, then SYNC_WAIT
    again for the other; now every wait of its end ends by one deadline, SYNC_WAIT after
    the first began."""
    monkeypatch.setattr(durable, "sync_filesystems", hung)
    part_go = threading.Event()

    def part_sync_hangs(sync: Callable[[int], bool], fd: int) -> bool:
        part_go.wait(WAIT)
        return sync(fd)

    nth_sync(monkeypatch, 1, part_sync_hangs)
    # when the run's end first waited, then the end of each of its waits that waits
    loop_time: list[float] = []
    real_wait = asyncio.wait
    ends = ("omniget.engine.durable", "omniget.engine.checkpoints")

    async def wait(fs: Any, *, timeout: float | None = None, **kw: Any) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__")
        if caller in ends and timeout is not None and settling:
            now = asyncio.get_running_loop().time()
            if not loop_time:
                loop_time.append(now)
            if timeout > 0:  # (one begun past the deadline looks and returns at once)
                loop_time.append(now + timeout)
        return await real_wait(fs, timeout=timeout, **kw)

    settling: list[int] = []  # (the run's end began: its part-file syncs are waited first)
    end_syncs = checkpoints.end_syncs

    async def watched_end(ctx: Any, *a: Any) -> None:
        settling.append(1)
        await end_syncs(ctx, *a)

    monkeypatch.setattr(asyncio, "wait", wait)
    monkeypatch.setattr(core, "end_syncs", watched_end)
    good = httpd.add("/d/good.bin", b"g" * 16384)
    path = httpd.new_path("bad.bin")
    httpd.add(path, payload(256 * 1024, 7))
    settings = Settings(state_dir=tmp_path / "s", split=1, retries=0, fsync_seconds=3600.0,
                        checkpoint_bytes=64 * 1024, checkpoint_seconds=3600.0)
    try:
        report = download([good, httpd.url(path, reset=200 * 1024, times=1)], out,
                          settings=settings)
        mark = read_mark(str(out / "good.bin"))
    finally:
        part_go.set()
        hung.go.set()
    assert report.failed == 1 and mark is not None
    first, *deadlines = loop_time
    assert deadlines
    assert max(deadlines) <= first + checkpoints.SYNC_WAIT + 1e-6, (first, deadlines)


def test_a_rerun_on_the_same_boot_does_not_trust_a_file_whose_sync_never_came_back(
    httpd: HTTPServer, out: Path, tmp_path: Path, hung: Hung,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's end gave up on a sync that hangs: the file's mark says so (its boot, as
    unconfirmed). A rerun on the same boot reads its bytes from memory, whatever the disk
    holds, so it cannot check them: it fetches the file again (before, it trusted a mark
    of this boot and skipped it). The sync that returns later clears the mark as ever."""
    monkeypatch.setattr(durable, "sync_filesystems", hung)
    data = b"y" * 16384
    url = httpd.add("/d/x.bin", data)
    settings = Settings(state_dir=tmp_path / "s")
    try:
        assert download([url], out, settings=settings).exit_code == 0
        # (made so on a thread the run's end waits for a while: a loaded machine's may
        # come after it)
        wait_for(lambda: getattr(read_mark(str(out / "x.bin")), "boot", "").endswith("?"))
        mark = read_mark(str(out / "x.bin"))
        assert mark is not None and mark.boot == boot_id() + "?"
        monkeypatch.setattr(durable, "sync_filesystems", lambda folders: True)
        events: list[Any] = []
        again = download([url], out, settings=settings, on_event=events.append)
    finally:
        hung.go.set()
    assert again.exit_code == 0 and again.skipped == 0
    assert len(httpd.requests_to("/d/x.bin")) == 2
    said = [e.message for e in events if type(e).__name__ == "Warned"]
    assert any("the disk had not confirmed writing it" in m for m in said), said
    assert (out / "x.bin").read_bytes() == data
    assert read_mark(str(out / "x.bin")) is None


def test_a_mark_left_unconfirmed_is_cleared_by_the_sync_that_comes_back(
    out: Path, hung: Hung,
) -> None:
    first = out / "a.bin"

    async def go() -> Mark | None:
        d = Durability(3600.0, boot="b00t", sync=hung)
        d.finished(str(first), marked(first))
        try:
            await asyncio.wait_for(d.settle(), WAIT)
            await asyncio.to_thread(  # (its thread may come after settle() on a busy machine)
                wait_for, lambda: getattr(read_mark(str(first)), "boot", "").endswith("?"))
            return read_mark(str(first))
        finally:
            hung.go.set()

    left = asyncio.run(go())  # (its end waits for the sync's thread, let go by then)
    assert left is not None and left.boot == "b00t?" and left.size == 1
    assert hung.back.is_set() and read_mark(str(first)) is None
