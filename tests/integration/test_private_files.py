"""Every file the CLI writes beside its downloads (the resume journal, its -wal and -shm,
one moved aside when damaged, the state folder) is this user's alone, whatever the umask:
the journal holds URLs, and URLs carry tokens."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration._cli import omniget, start
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget.engine.journal import FILENAME


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.lstat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["022", "000"])
def test_the_state_files_are_private_under_any_umask(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, umask: int
) -> None:
    data = payload(300_000, 61)
    path = httpd.new_path("p.bin")
    httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    url = httpd.url(path, hold="p", token="tok-in-query-61")
    proc = start(url, "-o", str(out), "-q", state=state, umask=umask)
    try:
        assert httpd.held("p")
        # (the run's record goes to the -wal first; wait until SQLite made both)
        beside = {FILENAME, f"{FILENAME}-wal", f"{FILENAME}-shm"}
        wait_for(lambda: beside <= set(os.listdir(state)))
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert modes(state) == dict.fromkeys(beside, 0o600)
    finally:
        httpd.release("p")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (out / "p.bin").read_bytes() == data

    # a damaged journal is moved aside, still private; the new one is too
    (state / FILENAME).write_bytes(b"not a journal " * 100)
    again = omniget(httpd.add(httpd.new_path("q.bin"), b"q"), "-o", str(out),
                    state=state, umask=umask)
    assert again.returncode == 0, again.stderr
    assert "moved aside" in again.stderr
    found = modes(state)
    assert FILENAME in found and any(".corrupt-" in name for name in found), found
    assert set(found.values()) == {0o600}, {k: oct(v) for k, v in found.items()}
