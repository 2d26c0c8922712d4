"""A tiny terminal for tests: replays what the progress display wrote (rich's live region
moves up and erases lines) onto a screen of a given size, so a test sees what a user would.

Understood: text (wide characters take two cells), ``\\r``, ``\\n`` (as ``\\r\\n``, as the
tty's ONLCR makes it), ``ESC[nA``/``B``, ``ESC[K``/``1K``/``2K``, ``ESC[?25l``/``h`` (cursor
hidden/shown); colours and other sequences are dropped. A character that does not fit
wraps to the next row (counted).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["Screen"]

_TOKEN = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|(.)", re.S)


def _cells(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


class Screen:
    def __init__(self, width: int = 80, height: int = 24) -> None:
        self.width, self.height = width, height
        self.rows = [[" "] * width for _ in range(height)]
        self.x = self.y = 0
        self.wraps = 0  # characters that did not fit on their row
        self.cursor_hidden = False

    def feed(self, text: str) -> Screen:
        for m in _TOKEN.finditer(text):
            if m.group(2):
                self._control(m.group(1), m.group(2))
            elif m.group(3) is not None:
                self._char(m.group(3))
        return self

    def lines(self) -> list[str]:
        """The rows, right-stripped, without the blank ones at the bottom."""
        rows = ["".join(r).rstrip() for r in self.rows]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def _newline(self) -> None:
        self.y += 1
        if self.y >= self.height:
            self.rows.pop(0)
            self.rows.append([" "] * self.width)
            self.y = self.height - 1

    def _control(self, params: str, code: str) -> None:
        n = int(params) if params.isdigit() else 1
        if code == "A":
            self.y = max(0, self.y - n)
        elif code == "B":
            self.y = min(self.height - 1, self.y + n)
        elif code == "K":
            start = 0 if params in ("1", "2") else self.x
            end = self.width if params in ("", "0", "2") else self.x + 1
            for i in range(start, min(end, self.width)):
                self.rows[self.y][i] = " "
        elif code in "hl" and params == "?25":
            self.cursor_hidden = code == "l"

    def _char(self, ch: str) -> None:
        if ch == "\r":
            self.x = 0
        elif ch == "\n":  # (a terminal's tty turns it into \r\n)
            self.x = 0
            self._newline()
        elif ch >= " ":
            w = _cells(ch)
            if self.x + w > self.width:
                self.wraps += 1
                self.x = 0
                self._newline()
            self.rows[self.y][self.x] = ch
            if w == 2:
                self.rows[self.y][self.x + 1] = ""
            self.x += w
