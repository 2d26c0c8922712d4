"""Plugin sources are found from the installed distributions' entry_points.txt."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from omniget.sources import _group, plugin_targets, source_classes

EP = """\
[console_scripts]
tool = other:main

[omniget.sources]
  example = example_plugin.source:ExampleSource
# a comment
other = example_plugin.more:Other.Inner

[something.else]
x = y:z
"""


def test_group_reads_one_section() -> None:
    assert _group(EP, "omniget.sources") == [
        "example_plugin.source:ExampleSource",
        "example_plugin.more:Other.Inner",
    ]
    assert _group(EP, "missing") == []


def test_installed_plugins_are_found_first_name_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, target in ((first, "pkg_one:Source"), (second, "pkg_two:Source")):
        info = folder / "Example_Plugin-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "entry_points.txt").write_text(f"[omniget.sources]\nex = {target}\n")
    (second / "unrelated-2.0.dist-info").mkdir()  # no entry_points.txt
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(second)])
    assert plugin_targets() == ["pkg_one:Source"]


def test_this_checkout_has_no_plugins_but_the_builtin_source() -> None:
    assert [c.name for c in source_classes()][-1] == "http"
