"""A part file whose bytes are not the ones its resume record describes: overwritten in
place, or replaced by a file that got the same inode number (ext4 hands a freed one out
again at once). The record knows the part file by its inode number only, so before, the
rerun "resumed" over the foreign bytes, exited 0, and the file was wrong (with no digest
to catch it). A checkpoint now also records a fingerprint of the bytes just before the
end of each span; the rerun reads them back and starts the file over when they differ."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration._cli import omniget, start
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.journal import FILENAME, Journal

KiB = 1024
MiB = 1024 * KiB
SIZE = 6 * MiB
CHANGED = (
    "its part file does not hold the bytes the resume journal recorded for it (changed"
    " since the last run?); starting over"
)


def spans(state: Path) -> list[tuple[int, int]]:
    """The byte ranges the journal in ``state`` claims for its one unfinished file."""
    if not (state / FILENAME).exists():
        return []
    with Journal.in_dir(state) as journal:
        return [span for key, _ in journal.unfinished() for span in journal.spans(key)]


class Cut:
    """A CLI run of f.bin (``size`` bytes, ``split`` connections at most) killed (SIGKILL)
    after a checkpoint of ``ranges`` byte ranges (each answer held at 3 MiB: a checkpoint
    at 2 MiB before)."""

    def __init__(
        self, httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
        size: int = SIZE, split: int = 1, ranges: int = 1,
    ) -> None:
        self.httpd, self.size, self.split = httpd, size, str(split)
        self.data = payload(size, 81)
        self.path = httpd.new_path("f.bin")
        self.url = httpd.add(self.path, self.data) + f"?hold=h&stall_after={3 * MiB}"
        self.out, self.state = tmp_path / "out", tmp_path / "state"
        proc = start(self.url, "-o", str(self.out), "--split", self.split, state=self.state)
        try:
            assert httpd.held("h")
            wait_for(lambda: len(spans(self.state)) >= ranges)
            proc.kill()
            proc.wait(30)
        finally:
            httpd.release("h")
        self.part = self.out / f"f.bin{PART_SUFFIX}"
        self.spans = spans(self.state)
        self.recorded = recorded(self.state)
        assert 0 < self.recorded < size
        assert httpd.wait_closed()  # (each request of the run before logged)
        httpd.clear_log()

    def rerun(self) -> list[str]:
        """Run again to the end: exit 0 and the right bytes; the warnings it gave (what
        each says of f.bin)."""
        done = omniget(self.url, "-o", str(self.out), "--split", self.split, state=self.state)
        assert done.returncode == 0, done.stderr
        assert (self.out / "f.bin").read_bytes() == self.data
        assert sorted(p.name for p in self.out.iterdir()) == ["f.bin"]
        head = f"omniget: warning: {self.out / 'f.bin'}: "
        return [ln.removeprefix(head) for ln in done.stderr.splitlines() if "warning" in ln]

    def ranges(self) -> list[str | None]:
        return [r.header("range") for r in self.httpd.requests_to(self.path)]


def same_number(path: Path, data: bytes, tries: int = 256) -> bool:
    """Put a new file of ``data`` in the place of the one at ``path``, with its inode
    number if the filesystem hands it out again (ext4 gives the lowest free one of its
    group, as a rule: empty files are made, and kept, until one gets it)."""
    ino = path.stat().st_ino
    (path.parent / "stand-in").touch()
    os.replace(path.parent / "stand-in", path)  # (its number is free from here on)
    made = []
    try:
        for n in range(tries):
            new = path.with_name(f"new{n}")
            new.touch()
            if new.stat().st_ino == ino:
                new.write_bytes(data)
                os.replace(new, path)
                return True
            made.append(new)
        return False
    finally:
        for p in made:
            p.unlink()


def test_a_part_file_overwritten_in_place_is_started_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    cut = Cut(httpd, payload, tmp_path)
    size = cut.part.stat().st_size
    with open(cut.part, "r+b") as f:  # (the same file: its inode number stays)
        f.write(payload(size, 82))
    assert cut.rerun() == [CHANGED]
    assert cut.ranges() == [None]  # (from its start, the part file's bytes left alone)


def test_a_part_file_replaced_by_one_with_its_inode_number_is_started_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    cut = Cut(httpd, payload, tmp_path)
    if not same_number(cut.part, payload(cut.part.stat().st_size, 83)):
        pytest.skip("no new file got the part file's inode number here")
    assert cut.rerun() == [CHANGED]
    assert cut.ranges() == [None]


def test_a_split_download_checks_each_of_its_ranges(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Four connections, each cut after a checkpoint: only the end of one range (not the
    first) differs, and the file starts over all the same."""
    cut = Cut(httpd, payload, tmp_path, size=32 * MiB, split=4, ranges=3)
    _, end = cut.spans[1]
    with open(cut.part, "r+b") as f:
        f.seek(end - 1)
        f.write(bytes([cut.data[end - 1] ^ 0xFF]))
    assert cut.rerun() == [CHANGED]
    assert None in cut.ranges()  # (from its start)


def test_a_part_file_cut_short_resumes_where_it_ends(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    cut = Cut(httpd, payload, tmp_path)
    end = cut.recorded // 2
    os.truncate(cut.part, end)
    assert cut.rerun() == ["its part file is shorter than recorded; resuming there"]
    assert cut.ranges() == [f"bytes={end}-{cut.size - 1}"]


def test_a_part_file_left_alone_resumes_with_no_warning(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    cut = Cut(httpd, payload, tmp_path)
    assert cut.rerun() == []
    assert cut.ranges() == [f"bytes={cut.recorded}-{cut.size - 1}"]


def test_a_part_file_copied_over_by_a_shorter_file_is_started_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """``cp other f.bin.omniget-part``: the same inode, cut to the other file's length and
    its bytes from the start (was: "shorter than recorded; resuming there", over them)."""
    cut = Cut(httpd, payload, tmp_path)
    ino = cut.part.stat().st_ino
    cut.part.write_bytes(payload(cut.recorded // 2, 84))  # (O_TRUNC: the same file)
    assert cut.part.stat().st_ino == ino
    assert cut.rerun() == [CHANGED]
    assert cut.ranges() == [None]


def test_a_part_file_overwritten_at_its_start_only_is_started_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The first MiB changed, the end of the range left as it was."""
    cut = Cut(httpd, payload, tmp_path)
    with open(cut.part, "r+b") as f:
        f.write(payload(MiB, 85))
    assert cut.rerun() == [CHANGED]
    assert cut.ranges() == [None]


def test_a_part_file_copied_over_by_a_file_shorter_than_a_print_is_started_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """``cp note.txt f.bin.omniget-part`` of a file shorter than a span's first print:
    neither end of the span can be read back, and what is left of it is not the
    server's (was: "shorter than recorded; resuming there", and the foreign bytes kept)."""
    cut = Cut(httpd, payload, tmp_path)
    cut.part.write_bytes(payload(1000, 86))  # (O_TRUNC: the same file)
    assert cut.rerun() == [CHANGED]
    assert cut.ranges() == [None]
