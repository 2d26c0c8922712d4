"""Part files: where space is reserved ahead of the writes, and where it is not."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from omniget.engine import assemble
from omniget.engine.assemble import (
    UNSYNCED,
    PartBusy,
    PartFile,
    create_part,
    drop_part,
    fs_type,
    on_memory_fs,
    parse_mounts,
    storage_error,
)
from omniget.errors import StorageError

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /tmp tmpfs rw 0 0
/dev/vdb /tmp/big\\040disk xfs rw 0 0
proc /proc proc rw 0 0
"""


def test_fs_type_takes_the_longest_mount_point() -> None:
    mounts = parse_mounts(MOUNTS)
    assert fs_type("/home/me", mounts) == "ext4"
    assert fs_type("/tmp", mounts) == "tmpfs"
    assert fs_type("/tmp/x/y", mounts) == "tmpfs"
    assert fs_type("/tmp/big disk/out", mounts) == "xfs"  # \040 is a space
    assert fs_type("/tmpfoo", mounts) == "ext4"  # a prefix of the name is not the folder
    assert fs_type("/dev/shm", mounts) == "tmpfs"


def test_fs_type_without_a_table() -> None:
    assert fs_type("/anywhere", []) is None


def _blocks_after_prepare(folder: Path, size: int) -> int:
    part = PartFile(folder / "f.bin", fresh=True)
    try:
        part.prepare(size)
        return os.fstat(part.fd).st_blocks
    finally:
        part.discard()


def test_memory_filesystem_gets_no_preallocation() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not on_memory_fs(str(shm)) or not os.access(shm, os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm")
    folder = shm / f"omniget-test-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    try:
        assert _blocks_after_prepare(folder, 8 << 20) == 0
    finally:
        folder.rmdir()


def test_disk_filesystem_is_preallocated(tmp_path: Path) -> None:
    if on_memory_fs(str(tmp_path)) or not hasattr(os, "posix_fallocate"):
        pytest.skip("the test folder is on a memory filesystem")
    probe = os.open(tmp_path / "probe", os.O_RDWR | os.O_CREAT)
    try:  # asked directly, so a PartFile that stopped reserving cannot pass as "unsupported"
        os.posix_fallocate(probe, 0, 4096)
    except OSError:
        pytest.skip("this filesystem does not support fallocate")
    finally:
        os.close(probe)
    assert _blocks_after_prepare(tmp_path, 8 << 20) * 512 >= 8 << 20


def _piped(data: bytes) -> int:
    """A pipe's read end holding ``data`` (small enough for the pipe's buffer)."""
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


@pytest.mark.parametrize("refused", [False, True], ids=["splice", "read-and-write"])
def test_bytes_from_a_pipe_land_at_their_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    if refused:  # a filesystem whose files take no splice() writes

        def refuse(*args: object, **kwargs: object) -> int:
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(os, "splice", refuse)
    part = PartFile(tmp_path / "f.bin", fresh=True)
    pipe = _piped(b"0123456789" * 100)
    try:
        part.write_at(b"head", 0)
        part.write_from_pipe(pipe, 600, 4)
        part.write_from_pipe(pipe, 400, 604)
        assert part.written == 1004 and part.length == 1004
        assert part.splice_ok is not refused
        assert os.read(pipe, 1) == b""  # every byte was taken
    finally:
        part.close()
        os.close(pipe)
    assert (tmp_path / "f.bin.omniget-part").read_bytes() == b"head" + b"0123456789" * 100


def test_a_pipe_holding_less_than_promised_is_a_storage_error(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "f.bin", fresh=True)
    pipe = _piped(b"abc")
    try:
        with pytest.raises(StorageError, match=r"f\.bin"):
            part.write_from_pipe(pipe, 10, 0)
        assert part.written == 3  # what did land is counted
    finally:
        part.close()
        os.close(pipe)


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "disk full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),  # (was "permission denied")
        (errno.EIO, "Input/output error"),
    ],
)
def test_storage_errors_say_what_happened(code: int, says: str) -> None:
    err = storage_error(OSError(code, os.strerror(code)), Path("out/f.bin"), "creating")
    assert str(err) == f"{says} while creating out/f.bin; partial data kept, run again to resume"


def test_a_finished_file_is_marked_before_its_rename(tmp_path: Path) -> None:
    final = tmp_path / "f.bin"
    part = PartFile(final, fresh=True)
    part.write_at(b"data", 0)
    try:
        os.setxattr(part.fd, UNSYNCED, b"probe")
    except OSError:
        part.discard()
        pytest.skip("this filesystem keeps no user extended attributes")
    st = part.commit(4, mtime=None, mark=b"boot 4")
    assert st and st.st_ino == final.stat().st_ino
    assert os.getxattr(final, UNSYNCED) == b"boot 4"
    assert part.fd == -1 and final.read_bytes() == b"data"


