"""A part file given up on is removed by what it is, not by its name: if the name holds
something else by then (another file put there, a link), that is someone else's and is
left as it is. Before, the name was unlinked, whatever it held."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.assemble import PART_SUFFIX, PartFile
from omniget.engine.report import Report
from omniget.model import Digest, Item
from omniget.settings import Settings

KiB = 1024
HALF = 128 * KiB
WRONG = Digest("sha256", "0" * 64)


def _replace(kind: str, part: Path, outside: Path) -> None:
    """Put someone else's ``kind`` at the part file's name (the part file goes)."""
    if kind == "a file":
        mine = part.with_name("mine")
        mine.write_bytes(b"the user's own")
        os.replace(mine, part)
    else:
        outside.write_bytes(b"the user's own")
        part.unlink()
        part.symlink_to(outside)


@pytest.mark.parametrize("kind", ["a file", "a link"])
def test_a_part_file_given_up_on_removes_only_itself(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, kind: str
) -> None:
    """No journal (its state folder is a file), so a file that fails its digest leaves no
    part file; while the answer was held half-way, its name got someone else's thing."""
    state = tmp_path / "state"
    state.write_text("not a folder")  # (no resume state: a failed file's part goes)
    data = payload(2 * HALF, 5)
    base = httpd.add(httpd.new_path("f.bin"), data)
    item = Item(f"{base}?hold=a&stall_after={HALF}", digest=WRONG)
    out = tmp_path / "out"
    got: list[Report] = []
    run = threading.Thread(target=lambda: got.append(download(
        [item], out, settings=Settings(state_dir=state, split=1, retries=0))), daemon=True)
    run.start()
    assert httpd.held("a")
    part, outside = out / f"f.bin{PART_SUFFIX}", tmp_path / "outside"
    wait_for(lambda: part.exists() and part.stat().st_size >= HALF)  # (all it got so far)
    _replace(kind, part, outside)
    httpd.release("a")
    run.join(60)
    assert not run.is_alive() and got[0].failed == 1
    if kind == "a file":
        assert part.read_bytes() == b"the user's own"
    else:
        assert part.is_symlink() and os.readlink(part) == str(outside)
        assert outside.read_bytes() == b"the user's own"
    assert not (out / "f.bin").exists()


def test_discard_removes_its_own_file(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "g.bin", fresh=True)
    part.write_at(b"abc", 0)
    part.discard()
    assert os.listdir(tmp_path) == [] and part.fd == -1


def test_discard_of_a_file_already_gone_is_quiet(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "g.bin", fresh=True)
    os.unlink(part.where)
    part.discard()
    assert os.listdir(tmp_path) == [] and part.fd == -1


def test_discard_in_a_folder_moved_away_removes_the_file_where_it_is_now(
    tmp_path: Path,
) -> None:
    """Its folder renamed: the file is removed where it went (the folder it was opened
    in), and a new folder of the old name is not looked into."""
    (tmp_path / "d").mkdir()
    part = PartFile(tmp_path / "d" / "g.bin", fresh=True)
    os.rename(tmp_path / "d", tmp_path / "e")
    (tmp_path / "d").mkdir()
    other = tmp_path / "d" / f"g.bin{PART_SUFFIX}"
    other.write_bytes(b"another file")
    part.discard()
    assert other.read_bytes() == b"another file"
    assert os.listdir(tmp_path / "e") == []
