"""The events of a stopped run: a file it began ends once (``Finished``, ``Failed`` with
:class:`omniget.Cancelled` for one cut short, or ``Skipped``) and has a result; an entry
of its list it never began had its ``Queued`` and nothing more, no end and no result
(``Report.stopped`` says the list was cut; the command counts such files ``not_started``).
So a rerun, not this run, decides about them: no end claims they failed or were skipped."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine.events import Event, Failed, Finished, Queued, Retrying, Skipped, Started


def test_a_stopped_run_ends_what_it_began_and_no_entry_it_never_began(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    urls = [httpd.add(httpd.new_path(f"f{i}.bin"), b"x" * 1000) for i in range(12)]
    cancel = threading.Event()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, Finished):
            cancel.set()  # (as Ctrl+C does: the run stops after its first file)

    settings = omniget.Settings(state_dir=tmp_path / "state", jobs=1)
    report = omniget.download(urls, tmp_path / "out", settings=settings, on_event=on_event,
                              cancel=cancel)
    assert report.stopped
    queued = [e.item.download_url for e in events if isinstance(e, Queued)]
    assert sorted(queued) == sorted(urls)  # (each entry announced once)
    ends = Counter(e.item.download_url for e in events
                   if isinstance(e, Finished | Failed | Skipped))
    assert max(ends.values()) == 1
    results = {r.item.download_url: r for r in report.results}
    assert set(ends) == set(results)
    never = [url for url in urls if url not in ends]
    assert never and not any(url in results for url in never)
    for e in events:
        if isinstance(e, Failed):  # (a file cut short: interrupted, resumable)
            assert isinstance(e.error, omniget.Cancelled)
    assert report.ok >= 1 and report.ok + report.failed + report.skipped == len(results)


def test_a_file_stopped_while_waiting_for_its_turn_has_no_end_and_no_result(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """-j 1, two files: the second is set up (the list is read to its end) and waits for
    its turn as the run stops. Before, it ended ``Failed`` (Cancelled) with a result, as
    if cut short: "interrupted" though it never began. Now it is as an entry never
    reached: no end, no result, and ``Report.stopped`` says the run did not get to it."""
    paths = [httpd.new_path(f"w{i}.bin") for i in range(2)]
    for path in paths:
        httpd.add(path, b"w" * 400_000)
    urls = [httpd.url(path, drip=200_000) for path in paths]  # (2 s each)
    cancel = threading.Event()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, Started):
            cancel.set()

    settings = omniget.Settings(state_dir=tmp_path / "state", jobs=1)
    report = omniget.download(urls, tmp_path / "out", settings=settings, on_event=on_event,
                              cancel=cancel)
    assert report.stopped and report.interrupted == 1
    assert [r.item.download_url for r in report.results] == urls[:1]
    assert not [e for e in events if e.item.download_url == urls[1]
                and not isinstance(e, Queued)]


def test_a_file_stopped_while_it_waits_to_try_again_is_interrupted(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """One that had its turn (a try answered 503, the next one waited for) began: it
    ends Failed, Cancelled, and counts as interrupted."""
    path = httpd.new_path("r.bin")
    httpd.add(path, b"r" * 1000)
    url = httpd.url(path, status=503, retry_after=30, times="always")
    cancel = threading.Event()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, Retrying):
            cancel.set()

    settings = omniget.Settings(state_dir=tmp_path / "state")
    report = omniget.download([url], tmp_path / "out", settings=settings, on_event=on_event,
                              cancel=cancel)
    assert report.interrupted == 1
    (end,) = [e for e in events if isinstance(e, Failed)]
    assert isinstance(end.error, omniget.Cancelled)
