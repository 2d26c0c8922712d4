"""Files the user names for omniget to read (``-i``, ``--config``, ``--cookies``,
``--ca-cert``) that are no such file: a disk image, a binary, a line that never ends, a
FIFO whose writer never stops. Each is one line and exit 2 as soon as what was read
shows it is none, not read to its end. Before: ``-i`` of a 1 GB file of zero bytes ran
for minutes with 10 GB of memory (its one "URL" was read whole, then echoed whole in
the error); ``--config``, ``--cookies`` and ``--ca-cert`` read such a file whole (1 to 2 GB
of memory) to say line 1 was wrong."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)

MiB = 1 << 20
#: What a writer may put in a FIFO before the test calls it endless (a reader that
#: reads it all holds this much).
ENDLESS = 32 * MiB
#: What a reader that stops early has taken at most (its last read, the pipe's buffer).
EARLY = 4 * MiB


class Feeder(threading.Thread):
    """Writes ``unit`` into the FIFO at ``path`` again and again, until its reader goes
    away (or ENDLESS bytes went in); ``sent``: the bytes that went in."""

    def __init__(self, path: Path, unit: bytes) -> None:
        super().__init__(daemon=True)
        self.path, self.unit, self.sent = path, unit, 0

    def run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # (waits for the reader)
        try:
            while self.sent < ENDLESS:
                self.sent += os.write(fd, self.unit)
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    def finish(self) -> None:
        if self.is_alive():  # (no reader came, or one still reading: let the writer go)
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
        self.join(30)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    yield path


def _feed(path: Path, unit: bytes) -> Feeder:
    feeder = Feeder(path, unit)
    feeder.start()
    return feeder


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("omniget: error: "), err[:300]
    assert len(err) < 500, err[:300]
    return err


ZEROS = b"\0" * 65536
NO_BREAK = b"a" * 65536


@pytest.mark.parametrize(
    ("unit", "why"),
    [(ZEROS, "a NUL character in line 1"), (NO_BREAK, "line 1 is longer than 1 MiB"),
     (b"http://127.0.0.1:9/a\n" + ZEROS, "a NUL character in line 2")],
    ids=["zeros", "no-line-break", "url-then-zeros"],
)
def test_an_input_file_that_never_ends_is_read_only_until_it_shows_it_is_no_list(
    fifo: Path, capsys: pytest.CaptureFixture[str], unit: bytes, why: str
) -> None:
    feeder = _feed(fifo, unit)
    try:
        assert main(["-i", str(fifo), "-o", "out"]) == 2
    finally:
        feeder.finish()
    err = _one_line(capsys.readouterr().err)
    assert f"cannot read input file {fifo}: {why}" in err
    assert feeder.sent < EARLY
    assert not Path("out").exists()


def test_stdin_that_never_ends_is_read_only_until_it_shows_it_is_no_list(
    fifo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feeder = _feed(fifo, ZEROS)
    try:
        with open(fifo, encoding="utf-8") as stdin:
            monkeypatch.setattr(sys, "stdin", stdin)
            assert main(["-i", "-", "-o", "out"]) == 2
    finally:
        feeder.finish()
    err = _one_line(capsys.readouterr().err)
    assert "cannot read stdin: a NUL character in line 1" in err
    assert feeder.sent < EARLY


def test_a_config_file_that_never_ends_is_read_only_to_its_bound(
    fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feeder = _feed(fifo, b"# a comment line, again and again\n" * 1000)
    try:
        assert main(["--config", str(fifo), "-o", "out", "http://127.0.0.1:9/a"]) == 2
    finally:
        feeder.finish()
    err = _one_line(capsys.readouterr().err)
    assert f"config file {fifo}: larger than 1 MiB" in err
    assert feeder.sent < EARLY


def test_a_cookies_file_that_never_ends_is_read_only_until_it_shows_it_is_none(
    fifo: Path, httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = httpd.add(httpd.new_path("a.txt"), b"data")
    feeder = _feed(fifo, ZEROS)
    try:
        assert main(["--cookies", str(fifo), "-o", "out", url]) == 2
    finally:
        feeder.finish()
    err = _one_line(capsys.readouterr().err)
    assert f"cookies file {fifo}" in err and "NUL character in line 1" in err
    assert feeder.sent < EARLY
    assert httpd.requests == []


def _read_bytes() -> int:
    """The bytes this process has read so far (all its threads, all files)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
@pytest.mark.parametrize(
    ("flag", "why"),
    [("-i", "cannot read input file disk.img: a NUL character in line 1"),
     ("--config", "config file disk.img: a NUL character in line 1"),
     ("--cookies", "cookies file disk.img: a NUL character in line 1"),
     ("--ca-cert", "--ca-cert disk.img: no certificate in its first 16 MiB")],
)
def test_a_1_gb_file_given_as_a_small_one_is_not_read_whole(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str, why: str
) -> None:
    with open("disk.img", "wb") as f:  # (sparse: no disk space taken)
        f.truncate(1 << 30)
    url = httpd.add(httpd.new_path("a.txt"), b"data").replace("http://", "https://")
    before = _read_bytes()
    args = ["-i", "disk.img"] if flag == "-i" else [flag, "disk.img", url]
    assert main([*args, "-o", "out"]) == 2
    assert _read_bytes() - before < 64 * MiB
    err = _one_line(capsys.readouterr().err)
    assert why in err
    assert httpd.requests == []


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_list_read_in_pieces_keeps_its_urls_and_its_error_positions(
    capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    """Lines that cross the reader's pieces (64 KiB) come whole; a byte that is no UTF-8
    past the first piece is said at its place in the file."""
    from omniget.cli.args import parse_input
    from omniget.userfiles import read_text

    urls = [f"http://127.0.0.1:9/{i:06d}/" + "p" * (i % 300) for i in range(3000)]
    text = "\n".join(urls) + "\n"
    got = read_text(io.BytesIO(text.encode(encoding)), utf16=True)
    assert parse_input(got) == urls
    bad = ("a" * 100_000).encode() + b"\xff"
    Path("bad.txt").write_bytes(bad)
    assert main(["-i", "bad.txt", "-o", "out"]) == 2
    assert _one_line(capsys.readouterr().err).endswith(
        ": not UTF-8 text (invalid start byte at byte 100000)\n")
