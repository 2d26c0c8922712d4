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
from omniget.engine.events import Event, Failed, Finished, Queued, Skipped


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
