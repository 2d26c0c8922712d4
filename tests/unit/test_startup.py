"""What ``omniget`` does at import: as little as a run needs (every class, method and
module made there is paid by every start)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from omniget.engine import events
from omniget.model import Item


def _item() -> Item:
    return Item(download_url="http://h/a", filename="a")


@pytest.mark.parametrize("name", events.__all__)
def test_events_have_no_generated_comparison(name: str) -> None:
    cls = getattr(events, name)
    if not isinstance(cls, type):
        return  # (EventHandler: a type alias)
    assert dataclasses.is_dataclass(cls)
    assert "__eq__" not in cls.__dict__ and "__hash__" not in cls.__dict__


def test_events_are_occurrences_compared_by_identity() -> None:
    item = _item()
    a = events.Skipped(item, None, reason="exists")
    b = events.Skipped(item, None, reason="exists")
    assert a == a and a != b
    assert len({a, b}) == 2
    assert repr(a).startswith("Skipped(item=Item(")  # (still shown by its fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reason = "x"  # type: ignore[misc]


# Records which patterns omniget's own modules compile while ``omniget.cli`` is imported.
_RECORD_COMPILES = """
import re, sys
seen = []
compile = re.compile
def recording(pattern, flags=0):
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if caller.startswith("omniget"):
        seen.append(caller)
    return compile(pattern, flags)
re.compile = recording
import omniget.cli
print(" ".join(sorted(seen)))
"""


def test_import_compiles_only_the_patterns_every_file_needs() -> None:
    # Compiling a pattern at import costs every start (one, IGNORECASE with \w, ~10 M
    # instructions): those most runs never use are compiled by re when first used.
    out = subprocess.run(
        [sys.executable, "-c", _RECORD_COMPILES], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["omniget.engine.names"]  # (safe_relpath's plain names: every file)
