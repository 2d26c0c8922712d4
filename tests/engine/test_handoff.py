"""Back-to-back requests: the next file is set up ahead and its request starts the moment a
slot frees up, before the previous file's finishing work; -j still bounds the files
transferring at once."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from omniget.engine import Engine, Report
from omniget.engine.events import Event, Finished
from omniget.engine.retry import FakeClock
from omniget.engine.scheduler import Ticket
from omniget.engine.transports.base import Head, Headers, Request, Sink
from omniget.engine.transports.memory import MemoryTransport
from omniget.model import Digest, Item, Piece
from omniget.settings import Settings


class Recorder:
    """A transport double that logs when each request starts and ends, and how many run
    at once. ``starts_on_grant`` as the libcurl transport has it, or not."""

    schemes = ("http",)

    def __init__(self, log: list[tuple[str, str]], *, on_grant: bool) -> None:
        self.log = log
        self.starts_on_grant = on_grant
        self.active = 0
        self.most = 0

    async def fetch(self, request: Request, sink: Sink, gate: Ticket | None = None) -> Head:
        name = request.url.rsplit("/", 1)[1]
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def start() -> None:
            if not started.done():
                self.log.append(("start", name))
                self.active += 1
                self.most = max(self.most, self.active)
                started.set_result(None)

        if gate is None:
            start()
        else:
            gate.on_grant(start)
        await started
        try:
            for _ in range(3):  # the wire
                await asyncio.sleep(0)
            body = name.encode() * 100
            head = Head(200, request.url, Headers([("content-length", str(len(body)))]))
            sink.on_head(head)
            sink.on_data(body)
            return head
        finally:
            self.active -= 1
            self.log.append(("done", name))

    async def aclose(self) -> None:
        return None


def run_items(
    tmp_path: Path, transport: object, items: list[Item], **kw: object
) -> tuple[Report, list[Event]]:
    events: list[Event] = []
    settings = Settings(state_dir=tmp_path / "state", **kw)  # type: ignore[arg-type]
    eng = Engine(
        settings,
        transports={"http": transport},  # type: ignore[dict-item]
        clock=FakeClock(),
        on_event=events.append,
    )

    async def go() -> Report:
        try:
            return await asyncio.wait_for(eng.run(items, tmp_path / "out"), 20)
        finally:
            await eng.aclose()

    return asyncio.run(go()), events


def test_next_request_starts_before_the_previous_file_finishes(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    t = Recorder(log, on_grant=True)
    items = [Item(f"http://h.test/f{i}", filename=f"f{i}") for i in range(5)]

    report, events = run_items(tmp_path, t, items, jobs=1, connections_per_host=1)
    for ev in events:
        if isinstance(ev, Finished):
            log.append(("finished", ev.item.filename))

    assert report.exit_code == 0
    assert t.most == 1  # one connection, one file at a time
    for i in range(4):
        # file i+1's request left before file i was renamed into place
        assert log.index(("start", f"f{i + 1}")) < log.index(("finished", f"f{i}"))
        assert log.index(("done", f"f{i}")) < log.index(("start", f"f{i + 1}"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"f{i}" for i in range(5)]


@pytest.mark.parametrize("on_grant", [True, False], ids=["starts-on-grant", "plain-fetch"])
@pytest.mark.parametrize("jobs", [1, 3])
def test_jobs_bounds_files_transferring_at_once(tmp_path: Path, on_grant: bool, jobs: int) -> None:
    log: list[tuple[str, str]] = []
    t = Recorder(log, on_grant=on_grant)
    items = [Item(f"http://h{i % 2}.test/f{i}", filename=f"f{i}") for i in range(12)]

    report, _ = run_items(tmp_path, t, items, jobs=jobs, connections_per_host=8)

    assert report.exit_code == 0
    assert t.most == jobs
    assert len(list((tmp_path / "out").iterdir())) == 12


def test_a_file_waiting_its_turn_never_claims_a_chunk_the_running_one_needs(
    tmp_path: Path,
) -> None:
    # -j 1: "later.bin" is set up while "first.bin" downloads; both need chunk K, which is
    # first.bin's last piece. If the waiting file claimed K, first.bin would wait for it
    # forever while holding the one turn.
    mem = MemoryTransport()
    blobs = {n: hashlib.sha256(n.encode()).digest() * 1000 for n in ("p0", "p1", "k")}
    for n, data in blobs.items():
        mem.add(f"http://cdn.test/{n}", data)

    def piece(n: str) -> Piece:
        md5 = Digest("md5", hashlib.md5(blobs[n]).hexdigest())
        return Piece(f"http://cdn.test/{n}", size=len(blobs[n]), fetched_digest=md5, digest=md5)

    first = Item(
        "http://cdn.test/p0", filename="first.bin", pieces=tuple(map(piece, ("p0", "p1", "k")))
    )
    later = Item("http://cdn.test/k", filename="later.bin", pieces=(piece("k"),))

    report, _ = run_items(tmp_path, mem, [first, later], jobs=1, split=1)

    assert report.exit_code == 0, report.failures
    out = tmp_path / "out"
    assert (out / "first.bin").read_bytes() == blobs["p0"] + blobs["p1"] + blobs["k"]
    assert (out / "later.bin").read_bytes() == blobs["k"]
    assert [r.url for r in mem.requests].count("http://cdn.test/k") == 1


def test_fetch_when_granted_is_the_transports_own_fetch() -> None:
    """fetch_when_granted hands back the transport's fetch itself (granted, or a transport
    that starts on the grant): no coroutine of its own per request. A transport that
    cannot start on the grant still gets the request only once the gate is granted."""
    import inspect

    from omniget.engine.scheduler import HostLimits
    from omniget.engine.transports.base import fetch_when_granted

    async def go() -> list[tuple[str, str]]:
        log: list[tuple[str, str]] = []
        limits = HostLimits(per_host=1, total=1)
        first, second = limits.ticket("http://h/a"), limits.ticket("http://h/b")
        on_grant, plain = Recorder(log, on_grant=True), Recorder(log, on_grant=False)

        class Drop:
            def on_head(self, head: Head) -> None:
                pass

            def on_data(self, data: bytes) -> None:
                pass

        sink = Drop()
        own = fetch_when_granted(on_grant, Request("http://h/a"), sink, first)
        assert inspect.iscoroutine(own) and own.cr_code is Recorder.fetch.__code__
        waiting = fetch_when_granted(on_grant, Request("http://h/b"), sink, second)
        assert inspect.iscoroutine(waiting) and waiting.cr_code is Recorder.fetch.__code__
        later = limits.ticket("http://h/c")
        after = asyncio.ensure_future(
            fetch_when_granted(plain, Request("http://h/c"), sink, later)
        )
        await own
        first.close()
        await waiting
        await asyncio.sleep(0)
        assert ("start", "c") not in log  # (not granted yet: not asked)
        second.close()
        await after
        later.close()
        return log

    log = asyncio.run(go())
    assert [entry for entry in log if entry[0] == "start"] == [
        ("start", "a"), ("start", "b"), ("start", "c")
    ]  # fmt: skip
