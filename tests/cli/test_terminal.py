"""What a user sees on a terminal: the rich display's output replayed on a test screen
(``tests/cli/_screen.py``), with a fake clock where speeds matter."""

from __future__ import annotations

import io
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
from rich.console import Console
from tests.cli._screen import Screen

from omniget.cli.bars import RichProgress, fit
from omniget.cli.logs import log_to_stderr
from omniget.cli.output import Masker
from omniget.cli.signals import SaveOnSignal
from omniget.engine.events import (
    Event,
    Failed,
    Finished,
    Listed,
    Progress,
    Queued,
    Skipped,
    Started,
)
from omniget.model import Item, unextracted

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
    on_signal = SaveOnSignal(cancel, quiet=False)
    first, *more = items(4)
    with rp, on_signal:
        rp(Started(first, None, size=4 * KiB, resumed=0))
        rp.live.refresh()
        term.hook = lambda: on_signal(signal.SIGINT, None)  # Ctrl+C lands mid-frame,
        for item in more:  # in one taller than the last
            rp(Started(item, None, size=4 * KiB, resumed=0))
        rp.live.refresh()
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
    with log_to_stderr(Masker(["sekrit"]), verbose=False, debug=True), rp:
        for item in items(2):
            rp(Started(item, None, size=4 * KiB, resumed=0))
        rp.live.refresh()
        logging.getLogger("omniget.test").debug("GET https://example.com/?token=sekrit")
        rp.live.refresh()
    assert Screen(80, 24).feed(term.getvalue()).lines() == [
        "omniget: DEBUG: omniget.test: GET https://example.com/?token=***"
    ]


def test_lines_above_the_bars_say_names_as_they_are() -> None:
    """Was: ``skipped ab💿ef.bin``: rich took ``:cd:`` in a name for an emoji's code."""
    term = Term()
    rp = RichProgress(console(term), Masker(), verbose=True)
    with rp:
        for name in ("ab:cd:ef.bin", "up:ok:[bold]d.bin"):
            item = Item(download_url=f"https://example.com/{quote(name)}", source="http")
            rp(Skipped(item, None, reason="exists"))
            rp(Finished(item, None, size=KiB, verified="size", fetched=KiB))
    lines = Screen(80, 24).feed(term.getvalue()).lines()
    assert lines == [
        "skipped ab:cd:ef.bin: it already exists (--on-exists overwrite replaces it)",
        "done ab:cd:ef.bin (1.0 KiB, size ok)",  # (its check, as a log's line says it)
        "skipped up:ok:[bold]d.bin: it already exists (--on-exists overwrite replaces it)",
        "done up:ok:[bold]d.bin (1.0 KiB, size ok)",
    ], lines


MiB = 1024 * KiB


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bars(width: int = 100, height: int = 24) -> tuple[RichProgress, Clock]:
    clock = Clock()
    return RichProgress(console(io.StringIO(), width, height), Masker(), clock=clock), clock


def frame(rp: RichProgress) -> list[str]:
    """The bars as the terminal shows them now (split into words: cells are padded)."""
    out = io.StringIO()
    width, height = rp.console.width, rp.console.height
    console(out, width, height).print(rp.frame())
    screen = Screen(width, 100).feed(out.getvalue())
    assert screen.wraps == 0  # no cell goes on a second line
    return screen.lines()


def words(line: str) -> list[str]:
    """The line's words, its bar left out (``#`` and ``-``: drawn without colours)."""
    return [w for w in line.split() if w.strip("━╸╺#-")]


def test_a_resumed_file_counts_only_this_runs_bytes_as_speed() -> None:
    rp, clock = bars()
    a = Item(download_url="https://example.com/a.bin")
    rp(Started(a, None, size=10 * MiB, resumed=4 * MiB))  # 4 MiB from an earlier run
    total, file = frame(rp)
    assert words(total) == ["total", "[0/1", "files]", "4.0/10.0", "MiB", "?", "-:--:--"]
    assert words(file)[1:] == ["4.0/10.0", "MiB", "?", "-:--:--"]  # the bar starts at 40%
    for second in (1, 2):
        clock.now = second
        rp(Progress(a, None, done=(4 + second) * MiB, size=10 * MiB))
    total, file = frame(rp)
    # 2 MiB in 2 s; 4 MiB left: 4 s (not 6 MiB "in" 2 s, nor the time left of that)
    assert words(total)[3:] == ["6.0/10.0", "MiB", "1.0", "MiB/s", "0:00:04"]
    assert words(file)[1:] == ["6.0/10.0", "MiB", "1.0", "MiB/s", "0:00:04"]


