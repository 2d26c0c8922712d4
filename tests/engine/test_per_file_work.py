"""Work a run of many small files does per file only when it is of use to someone: what it
skips must leave the files, the report and what listeners see exactly as before."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

import omniget.engine.existing as existing
import omniget.engine.finish as finish
import omniget.engine.job as job
from omniget import download
from omniget.cli import main
from omniget.engine.context import RunContext
from omniget.engine.events import Event, Finished, Progress, Started, ignore
from omniget.engine.retry import RetryPolicy, SystemClock
from omniget.engine.scheduler import HostLimits
from omniget.errors import StorageError
from omniget.model import Item
from omniget.settings import Settings


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the per-file events the jobs build (the real events, counted)."""
    names: list[str] = []

    def counted(cls: type[Event]) -> Callable[..., Event]:
        def make(*args: object, **kwargs: object) -> Event:
            names.append(cls.__name__)
            return cls(*args, **kwargs)  # type: ignore[arg-type]

        return make

    for module, cls in ((job, Started), (job, Progress), (finish, Finished)):
        monkeypatch.setattr(module, cls.__name__, counted(cls))
    return names


def small_files(httpd: HTTPServer, n: int = 3) -> list[str]:
    return [httpd.add(f"/small/f{i}.bin", bytes([i]) * (100 + i)) for i in range(n)]


def test_a_run_nobody_listens_to_builds_no_per_file_events(
    httpd: HTTPServer, tmp_path: Path, built: list[str]
) -> None:
    urls = small_files(httpd)

    report = download(urls, tmp_path / "a", settings=Settings(state_dir=tmp_path / "st"))

    assert report.ok == 3 and built == []
    seen: list[Event] = []
    report = download(
        urls, tmp_path / "b", settings=Settings(state_dir=tmp_path / "st"), on_event=seen.append
    )
    assert report.ok == 3
    kinds = [type(e).__name__ for e in seen]
    assert kinds[:3] == ["Queued"] * 3  # (the list, announced before any file starts)
    assert sorted(built) == sorted(kinds[3:])
    assert kinds.count("Started") == kinds.count("Finished") == 3
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]


def test_the_quiet_cli_builds_no_per_file_events(
    httpd: HTTPServer, tmp_path: Path, built: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    urls = small_files(httpd)
    state = ["--state-dir", str(tmp_path / "st")]

    assert main(["-q", "-o", str(tmp_path / "q"), *state, *urls]) == 0
    assert built == [] and capsys.readouterr().err == ""
    assert main(["-v", "-o", str(tmp_path / "loud"), *state, *urls]) == 0  # (lines per file)
    assert built.count("Finished") == 3
    assert capsys.readouterr().err.count("done ") == 3
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]


def a_job(tmp_path: Path, on_exists: str) -> job.FileJob:
    settings = Settings(state_dir=tmp_path / "st", on_exists=on_exists)  # type: ignore[arg-type]
    ctx = RunContext(
        settings=settings, transports={}, limits=HostLimits(4, 16), journal=None,
        clock=SystemClock(), policy=RetryPolicy(), emit=ignore, dest=tmp_path,
    )  # fmt: skip
    return job.FileJob(ctx, Item("http://127.0.0.1:1/x.bin"))