def test_where_no_mark_can_be_set_the_file_waits_under_its_part_name(tmp_path: Path) -> None:
    """ramfs keeps no extended attributes: the commit leaves the file open under its part
    name and says so (it is renamed by place(), after a sync); before, it was fdatasync'ed
    and renamed, one sync per file."""
    ram = tmp_path / "ram"
    ram.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "ramfs", "ramfs", str(ram)], capture_output=True
    ).returncode != 0:
        pytest.skip("cannot mount a ramfs here (needs root and mount)")
    try:
        part = PartFile(ram / "f.bin", fresh=True)
        part.write_at(b"data", 0)
        assert part.commit(4, mtime=None, mark=b"boot 4") is False
        assert sorted(os.listdir(ram)) == ["f.bin.omniget-part"] and part.fd >= 0
        part.place()
        assert part.fd == -1 and (ram / "f.bin").read_bytes() == b"data"
        assert sorted(os.listdir(ram)) == ["f.bin"]
    finally:
        subprocess.run(["umount", str(ram)], capture_output=True)


@pytest.mark.parametrize("how", ["opened", "created ahead"])
def test_a_part_file_taken_by_another_run_before_its_lock_is_that_run_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Between creating a part file and locking it, another run (another thread of the
    program, say) found it, locked it and started it over as a new file: this run stops
    (PartBusy) instead of writing a file no name holds any more (which it would only
    learn at its end: "removed or replaced while it was written")."""
    final = tmp_path / "f.bin"
    real = assemble._lock
    rivals: list[PartFile] = []
    calls = []

    def lock_after_a_rival(fd: int) -> bool:
        calls.append(fd)
        if len(calls) == 1:  # (this run's lock: the rival's comes first)
            rivals.append(PartFile(final, fresh=True))
        return real(fd)

    monkeypatch.setattr(assemble, "_lock", lock_after_a_rival)
    if how == "opened":
        with pytest.raises(PartBusy):
            PartFile(final, fresh=True)
    else:
        assert create_part(final) == -1
    (rival,) = rivals
    assert os.fstat(rival.fd).st_ino == os.stat(rival.where).st_ino  # (the rival's alone)
    assert os.fstat(rival.fd).st_nlink == 1
    rival.close()


def test_a_part_file_created_ahead_is_locked_and_looked_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_part locks its file and makes sure its name still holds it; the PartFile
    given its descriptor does not do both again (two stat calls per file, on the hot
    path of many small files)."""
    final = tmp_path / "f.bin"
    locks: list[int] = []
    looks: list[int] = []
    real_lock, real_named = assemble._lock, assemble._named

    def lock(fd: int) -> bool:
        locks.append(fd)
        return real_lock(fd)

    def named(fd: int, where: str) -> bool:
        looks.append(fd)
        return real_named(fd, where)

    monkeypatch.setattr(assemble, "_lock", lock)
    monkeypatch.setattr(assemble, "_named", named)
    fd = create_part(final)
    assert fd >= 0
    part = PartFile(final, fresh=True, fd=fd)
    assert (locks, looks) == ([fd], [fd])
    assert part.fd == fd and os.fstat(fd).st_ino == os.stat(part.where).st_ino
    part.close()


def test_a_dropped_part_file_s_name_goes_while_its_lock_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part file created ahead and not used is unlinked before its descriptor (and so
    its lock) goes: closed first, another run could lock it and begin, and the unlink
    then took that run's part file from under it."""
    final = tmp_path / "f.bin"
    fd = create_part(final)
    assert fd >= 0
    where = f"{final}.omniget-part"
    seen: list[bool] = []
    real_close = os.close

    def close(n: int) -> None:
        if n == fd:
            seen.append(os.path.exists(where))
        real_close(n)

    monkeypatch.setattr(os, "close", close)
    drop_part(final, fd)
    assert seen == [False]  # (gone before the close)
    assert not os.path.exists(where)


def test_dropping_a_part_file_leaves_another_run_s_under_its_name(tmp_path: Path) -> None:
    """The name now holds another file (another run took it over and started afresh):
    that file stays; only the descriptor given is closed."""
    final = tmp_path / "f.bin"
    fd = create_part(final)
    assert fd >= 0
    where = f"{final}.omniget-part"
    os.unlink(where)
    Path(where).write_bytes(b"another run's")
    drop_part(final, fd)
    assert Path(where).read_bytes() == b"another run's"
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_part_file_gone_between_its_look_and_its_open_is_another_run_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting afresh, the part file was there (another run's), and gone the moment
    after (that run finished it, or dropped it): the other run's doing (PartBusy), not a
    folder that cannot be written in."""
    final = tmp_path / "f.bin"
    Path(f"{final}.omniget-part").write_bytes(b"another run's")
    real = PartFile._open_there

    def finished_meanwhile(self: PartFile, flags: int) -> int:
        os.replace(self.where, final)
        return real(self, flags)

    monkeypatch.setattr(PartFile, "_open_there", finished_meanwhile)
    with pytest.raises(PartBusy, match="was finished or removed"):
        PartFile(final, fresh=True)
    assert final.read_bytes() == b"another run's"