def test_files_of_unknown_size_count_in_the_total() -> None:
    rp, clock = bars()
    a = Item(download_url="https://example.com/a.bin")  # chunked: no size
    b = Item(download_url="https://example.com/b.bin")
    rp(Started(a, None, size=None, resumed=0))
    rp(Started(b, None, size=MiB, resumed=0))
    clock.now = 1.0
    rp(Progress(a, None, done=3 * MiB, size=None))
    rp(Progress(b, None, done=MiB // 2, size=MiB))
    total, first, second = frame(rp)
    # all the bytes and their speed; no total (so no time left) while a's size is unknown
    assert words(total)[3:] == ["3.5", "MiB", "3.5", "MiB/s", "-:--:--"]
    assert words(first)[1:] == ["3.0", "MiB", "3.0", "MiB/s", "-:--:--"]
    assert words(second)[1:] == ["0.5/1.0", "MiB", "512.0", "KiB/s", "0:00:01"]
    rp(Finished(a, None, size=3 * MiB, verified=None, fetched=3 * MiB))
    total, _ = frame(rp)
    assert words(total)[:5] == ["total", "[1/2", "files]", "3.5/4.0", "MiB"]


def test_a_file_started_over_is_not_counted_twice() -> None:
    rp, clock = bars()
    a = Item(download_url="https://example.com/a.bin")
    rp(Started(a, None, size=4 * MiB, resumed=0))
    clock.now = 1.0
    rp(Progress(a, None, done=3 * MiB, size=4 * MiB))
    clock.now = 2.0
    rp(Progress(a, None, done=0, size=4 * MiB))  # a retry that could not resume
    total, file = frame(rp)
    assert words(total)[3:5] == ["0.0/4.0", "MiB"]  # the bar went back
    assert words(file)[1:3] == ["0.0/4.0", "MiB"]
    clock.now = 3.0
    rp(Progress(a, None, done=2 * MiB, size=4 * MiB))
    total, _ = frame(rp)
    assert words(total)[3:] == ["2.0/4.0", "MiB", "1.7", "MiB/s", "0:00:02"]  # 5 MiB in 3 s; 1.2 s
    rp(Finished(a, None, size=4 * MiB, verified="size", fetched=4 * MiB))
    (total,) = frame(rp)
    assert words(total)[3:5] == ["4.0/4.0", "MiB"]


def test_a_stalled_file_shows_its_speed_fall() -> None:
    rp, clock = bars()
    a = Item(download_url="https://example.com/a.bin")
    rp(Started(a, None, size=4 * MiB, resumed=0))
    clock.now = 1.0
    rp(Progress(a, None, done=MiB, size=4 * MiB))
    clock.now = 30.0  # nothing since
    total, file = frame(rp)
    assert words(file)[1:] == ["1.0/4.0", "MiB", "0", "B/s", "-:--:--"]
    assert words(total)[3:] == ["1.0/4.0", "MiB", "0", "B/s", "-:--:--"]


NAMES = [
    "very_long_name_" * 12 + ".bin",
    "日本語のファイル名_テスト_全角文字がたくさん.bin",  # two cells a character
    "plain.bin",
]


def test_rows_fit_the_terminal_width_and_names_keep_their_end() -> None:
    for width in (120, 80, 60, 40):
        rp, _ = bars(width)
        for name in NAMES:
            rp(Started(Item(download_url=f"https://example.com/{name}"), None, size=MiB,
                       resumed=0))
        rows = frame(rp)  # (no row wraps: checked there)
        assert len(rows) == 4, rows
        assert all(row.split()[0].endswith(".bin") for row in rows[1:]), rows
        assert rows[3].startswith("plain.bin")
        assert rows[1].startswith("…") and rows[2].startswith("…")
        assert ("-:--:--" in rows[0]) == (width >= 70)  # (the time left goes first)


def test_a_name_cut_keeps_its_accents_with_their_letters() -> None:
    """Was: a name cut before a letter kept the accent that goes on it (a combining
    character, no cell of its own), which went onto the ``…`` instead."""
    name = "x\u0301" * 40 + ".bin"  # (x with an acute accent has no one character)
    assert fit(name, 10) == "…" + "x\u0301" * 5 + ".bin"
    assert fit(name, 10, keep_end=False) == "x\u0301" * 9 + "…"
    rp, _ = bars(60)
    rp(Started(Item(download_url="https://example.com/" + quote(name)), None, size=MiB,
               resumed=0))
    shown = words(frame(rp)[1])[0]
    assert shown.startswith("…x\u0301") and shown.endswith("x\u0301.bin"), shown


def test_file_bars_fit_the_terminal_height() -> None:
    for height, bars_shown in ((24, 8), (10, 8), (6, 4)):
        rp, _ = bars(80, height)
        for i in range(20):
            rp(Started(Item(download_url=f"https://example.com/f{i}.bin"), None, size=MiB,
                       resumed=0))
        rows = frame(rp)
        assert len(rows) == 1 + bars_shown + 1 <= height
        assert rows[-1] == f"(+{20 - bars_shown} more active)"


def test_frames_are_drawn_a_few_times_a_second_not_per_event() -> None:
    term = io.StringIO()
    rp = RichProgress(console(term), Masker())
    began = time.monotonic()
    with rp:
        for i in range(500):
            item = Item(download_url=f"https://example.com/f{i}.bin")
            rp(Started(item, None, size=KiB, resumed=0))
            rp(Finished(item, None, size=KiB, verified="size", fetched=KiB))
    took = time.monotonic() - began
    frames = term.getvalue().count("total [")
    # 5 a second (and one each at the start and the end), however long the machine took
    # (it was one per file: 500)
    assert frames <= 5 * took + 3, (frames, took)


def test_a_second_signal_has_the_last_word_and_quits_at_once() -> None:
    """It raises nothing where the main thread is (its KeyboardInterrupt, landing in
    rich's drawing or in a callback of libcurl's, left bars on the screen or lost the last
    line): the signal thread says the last lines and ends the process."""
    exits: list[int] = []
    said: list[str] = []

    def last(then: Callable[[], object]) -> None:
        said.append("last lines")
        then()
        said.append("after the end")  # (a test's exit returns)

    cancel = threading.Event()
    on_signal = SaveOnSignal(cancel, quiet=True, last=last, exit=exits.append)
    with on_signal:
        with on_signal.running():
            on_signal(signal.SIGINT, None)
            assert cancel.is_set()
            on_signal(signal.SIGINT, None)  # (raises nothing)
            on_signal._writer.join(timeout=30)
            raise RuntimeError("what the stopping run raised")  # (dropped: the word is said)
    assert (said, exits, on_signal.took_over) == (["last lines", "after the end"], [130], True)


def test_a_second_signal_inside_the_first_s_handler_still_says_the_first_s_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Python runs a handler inside another when a signal comes as it runs: two Ctrl+C
    typed fast, the second's quit came before the first's line, which was never said."""
    exits: list[int] = []

    class Cancel(threading.Event):
        def set(self) -> None:
            super().set()
            if len(inside) < 1:
                inside.append(True)
                on_signal(signal.SIGINT, None)  # (the second lands here)

    inside: list[bool] = []
    cancel = Cancel()
    on_signal = SaveOnSignal(cancel, quiet=False, exit=exits.append)
    with on_signal:
        on_signal(signal.SIGINT, None)
        on_signal._writer.join(timeout=30)
    assert (inside, exits) == ([True], [130])
    assert capsys.readouterr().err == (
        "omniget: stopping and saving state (Ctrl+C again to quit now)\n"
    )


def test_a_failing_last_word_still_ends_the_process() -> None:
    exits: list[int] = []

    def last(then: Callable[[], object]) -> None:
        raise OSError("the terminal is gone")

    on_signal = SaveOnSignal(threading.Event(), quiet=True, last=last, exit=exits.append)
    with on_signal:
        on_signal(signal.SIGTERM, None)
        on_signal(signal.SIGTERM, None)
        on_signal._writer.join(timeout=30)
    assert exits == [130]


def hold_first_line(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The signal thread waits in its first line's write until the event is set (so the
    run can end before it sees the second signal)."""
    from omniget.cli import signals

    go = threading.Event()
    put = signals._put

    def slow_put(line: str) -> None:
        go.wait(timeout=30)
        put(line)

    monkeypatch.setattr(signals, "_put", slow_put)
    return go


@pytest.mark.parametrize("hangs", [True, False], ids=["run-hangs", "run-ends"])
def test_a_run_ending_as_the_second_signal_came_keeps_the_last_word(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], hangs: bool
) -> None:
    """The run's end took the last word first: the signal thread says nothing, but quits
    the process should the run not end within the grace time."""
    go = hold_first_line(monkeypatch)
    exits: list[int] = []
    lasts: list[object] = []
    on_signal = SaveOnSignal(threading.Event(), quiet=False, grace=0.05 if hangs else 60,
                             exit=exits.append, last=lasts.append)
    with on_signal:
        with on_signal.running():
            on_signal(signal.SIGINT, None)
            on_signal(signal.SIGINT, None)
        on_signal(signal.SIGINT, None)  # (after the run's end: nothing)
        go.set()
        if hangs:
            on_signal._writer.join(timeout=30)  # (the run "hangs" here)
    assert not on_signal._writer.is_alive()
    assert (exits, lasts, on_signal.took_over) == ([130] if hangs else [], [], False)
    err = capsys.readouterr().err
    assert err.startswith("omniget: stopping and saving state")
    assert ("did not stop within 0.05 s of the second signal" in err) == hangs


def test_the_last_word_erases_the_bars_and_no_frame_comes_after() -> None:
    term = Term()
    rp = RichProgress(console(term), Masker())
    drawn: list[str] = []

    def then() -> None:  # (the process would end here: a frame now must wait)
        frame = threading.Thread(target=rp.live.refresh)
        frame.start()
        frame.join(timeout=0.2)
        assert frame.is_alive()
        drawn.append(term.getvalue())

    with rp:
        rp(Started(items(1)[0], None, size=4 * KiB, resumed=0))
        rp.live.refresh()
        rp.quit_with("omniget: error: interrupted\n", then)
    screen = Screen(80, 24).feed(drawn[0])
    assert screen.lines() == ["omniget: error: interrupted"]
    assert not screen.cursor_hidden


def test_the_last_word_made_from_the_counts_is_written_where_the_bars_were() -> None:
    """A second signal's lines come from the bars' counts (see commands._last_lines),
    read under their lock, before rich's (a frame takes them the other way round)."""
    from omniget.cli.commands import _last_lines

    term = Term()
    rp = RichProgress(console(term), Masker(), clock=Clock())  # (its time: 0.00s)
    drawn: list[str] = []
    with rp:
        rp(Started(items(1)[0], None, size=4 * KiB, resumed=0))
        rp.live.refresh()
        rp.quit_with(lambda: _last_lines(rp, quiet=False), lambda: drawn.append(term.getvalue()))
    screen = Screen(80, 24).feed(drawn[0])
    assert screen.lines() == ["0 files ok, 0 skipped, 0 failed, 1 interrupted, 0 B in 0.00s",
                              "omniget: error: interrupted; run the same command again to "
                              "resume"]


def test_the_run_counts_every_file_of_its_list_from_the_first_frame() -> None:
    """Was: ``total [0/2 files]`` with 300 URLs, growing as files started. The bar and
    the time left go by files while the sizes of those waiting are not known."""
    rp, clock = bars()
    listed = items(300)
    for i, item in enumerate(listed):
        rp(Queued(item, None, more=i < 299))
    for item in listed[:2]:
        rp(Started(item, None, size=MiB, resumed=0))
    total = frame(rp)[0]
    assert words(total)[:3] == ["total", "[0/300", "files]"]
    assert words(total)[3:] == ["0", "B", "?", "-:--:--"]  # (no byte total: 298 unknown)
    for i, item in enumerate(listed[:100]):  # 10 files a second, 1 MiB each
        clock.now = (i + 1) / 10
        rp(Started(item, None, size=MiB, resumed=0))
        rp(Finished(item, None, size=MiB, verified="size", fetched=MiB))
    total = frame(rp)[0]
    # 200 files left at 10 a second
    assert words(total) == ["total", "[100/300", "files]", "100.0", "MiB", "10.0", "MiB/s",
                            "0:00:20"]


def one_of_three_done(*then: Event) -> RichProgress:
    """Bars for three files a source queued as it found them (more may come), fed
    ``then``, and the first file's MiB done in 1 s."""
    rp, clock = bars()
    found = items(3)
    for item in found:
        rp(Queued(item, None, more=True))
    for event in then:
        rp(event)
    rp(Started(found[0], None, size=MiB, resumed=0))
    clock.now = 1.0
    rp(Finished(found[0], None, size=MiB, verified="size", fetched=MiB))
    return rp


def test_a_list_that_may_grow_says_so_and_claims_no_total() -> None:
    total = frame(one_of_three_done())[0]
    assert words(total) == ["total", "[1/3+", "files]", "1.0", "MiB", "1.0", "MiB/s",
                            "-:--:--"]


def test_a_source_s_listing_that_ended_drops_the_plus() -> None:
    """Was: ``[1/3+ files]`` until the run's end, though the source had found every file."""
    rp = one_of_three_done(Listed(unextracted("https://example.com/album"), None, more=False))
    assert words(frame(rp)[0])[:3] == ["total", "[1/3", "files]"]


def test_a_list_counted_ahead_shows_its_whole_count_from_the_first_frame() -> None:
    """A long list is resolved as its files go: its first Queued counts the entries not
    announced yet, and an entry that gives no file leaves the count whole."""
    from omniget.errors import UnsupportedURL

    rp, _ = bars()
    listed = items(3)
    rp(Queued(listed[0], None, more=False, ahead=49_999))
    assert words(frame(rp)[0])[:3] == ["total", "[0/50000", "files]"]
    bad = unextracted("ftp-ish://x/y")
    rp(Failed(bad, None, UnsupportedURL("no source can handle it")))
    rp(Listed(bad, None, more=False, ahead=49_998))
    rp(Queued(listed[1], None, more=False, ahead=49_997))
    rp(Started(listed[0], None, size=MiB, resumed=0))
    total = words(frame(rp)[0])
    assert total[:3] == ["total", "[1/50000", "files]"]
    assert total[3:5] == ["0", "B"]  # (no byte total: the sizes of those to come are unknown)


def test_the_run_s_speed_counts_from_its_first_file_not_from_before_it() -> None:
    """Was: the run's speed counted the seconds before any file started (a connect, a
    slow list): its line said 0.4 MiB/s and 0:00:20 left beside its one file's 1.0 MiB/s
    and 0:00:08."""
    rp, clock = bars()
    a = Item(download_url="https://example.com/a.bin")
    clock.now = 3.0
    rp(Started(a, None, size=10 * MiB, resumed=0))
    for second in (4, 5):
        clock.now = second
        rp(Progress(a, None, done=(second - 3) * MiB, size=10 * MiB))
    total, file = frame(rp)
    assert words(total)[3:] == words(file)[1:] == ["2.0/10.0", "MiB", "1.0", "MiB/s", "0:00:08"]


def test_the_time_left_is_rounded_up() -> None:
    """Was: ``0:00:00`` left with half a second to go."""
    rp, clock = bars()
    a = Item(download_url="https://example.com/a.bin")
    rp(Started(a, None, size=4 * MiB, resumed=0))
    clock.now = 1.0
    rp(Progress(a, None, done=int(3.5 * MiB), size=4 * MiB))
    total, file = frame(rp)
    assert words(total)[-1] == words(file)[-1] == "0:00:01"


@pytest.mark.parametrize("width", [80, 300])
def test_the_longest_sizes_and_times_left_are_shown_whole(width: int) -> None:
    """Was: ``512.0/1000.0 M…`` for a file of 1000 MiB (its column had room for 15
    cells), and ``10:40:…`` for 10 hours left (7 cells)."""
    rp, clock = bars(width)
    big, slow, slower = (Item(download_url=f"https://example.com/{n}.iso")
                         for n in ("big", "slow", "slower"))
    rp(Started(big, None, size=1000 * MiB, resumed=0))
    rp(Started(slow, None, size=1023 * MiB, resumed=0))
    rp(Started(slower, None, size=1000 * 1024 * MiB, resumed=0))
    clock.now = 10.0
    rp(Progress(big, None, done=512 * MiB, size=1000 * MiB))  # (48 s left)
    rp(Progress(slow, None, done=10 * 1024, size=1023 * MiB))  # 1 KiB/s
    rp(Progress(slower, None, done=10 * 1024, size=1000 * 1024 * MiB))
    total, first, second, third = frame(rp)  # (no row wraps: checked there)
    assert words(first)[1:] == ["512.0/1000.0", "MiB", "51.2", "MiB/s", "0:00:10"], first
    # 1023 MiB at 1 KiB/s: 12 days 2 hours; 1000 GiB: more than 999 days
    assert words(second)[1:] == ["0.0/1023.0", "MiB", "1.0", "KiB/s", "12d", "02h"], second
    assert words(third)[1:] == ["0.0/1000.0", "GiB", "1.0", "KiB/s", ">999d"], third
    assert words(total)[3:5] == ["0.5/1002.0", "GiB"], total
    rp(Finished(slow, None, size=1023 * MiB, verified="size", fetched=1023 * MiB))
    rp(Finished(slower, None, size=1000 * 1024 * MiB, verified="size", fetched=1000 * 1024 * MiB))
    clock.now = 11.0
    rp(Progress(big, None, done=513 * MiB, size=1000 * MiB))
    total, first = frame(rp)
    assert words(total)[3:5] == ["1001.5/1002.0", "GiB"], total


def test_before_any_file_is_known_the_bars_say_so() -> None:
    rp, _ = bars()
    assert frame(rp) == ["starting…"]  # (was: "total [0/0 files] ... 0 B ? -:--:--")


def test_a_narrow_terminal_keeps_the_run_s_file_count_whole() -> None:
    """Was: ``total [100/300 f…`` at 40 columns."""
    rp, _ = bars(40)
    listed = items(300)
    for i, item in enumerate(listed):
        rp(Queued(item, None, more=i < 299))
    for item in listed[:100]:
        rp(Finished(item, None, size=KiB, verified="size", fetched=KiB))
    rp(Started(listed[100], None, size=KiB, resumed=0))
    assert words(frame(rp)[0])[:2] == ["100/300", "files"]
    rp, _ = bars(80)  # (room enough: the whole name)
    rp(Started(listed[0], None, size=KiB, resumed=0))
    assert words(frame(rp)[0])[:3] == ["total", "[0/1", "files]"]


@pytest.mark.parametrize("reflow", [True, False], ids=["rewraps", "xterm"])
def test_bars_on_a_narrowing_terminal_are_redrawn_without_leftovers(
    reflow: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A terminal made narrower wraps the last frame's rows again (most do): the next
    # frame must erase them all, not the frame's height of them; one that cuts its rows
    # instead (xterm) must not lose the lines above the bars.
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    if reflow:
        monkeypatch.delenv("XTERM_VERSION", raising=False)
    else:
        monkeypatch.setenv("XTERM_VERSION", "XTerm(390)")
    term = io.StringIO()
    con = console(term, 80, 24)
    rp = RichProgress(con, Masker())
    screen = Screen(80, 24).feed("$ omniget ...\n")
    with rp:
        for item in items(3):
            rp(Started(item, None, size=4 * MiB, resumed=0))
        rp.live.refresh()
        for width in (40, 25, 100):
            screen.feed(term.getvalue()).resize(width, reflow=reflow)
            term.seek(0)
            term.truncate()
            con.width = width
            rp.live.refresh()
            shown = Screen(width, 24).feed(term.getvalue()).lines()  # (the frame alone)
            assert len(shown) == 4
            assert screen.feed(term.getvalue()).lines() == ["$ omniget ...", *shown]
            term.seek(0)
            term.truncate()
    assert screen.feed(term.getvalue()).lines() == ["$ omniget ..."]


def test_terminals_that_cut_their_rows_are_known_by_their_environment() -> None:
    from omniget.cli.bars import rewraps

    assert rewraps({"TERM": "xterm-256color", "VTE_VERSION": "7600"})
    assert rewraps({"TERM": "xterm-kitty"}) and rewraps({})
    assert not rewraps({"TERM": "xterm", "XTERM_VERSION": "XTerm(390)"})
    assert not rewraps({"TERM": "linux"}) and not rewraps({"TERM": "rxvt-unicode-256color"})
    assert not rewraps({"TERM": "st-256color"})
    assert rewraps({"TERM": "tmux-256color", "TMUX": "socket,1,0",
                    "XTERM_VERSION": "XTerm(390)"})  # (tmux rewraps, whatever it runs in)


def test_file_bars_follow_the_terminal_s_height_as_it_changes() -> None:
    rp, _ = bars(80, 24)
    for i in range(20):
        rp(Started(Item(download_url=f"https://example.com/f{i}.bin"), None, size=MiB,
                   resumed=0))
    assert len(frame(rp)) == 1 + 8 + 1
    rp.console.height = 6  # (made shorter mid-run: the frame still fits, and says the rest)
    rows = frame(rp)
    assert len(rows) == 6 and rows[-1] == "(+16 more active)", rows
    rp.console.height = 24  # (taller again: a screenful of bars at once)
    rows = frame(rp)
    assert len(rows) == 10 and rows[-1] == "(+12 more active)", rows


def test_ctrl_z_leaves_no_bars_and_a_cursor_and_fg_draws_them_afresh() -> None:
    """Ctrl+Z stopped the process with its bars on the screen and the cursor hidden (the
    shell's prompt came without one); on fg the next frame moved up over the shell's
    lines, and the stopped frame stayed above them."""
    term = Term()
    rp = RichProgress(console(term), Masker())
    screen = Screen(80, 24).feed("$ omniget ...\n")
    seen: dict[str, list[str] | bool] = {}

    def stopped() -> None:  # (the process is stopped here; the shell writes, then fg)
        screen.feed(term.getvalue())
        seen["lines"], seen["hidden"] = screen.lines(), screen.cursor_hidden
        screen.feed("[1]+  Stopped    omniget ...\n$ fg\nomniget ...\n")
        term.seek(0)
        term.truncate()

    rp.stop_process = stopped
    with rp:
        for item in items(2):
            rp(Started(item, None, size=4 * MiB, resumed=0))
        rp.live.refresh()
        rp.suspend(signal.SIGTSTP, None)  # (Ctrl+Z)
        assert seen == {"lines": ["$ omniget ..."], "hidden": False}
        rp.live.refresh()
        screen.feed(term.getvalue())
        assert screen.lines()[:4] == ["$ omniget ...", "[1]+  Stopped    omniget ...", "$ fg",
                                      "omniget ..."]
        assert [row.split()[0] for row in screen.lines()[4:]] == ["total", "f0.bin", "f1.bin"]
        assert screen.cursor_hidden


def test_a_rich_without_the_live_parts_replaced_still_draws_and_suspends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resize-aware region and Ctrl+Z's lock use rich's private ``Live`` attributes:
    a rich release without them must still give bars (rich's own region) and a cursor."""
    import rich.live
    from rich.live_render import LiveRender

    made: list[rich.live.Live] = []

    class Bare(rich.live.Live):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)  # type: ignore[arg-type]
            self._live_render = None  # type: ignore[assignment]  # (not rich's region)
            made.append(self)

    monkeypatch.setattr("omniget.cli.bars.Live", Bare)
    term = Term()
    rp = RichProgress(console(term), Masker())
    made[0]._live_render = LiveRender(rp.frame())  # (its own, left in place)
    rp.stop_process = lambda: None
    with rp:
        rp(Started(items(1)[0], None, size=4 * MiB, resumed=0))
        rp.live.refresh()
        rp.suspend(signal.SIGTSTP, None)
    assert made[0]._live_render is not rp.region
    assert "f0.bin" in term.getvalue() and "\x1b[?25h" in term.getvalue()


def test_ctrl_z_without_richs_live_lock_still_shows_and_hides_the_cursor() -> None:
    """Ctrl+Z erases the bars under rich's private ``Live._lock``: a rich release without
    it must still give the shell its cursor, and take it back on fg."""
    term = Term()
    rp = RichProgress(console(term), Masker())
    del rp.live._lock
    stopped: list[str] = []
    rp.stop_process = lambda: stopped.append(term.getvalue())
    rp.suspend(signal.SIGTSTP, None)
    assert stopped == ["\x1b[?25h"] and term.getvalue() == "\x1b[?25h\x1b[?25l"


def test_bars_without_colour_draw_done_and_left_apart() -> None:
    """Was: with NO_COLOR (or a terminal of no colours) the part left was not drawn, so a
    bar at 0% was blank and one part way was a line of no known length."""
    for no_colour in (True, False):  # (False: a terminal of no colours)
        out = io.StringIO()
        con = Console(file=out, force_terminal=True, width=60, height=24,
                      color_system="auto" if no_colour else None,
                      _environ={"TERM": "xterm-256color", "NO_COLOR": "1" if no_colour else ""})
        rp = RichProgress(con, Masker(), clock=Clock())
        a = Item(download_url="https://example.com/a.bin")
        rp(Started(a, None, size=4 * MiB, resumed=0))
        con.print(rp.frame())
        file = Screen(60, 24).feed(out.getvalue()).lines()[1]
        assert "----------" in file and "#" not in file, file  # 0%: all of it left
        rp(Progress(a, None, done=MiB, size=4 * MiB))
        out.seek(0)
        out.truncate()
        con.print(rp.frame())
        bar = Screen(60, 24).feed(out.getvalue()).lines()[1].split()[1]
        assert bar.strip("#-") == "" and bar.index("-") == bar.count("#"), bar
        assert bar.count("#") == len(bar) // 4, bar  # a quarter done
        b = Item(download_url="https://example.com/b.bin")  # no size: a block that moves
        rp(Started(b, None, size=None, resumed=0))
        out.seek(0)
        out.truncate()
        con.print(rp.frame())
        bar = Screen(60, 24).feed(out.getvalue()).lines()[2].split()[1]
        assert bar.strip("-") == "###", bar


def test_coloured_bars_are_drawn_as_rich_draws_them() -> None:
    out = io.StringIO()
    con = Console(file=out, force_terminal=True, width=60, height=24,
                  color_system="truecolor", _environ={"TERM": "xterm-256color"})
    rp = RichProgress(con, Masker(), clock=Clock())
    a = Item(download_url="https://example.com/a.bin")
    rp(Started(a, None, size=4 * MiB, resumed=0))
    rp(Progress(a, None, done=MiB, size=4 * MiB))
    con.print(rp.frame())
    file = Screen(60, 24).feed(out.getvalue()).lines()[1]
    assert "━" in file and "#" not in file and "-" not in file.split()[1], file


def test_a_narrow_terminal_keeps_each_bar_s_percent_or_bytes() -> None:
    """Was: under 43 columns the bytes went, under 38 every number did (a name and a bar
    said nothing of how far a file was)."""
    for width in range(16, 64):
        rp, _ = bars(width)
        a = Item(download_url="https://example.com/a.bin")
        b = Item(download_url="https://example.com/b.bin")  # no size
        rp(Started(a, None, size=4 * MiB, resumed=0))
        rp(Progress(a, None, done=MiB, size=4 * MiB))
        rp(Started(b, None, size=None, resumed=0))
        rp(Progress(b, None, done=3 * MiB, size=None))
        total, first, second = frame(rp)  # (no row wraps: checked there)
        wide = width >= 45  # (room for the bytes column)
        assert words(first)[1:3] == (["1.0/4.0", "MiB"] if wide else ["25%"]), (width, first)
        assert words(second)[1:3] == ["3.0", "MiB"], (width, second)
        assert words(total)[-2:] == ["4.0", "MiB"] or wide, (width, total)
        assert words(first)[0] in ("a.bin", "…bin", "…n") and words(total)[0] in ("0/2", "total")
        rp(Progress(b, None, done=3 * MiB, size=3 * MiB))  # (its size known: all in %)
        rp(Finished(b, None, size=3 * MiB, verified="size", fetched=3 * MiB))
        total, first = frame(rp)
        if not wide:
            assert words(first)[1:] == ["25%"] and words(total)[-1] == "57%", (width, total)


@pytest.mark.parametrize("console_script", [True, False], ids=["console-script", "library"])
def test_once_the_run_has_said_its_last_ctrl_c_is_ignored_by_the_console_script(
    monkeypatch: pytest.MonkeyPatch, console_script: bool
) -> None:
    """Its handlers went before the process ended: a Ctrl+C then raised Python's
    KeyboardInterrupt in a weakref callback, its traceback under the last line. A SIGHUP
    is ignored then too: the kernel's, as the shell that lost the terminal ends, came
    after the run's own stop had begun, and said its line again (or ended the process
    with 129, not the run's 130)."""
    from omniget.cli import signals

    monkeypatch.setattr(signals, "last_run", console_script)
    kinds = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.getsignal(s) for s in kinds}
    try:
        signal.signal(signal.SIGHUP, signal.default_int_handler)  # (as the command sets it)
        with signals.on_signals(lambda signum, frame: None):
            assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
        after = {s: signal.getsignal(s) for s in kinds}
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    want: dict[signal.Signals, object]
    if console_script:
        want = {signal.SIGINT: signal.SIG_IGN, signal.SIGHUP: signal.SIG_IGN}
    else:
        want = {signal.SIGINT: before[signal.SIGINT], signal.SIGHUP: signal.default_int_handler}
    assert after == {**want, signal.SIGTERM: before[signal.SIGTERM]}


def test_a_terminal_without_the_ellipsis_gets_three_dots() -> None:
    """In a latin-1 locale the names' and the start's ``…`` were drawn as ``\\u2026``."""
    term = io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="backslashreplace")
    rp = RichProgress(Console(file=term, force_terminal=True, width=60, height=24,
                              color_system=None, _environ={}), Masker(), clock=Clock())
    assert frame(rp) == ["starting..."]
    rp(Started(Item(download_url=f"https://example.com/{NAMES[0]}"), None, size=MiB,
               resumed=0))
    rows = frame(rp)
    assert rows[1].startswith("...") and rows[1].split()[0].endswith(".bin"), rows
    assert "\u2026" not in "".join(rows)
    assert frame(bars(60)[0]) == ["starting\u2026"]  # (UTF-8: the one character)


