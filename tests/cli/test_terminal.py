"""What a user sees on a terminal: the rich display's output replayed on a test screen
(``tests/cli/_screen.py``), with a fake clock where speeds matter."""

from __future__ import annotations

import io
import logging
import signal
import sys
import threading
from collections.abc import Callable

import pytest
from rich.console import Console
from tests.cli._screen import Screen

from omniget.cli import _logging, _SaveOnSignal
from omniget.cli.bars import RichProgress
from omniget.cli.output import Masker
from omniget.engine.events import Started
from omniget.model import Item

KiB = 1024


class Term(io.StringIO):
    """A terminal's input; ``hook`` runs once, at the start of the next write (as a signal
    that lands while a frame is being written)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None

    def write(self, s: str) -> int:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return super().write(s)


def console(term: io.StringIO, width: int = 80, height: int = 24) -> Console:
    return Console(file=term, force_terminal=True, width=width, height=height,
                   color_system=None, _environ={})


def items(n: int) -> list[Item]:
    return [Item(download_url=f"https://example.com/f{i}.bin") for i in range(n)]


def test_a_signal_while_a_frame_is_drawn_leaves_no_bar_behind() -> None:
    term = Term()
    rp = RichProgress(console(term), Masker())
    cancel = threading.Event()
    on_signal = _SaveOnSignal(cancel, quiet=False)
    first, *more = items(4)
    with rp, on_signal:
        rp(Started(first, None, size=4 * KiB, resumed=0))
        rp.bars.live.refresh()
        term.hook = lambda: on_signal(signal.SIGINT, None)  # Ctrl+C lands mid-frame,
        for item in more:  # in one taller than the last
            rp(Started(item, None, size=4 * KiB, resumed=0))
        rp.bars.live.refresh()
        assert term.hook is None  # (it did land)
    screen = Screen(80, 24).feed(term.getvalue())
    assert cancel.is_set()
    # the bars are gone (transient), the line is there once, whole
    assert screen.lines() == ["omniget: stopping and saving state (Ctrl+C again to quit now)"]
    assert not screen.cursor_hidden


def test_log_lines_go_above_the_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    term = Term()
    monkeypatch.setattr(sys, "stderr", term)  # (the terminal, as in a real run)
    rp = RichProgress(console(term), Masker())
    with _logging(Masker(["sekrit"]), verbose=False, debug=True), rp:
        for item in items(2):
            rp(Started(item, None, size=4 * KiB, resumed=0))
        rp.bars.live.refresh()
        logging.getLogger("omniget.test").debug("GET https://example.com/?token=sekrit")
        rp.bars.live.refresh()
    assert Screen(80, 24).feed(term.getvalue()).lines() == [
        "omniget: DEBUG: omniget.test: GET https://example.com/?token=***"
    ]
