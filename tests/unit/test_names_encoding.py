"""Names in a locale whose encoding is not UTF-8 (see names._FS_ENCODING)."""

from __future__ import annotations

import pytest

from omniget.engine import names
from omniget.engine.names import safe_relpath, sanitize_component


@pytest.mark.parametrize(
    ("encoding", "name", "made"),
    [
        ("iso8859-1", "caf\u00e9 \u540d.txt", "caf\u00e9 _.txt"),
        ("ascii", "caf\u00e9 \u540d.txt", "caf_ _.txt"),
        ("utf-8", "caf\u00e9 \u540d.txt", "caf\u00e9 \u540d.txt"),
        ("iso8859-1", "\u540d", "_"),
    ],
)
def test_a_character_the_file_names_encoding_has_none_for_is_replaced(
    monkeypatch: pytest.MonkeyPatch, encoding: str, name: str, made: str
) -> None:
    monkeypatch.setattr(names, "_FS_ENCODING", encoding)
    assert sanitize_component(name) == made
    folder = sanitize_component("d\u540d")
    assert safe_relpath(f"d\u540d/{name}") == f"{folder}/{made}"
    assert folder == ("d\u540d" if encoding == "utf-8" else "d_")