@pytest.mark.parametrize("then", [None, signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_sighup_stops_as_sigterm_but_never_quits_at_once(
    capsys: pytest.CaptureFixture[str], then: signal.Signals | None
) -> None:
    """SIGHUP (the terminal closed, an ssh connection dropped) stops the run and saves its
    state, as SIGTERM does. A shell that loses its terminal sends its jobs a SIGHUP of its
    own, and the kernel one more: more SIGHUPs are no "again", the run still saves all it
    has. A Ctrl+C or SIGTERM after it quits at once, as after any first signal."""
    exits: list[int] = []
    cancel = threading.Event()
    on_signal = SaveOnSignal(cancel, quiet=False, exit=exits.append)
    with on_signal:
        with on_signal.running():
            on_signal(signal.SIGHUP, None)
            assert cancel.is_set()
            if then is not None:
                on_signal(then, None)
            on_signal._signals.put(None)  # (the thread is done once it has said all)
            on_signal._writer.join(timeout=30)
    quits = then in (signal.SIGINT, signal.SIGTERM)
    assert (exits, on_signal.took_over) == (([130], True) if quits else ([], False))
    assert capsys.readouterr().err.startswith(
        "omniget: SIGHUP: stopping and saving state (Ctrl+C or SIGTERM quits now)\n"
    )