@pytest.mark.parametrize("on_exists", ["skip", "overwrite", "rename"])
def test_on_exists_tells_what_is_at_the_name(
    tmp_path: Path, on_exists: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = a_job(tmp_path, on_exists)
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "gone")  # (a dangling link is there too)
    wants: dict[str, dict[str, str | None]] = {
        "skip": {"file": None, "link": None},
        "overwrite": {"file": "file", "link": "link"},
        "rename": {"file": "file_1", "link": "link_1", "folder": "folder_1"},
    }
    want = wants[on_exists]  # (a name not there: StorageError)
    for name in ("file", "link", "folder"):
        if name not in want:
            with pytest.raises(StorageError, match="is a folder"):
                j.exists_policy(tmp_path / name)
            continue
        got = j.exists_policy(tmp_path / name)
        assert (got.name if got else None) == want[name], name
    looked: list[object] = []
    real = os.lstat

    def lstat(path: object, **kw: Any) -> os.stat_result:
        looked.append(path)
        return real(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", lstat)
    missing = tmp_path / "missing"
    assert j.exists_policy(missing) == missing
    assert j.exists_policy(tmp_path / "file" / "below") == tmp_path / "file" / "below"
    if existing._ACCESS_TELLS:  # a missing name is told without lstat's exception
        assert looked == []


def calls_per_run(
    httpd: HTTPServer, top: Path, runs: tuple[int, ...], calls: list[str]
) -> list[int]:
    """For each count in ``runs``, a run of that many small files into a folder of its
    own under ``top``: how many entries the run left in ``calls`` (emptied before each),
    once its files and its report's paths are checked."""
    top.mkdir()  # (as tmp_path was: a folder to make would be work of its own)
    counts = []
    for n in runs:
        urls = [httpd.add(f"/{top.name}/{n}/f{i}.bin", bytes([i]) * (200 + i)) for i in range(n)]
        out = top / f"out{n}"
        calls.clear()
        report = download(urls, out, settings=Settings(state_dir=top / "st"))
        counts.append(len(calls))
        assert report.ok == n
        assert [r.path for r in report.results] == [out / f"f{i}.bin" for i in range(n)]
        assert all((out / f"f{i}.bin").read_bytes() == bytes([i]) * (200 + i) for i in range(n))
    return counts


def test_a_file_of_a_run_takes_no_str_of_its_path(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine has each output path as a string from the start: no str() of a Path per
    file (the first of each costs an exception inside pathlib). A run of eight files
    takes as many as a run of two; the files and the report's paths are the same. A
    str() of a Path whose string pathlib holds already is not counted (Python 3.12's
    child path takes one of the root's per file: a lookup)."""
    import pathlib

    taken: list[str] = []
    real = pathlib.PurePath.__str__

    def counted(self: pathlib.PurePath) -> str:
        held = hasattr(self, "_str")  # (pathlib's string of the path, once made)
        text = real(self)
        if not held:
            taken.append(text)
        return text

    monkeypatch.setattr(pathlib.PurePath, "__str__", counted)
    counts = calls_per_run(httpd, tmp_path / "str", (2, 8), taken)
    assert counts[0] == counts[1]


def test_contain_text_is_the_paths_own_string(tmp_path: Path) -> None:
    from omniget.engine.names import contain, contain_text

    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "ln").symlink_to(tmp_path / "out" / "sub")
    for root in (tmp_path / "out", Path("/"), tmp_path / "out" / ".." / "out"):
        for rel in ("a.bin", "sub/b.bin", "x/y/z", "../up", "ln/c", "./d", "a//b", ".."):
            path, text = contain_text(root, rel)
            assert text == str(path) and path == contain(root, rel), (root, rel)


def test_a_file_of_a_run_parses_no_path(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's output path below the run's root is made without pathlib parsing its name
    again (``root / name`` did, ~9 K instructions more per file): a run of six files
    joins as many paths as a run of two; the files and the report's paths are the same."""
    import pathlib

    from omniget.engine import names

    joined: list[str] = []
    real = pathlib.PurePath.__truediv__

    def counted(self: pathlib.PurePath, key: str) -> pathlib.PurePath:
        joined.append(key)
        return real(self, key)

    monkeypatch.setattr(pathlib.PurePath, "__truediv__", counted)
    counts = calls_per_run(httpd, tmp_path / "join", (2, 6), joined)
    if hasattr(pathlib.Path, "_make_child_relpath"):  # (pathlib's, where it has one)
        assert counts[0] == counts[1]
    # (the path made either way is the one ``/`` makes, nested names and odd roots too)
    (tmp_path / "r" / "sub").mkdir(parents=True)
    for root in (tmp_path / "r", Path("/"), tmp_path / "r" / ".." / "r"):
        for rel in ("a.bin", "sub/b.bin", "x/y", "~c", "d e", "é.bin"):
            path, text = names.contain_text(root, rel)
            base = pathlib.Path(root).resolve()
            assert path == real(base, rel) and text == str(path)
            assert path.parts[-1] == rel.split("/")[-1]


def test_set_up_slots_are_taken_by_a_plain_call_and_waited_for_by_one() -> None:
    """A free set-up slot is taken without a coroutine (per file, an asyncio.Semaphore's
    acquire made one); the listing waits for the next one given back, and a cancelled
    wait takes none."""
    import asyncio

    from omniget.engine.context import SetupSlot, SetupSlots

    async def go() -> list[str]:
        seen: list[str] = []
        slots = SetupSlots(2)
        first, second = SetupSlot(slots), SetupSlot(slots)
        assert slots.take() and slots.take() and not slots.take()

        async def listing() -> None:
            await slots.wait()
            seen.append("took")

        waiter = asyncio.create_task(listing())
        await asyncio.sleep(0)
        assert seen == [] and slots.free == 0
        first.release()
        first.release()  # (once only)
        await waiter
        assert seen == ["took"] and slots.free == 0
        late = asyncio.create_task(slots.wait())
        await asyncio.sleep(0)
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        second.release()
        assert slots.free == 1 and slots.take()
        return seen

    assert asyncio.run(go()) == ["took"]


def test_a_head_reads_its_headers_from_their_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Head's sizes, range, validators and range support come from the headers' table
    of lower-case names, without a Headers.get call (and its lower()) per name; and a
    200 answer's head asks nobody for a Location."""
    from omniget.engine.transports import hop as hop_module
    from omniget.engine.transports.base import Head, Headers

    pairs = [
        ("Content-Length", " 12 "), ("ETag", '"a"'),
        ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Accept-Ranges", "Bytes"),
        ("Content-Range", "bytes 0-11/40"),
    ]  # fmt: skip

    def refused(self: Headers, name: str, default: str | None = None) -> str | None:
        raise AssertionError(f"Headers.get({name!r})")

    monkeypatch.setattr(Headers, "get", refused)
    head = Head(206, "http://h/x", Headers(pairs))
    assert (head.content_length, head.content_range, head.total_size) == (12, (0, 12, 40), 40)
    assert head.etag == '"a"' and head.last_modified == pairs[2][1] and head.accepts_ranges
    bare = Head(200, "http://h/y", Headers([("Accept-Ranges", "none")]))
    assert bare.etag is None and bare.last_modified is None and not bare.accepts_ranges
    assert (bare.content_length, bare.content_range, bare.total_size) == (None, None, None)
    monkeypatch.undo()

    class Sink:
        def on_head(self, head: Head) -> None:
            pass

        def on_data(self, data: bytes) -> None:
            pass

    asked: list[str] = []
    real_get = Headers.get

    def counted(self: Headers, name: str, default: str | None = None) -> str | None:
        asked.append(name)
        return real_get(self, name, default)  # type: ignore[arg-type]

    monkeypatch.setattr(Headers, "get", counted)
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        h = hop_module.Hop(Sink(), "http://h/z", loop.create_future())
        h.parsed = (200, Headers([("Content-Length", "0"), ("Location", "/elsewhere")]))
        assert h.decide() and h.location is None and h.head is not None
    finally:
        loop.close()
    assert "location" not in asked


def test_a_small_file_nobody_listens_to_asks_for_no_progress_tick(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no listener, a file's first bytes ask for no Progress tick (the next tick is
    the checkpoint's), and its end does no bookkeeping that has nothing to do: a refresh
    check without an expiry, a second release of its file slot, a second close."""
    asked: list[str] = []
    for name in ("progress", "due_checkpoint", "needs_refresh", "_drop_ahead"):
        real = getattr(job.FileJob, name)

        def counted(self: job.FileJob, *args: Any, _real: Any = real, _name: str = name) -> Any:
            asked.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(job.FileJob, name, counted)
    urls = small_files(httpd, 4)
    # (a checkpoint falls due after checkpoint_seconds, then rightly asks for its tick: a
    # loaded machine can hold a small file that long; the default 0.5 s failed 1 run in ~100)
    calm = Settings(state_dir=tmp_path / "st", checkpoint_seconds=600)
    report = download(urls, tmp_path / "q", settings=calm)
    assert report.ok == 4 and asked == []
    seen: list[Event] = []
    # (no slow-handler pause: on a loaded machine the time around one handler call could
    # silence another file's only Progress; that pause has tests of its own)
    monkeypatch.setattr(job, "HANDLER_SHARE", 0)
    report = download(
        urls, tmp_path / "l", settings=Settings(state_dir=tmp_path / "st"), on_event=seen.append
    )
    assert report.ok == 4 and asked.count("progress") >= 4  # (listened: as before)
    assert sum(isinstance(e, Progress) for e in seen) >= 4


def test_a_file_that_never_splits_makes_no_stand_in_future(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first span of a file runs in the file's own task; a future standing for that
    run is made only when a controller starts to split the file, never for a small one."""
    import asyncio.base_events
    import sys

    made: list[str] = []
    real = asyncio.base_events.BaseEventLoop.create_future

    def counted(self: asyncio.base_events.BaseEventLoop) -> asyncio.Future[Any]:
        made.append(sys._getframe(1).f_code.co_filename)
        return real(self)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_future", counted)
    urls = [httpd.add(f"/fut/f{i}.bin", bytes([i]) * (300 + i)) for i in range(6)]
    report = download(urls, tmp_path / "o", settings=Settings(state_dir=tmp_path / "s"))
    assert report.ok == 6
    assert made and not [f for f in made if f.endswith("plain.py")]


def test_a_hop_hands_its_first_bytes_over_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first body bytes of an answer are decided on and delivered in the same call
    (not by on_write calling itself again, then _to_sink); a sink's StopTransfer and
    errors end the hop as before."""
    import asyncio

    from omniget.engine.transports import hop as hop_module
    from omniget.engine.transports.base import Head, Headers, StopTransfer

    calls: list[str] = []
    real_write = hop_module.Hop.on_write

    def counted(self: hop_module.Hop, data: bytes | memoryview) -> int | None:
        calls.append("on_write")
        return real_write(self, data)

    monkeypatch.setattr(hop_module.Hop, "on_write", counted)
    monkeypatch.setattr(hop_module.Hop, "_to_sink", lambda *a: calls.append("_to_sink"))

    class Sink:
        def __init__(self, fail: BaseException | None = None) -> None:
            self.data = b""
            self.fail = fail

        def on_head(self, head: Head) -> None:
            pass

        def on_data(self, data: bytes) -> None:
            if self.fail is not None:
                raise self.fail
            self.data += bytes(data)

    loop = asyncio.new_event_loop()
    try:
        results = []
        for fail in (None, StopTransfer(), ValueError("no")):
            sink = Sink(fail)
            h = hop_module.Hop(sink, "http://h/z", loop.create_future())
            h.parsed = (200, Headers([("Content-Length", "6")]))
            results.append((h.on_write(b"abc"), h.on_write(b"def"), sink.data, h.stopped,
                            type(h.error).__name__))  # fmt: skip
    finally:
        loop.close()
    assert results == [
        (None, None, b"abcdef", False, "NoneType"),
        (0, 0, b"", True, "NoneType"),
        (0, 0, b"", False, "ValueError"),
    ]
    assert calls == ["on_write"] * 6


def test_a_small_file_asks_nothing_of_the_runs_root_its_spans_or_splitting(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per small file, no question whose answer the run already has or the file's size
    gives: whether the run's root is absolute (and its hash, for the root's cache), a
    merge of its one span, whether ranges could split it."""
    import pathlib

    import omniget.engine.plain as plain
    import omniget.engine.spans as spans

    asked: list[str] = []

    def spy(owner: Any, name: str) -> None:
        real = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    spy(pathlib.PurePath, "is_absolute")
    spy(pathlib.PurePath, "__hash__")
    spy(plain.PlainDownload, "splittable")
    spy(plain, "merge")
    spy(spans, "merge")
    counts = []
    for n in (2, 6):
        urls = [httpd.add(f"/ask/{n}/f{i}.bin", bytes([i]) * (500 + i)) for i in range(n)]
        asked.clear()
        report = download(urls, tmp_path / f"o{n}", settings=Settings(state_dir=tmp_path / "s"))
        assert report.ok == n
        counts.append(sorted(asked))
    assert counts[0] == counts[1]


def test_a_url_list_is_taken_without_an_async_generator_around_it(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list's entries go to the run from the run's own item generator alone (each
    async generator around them cost a step per entry), heard or not; an async iterable
    of URLs is still taken as it comes, in order."""
    import asyncio.base_events

    import omniget.api

    started: list[str] = []  # the api's async generators that ran
    real = vars(asyncio.base_events.BaseEventLoop)["_asyncgen_firstiter_hook"]

    def counted(self: asyncio.base_events.BaseEventLoop, agen: Any) -> None:
        if agen.ag_code.co_filename == omniget.api.__file__:
            started.append(agen.__qualname__)
        real(self, agen)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "_asyncgen_firstiter_hook", counted)
    urls = small_files(httpd, 4)
    heard: list[Event] = []
    listeners: tuple[Callable[[Event], None] | None, ...] = (None, heard.append)
    for i, listener in enumerate(listeners):
        started.clear()
        out = tmp_path / f"list{i}"
        report = download(urls, out, settings=Settings(state_dir=tmp_path / "st"),
                          on_event=listener)
        assert report.ok == 4 and [r.path for r in report.results] == [
            out / f"f{n}.bin" for n in range(4)
        ]
        assert started == ["_adownload.<locals>.items"], listener

    async def given() -> Any:
        for url in urls:
            await asyncio.sleep(0)
            yield url

    async def run() -> Any:
        from omniget import adownload

        return await adownload(given(), tmp_path / "async", settings=Settings(
            state_dir=tmp_path / "st"))

    report = asyncio.run(run())
    assert [r.path for r in report.results] == [tmp_path / "async" / f"f{n}.bin" for n in range(4)]


def test_a_file_job_keeps_its_state_in_slots(tmp_path: Path) -> None:
    """A FileJob has more attributes than instances share a dict's keys for (30): with a
    dict, each job built one of its own. Its state is in slots: none is made, and an
    attribute it does not declare is refused."""
    j = a_job(tmp_path, "overwrite")
    assert not hasattr(j, "__dict__")
    with pytest.raises(AttributeError):
        j.undeclared = 1  # type: ignore[attr-defined]
    j.size = 10
    assert (j.size, j.done, j.final, j.claim.held) == (10, [], None, False)


def test_the_http_source_names_its_item_as_it_makes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed URL's item gets its name from the source, not from Item looking for it once
    made (an Item made without a name still finds its own, as always)."""
    import omniget.model as model
    from omniget.sources.http import HttpSource

    looked: list[str] = []

    def counted(url: str) -> str:
        looked.append(url)
        return name_from_url(url)

    name_from_url = model.name_from_url
    monkeypatch.setattr(model, "name_from_url", counted)
    urls = ["http://h.test/a/f1.bin", "https://h.test/b%20c.zip?x=1", "http://h.test/"]
    items = [i for u in urls for i in HttpSource(u, None).items_at_once()]  # type: ignore[arg-type]
    assert [i.filename for i in items] == ["f1.bin", "b c.zip", "index.html"]
    assert [i.download_url for i in items] == urls
    assert all(i.name_from_server and i.source == "http" for i in items)
    assert looked == []
    assert Item(download_url=urls[0]).filename == "f1.bin" and looked == urls[:1]


def test_an_answers_headers_keep_the_lists_they_were_read_into() -> None:
    """The header lines read from a pipelined answer become its Headers as they are (no copy
    of its list of fields); a list given with no lower-case names, or any other iterable,
    is still copied, and names that do not match the fields are refused."""
    from omniget.engine.transports.base import Headers
    from omniget.engine.transports.h1fields import read_fields

    read = read_fields("Content-Length: 3\r\nX-A:  1 \r\nx-a: 2\r\n")
    assert not isinstance(read, str)
    headers = read[0]
    pairs = headers._pairs
    assert headers.pairs() == [("Content-Length", "3"), ("X-A", "1"), ("x-a", "2")]
    assert (headers["x-A"], headers.get_all("X-a"), read[1]) == ("2", ["1", "2"], 3)
    mine = [("A", "1")]
    kept = Headers(mine, ["a"])
    assert kept._pairs is mine and kept["A"] == "1"
    copied = Headers(mine)
    copied.add("B", "2")
    assert mine == [("A", "1")] and list(copied) == ["a", "b"]
    assert Headers((p for p in pairs), [n.lower() for n, _ in pairs]).pairs() == pairs
    with pytest.raises(ValueError):
        Headers(mine, ["a", "b"])


def test_a_hop_keeps_its_state_in_slots() -> None:
    """A Hop (one per request) has 30 attributes: more than Python 3.11 shares an instance
    dict's keys for once an instance exists, so the last one set made each hop a dict of
    its own. Its state is in slots: no dict, and its head is decided as before."""
    import asyncio

    from omniget.engine.transports.base import Head, Headers
    from omniget.engine.transports.hop import Hop

    class Sink:
        def on_head(self, head: Head) -> None:
            pass

        def on_data(self, data: bytes) -> None:
            pass

    loop = asyncio.new_event_loop()
    try:
        h = Hop(Sink(), "http://h/z", loop.create_future())
        assert not hasattr(h, "__dict__")
        with pytest.raises(AttributeError):
            h.undeclared = 1  # type: ignore[attr-defined]
        h.parsed = (200, Headers([("Content-Length", "3")]))
        assert h.decide() and h.head is not None and h.head.content_length == 3
        assert (h.redo, h.status, h.location, h.deliver) == (False, 200, None, False)
    finally:
        loop.close()


def test_an_answers_headers_keep_the_table_they_were_read_into(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parser of a pipelined answer fills each lower-case name's last field as it
    reads the lines, and the Headers keep that table: it is not built again from the
    lists (a zip and a dict per answer). A folded line's value is in it too."""
    from omniget.engine.transports import base
    from omniget.engine.transports.h1fields import read_fields

    zipped: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        zipped.append(args)
        return zip(*args, **kwargs)  # noqa: B905 (as the code it stands for)

    monkeypatch.setattr(base, "zip", counted, raising=False)
    read = read_fields("Content-Length: 3\r\nX-A:  1 \r\nx-a: 2\r\nB: b\r\n \t c \r\n")
    assert not isinstance(read, str)
    headers = read[0]
    assert zipped == []
    assert (headers["x-A"], headers.get_all("X-a"), headers["b"]) == ("2", ["1", "2"], "b c")
    assert dict(headers.items()) == {"content-length": "3", "x-a": "2", "b": "b c"}
    table = {"a": ("a", "2")}
    assert base.Headers([("A", "1"), ("a", "2")], ["a", "a"], table)._last is table
    # (pairs that are copied come with no table: it is built from the copy)
    assert base.Headers((p for p in [("A", "1"), ("a", "2")]), ["a", "a"], {})["a"] == "2"


def test_a_hop_reads_its_heads_fields_from_their_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deciding an answer's head looks its fields up in the Headers' table of lower-case
    names (no Headers.get or ``in`` call, each lowering the name again), and decides as
    before: the encoding, whether the body is framed, a redirect's Location."""
    import asyncio

    from omniget.engine.transports import base
    from omniget.engine.transports.base import Head, Headers
    from omniget.engine.transports.hop import Hop

    heads: list[Head] = []

    class Sink:
        def on_head(self, head: Head) -> None:
            heads.append(head)

        def on_data(self, data: bytes) -> None:
            pass

    def refused(*args: object, **kwargs: object) -> object:
        raise AssertionError("a Headers method was called")

    answers = [
        (200, [("Content-Length", "3")]),
        (200, [("content-encoding", " Deflate "), ("Content-Length", "3")]),
        (200, [("Content-Encoding", "identity"), ("Transfer-Encoding", "Chunked")]),
        (200, [("X-A", "1")]),
        (200, [("Content-Encoding", "x-weird")]),
    ]
    loop = asyncio.new_event_loop()
    try:
        decided = []
        for status, pairs in answers:
            h = Hop(Sink(), "http://h/z", loop.create_future())
            h.decode_here = True
            h.head_block = b"HTTP/1.1 200 OK\r\n" + b"".join(
                f"{k}: {v}\r\n".encode() for k, v in pairs
            )
            h.parsed = (status, Headers(pairs))
            with monkeypatch.context() as m:
                m.setattr(base.Headers, "get", refused)
                m.setattr(base.Headers, "__contains__", refused)
                ok = h.decide()
            head = h.head
            decided.append((ok, head and (head.decoded, head.framed), h.decoder is not None))
        h = Hop(Sink(), "http://h/z", loop.create_future())
        h.parsed = (302, Headers([("Location", " /next ")]))
        assert h.decide() and h.location == "/next" and h.head is None
    finally:
        loop.close()
    assert decided == [
        (True, (False, True), False),
        (True, (True, True), True),
        (True, (False, True), False),
        (True, (False, False), False),
        (False, None, False),  # (an encoding not decoded here: libcurl's turn)
    ]


def test_a_good_urls_check_makes_no_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The http source's check of a URL builds the URL it would show in a message (without
    its user:password) only for a URL it refuses, not once per URL of a list."""
    from omniget.errors import UsageError
    from omniget.sources import http

    real = http._shown
    shown: list[str] = []

    def counted(parts: list[str], netloc: str) -> str:
        shown.append(netloc)
        return real(parts, netloc)

    monkeypatch.setattr(http, "_shown", counted)
    for url in ("http://h/x", "https://user:pw@h:8080/a/b?c#d", "http://127.0.0.1:80", "HTTP://h"):
        http._check_authority(url)
    assert shown == []
    for url, said in (
        ("http://user:pw@:80/x", "no host name in 'http://:80/x'"),
        ("http://user:pw@h/\x7f", "a control character in 'http://h/\\x7f'"),
        ("http://user:pw@h:8x/y", "the port '8x' is not a number (in 'http://h:8x/y')"),
    ):
        with pytest.raises(UsageError) as err:
            http._check_authority(url)
        assert said in str(err.value) and "pw" not in str(err.value)
    assert len(shown) == 3


def test_a_pipelined_answer_asks_no_property_of_its_request(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a pipelined request was dropped by its requester is its future's state,
    looked at directly when its answer's head comes and when the answer ends (a property
    call each, twice per file): a run of eight files asks the property as often as a run
    of two, and the files and the report are the same."""
    from omniget.engine.transports import h1queue

    asked: list[str] = []

    def counted(self: h1queue.Pending) -> bool:
        asked.append("dropped")
        return self.hop.fut.done()

    monkeypatch.setattr(h1queue.Pending, "dropped", property(counted))
    counts = calls_per_run(httpd, tmp_path / "dropped", (2, 8), asked)
    assert counts[0] == counts[1]


def test_a_heads_validators_and_range_support_are_read_when_it_is_made() -> None:
    """A head's ETag, Last-Modified and range support are read from its headers once,
    when it is made (asked once per file each: no property call), as they were read."""
    from omniget.engine.transports.base import Head, Headers

    cases = [
        (206, [("ETag", '"a"'), ("Last-Modified", "d"), ("Accept-Ranges", "none")],
         ('"a"', "d", True)),
        (200, [("accept-ranges", " Bytes "), ("etag", "1"), ("ETag", "2")], ("2", None, True)),
        (200, [("Accept-Ranges", "none")], (None, None, False)),
        (200, [], (None, None, False)),
        (416, [("Accept-Ranges", "bytes"), ("Last-Modified", "")], (None, "", True)),
    ]  # fmt: skip
    for status, pairs, want in cases:
        head = Head(status, "http://h/x", Headers(pairs))
        mine = vars(head)
        assert (mine["etag"], mine["last_modified"], mine["accepts_ranges"]) == want
        assert (head.etag, head.last_modified, head.accepts_ranges) == want
