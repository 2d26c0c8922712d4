"""A journal write cut by an exception at any point of its transaction (a Ctrl+C's
KeyboardInterrupt lands between any two steps) leaves no transaction open: before, one
landing between ``BEGIN`` and the ``try`` left the connection in a transaction, every
later write failed with "cannot start a transaction within a transaction" and the
journal was off for the rest of the run. The exception is injected at each point by a
connection that raises there."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omniget.engine.journal import Journal, handle

KEY = "/abs/out\x00http:a"
OTHER = "/abs/out\x00http:b"


class Cut:
    """``db`` whose ``execute`` of ``sql`` raises KeyboardInterrupt, ``after`` running it
    or before (once)."""

    def __init__(self, db: sqlite3.Connection, sql: str, *, after: bool) -> None:
        self.db, self.sql, self.after = db, sql, after
        self.cut = False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql != self.sql or self.cut:
            return self.db.execute(sql, *args)
        self.cut = True
        if self.after:
            self.db.execute(sql, *args)
        raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Journal]:
    monkeypatch.setattr(handle, "CHECK_EVERY", math.inf)  # (no look for the file between)
    j = Journal.in_dir(tmp_path / "state")
    yield j
    j.close()


def start(j: Journal, key: str) -> None:
    j.start(key, path="/abs/out/f", url="https://example.com/f", size=10, etag=None,
            last_modified=None)


@pytest.mark.parametrize(("sql", "after", "kept"), [
    ("BEGIN IMMEDIATE", True, False),  # (between BEGIN and the write)
    ("COMMIT", False, False),  # (the write made, not committed)
    ("COMMIT", True, True),  # (committed, not returned)
], ids=["after-begin", "before-commit", "after-commit"])
def test_a_write_cut_anywhere_leaves_no_transaction_open(
    journal: Journal, sql: str, after: bool, kept: bool,
) -> None:
    real = journal._db
    assert real is not None
    cut = Cut(real, sql, after=after)
    journal._db = cut  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        start(journal, KEY)
    assert cut.cut and not real.in_transaction
    start(journal, OTHER)  # (before: "cannot start a transaction within a transaction")
    assert journal.get(OTHER) is not None
    assert (journal.get(KEY) is not None) == kept


def test_a_rollback_cut_too_is_made_by_the_next_write(journal: Journal) -> None:
    """The write failed, and its rollback was cut in turn: the next write finds the
    transaction left open and rolls it back first."""
    real = journal._db
    assert real is not None
    journal._db = Cut(real, "ROLLBACK", after=False)  # type: ignore[assignment]

    def bad(db: object) -> None:
        raise ValueError("a write that fails")

    with pytest.raises(KeyboardInterrupt):
        journal._write("start", bad, KEY)
    start(journal, OTHER)
    assert journal.get(OTHER) is not None and not real.in_transaction
