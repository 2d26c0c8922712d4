"""Many files of a host that is down: one file's retry budget finds it out, the others
fail at once, each naming that failure, and other hosts' files go on. Backoff sleeps run
on a fake clock; the counts are of tries (Retrying events, requests the server logged,
connections it took), never of time.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.engine import Engine, Report
from omniget.engine.events import Event, Failed, Finished, Retrying, Warned
from omniget.engine.retry import FakeClock
from omniget.model import Item
from omniget.settings import NetworkSettings, Settings

#: Files of the dead host in each test (more than its connections: -N 4 by default).
DEAD = 30
#: Files of it tried at most: the four under way at first (-N 4), and the one that took
#: the slot of the first to give up (two must, with no answer between, for a host to be
#: down: STRIKES).
TRIED = 4 + 1


def run(
    items: list[Item], tmp_path: Path, clock: FakeClock | None = None, **kw: object
) -> tuple[Report, list[Event]]:
    events: list[Event] = []
    network = kw.pop("network", None) or NetworkSettings(stall_timeout=2.0, connect_timeout=5.0)
    settings = Settings(state_dir=tmp_path / "state", network=network, **kw)  # type: ignore[arg-type]

    async def go() -> Report:
        eng = Engine(settings, clock=clock or FakeClock(), on_event=events.append)
        try:
            return await eng.run(items, tmp_path / "out")
        finally:
            await eng.aclose()

    return asyncio.run(go()), events


def retries(events: list[Event]) -> int:
    return sum(isinstance(e, Retrying) for e in events)


class Dropper:
    """A server that takes each connection and closes it at once, unanswered (counted)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.taken = 0
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.taken += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(30)
        self.sock.close()


@pytest.fixture
def dropper() -> Iterator[Dropper]:
    d = Dropper()
    yield d
    d.close()


def test_files_of_a_host_that_refuses_every_connection_fail_after_one_budget(
    httpd: HTTPServer, tmp_path: Path, refused_port: int
) -> None:
    """Nobody listens: the first files spend their two quick retries, the rest fail at
    once, naming the failure that showed the host down (not 30 files' retries each, in
    turns of four: 90 connections, 60 retry lines); the other host's files come."""
    dead = [Item(f"http://127.0.0.1:{refused_port}/f{i}.bin") for i in range(DEAD)]
    healthy = []
    for i in range(5):
        httpd.add(f"/ok{i}.bin", b"%d" % i * 1000)
        healthy.append(Item(httpd.url(f"/ok{i}.bin")))
    report, events = run([*dead[:15], *healthy, *dead[15:]], tmp_path)
    assert report.exit_code == 3
    assert [r.status for r in report.results[15:20]] == ["ok"] * 5
    assert len(report.failures) == DEAD
    # at most the files under way when the host was found down retried, each twice
    assert retries(events) <= TRIED * 2
    said = [str(f.error) for f in report.failures]
    gave_up = [s for s in said if s.endswith("Connection refused (gave up after 2 retries)")]
    assert gave_up, said
    untried = [s for s in said if s.startswith("not tried: ")]
    assert len(untried) >= DEAD - TRIED
    # each names the failure that showed the host down
    assert all(s.endswith(": Connection refused (gave up after 2 retries)") for s in untried)
    assert all(s.startswith(f"not tried: 127.0.0.1:{refused_port} is down") for s in untried)


def test_a_host_that_drops_every_connection_gets_one_budget_of_them(
    tmp_path: Path, dropper: Dropper
) -> None:
    """A host that takes each connection and closes it unanswered: a retryable failure
    with the whole budget (five retries). One file's budget, and the tries of the few
    under way with it, not 30 x 6 connections."""
    dead = [Item(f"http://127.0.0.1:{dropper.port}/f{i}.bin") for i in range(DEAD)]
    report, events = run(dead, tmp_path)
    assert report.exit_code == 3
    assert len(report.failures) == DEAD
    assert retries(events) <= TRIED * 5
    assert dropper.taken <= TRIED * 6
    assert sum(str(f.error).startswith("not tried: ") for f in report.failures) >= DEAD - TRIED


