"""Part files: where space is reserved ahead of the writes, and where it is not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omniget.engine.assemble import PartFile, fs_type, on_memory_fs, parse_mounts

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
