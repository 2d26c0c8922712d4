"""The journal's texts that SQLite cannot take as they are (see journal/texts.py): a path
with bytes that are no UTF-8 in it, which Python holds as lone surrogates."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from omniget.engine.journal import Journal
from omniget.engine.journal.texts import read_back, stored

FOLDER = os.fsdecode(b"/old/caf\xe9")  # "/old/caf\udce9"
#: Any text, lone surrogates and U+FFFF (the mark) more often than by chance.
TEXTS = st.text(st.characters(exclude_categories=()) | st.sampled_from("\udce9\ud800\uffff\ue7c9"))


@given(TEXTS)
def test_every_text_comes_back_as_it_was_given(text: str) -> None:
    assert read_back(stored(text)) == text
    stored(text).encode("utf-8")  # (what SQLite takes)


@given(TEXTS, TEXTS)
def test_texts_stored_keep_their_prefixes_and_stay_apart(a: str, b: str) -> None:
    assert stored(a + b) == stored(a) + stored(b)
    assert (stored(a) == stored(b)) == (a == b)


def test_a_text_without_surrogates_is_stored_as_it_is() -> None:
    """(Every journal written before: its records still resume.)"""
    for text in ("/abs/out\0http://h/x\0x", "/ä/名/\U0001f600"):
        assert stored(text) == text


def test_a_record_of_a_folder_named_in_bytes_that_are_no_utf8(tmp_path: Path) -> None:
    key = f"{FOLDER}\0http://h/x\0x"
    path = f"{FOLDER}/x"
    with Journal.in_dir(tmp_path / "state") as journal:
        journal.start(key, path=path, url="http://h/x", size=10, etag=None,
                      last_modified=None)
        journal.save_spans(key, [(0, 4)], own=(path, None))
        assert journal.keys(f"{FOLDER}\0") == {key}
        assert journal.keys("/old/caf\0") == set()
        record = journal.get(key)
        assert record is not None and (record.key, record.path) == (key, path)
        assert journal.spans(key) == [(0, 4)]
        assert [k for k, _ in journal.unfinished()] == []  # (no part file known)
        journal.forget(key, own=(path, None))
        assert journal.get(key) is None
