"""A tiny terminal for tests: replays what the progress display wrote (rich's live region
moves up and erases lines) onto a screen of a given size, so a test sees what a user would.

Understood: text (wide characters take two cells, a combining one joins the cell before
it), ``\\r``, ``\\n`` (as ``\\r\\n``, as the tty's ONLCR makes it), ``ESC[nA``/``B``,
``ESC[K``/``1K``/``2K``, ``ESC[?25l``/``h`` (cursor hidden/shown); colours and other
sequences are dropped. A character that does not fit wraps to the next row (counted).
:meth:`Screen.resize` changes the width as a terminal window does: with ``reflow`` (most
terminals) each line is wrapped again at the new width, without it (xterm) rows are cut.
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
        self.used = [0] * height  # cells written on each row (up to the last one)
        self.wrapped = [False] * height  # the row goes on in the next one (a wrap)
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

    def resize(self, width: int, *, reflow: bool = True) -> Screen:
        """The window is ``width`` cells wide now."""
        if not reflow:
            self.rows = [(r + [" "] * width)[:width] for r in self.rows]
            self.used = [min(u, width) for u in self.used]
            self.width, self.x = width, min(self.x, width)
            return self
        lines: list[list[str]] = []  # (each line's cells, wraps joined)
        at = (0, 0)  # (the cursor: its line, cells before it there)
        line: list[str] = []
        for y, row in enumerate(self.rows):
            if y == self.y:
                at = (len(lines), len(line) + self.x)
            line += row[: self.width if self.wrapped[y] else self.used[y]]
            if not self.wrapped[y]:
                lines.append(line)
                line = []
        rows: list[list[str]] = []
        used: list[int] = []
        wrapped: list[bool] = []
        for i, cells in enumerate(lines):
            if i == at[0]:  # (a cursor just past a full row stays on it)
                n = at[1]
                up = (n - 1) // width if n and n % width == 0 else n // width
                self.y, self.x = len(rows) + up, n - up * width
            pieces = [cells[k : k + width] for k in range(0, len(cells), width)] or [[]]
            for k, piece in enumerate(pieces):
                rows.append(piece + [" "] * (width - len(piece)))
                used.append(len(piece))
                wrapped.append(k < len(pieces) - 1)
        while len(rows) > self.height and len(rows) - 1 > self.y and not used[-1]:
            del rows[-1], used[-1], wrapped[-1]  # (blank rows below the cursor go first)
        while len(rows) < self.height:
            rows.append([" "] * width)
            used.append(0)
            wrapped.append(False)
        cut = len(rows) - self.height  # (rows above the top scroll away)
        self.rows = rows[cut : cut + self.height]
        self.used, self.wrapped = used[cut : cut + self.height], wrapped[cut : cut + self.height]
        self.y -= cut
        self.width = width
        return self

    def _newline(self) -> None:
        self.y += 1
        if self.y >= self.height:
            self.rows.pop(0)
            self.rows.append([" "] * self.width)
            self.used.pop(0)
            self.used.append(0)
            self.wrapped.pop(0)
            self.wrapped.append(False)
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
            if end >= self.width:
                self.used[self.y] = min(self.used[self.y], start)
                self.wrapped[self.y] = False
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
            if not w:  # (a combining character goes onto the cell before it, as a terminal's)
                if self.x:
                    self.rows[self.y][self.x - 1] += ch
                return
            if self.x + w > self.width:
                self.wraps += 1
                self.wrapped[self.y] = True
                self.x = 0
                self._newline()
            self.rows[self.y][self.x] = ch
            if w == 2:
                self.rows[self.y][self.x + 1] = ""
            self.x += w
            self.used[self.y] = max(self.used[self.y], self.x)
