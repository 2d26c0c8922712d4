"""The CLI tests' isolation: a test file with ``pytestmark = pytest.mark.isolated(...)``
runs each of its tests away from the user's setup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """For a test marked ``isolated``: no OMNIGET_* or GOFILE_TOKEN variables, no
    FORCE_COLOR or TTY_COMPATIBLE, HOME at tmp_path/home, XDG_CONFIG_HOME and
    XDG_STATE_HOME at tmp_path/config and tmp_path/state, and tmp_path the folder it runs
    in. ``work=True``: it runs in tmp_path/work instead; ``xdg=False``: both XDG variables
    are unset (the folders under HOME apply)."""
    mark = request.node.get_closest_marker("isolated")
    if mark is None:
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    for var in [v for v in os.environ if v.startswith("OMNIGET_")]:
        monkeypatch.delenv(var)
    for var in ("GOFILE_TOKEN", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if mark.kwargs.get("xdg", True):
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    else:
        for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME"):
            monkeypatch.delenv(var, raising=False)
    if mark.kwargs.get("work", False):
        (tmp_path / "work").mkdir()
        monkeypatch.chdir(tmp_path / "work")
    else:
        monkeypatch.chdir(tmp_path)
