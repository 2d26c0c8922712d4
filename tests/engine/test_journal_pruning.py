"""A run prunes old state: records not written for months whose files are gone."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.journal import FILENAME, PRUNE_AGE, Journal
from omniget.settings import Settings


def test_a_run_drops_old_records_of_files_that_are_gone(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Before, nothing was ever removed: a server-named file's record and an abandoned
    download's stayed for ever, one per file and output folder."""
    state = tmp_path / "state"
    kept = tmp_path / "old" / "kept.bin"
    kept.parent.mkdir()
    kept.write_bytes(b"k")
    with Journal.in_dir(state) as j:
        for key, path in (("gone", tmp_path / "gone" / "a.bin"), ("kept", kept)):
            j.start(key, path=str(path), url="http://x/", size=1, etag=None,
                    last_modified=None)
            j.finish(key, size=1, digest=None)
        j.start("abandoned", path=str(tmp_path / "gone" / "b.bin"), url="http://x/", size=9,
                etag=None, last_modified=None)
        j.save_spans("abandoned", [(0, 4)])
    db = sqlite3.connect(state / FILENAME)
    db.execute("UPDATE files SET updated = ?", (time.time() - PRUNE_AGE - 60,))
    db.commit()
    db.close()
    url = httpd.add(httpd.new_path("new.bin"), b"new")
    report = download([url], tmp_path / "out", settings=Settings(state_dir=state))
    assert report.exit_code == 0, report.failures
    with Journal.in_dir(state) as j:
        assert j.keys("") == {"kept"}