def test_a_503_with_retry_after_for_every_file_is_waited_out_once(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Every file answered 503 with Retry-After: each try waits what the server asked
    (honoured), and when one file's budget is spent on it the other files fail at once
    (not 30 budgets, four at a time)."""
    dead = [Item(httpd.url(f"/busy{i}.bin", status=503, retry_after=7)) for i in range(DEAD)]
    clock = FakeClock()
    report, events = run(dead, tmp_path, clock)
    assert report.exit_code == 3
    assert len(report.failures) == DEAD
    waits = [e.delay for e in events if isinstance(e, Retrying)]
    assert waits and all(w >= 7 for w in waits)  # Retry-After honoured
    assert len(waits) <= TRIED * 5
    assert len(httpd.requests) <= TRIED * 6
    untried = [str(f.error) for f in report.failures if str(f.error).startswith("not tried: ")]
    assert len(untried) >= DEAD - TRIED
    assert all("HTTP 503" in s for s in untried)


def test_a_host_that_comes_back_within_the_budget_is_used(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The host answers 503 to its first 12 requests (the first files' first tries and
    retries), then serves: every file comes, none is failed for the host."""
    items = []
    for i in range(DEAD):
        httpd.add(f"/back{i}.bin", b"%d" % i * 500)
        items.append(Item(httpd.url(f"/back{i}.bin", status=503, k="host", times=12)))
    report, events = run(items, tmp_path)
    assert report.exit_code == 0, report.failures
    assert sum(isinstance(e, Finished) for e in events) == DEAD


def test_files_behind_a_dead_host_s_in_the_list_wait_one_budget_at_most(
    httpd: HTTPServer, tmp_path: Path, refused_port: int
) -> None:
    """-j 2: two files transfer at once. The dead host's files come first in the list;
    the healthy host's file waits for one budget (that of the first two, and a try of
    the one after them), not for every dead file's in turn."""
    dead = [Item(f"http://127.0.0.1:{refused_port}/f{i}.bin") for i in range(DEAD)]
    httpd.add("/late.bin", b"late" * 100)
    report, events = run([*dead, Item(httpd.url("/late.bin"))], tmp_path, jobs=2)
    assert report.results[-1].status == "ok"
    ended = next(i for i, e in enumerate(events) if isinstance(e, Finished))
    assert retries(events[:ended]) <= 3 * 2
    assert sum(isinstance(e, Failed) for e in events) == DEAD


def test_items_made_of_pieces_of_a_host_that_refuses_fail_after_one_budget(
    tmp_path: Path, refused_port: int
) -> None:
    """Items made of pieces (ranges, four connections to the host at once) find a host
    down and are not tried once it is, as plain files are (each spent its own retries:
    30 items, 60 retry lines)."""
    from omniget.model import ByteRange, Piece

    base = f"http://127.0.0.1:{refused_port}"
    items = [
        Item(f"{base}/p{i}", filename=f"p{i}.bin",
             pieces=(Piece(url=f"{base}/p{i}", range=ByteRange(0, 10), size=10),
                     Piece(url=f"{base}/p{i}", range=ByteRange(10, 20), size=10)))
        for i in range(DEAD)
    ]
    report, events = run(items, tmp_path)
    assert report.exit_code == 3 and len(report.failures) == DEAD
    assert retries(events) <= TRIED * 2 * 2  # (two pieces a file, at most, each twice)
    said = [str(f.error) for f in report.failures]
    untried = [s for s in said if s.startswith(f"not tried: 127.0.0.1:{refused_port} is down")]
    assert len(untried) >= DEAD - TRIED, said


@pytest.fixture
def refused_port2() -> Iterator[int]:
    """A second port nobody listens at (see ``refused_port``): another dead host."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def mirror_tries(events: list[Event]) -> int:
    """Failed tries that sent a file to its next mirror (one line each)."""
    return sum(isinstance(e, Warned) and e.message.endswith("trying a mirror") for e in events)


def test_a_mirror_other_files_found_down_is_skipped_at_once(
    httpd: HTTPServer, tmp_path: Path, refused_port: int
) -> None:
    """30 files, each with a dead first URL and a live mirror (as aria2 takes them): the
    few under way find the dead host down (their refused connections count as a file's
    giving up), the others go to the live mirror at once, without a try of the dead one,
    and no file waits to try again (each tried the dead URL first, a connect timeout
    each where packets are dropped)."""
    items = []
    for i in range(DEAD):
        httpd.add(f"/m{i}.bin", b"%d" % i * 700)
        items.append(Item(f"http://127.0.0.1:{refused_port}/m{i}.bin",
                          mirrors=(httpd.url(f"/m{i}.bin"),)))
    report, events = run(items, tmp_path)
    assert report.exit_code == 0, report.failures
    assert retries(events) == 0
    assert mirror_tries(events) <= TRIED
    assert (tmp_path / "out" / "m7.bin").read_bytes() == b"7" * 700


def test_files_with_mirrors_find_a_host_down_for_files_without(
    httpd: HTTPServer, tmp_path: Path, refused_port: int
) -> None:
    """The refused tries of files with mirrors are evidence, as a file's given-up retries
    are: the dead host's own files after them in the list are not tried (each spent two
    retries, four at a time, till two of them gave up)."""
    items = []
    for i in range(10):
        httpd.add(f"/m{i}.bin", b"%d" % i * 700)
        items.append(Item(f"http://127.0.0.1:{refused_port}/m{i}.bin",
                          mirrors=(httpd.url(f"/m{i}.bin"),)))
    alone = [Item(f"http://127.0.0.1:{refused_port}/f{i}.bin") for i in range(10)]
    report, events = run([*items, *alone], tmp_path)
    assert [r.status for r in report.results[:10]] == ["ok"] * 10
    said = [str(f.error) for f in report.failures]
    assert len(said) == 10
    untried = [s for s in said if s.startswith(f"not tried: 127.0.0.1:{refused_port} is down")]
    assert len(untried) >= 9, said
    assert retries(events) <= 2


def test_a_file_whose_every_mirror_is_down_fails_at_once(
    tmp_path: Path, refused_port: int, refused_port2: int
) -> None:
    """Files whose two URLs are on two dead hosts: once both are found down, the others
    fail at once, in the one line of a host found down (not each after its retries)."""
    items = [Item(f"http://127.0.0.1:{refused_port}/f{i}.bin",
                  mirrors=(f"http://127.0.0.1:{refused_port2}/f{i}.bin",))
             for i in range(DEAD)]
    report, events = run(items, tmp_path)
    assert report.exit_code == 3 and len(report.failures) == DEAD
    said = [str(f.error) for f in report.failures]
    untried = [s for s in said if s.startswith("not tried: 127.0.0.1:")]
    assert len(untried) >= DEAD - 2 * TRIED, said
    assert all(" is down, another file gave up on it: could not connect" in s
               for s in untried), said
    assert retries(events) <= 2 * TRIED
    assert mirror_tries(events) <= 2 * 2 * TRIED
