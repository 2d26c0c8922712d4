"""An output folder where finished files are marked (see omniget.engine.durable)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omniget.engine.assemble import on_memory_fs
from omniget.engine.durable import ATTR


def marked_folder(tmp_path: Path) -> Path:
    """``tmp_path / "out"``, made, on a filesystem that keeps user attributes and is not in
    memory (the test is skipped otherwise: nothing is marked there)."""
    folder = tmp_path / "out"
    folder.mkdir()
    probe = folder / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, ATTR, b"x")
    except (OSError, AttributeError):
        pytest.skip("this filesystem keeps no user extended attributes")
    probe.unlink()
    if on_memory_fs(str(folder)):
        pytest.skip("the temporary folder is in memory: nothing is marked there")
    return folder
