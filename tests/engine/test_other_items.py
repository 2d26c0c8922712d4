"""Folder and link items (nothing to fetch): a link is made as itself, never through a
link already there, its target stays inside the output folder, and what is at its name is
handled as --on-exists handles a file. Before, a rerun followed the link an earlier run had
made and replaced the file it pointed at, and a link item replaced a user's file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest

import omniget
from omniget import Item, Settings

OnExists = Literal["skip", "overwrite", "rename"]


def link(path: str, target: str) -> Item:
    return Item(f"http://h.test/{path}", kind="link", path=path, link_target=target)


def run(tmp_path: Path, *items: Item, on_exists: OnExists = "skip") -> omniget.Report:
    settings = Settings(state_dir=tmp_path / "state", on_exists=on_exists)
    return omniget.download(list(items), tmp_path / "out", settings=settings)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.txt").write_text("precious")
    return tmp_path / "out"


def test_folders_and_links_are_made_and_a_rerun_skips_them(tmp_path: Path, out: Path) -> None:
    items = (Item("http://h.test/a/", kind="dir", path="a/d"), link("a/l", "../b.txt"))
    first = run(tmp_path, *items)
    assert [r.status for r in first.results] == ["ok", "ok"]
    assert (out / "a" / "d").is_dir() and os.readlink(out / "a" / "l") == "../b.txt"
    again = run(tmp_path, *items)
    assert [r.status for r in again.results] == ["ok", "skipped"] and again.exit_code == 0
    assert (out / "b.txt").read_text() == "precious"


@pytest.mark.parametrize("on_exists", ["skip", "overwrite", "rename"])
def test_a_link_there_is_never_followed(tmp_path: Path, out: Path, on_exists: OnExists) -> None:
    """Before: the second run's path resolved through a/l to b.txt, which was unlinked
    and made a link to itself."""
    run(tmp_path, link("a/l", "../b.txt"))
    report = run(tmp_path, link("a/l", "../c.txt"), on_exists=on_exists)
    assert (out / "b.txt").read_text() == "precious"
    assert not (out / "b.txt").is_symlink()
    expect = {"skip": "../b.txt", "overwrite": "../c.txt", "rename": "../b.txt"}[on_exists]
    assert os.readlink(out / "a" / "l") == expect
    if on_exists == "skip":
        assert report.exit_code == 4
    if on_exists == "rename":
        assert os.readlink(out / "a" / "l_1") == "../c.txt"


@pytest.mark.parametrize("on_exists", ["skip", "overwrite", "rename"])
def test_a_file_at_the_link_s_name_is_handled_as_on_exists_says(
    tmp_path: Path, out: Path, on_exists: OnExists
) -> None:
    """Before: a user's file there was replaced by the link whatever --on-exists said."""
    (out / "mine.txt").write_text("user file")
    report = run(tmp_path, link("mine.txt", "b.txt"), on_exists=on_exists)
    if on_exists == "overwrite":
        assert os.readlink(out / "mine.txt") == "b.txt"
        return
    assert (out / "mine.txt").read_text() == "user file"
    if on_exists == "skip":
        [result] = report.results
        assert result.status == "failed" and report.exit_code == 4
        assert "not this link" in str(result.error)
    else:
        assert os.readlink(out / "mine_1.txt") == "b.txt"


def test_a_folder_at_the_link_s_name_stays(tmp_path: Path, out: Path) -> None:
    (out / "d").mkdir()
    (out / "d" / "f").write_text("kept")
    report = run(tmp_path, link("d", "b.txt"), on_exists="overwrite")
    assert report.failed == 1 and (out / "d" / "f").read_text() == "kept"


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../../x", "../out/../../x", "q/..", "q/../../x", ""]
)
def test_targets_that_leave_the_folder_are_refused(
    tmp_path: Path, out: Path, target: str
) -> None:
    """``q/..`` is inside while q is missing or a folder, but outside once q is a link to
    the output folder itself (which is inside): refused by its form, whatever q is."""
    report = run(tmp_path, link("a/p", target), link("a/q", ".."))  # (p made first)
    assert [r.status for r in report.results] == ["failed", "ok"]
    assert report.exit_code == 8 and not os.path.lexists(out / "a" / "p")


def test_a_link_s_folder_is_contained_as_a_file_s(tmp_path: Path, out: Path) -> None:
    """A link among the link's folders is followed and checked, as for any file."""
    (tmp_path / "elsewhere").mkdir()
    (out / "up").symlink_to(tmp_path / "elsewhere")
    report = run(tmp_path, link("up/l", "x"))
    assert report.failed == 1 and os.listdir(tmp_path / "elsewhere") == []
