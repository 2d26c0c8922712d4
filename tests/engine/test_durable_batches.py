"""Filesystems without user attributes (vfat and exfat sticks, NFSv3, some FUSE): a
finished file cannot be marked there (durable.py), so it waits under its part name until
a sync of its filesystem, begun after it was written, has returned, and is renamed then.
One sync covers a batch of files: before, every file was fdatasync'ed before its rename
(5,000 small files on a USB stick paid 5,000 syncs)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

from omniget import Report, download
from omniget.engine import checkpoints, durable
from omniget.engine.assemble import PART_SUFFIX, on_memory_fs
from omniget.engine.events import Event, Finished
from omniget.settings import Settings

DATA = bytes(range(256)) * 16  # 4 KiB
#: How long a test waits for what should come at once (a loaded machine's worst).
WAIT = 30.0


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **kw)  # type: ignore[arg-type]


def fast_and_held(httpd: HTTPServer, gate: threading.Event) -> tuple[str, str]:
    """The URLs of two files: a.bin, answered at once, and b.bin, answered once ``gate``
    is set (or after 10 s)."""

    def held(_: object) -> tuple[int, list[tuple[str, str]], bytes]:
        gate.wait(10)
        return 200, [], DATA

    return httpd.add("/d/a.bin", DATA), httpd.handle("/d/b.bin", held)


def fast_then_held(httpd: HTTPServer, out: Path, tmp_path: Path) -> tuple[Report, list[str]]:
    """Download a.bin and b.bin (fast_and_held), b.bin answered once a.bin is in place;
    the report and the names as they finished."""
    gate = threading.Event()
    fast, slow = fast_and_held(httpd, gate)
    finished: list[str] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, Finished) and ev.path is not None:
            finished.append(ev.path.name)
            gate.set()

    try:
        report = download([fast, slow], out, settings=_settings(tmp_path), on_event=on_event)
    finally:
        gate.set()
    return report, finished


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[int]]]:
    """An output folder (on a disk, not in memory) whose filesystem refuses user
    attributes as vfat does (ENOTSUP), and the setxattr calls made there."""
    folder = tmp_path / "out"
    folder.mkdir()
    if on_memory_fs(str(folder)):
        pytest.skip("the temporary folder is in memory: nothing waits for a sync there")
    real = getattr(os, "setxattr", None)
    tried: list[int] = []

    def refused(path: int | str, attr: str, value: bytes, *a: object, **kw: object) -> None:
        where = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else path
        if where.startswith(str(folder) + os.sep):
            tried.append(1)
            raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))
        assert real is not None
        real(path, attr, value, *a, **kw)

    monkeypatch.setattr(os, "setxattr", refused, raising=False)
    yield folder, tried


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every sync of the run: the names in the synced folders when it began (the real
    sync then runs)."""
    seen: list[list[str]] = []
    real = durable.sync_filesystems

    def watched(folders: list[str]) -> bool:
        seen.append(sorted(name for f in folders for name in os.listdir(f)))
        return real(folders)

    monkeypatch.setattr(durable, "sync_filesystems", watched)
    return seen


def test_files_without_a_mark_wait_under_their_part_names_for_one_sync(
    httpd: HTTPServer, tmp_path: Path, bare: tuple[Path, list[int]], syncs: list[list[str]]
) -> None:
    """Before, each of the 5 files was fdatasync'ed and renamed at once (5 syncs, and no
    run sync at all). Now one sync begins while all 5 are still part files, and each is
    renamed after it, and only then reported finished; the folder is asked for an
    attribute once."""
    out, tried = bare
    urls = [httpd.add(f"/d/f{i}.bin", DATA + bytes([i])) for i in range(5)]
    seen_at_finish: list[tuple[bool, bool]] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, Finished) and ev.path is not None:
            seen_at_finish.append((ev.path.exists(), Path(f"{ev.path}{PART_SUFFIX}").exists()))

    report = download(urls, out, settings=_settings(tmp_path), on_event=on_event)
    assert report.exit_code == 0, report.failures
    assert syncs == [sorted(f"f{i}.bin{PART_SUFFIX}" for i in range(5))]  # one sync, not 5
    assert seen_at_finish == [(True, False)] * 5  # (in place when said to be)
    assert sorted(os.listdir(out)) == [f"f{i}.bin" for i in range(5)]
    for i in range(5):
        assert (out / f"f{i}.bin").read_bytes() == DATA + bytes([i])
    assert len(tried) == 1  # (the folder is remembered)


