"""Progress consumers fed synthetic engine events: plain lines, rich bars, quiet, the picker."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from rich.console import Console

from omniget.cli.bars import RichProgress
from omniget.cli.json_events import JsonEvents
from omniget.cli.output import Masker
from omniget.cli.progress import PlainProgress, QuietProgress, make_progress
from omniget.engine.events import (
    Event,
    Failed,
    Finished,
    Progress,
    Retrying,
    Skipped,
    Started,
    Warned,
)
from omniget.errors import Cancelled, NotFound, StorageError, TransientError
from omniget.model import Item

MiB = 1024 * 1024
A = Item(download_url="https://example.com/a.bin", size_bytes=10 * MiB)
B = Item(download_url="https://example.com/b.bin?token=sekrit")
C = Item(download_url="https://example.com/c.bin")


def sequence() -> list[tuple[float, Event]]:
    """(time, event): A finishes after progress, B fails, C is skipped."""
    return [
        (0.0, Started(A, None, size=10 * MiB, resumed=MiB)),
        (0.0, Started(B, None, size=None, resumed=0)),
        (0.5, Progress(A, None, done=2 * MiB, size=10 * MiB)),
        (1.0, Retrying(B, None, error=TransientError("reset"), attempt=1, delay=0.5)),
        (2.5, Progress(A, None, done=6 * MiB, size=10 * MiB)),
        (2.6, Progress(B, None, done=MiB, size=None)),
        (3.0, Progress(A, None, done=7 * MiB, size=10 * MiB)),
        (3.1, Warned(A, None, message="server ignored Range")),
        (4.0, Finished(A, Path("a.bin"), size=10 * MiB, verified="sha256", fetched=9 * MiB)),
        (4.1, Failed(B, None, error=NotFound("gone: https://example.com/b.bin?token=sekrit"))),
        (4.2, Skipped(C, Path("c.bin"), reason="exists")),
    ]


def plain_on_a_clock(verbose: bool = False) -> tuple[io.StringIO, list[float], PlainProgress]:
    """Plain lines (every 2 s) into a buffer, on a clock the test sets: ``now[0]``."""
    out, now = io.StringIO(), [0.0]
    plain = PlainProgress(out, Masker(), verbose=verbose, interval=2.0, clock=lambda: now[0])
    return out, now, plain


def feed(consumer: PlainProgress | RichProgress | QuietProgress, now: list[float]) -> None:
    with consumer:
        for t, event in sequence():
            now[0] = t
            consumer(event)


def test_plain_lines() -> None:
    out, now, plain = plain_on_a_clock()
    feed(plain, now)
    assert out.getvalue().splitlines() == [
        "omniget: warning: b.bin: reset; retrying in 0.5s (retry 1)",  # a wait: never silent
        # the run, once 2 s have passed: 5 MiB of a.bin in 2.5 s (its resumed MiB moves
        # no speed); b.bin's size is unknown: no total, no time left
        "[0:00:02] 0/2 files, 6.0 MiB, 2.0 MiB/s",
        "omniget: warning: a.bin: server ignored Range",
        "skipped c.bin: it already exists (--on-exists overwrite replaces it)",  # never silent
    ]  # no line per file (a run may be thousands); failures: listed at the end by the CLI


def test_plain_verbose_lines_per_file() -> None:
    out, now, plain = plain_on_a_clock(verbose=True)
    feed(plain, now)
    assert out.getvalue().splitlines() == [
        "start a.bin (10.0 MiB, at 1.0 MiB)",
        "start b.bin (?)",
        "omniget: warning: b.bin: reset; retrying in 0.5s (retry 1)",
        "  a.bin: 60% of 10.0 MiB, 2.0 MiB/s",  # 5 MiB in 2.5 s; the 0.5 s and 3.0 s ones wait
        "  b.bin: 1.0 MiB, 393.8 KiB/s",  # unknown size: bytes so far
        "omniget: warning: a.bin: server ignored Range",
        "done a.bin (10.0 MiB, sha256 ok)",
        "failed b.bin: gone: https://example.com/b.bin?token=***",
        "skipped c.bin: it already exists (--on-exists overwrite replaces it)",
    ]


def test_plain_run_line_with_a_known_total() -> None:
    out, now, plain = plain_on_a_clock()
    with plain:
        plain(Started(A, None, size=10 * MiB, resumed=4 * MiB))
        for second in range(1, 5):
            now[0] = second
            plain(Progress(A, None, done=(4 + second) * MiB, size=10 * MiB))
    assert out.getvalue().splitlines() == [  # 1 MiB/s: resumed bytes move the share only
        "[0:00:02] 0/1 files, 60% of 10.0 MiB, 1.0 MiB/s, 0:00:04 left",
        "[0:00:04] 0/1 files, 80% of 10.0 MiB, 1.0 MiB/s, 0:00:02 left",
    ]


def test_plain_run_line_before_the_speed_is_known() -> None:
    """The run's first file began 0.2 s before the line (a slow start): its speed is not
    known yet. Before, the line said 0 B/s, as for a stall."""
    out, now, plain = plain_on_a_clock()
    with plain:
        now[0] = 1.9
        plain(Started(A, None, size=10 * MiB, resumed=0))
        now[0] = 2.1
        plain(Progress(A, None, done=MiB, size=10 * MiB))
    assert out.getvalue().splitlines() == ["[0:00:02] 0/1 files, 10% of 10.0 MiB, ?"]


def test_plain_many_small_files_are_a_few_lines() -> None:
    out, now, plain = plain_on_a_clock()
    with plain:
        for i in range(1000):
            now[0] = i / 100  # 10 s in all
            item = Item(download_url=f"https://example.com/f{i}.bin")
            plain(Started(item, None, size=2048, resumed=0))
            plain(Finished(item, None, size=2048, verified="size", fetched=2048))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].startswith("[0:00:02] 200/201 files, "), lines


def test_skipped_files_are_a_few_lines_unless_verbose() -> None:
    from omniget.cli.progress import SKIP_LINES

    items = [Item(download_url=f"https://example.com/f{i}.bin") for i in range(50)]
    for verbose in (False, True):
        out = io.StringIO()
        term = io.StringIO()
        plain = PlainProgress(out, Masker(), verbose=verbose)
        rich = RichProgress(Console(file=term, force_terminal=True, width=100), Masker(),
                            verbose=verbose)
        with plain, rich:
            for item in items:
                for consumer in (plain, rich):
                    consumer(Skipped(item, Path(item.filename), reason="exists"))
        for text in (out.getvalue(), term.getvalue()):
            assert text.count("skipped f") == (50 if verbose else SKIP_LINES)
            more = "more files skipped: the summary counts them (-v lists each)"
            assert text.count(more) == (0 if verbose else 1)


def test_quiet_prints_nothing() -> None:
    err = io.StringIO()
    q = make_progress(Masker(), quiet=True, stderr=err)
    assert isinstance(q, QuietProgress)
    feed(q, [0.0])
    assert err.getvalue() == ""


def test_rich_renders_bars_and_lines() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    rp = RichProgress(console, Masker(["sekrit"]), verbose=True)
    now = [0.0]
    with rp:
        for t, event in sequence()[:3]:
            now[0] = t
            rp(event)
        assert rp.shown == [A.key, B.key]  # a bar each
        rp.live.refresh()
        for _, event in sequence()[3:]:
            rp(event)
        assert not rp.tally.files and not rp.shown  # file bars go when files end
        assert (rp.tally.ended, rp.tally.seen) == (3, 3)
        assert rp.tally.done == rp.tally.total == 10 * MiB  # (B failed: it drops out)
    text = buf.getvalue()
    assert "done a.bin" in text
    assert "failed b.bin" in text and "sekrit" not in text
    assert "skipped c.bin: it already exists" in text
    assert "omniget: warning: a.bin: server ignored Range" in text


def test_rich_without_verbose_prints_no_file_lines() -> None:
    buf = io.StringIO()
    rp = RichProgress(Console(file=buf, force_terminal=True, width=80), Masker())
    with rp:
        for _, event in sequence():
            rp(event)
    text = buf.getvalue()
    assert "failed b.bin" not in text  # the CLI lists failures once, at the end
    assert "done a.bin" not in text


def test_events_from_many_threads() -> None:
    out = io.StringIO()
    # (a clock that stands still, and an interval of its own: a loaded machine may take 2 s
    # over these events, and the run's line every 2 s is not what this test is about)
    plain = PlainProgress(out, Masker(), interval=2.0, clock=lambda: 0.0)
    rich = RichProgress(Console(file=io.StringIO(), force_terminal=True), Masker())

    def worker(n: int) -> None:
        for i in range(25):
            item = Item(download_url=f"https://example.com/{n}/{i}")
            for consumer in (plain, rich):
                consumer(Started(item, None, size=100, resumed=0))
                consumer(Progress(item, None, done=50, size=100))
                consumer(Finished(item, None, size=100, verified=None, fetched=100))

    with rich:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert out.getvalue() == ""  # (no line per file without -v)
    assert (plain.tally.ended, plain.tally.seen, plain.tally.done) == (100, 100, 100 * 100)
    assert (rich.tally.ended, rich.tally.seen, rich.tally.done) == (100, 100, 100 * 100)
    assert not rich.tally.files and not rich.shown


def test_make_progress_picks_by_terminal() -> None:
    m = Masker()
    assert isinstance(make_progress(m, as_json=True, stdout=io.StringIO()), JsonEvents)
    assert isinstance(make_progress(m, stderr=io.StringIO()), PlainProgress)
    fancy = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(make_progress(m, console=fancy), RichProgress)
    dumb = Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"})
    assert isinstance(make_progress(m, console=dumb), PlainProgress)


def test_cancelled_files_are_not_failure_lines() -> None:
    out = io.StringIO()
    plain = PlainProgress(out, Masker(), verbose=True)
    buf = io.StringIO()
    rich = RichProgress(Console(file=buf, force_terminal=True, width=80), Masker(), verbose=True)
    with plain, rich:
        for consumer in (plain, rich):
            consumer(Started(A, None, size=10, resumed=0))
            consumer(Failed(A, None, error=Cancelled("interrupted; run again to resume")))
            consumer(Failed(C, None, error=NotFound("gone")))
    assert out.getvalue().splitlines()[-1] == "failed c.bin: gone"
    assert "failed a.bin" not in out.getvalue()
    assert "failed c.bin: gone" in buf.getvalue() and "failed a.bin" not in buf.getvalue()
    assert not rich.tally.files


def test_rich_shows_a_screenful_of_file_bars_and_counts_the_rest() -> None:
    from omniget.cli.bars import SHOWN

    rp = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=100), Masker())
    items = [Item(download_url=f"https://example.com/f{i}") for i in range(SHOWN + 5)]
    with rp:
        for item in items:
            rp(Started(item, None, size=100, resumed=0))
        assert rp.shown == [item.key for item in items[:SHOWN]]
        rp(Finished(items[0], None, size=100, verified=None, fetched=100))
        assert len(rp.shown) == SHOWN  # a file without a bar took the finished one's place
        assert rp.shown[-1] == items[SHOWN].key


def test_rich_speed_is_in_binary_units_like_the_sizes() -> None:
    from omniget.cli.bars import _speed
    from omniget.cli.tally import Rate

    now = [0.0]
    rate = Rate(lambda: now[0])
    assert _speed(rate) == "?"  # (too early to say)
    rate.add(2 * MiB)
    now[0] = 1.0
    assert _speed(rate) == "2.0 MiB/s"  # what --limit-rate 2M allows, not "2.1 MB/s"


def test_plain_run_line_counts_the_whole_list() -> None:
    from omniget.engine.events import Queued

    out, now, plain = plain_on_a_clock()
    listed = [Item(download_url=f"https://example.com/f{i}.bin") for i in range(300)]
    with plain:
        for i, item in enumerate(listed):
            plain(Queued(item, None, more=i < 299))
        for i, item in enumerate(listed[:40]):  # 10 files a second
            now[0] = (i + 1) / 10
            plain(Started(item, None, size=MiB, resumed=0))
            plain(Finished(item, None, size=MiB, verified="size", fetched=MiB))
        plain(Started(listed[40], None, size=MiB, resumed=0))
    lines = out.getvalue().splitlines()  # (was: "[0:00:02] 19/20 files, ...")
    # 281 files left at 19 in 1.9 s (the first began at 0.1 s); then 261 at 39 in 3.9 s
    assert lines[0] == "[0:00:02] 19/300 files, 19.0 MiB, 10.0 MiB/s, 0:00:29 left"
    assert lines[1:] == ["[0:00:04] 39/300 files, 39.0 MiB, 10.0 MiB/s, 0:00:27 left"]


def test_the_tally_counts_resumed_bytes_once_per_file() -> None:
    from omniget.cli.tally import Tally

    tally = Tally(lambda: 0.0)
    tally(Started(A, None, size=10 * MiB, resumed=3 * MiB), "a.bin")
    tally(Started(B, None, size=MiB, resumed=MiB // 2), "b.bin")
    tally(Started(C, None, size=MiB, resumed=0), "c.bin")
    assert tally.resumed == 3 * MiB + MiB // 2
    tally(Started(B, None, size=MiB, resumed=0), "b.bin")  # (b started over: none kept)
    tally(Finished(A, None, size=10 * MiB, verified="size", fetched=7 * MiB), "a.bin")
    assert tally.resumed == 3 * MiB


def test_the_tally_counts_a_file_that_failed_after_it_finished_once_as_failed() -> None:
    from omniget.cli.tally import Tally
    from omniget.engine.events import Queued

    tally = Tally(lambda: 0.0)
    tally(Queued(A, None, more=False), "")
    tally(Started(A, None, size=10 * MiB, resumed=0), "a.bin")
    tally(Finished(A, None, size=10 * MiB, verified="size", fetched=10 * MiB), "a.bin")
    tally(Failed(A, None, error=StorageError("lost"), after_finished=True), "a.bin")
    assert (tally.ok, tally.failed, tally.ended, tally.seen) == (0, 1, 1, 1)
    assert not tally.files


def test_a_second_signal_says_the_counts_the_display_kept() -> None:
    """The last lines of a second Ctrl+C (no report: the run is cut) count the files as
    the run's end would: those going are interrupted, those never begun not started;
    and the bytes the events told, with the time since the display began."""
    from omniget.cli.commands import RESUME, _last_lines
    from omniget.engine.events import Queued

    d, e, f = (Item(download_url=f"https://example.com/{n}.bin") for n in "def")
    _, now, plain = plain_on_a_clock()
    for item in (A, B, C, d, e, f):
        plain(Queued(item, None, more=False))
    for now[0], event in sequence():  # (A ok, B failed, C skipped)
        plain(event)
    plain(Started(d, None, size=None, resumed=0))  # (going: cut now)
    plain(Progress(d, None, done=MiB, size=None))
    plain(Started(e, None, size=None, resumed=0))
    plain(Failed(e, None, error=Cancelled("interrupted")))  # (cut by the first signal)
    now[0] = 5.5
    resume = f"omniget: error: {RESUME}\n"
    # (9 MiB of a.bin, its first MiB resumed; 1 MiB of b.bin, failed; 1 MiB of d.bin, cut)
    assert _last_lines(plain, quiet=False) == (
        "1 file ok, 1 skipped, 1 failed, 2 interrupted, 1 not started, "
        f"11.0 MiB (+1.0 MiB resumed) in 5.5s (2.0 MiB/s)\n{resume}")
    assert _last_lines(plain, quiet=True) == resume
    assert _last_lines(QuietProgress(), quiet=False) == resume
