"""A power loss right after a file finishes: its rename may reach the disk while its
bytes do not (a preallocated file then reads as zeros). A finished file keeps a mark (an
extended attribute, set before its rename) until a sync of its filesystem has returned;
a rerun on another boot checks or fetches again a file whose mark is still there.
Power cannot be cut in a test: these check what is marked before and after the sync,
and what a rerun decides for a marked file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.engine._marks import marked_folder
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine import durable
from omniget.engine.assemble import on_memory_fs
from omniget.engine.durable import ATTR, read_mark
from omniget.engine.events import Event, Warned
from omniget.engine.existing import LOST_WHY
from omniget.engine.journal import boot_id
from omniget.engine.mark import LOST, Mark
from omniget.model import Digest
from omniget.settings import Settings

DATA = bytes(range(256)) * 64  # 16 KiB
EARLIER = "an-earlier-boot"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return marked_folder(tmp_path)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Mark | None]]]:
    """Every sync of the run: the marks of the output files when it began (the real sync
    then runs)."""
    seen: list[dict[str, Mark | None]] = []
    real = durable.sync_filesystems

    def watched(folders: list[str]) -> bool:
        marks: dict[str, Mark | None] = {}
        for folder in folders:
            for name in os.listdir(folder):
                marks[name] = read_mark(os.path.join(folder, name))
        seen.append(marks)
        return real(folders)

    monkeypatch.setattr(durable, "sync_filesystems", watched)
    yield seen


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **kw)  # type: ignore[arg-type]


def _mark(path: Path, boot: str, size: int, digest: Digest | None = None) -> None:
    os.setxattr(path, ATTR, Mark(boot, size, digest).encode())


def _lost(path: Path, size: int) -> None:
    """What a power loss leaves of a file whose bytes never reached the disk: its name and
    size over blocks never written (they read as zeros; ``SEEK_HOLE`` finds them)."""
    with path.open("wb") as f:
        f.truncate(size)
    with path.open("rb") as f:
        if os.lseek(f.fileno(), 0, os.SEEK_HOLE) != 0:
            pytest.skip("this filesystem shows no holes (SEEK_HOLE)")


def test_a_finished_file_is_marked_until_one_sync_at_the_end_of_the_run(
    httpd: HTTPServer, tmp_path: Path, out: Path, syncs: list[dict[str, Mark | None]]
) -> None:
    """Before, a finished file was renamed into place and nothing more: after a power
    loss a rerun skipped it whatever its bytes. Now it is there, marked with this boot and
    its size, when the run's one sync begins (many files: still one sync), and unmarked
    after it."""
    urls = [httpd.add(f"/d/f{i}.bin", DATA + bytes([i])) for i in range(20)]
    report = download(urls, out, settings=_settings(tmp_path))
    assert report.exit_code == 0, report.failures
    [marks] = syncs  # (20 files: one sync, at the end; no sync per file)
    assert sorted(marks) == sorted(f"f{i}.bin" for i in range(20))
    for mark in marks.values():
        assert mark is not None and (mark.boot, mark.size) == (boot_id(), len(DATA) + 1)
    for i in range(20):
        assert read_mark(str(out / f"f{i}.bin")) is None
        assert (out / f"f{i}.bin").read_bytes() == DATA + bytes([i])


def test_a_file_verified_by_a_digest_keeps_it_in_its_mark(
    httpd: HTTPServer, tmp_path: Path, out: Path, syncs: list[dict[str, Mark | None]]
) -> None:
    want = Digest("sha256", hashlib.sha256(DATA).hexdigest())
    url = httpd.add("/d/x.bin", DATA)
    report = download([url], out, settings=_settings(tmp_path, checksum=want))
    assert report.exit_code == 0, report.failures
    assert [m["x.bin"] for m in syncs] == [Mark(boot_id(), len(DATA), want)]


def test_the_rest_of_a_run_is_not_synced_when_large_and_stays_marked(
    httpd: HTTPServer,
    tmp_path: Path,
    out: Path,
    syncs: list[dict[str, Mark | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run does not wait for a writeback of more than END_SYNC_BYTES (a 1 GiB file
    fetched faster than the disk writes): its files keep their marks."""
    monkeypatch.setattr(durable, "END_SYNC_BYTES", len(DATA) - 1)
    url = httpd.add("/d/x.bin", DATA)
    assert download([url], out, settings=_settings(tmp_path)).exit_code == 0
    assert syncs == []
    assert read_mark(str(out / "x.bin")) == Mark(boot_id(), len(DATA))


def test_files_finishing_after_fsync_seconds_are_synced_while_the_run_goes_on(
    httpd: HTTPServer, tmp_path: Path, out: Path, syncs: list[dict[str, Mark | None]]
) -> None:
    urls = [httpd.add(f"/d/f{i}.bin", DATA) for i in range(6)]
    settings = _settings(tmp_path, fsync_seconds=0.0, jobs=1)
    assert download(urls, out, settings=settings).exit_code == 0
    assert len(syncs) >= 2  # (in the background as files finish, and at the end)
    assert all(read_mark(str(out / f"f{i}.bin")) is None for i in range(6))