def test_a_failed_sync_leaves_the_files_under_their_part_names(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = bare
    monkeypatch.setattr(durable, "sync_filesystems", lambda folders: False)
    urls = [httpd.add(f"/d/f{i}.bin", DATA) for i in range(3)]
    report = download(urls, out, settings=_settings(tmp_path))
    assert report.failed == 3
    assert all("a sync failed" in str(r.error) for r in report.failures)
    assert sorted(os.listdir(out)) == [f"f{i}.bin{PART_SUFFIX}" for i in range(3)]


def test_a_batch_is_synced_in_time_while_other_files_still_transfer(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    syncs: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file finished early does not wait for the end of the run: its batch is synced
    after BATCH_SECONDS (or fsync_seconds) while a slow file still transfers."""
    out, _ = bare
    monkeypatch.setattr(durable, "BATCH_SECONDS", 0.05)
    report, finished = fast_then_held(httpd, out, tmp_path)
    assert report.exit_code == 0, report.failures
    assert finished == ["a.bin", "b.bin"]
    assert syncs[0] == [f"a.bin{PART_SUFFIX}"] and len(syncs) == 2


def test_a_run_sets_no_more_files_up_while_a_full_batch_waits(
    httpd: HTTPServer, tmp_path: Path, bare: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow sync (a USB stick) with a full batch waiting behind it: the run stops
    setting files up, not piling up finished files (each holding its part file open)."""
    out, _ = bare
    monkeypatch.setattr(durable, "BATCH_FILES", 2)
    monkeypatch.setattr(durable, "BATCH_SECONDS", 30.0)
    asked: list[int] = []

    def slow(folders: list[str]) -> bool:
        if not asked:  # the first sync: give the run time to go on meanwhile
            for _ in range(50):
                if len(httpd.requests) == 10:
                    break
                time.sleep(0.01)
            asked.append(len(httpd.requests))
        return True

    monkeypatch.setattr(durable, "sync_filesystems", slow)
    urls = [httpd.add(f"/d/f{i}.bin", DATA) for i in range(10)]
    report = download(urls, out, settings=_settings(tmp_path, jobs=1))
    assert report.exit_code == 0, report.failures
    assert sorted(os.listdir(out)) == sorted(f"f{i}.bin" for i in range(10))
    assert asked[0] < 10  # (before, every file was fetched while the first sync ran)


def test_a_file_cancelled_while_it_waits_for_the_sync_stays_a_part_file(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    syncs: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled before its batch is synced, a finished file is not renamed (nor said to
    be finished): it is interrupted, and its part file stays for a rerun."""
    out, _ = bare
    monkeypatch.setattr(durable, "BATCH_SECONDS", 30.0)  # (the slow file holds the batch)
    gate, cancel = threading.Event(), threading.Event()
    real_place = durable.Durability.place

    async def place(self: durable.Durability, *args: Any) -> None:
        cancel.set()  # (the run is cancelled while this file waits)
        await real_place(self, *args)

    monkeypatch.setattr(durable.Durability, "place", place)
    fast, slow = fast_and_held(httpd, gate)
    finished: list[Event] = []
    try:
        report = download(
            [fast, slow], out, settings=_settings(tmp_path), cancel=cancel,
            on_event=lambda ev: finished.append(ev) if isinstance(ev, Finished) else None,
        )
    finally:
        gate.set()
    assert report.interrupted == 2 and finished == [] and syncs == []
    assert f"a.bin{PART_SUFFIX}" in os.listdir(out) and not (out / "a.bin").exists()
    assert (out / f"a.bin{PART_SUFFIX}").read_bytes() == DATA


class HeldSync:
    """A sync of the filesystems that waits for ``go`` (WAIT seconds at most), and the
    threads it ran on."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.began = threading.Event()
        self.threads: list[str] = []

    def __call__(self, folders: list[str]) -> bool:
        self.threads.append(threading.current_thread().name)
        self.began.set()
        self.go.wait(WAIT)
        return True


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSync]:
    """The run's syncs hang (a dead USB stick) and the run waits SYNC_WAIT for them."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)
    sync = HeldSync()
    monkeypatch.setattr(durable, "sync_filesystems", sync)
    monkeypatch.setattr(durable, "sectors_written", lambda dev: 7)  # (the disk writes nothing)
    try:
        yield sync
    finally:
        sync.go.set()


def test_files_whose_batch_sync_hangs_fail_as_part_files_and_a_rerun_finishes_them(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    held: HeldSync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, the files waited for a sync on the default executor for ever: download()
    never returned (the CLI sat there after the last byte). Now the run waits SYNC_WAIT
    once nothing but that sync is left, on its own sync threads; the files fail (exit 7),
    each saying in one line that the disk did not confirm it and what to do, and stay
    NAME.omniget-part (never reported finished). A rerun finishes them."""
    out, _ = bare
    urls = [httpd.add(f"/d/f{i}.bin", DATA + bytes([i])) for i in range(3)]
    finished: list[Event] = []
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(
            download, urls, out, settings=_settings(tmp_path),
            on_event=lambda ev: finished.append(ev) if isinstance(ev, Finished) else None,
        )
        try:
            report = run.result(WAIT)
        finally:
            held.go.set()
    assert report.failed == 3 and report.exit_code == 7 and finished == []
    for i, failure in enumerate(report.failures):
        said = str(failure.error)
        assert "\n" not in said
        assert f"f{i}.bin" in said and "did not confirm" in said, said
        assert f"f{i}.bin{PART_SUFFIX}" in said and "run omniget again" in said, said
    assert sorted(os.listdir(out)) == [f"f{i}.bin{PART_SUFFIX}" for i in range(3)]
    assert held.threads and all(t.startswith("omniget-sync") for t in held.threads)

    monkeypatch.setattr(durable, "sync_filesystems", lambda folders: True)  # (it answers)
    again = download(urls, out, settings=_settings(tmp_path))
    assert again.exit_code == 0, again.failures
    assert sorted(os.listdir(out)) == [f"f{i}.bin" for i in range(3)]
    for i in range(3):
        assert (out / f"f{i}.bin").read_bytes() == DATA + bytes([i])


def test_a_hung_batch_sync_with_a_full_batch_behind_it_holds_the_run_once(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    held: HeldSync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full batch waits behind the hung sync, and the run sets no more files up until
    it returns. Before, the run stopped there for ever. Now the files waiting fail once
    the disk has had SYNC_WAIT; the files set up after them, finished behind the same
    sync still not back, fail as soon as they all wait, without waiting SYNC_WAIT again."""
    out, _ = bare
    monkeypatch.setattr(durable, "BATCH_FILES", 2)
    bounds: list[int] = []
    bound = durable.Durability._bound

    def counted(self: durable.Durability) -> None:
        bounds.append(1)
        bound(self)

    monkeypatch.setattr(durable.Durability, "_bound", counted)
    urls = [httpd.add(f"/d/f{i}.bin", DATA) for i in range(8)]
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, urls, out, settings=_settings(tmp_path, jobs=1))
        try:
            report = run.result(WAIT)
        finally:
            held.go.set()
    assert report.failed == 8 and len(bounds) == 1 and len(held.threads) == 1
    assert all("did not confirm" in str(r.error) for r in report.failures)
    assert sorted(os.listdir(out)) == sorted(f"f{i}.bin{PART_SUFFIX}" for i in range(8))


def test_a_slow_batch_sync_is_not_cut_short_while_other_files_still_transfer(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound holds only once the run waits for nothing but the disk: a sync slower
    than SYNC_WAIT (a USB stick writing 64 MiB) while another file still transfers puts
    its files in place as ever."""
    out, _ = bare
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.5)
    monkeypatch.setattr(durable, "BATCH_SECONDS", 0.05)
    slept: list[int] = []

    def slow_first(folders: list[str]) -> bool:
        if not slept:
            slept.append(1)
            time.sleep(1.0)  # (b.bin is held until a.bin is in place: see on_event)
        return True

    monkeypatch.setattr(durable, "sync_filesystems", slow_first)
    report, finished = fast_then_held(httpd, out, tmp_path)
    assert report.exit_code == 0, report.failures
    assert finished == ["a.bin", "b.bin"]


class Counter:
    """A device's count of sectors written, as the run reads it while a batch's sync is
    out: it grows at each read until ``stall`` is set, then stays; the sync waits for
    ``go``. ``moving`` is how long (seconds) it grew, from its first read to its last
    growth."""

    def __init__(self) -> None:
        self.sectors = 0
        self.reads = 0
        self.first: float | None = None
        self.moving = 0.0
        self.stall = threading.Event()
        self.go = threading.Event()

    def __call__(self, dev: int) -> int | None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.reads += 1
        if not self.stall.is_set():
            self.sectors += 8
            self.moving = now - self.first
        return self.sectors

    def sync(self, folders: list[str]) -> bool:
        self.go.wait(WAIT)
        return True

    def then(self, event: threading.Event) -> threading.Thread:
        """A thread that sets ``event`` once the counter has grown for 0.3 s (6
        SYNC_WAITs) over 6 reads or more, unless ``go`` is set first."""

        def wait() -> None:
            while self.moving < 0.3 or self.reads < 6:
                if self.go.wait(0.01):
                    return
            event.set()

        thread = threading.Thread(target=wait)
        thread.start()
        return thread


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """The run's syncs wait for ``go`` and the disk's counter is the test's; the run
    waits SYNC_WAIT (0.05 s) for a disk that writes nothing."""
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)
    count = Counter()
    monkeypatch.setattr(durable, "sync_filesystems", count.sync)
    monkeypatch.setattr(durable, "sectors_written", count)
    try:
        yield count
    finally:
        count.go.set()


def test_a_slow_batch_sync_that_keeps_writing_is_waited_for_past_sync_wait(
    httpd: HTTPServer, tmp_path: Path, bare: tuple[Path, list[int]], counter: Counter
) -> None:
    """A working but slow stick syncing a large last batch (2 GB at 20 MB/s: 100 s)
    writes all along. Before, its files failed SYNC_WAIT after every file waited, bytes
    fine or not. Now the wait is bounded only while the disk writes nothing: the counter
    grows for 6 SYNC_WAITs (and more reads) before the sync returns, and the files are
    put in place."""
    out, _ = bare
    urls = [httpd.add(f"/d/f{i}.bin", DATA + bytes([i])) for i in range(3)]

    helper = counter.then(counter.go)  # (the sync returns once the disk wrote a while)
    try:
        report = download(urls, out, settings=_settings(tmp_path))
    finally:
        counter.go.set()
        helper.join()
    assert report.exit_code == 0, report.failures
    assert counter.moving >= 0.3
    assert sorted(os.listdir(out)) == [f"f{i}.bin" for i in range(3)]


def test_a_batch_sync_that_writes_then_stops_fails_its_files_sync_wait_after(
    httpd: HTTPServer, tmp_path: Path, bare: tuple[Path, list[int]], counter: Counter
) -> None:
    """The disk writes for longer than SYNC_WAIT (its files are not failed meanwhile),
    then stops (a stick that died mid-sync): the files fail as for a disk that never
    answered, each kept as NAME.omniget-part, one line each."""
    out, _ = bare
    urls = [httpd.add(f"/d/f{i}.bin", DATA + bytes([i])) for i in range(3)]

    helper = counter.then(counter.stall)  # (the disk stops writing once it wrote a while)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, urls, out, settings=_settings(tmp_path))
        try:
            report = run.result(WAIT)
        finally:
            counter.stall.set()
            counter.go.set()
            helper.join()
    assert counter.moving >= 0.3  # (it wrote for 6 SYNC_WAITs: nothing failed then)
    assert report.failed == 3 and report.exit_code == 7
    for i, failure in enumerate(report.failures):
        said = str(failure.error)
        assert "\n" not in said and "did not confirm" in said and "written nothing" in said
        assert f"f{i}.bin{PART_SUFFIX}" in said and "run omniget again" in said, said
    assert sorted(os.listdir(out)) == [f"f{i}.bin{PART_SUFFIX}" for i in range(3)]


def test_without_a_counter_a_sync_is_waited_for_as_long_as_it_takes(
    httpd: HTTPServer,
    tmp_path: Path,
    bare: tuple[Path, list[int]],
    held: HeldSync,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the disk's writes cannot be counted (NFS, FUSE, no /sys), slow and hung look
    alike, and a bound would fail files whose bytes are fine (a large last file on a slow
    server): the sync is waited for, here 20 SYNC_WAITs, and puts its files in place."""
    out, _ = bare
    monkeypatch.setattr(checkpoints, "SYNC_WAIT", 0.05)
    monkeypatch.setattr(durable, "sectors_written", lambda dev: None)
    urls = [httpd.add(f"/d/f{i}.bin", DATA) for i in range(3)]
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(download, urls, out, settings=_settings(tmp_path))
        try:
            assert held.began.wait(WAIT)
            time.sleep(1.0)  # (a loaded machine only makes this longer: still 20 bounds)
            assert not run.done()
        finally:
            held.go.set()
        report = run.result(WAIT)
    assert report.exit_code == 0, report.failures
    assert sorted(os.listdir(out)) == [f"f{i}.bin" for i in range(3)]


def test_sectors_written_reads_the_devices_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 7th field of /sys/dev/block/MAJOR:MINOR/stat; None where there is none (an
    NFS or FUSE mount's device, major 0, has no such file), or it cannot be read."""
    root = tmp_path / "block"
    (root / "8:17").mkdir(parents=True)
    (root / "8:17" / "stat").write_text(
        "    1234        0   98765      100    4321        0  2468013      900"
        "        0     1000     1000        0        0        0        0        0        0\n"
    )
    (root / "8:18").mkdir()
    (root / "8:18" / "stat").write_text("garbled\n")
    monkeypatch.setattr(durable, "SYS_BLOCK", str(root))
    assert durable.sectors_written(os.makedev(8, 17)) == 2468013
    assert durable.sectors_written(os.makedev(8, 18)) is None
    assert durable.sectors_written(os.makedev(8, 19)) is None
    assert durable.sectors_written(os.makedev(0, 45)) is None
    assert durable.sectors_written(-1) is None


def test_a_real_vfat_folder(httpd: HTTPServer, tmp_path: Path) -> None:
    """The same on a vfat image mounted through a loop device (needs root, mkfs.vfat and
    loop devices; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a vfat image needs root")
    mkfs = shutil.which("mkfs.vfat") or shutil.which("mkfs.fat")
    if mkfs is None:
        pytest.skip("no mkfs.vfat here (dosfstools) to make a vfat image")
    image, mnt = tmp_path / "vfat.img", tmp_path / "mnt"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(16 << 20)
    if subprocess.run([mkfs, str(image)], capture_output=True).returncode != 0:
        pytest.skip("mkfs.vfat failed here")
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount a vfat image here: {mounted.stderr.decode().strip()}")
    try:
        seen: list[list[str]] = []
        real = durable.sync_filesystems

        def watched(folders: list[str]) -> bool:
            seen.append(sorted(name for f in folders for name in os.listdir(f)))
            return real(folders)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(durable, "sync_filesystems", watched)
            urls = [httpd.add(f"/v/f{i}.bin", DATA + bytes([i])) for i in range(5)]
            report = download(urls, mnt, settings=_settings(tmp_path))
        assert report.exit_code == 0, report.failures
        assert seen == [sorted(f"f{i}.bin{PART_SUFFIX}" for i in range(5))]
        assert sorted(os.listdir(mnt)) == [f"f{i}.bin" for i in range(5)]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
