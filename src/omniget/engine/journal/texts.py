"""Text the journal stores that SQLite cannot take as it is: a path with bytes that are
no UTF-8 in it (a folder from an old latin-1 disk), which Python holds as lone surrogates,
and SQLite's UTF-8 refuses. Every text a call gives goes in through :func:`stored`, every
text it reads comes out through :func:`read_back`: the connection :class:`Texts` does
both.

A lone surrogate is stored as U+FFFF and a private-use character, and a U+FFFF as two:
each text has one stored form, a text without either is stored as it is (every journal
written before), and a key's stored form begins with its folder's (the range of a
folder's keys is that of its stored form)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Rows", "Texts", "read_back", "stored"]

_MARK = "\uffff"
_STORED = "[\ud800-\udfff\uffff]"  # (compiled by re when first used)
_BACK = "(?s)\uffff(.)"
_SHIFT = 0xE000 - 0xD800  # a surrogate's private-use stand-in: U+E000 to U+E7FF


def _store(m: re.Match[str]) -> str:
    c = m.group()
    return _MARK + (c if c == _MARK else chr(ord(c) + _SHIFT))


def _back(m: re.Match[str]) -> str:
    c = m.group(1)
    return c if c == _MARK else chr(ord(c) - _SHIFT)


def stored(text: str) -> str:
    """``text`` as the journal stores it."""
    return text if text.isascii() else re.sub(_STORED, _store, text)


def read_back(text: str) -> str:
    """A text the journal stored, as it was given."""
    return text if text.isascii() else re.sub(_BACK, _back, text)


def _in(values: Sequence[object]) -> tuple[object, ...]:
    return tuple(stored(v) if isinstance(v, str) else v for v in values)


def _out(row: Sequence[object]) -> tuple[Any, ...]:
    return tuple(read_back(v) if isinstance(v, str) else v for v in row)


class Rows:
    """A cursor whose rows' texts are read back."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else _out(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [_out(row) for row in self._cursor.fetchall()]


class Texts:
    """The journal's connection, its calls' texts stored and read back (see the module)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, values: Sequence[object] = ()) -> Rows:
        return Rows(self._db.execute(sql, _in(values)))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._db.executemany(sql, (_in(row) for row in rows))