def test_a_zeroed_file_marked_on_another_boot_is_fetched_again(
    httpd: HTTPServer, tmp_path: Path, out: Path
) -> None:
    """What a power loss leaves: the name and the size, zeros for bytes, the mark. Before,
    --on-exists skip (the default) kept it as complete."""
    url = httpd.add("/d/x.bin", DATA)
    there = out / "x.bin"
    _lost(there, len(DATA))
    _mark(there, EARLIER, len(DATA))
    events: list[Event] = []
    report = download(
        [url], out, settings=_settings(tmp_path), on_event=events.append
    )
    assert report.exit_code == 0, report.failures
    assert [r.status for r in report.results] == ["ok"]
    assert [p.name for p in out.iterdir()] == ["x.bin"]
    assert there.read_bytes() == DATA
    assert read_mark(str(there)) is None  # (synced at the end of the run)
    assert any(isinstance(e, Warned) and "earlier boot" in e.message for e in events)


def test_a_file_cut_short_by_a_power_loss_is_fetched_again(
    httpd: HTTPServer, tmp_path: Path, out: Path
) -> None:
    url = httpd.add("/d/x.bin", DATA)
    there = out / "x.bin"
    there.write_bytes(DATA[:4096])
    _mark(there, EARLIER, len(DATA), Digest("sha256", hashlib.sha256(DATA).hexdigest()))
    report = download([url], out, settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["ok"]
    assert there.read_bytes() == DATA


def test_a_file_marked_on_this_boot_is_skipped_and_unmarked_after_the_sync(
    httpd: HTTPServer, tmp_path: Path, out: Path, syncs: list[dict[str, Mark | None]]
) -> None:
    """The same boot: the page cache holds the file's bytes whatever reached the disk
    (a crash of the process, not of the machine)."""
    url = httpd.add("/d/x.bin", DATA)
    there = out / "x.bin"
    there.write_bytes(DATA)
    _mark(there, boot_id(), len(DATA))
    report = download([url], out, settings=_settings(tmp_path))
    assert [(r.status, r.reason) for r in report.results] == [("skipped", "exists")]
    assert httpd.requests_to("/d/x.bin") == []
    assert [m["x.bin"] for m in syncs] == [Mark(boot_id(), len(DATA))]
    assert read_mark(str(there)) is None


def test_an_unmarked_file_is_skipped_without_a_sync(
    httpd: HTTPServer, tmp_path: Path, out: Path, syncs: list[dict[str, Mark | None]]
) -> None:
    url = httpd.add("/d/x.bin", DATA)
    (out / "x.bin").write_bytes(b"whatever the user put there")
    report = download([url], out, settings=_settings(tmp_path))
    assert [(r.status, r.reason) for r in report.results] == [("skipped", "exists")]
    assert httpd.requests_to("/d/x.bin") == [] and syncs == []


@pytest.mark.parametrize("intact", [True, False])
def test_a_file_marked_on_another_boot_with_a_digest_is_checked_by_it(
    httpd: HTTPServer, tmp_path: Path, out: Path, intact: bool
) -> None:
    """Its digest tells: intact, it is skipped without a request (and unmarked: read on
    this boot, its bytes are the disk's); zeros, it is fetched again."""
    url = httpd.add("/d/x.bin", DATA)
    there = out / "x.bin"
    there.write_bytes(DATA if intact else bytes(len(DATA)))
    _mark(there, EARLIER, len(DATA), Digest("sha256", hashlib.sha256(DATA).hexdigest()))
    report = download([url], out, settings=_settings(tmp_path))
    assert report.exit_code == 0, report.failures
    assert [r.status for r in report.results] == ["skipped" if intact else "ok"]
    assert len(httpd.requests_to("/d/x.bin")) == (0 if intact else 1)
    assert there.read_bytes() == DATA
    assert read_mark(str(there)) is None


def test_a_server_named_file_marked_on_another_boot_is_fetched_again(
    httpd: HTTPServer, tmp_path: Path, out: Path
) -> None:
    """A name from Content-Disposition is only known once the answer came."""
    url = httpd.add(
        "/d/get", DATA, headers={"Content-Disposition": 'attachment; filename="named.bin"'}
    )
    there = out / "named.bin"
    _lost(there, len(DATA))
    _mark(there, EARLIER, len(DATA))
    report = download([url], out, settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["ok"], report.failures
    assert sorted(p.name for p in out.iterdir()) == ["named.bin"]
    assert there.read_bytes() == DATA


@pytest.mark.parametrize("named", [False, True], ids=["url-name", "server-name"])
def test_a_file_whose_disk_lost_its_bytes_is_fetched_again_even_if_its_digest_matches(
    httpd: HTTPServer, tmp_path: Path, out: Path, named: bool
) -> None:
    """A file the disk reported a write error for after it was put in place (see
    checkpoints._data_lost) is marked so: on this boot its bytes, read back from memory,
    would pass its digest while the disk may hold others. A rerun fetches it again,
    whatever it reads as, and says why."""
    headers = {"Content-Disposition": 'attachment; filename="x.bin"'} if named else None
    url = httpd.add("/d/get" if named else "/d/x.bin", DATA, headers=headers)
    there = out / "x.bin"
    there.write_bytes(DATA)
    _mark(there, LOST, len(DATA))
    assert read_mark(str(there)) == Mark(LOST, len(DATA)) and Mark(LOST, 1).lost
    events: list[Event] = []
    want = Digest("sha256", hashlib.sha256(DATA).hexdigest())
    report = download([url], out, settings=_settings(tmp_path, checksum=want),
                      on_event=events.append)
    assert [(r.status, r.fetched) for r in report.results] == [("ok", len(DATA))]
    said = [ev.message for ev in events if isinstance(ev, Warned)]
    assert len(said) == 1 and said[0].startswith(LOST_WHY), said
    assert sorted(p.name for p in out.iterdir()) == ["x.bin"]
    assert there.read_bytes() == DATA and read_mark(str(there)) is None


def test_a_file_marked_on_another_boot_with_all_its_blocks_written_is_kept(
    httpd: HTTPServer, tmp_path: Path, out: Path
) -> None:
    """No digest to check it by, but every block of it reached the disk (its data was
    written before the power went): it is skipped, not fetched again (a large file would
    be downloaded again after every reboot), and its mark goes."""
    url = httpd.add("/d/x.bin", DATA)
    there = out / "x.bin"
    there.write_bytes(DATA)
    _mark(there, EARLIER, len(DATA))
    report = download([url], out, settings=_settings(tmp_path))
    assert [(r.status, r.reason) for r in report.results] == [("skipped", "exists")]
    assert httpd.requests_to("/d/x.bin") == []
    assert read_mark(str(there)) is None


def test_a_file_marked_on_another_boot_with_a_block_never_written_is_fetched_again(
    httpd: HTTPServer, tmp_path: Path, out: Path
) -> None:
    """Part of it reached the disk, the rest did not (a hole at its end)."""
    url = httpd.add("/d/x.bin", DATA)
    there = out / "x.bin"
    _lost(there, len(DATA))
    with there.open("r+b") as f:
        f.write(DATA[:4096])
    _mark(there, EARLIER, len(DATA))
    report = download([url], out, settings=_settings(tmp_path))
    assert [r.status for r in report.results] == ["ok"], report.failures
    assert there.read_bytes() == DATA


def test_a_damaged_mark_is_not_trusted() -> None:
    assert Mark.decode(b"garbage") == Mark("", -1)
    assert Mark.decode(Mark("b", 5).encode()) == Mark("b", 5)


def test_the_mark_made_without_a_mark_object_reads_back_the_same(out: Path) -> None:
    """Durability.mark writes a plain file's mark without a Mark (cheaper per file): the
    same bytes as Mark.encode, with a digest or without."""
    d = durable.Durability(5.0, boot="b00t")
    digest = Digest("sha256", "ab" * 32)
    for size, dig in ((0, None), (16384, None), (7, digest)):
        raw = d.mark(str(out), size, dig)
        assert raw == Mark("b00t", size, dig).encode()
        assert raw is not None and Mark.decode(raw) == Mark("b00t", size, dig)


def test_a_mark_is_cleared_after_the_sync_only_on_the_same_file(out: Path) -> None:
    """_sync_and_clear leaves the mark of a file that took the name since (another inode)."""
    same, other = out / "same.bin", out / "other.bin"
    for p in (same, other):
        p.write_bytes(b"x")
        _mark(p, "b00t", 1)
    st_same, st_other = os.stat(same), os.stat(other)
    files = [
        (str(same), st_same.st_dev, st_same.st_ino),
        (str(other), st_other.st_dev, st_other.st_ino + 1),  # (replaced since)
        (str(out / "gone.bin"), st_same.st_dev, 1),
    ]
    folders: list[list[str]] = []

    def sync(given: list[str]) -> bool:
        folders.append(given)
        return True

    durable._sync_and_clear(files, sync)
    assert folders == [[str(out)]]  # (one folder per filesystem)
    assert read_mark(str(same)) is None and read_mark(str(other)) == Mark("b00t", 1)


def test_nothing_is_marked_in_memory(httpd: HTTPServer, tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or not on_memory_fs(str(shm)):
        pytest.skip("no writable tmpfs at /dev/shm")
    url = httpd.add("/d/x.bin", DATA)
    folder = shm / f"omniget-test-{os.getpid()}-{id(tmp_path)}"
    try:
        assert download([url], folder, settings=_settings(tmp_path)).exit_code == 0
        assert read_mark(str(folder / "x.bin")) is None
    finally:
        for p in folder.glob("*"):
            p.unlink()
        folder.rmdir()
