"""A file that changes on the server while several of its spans are in flight (a split,
or the gaps of a resumed file): the first 200 that If-Range gives, the whole new file, is
the download. Every other span of the old file is dropped (nothing more of its answer
written, even when its transport hands some over after the cancel), and the new file is
split again as a new one is. Nothing is asked again from byte 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.engine.test_engine_memory import URL, blob, make, run

from omniget.engine.journal import Journal
from omniget.engine.transports.base import Head, Headers, Request, Sink, StopTransfer
from omniget.engine.transports.memory import MemoryTransport, MemResponse
from omniget.errors import TransientError
from omniget.model import Item

KiB = 1024
MiB = 1024 * KiB
CHUNK = 16 * KiB
OLD, NEW = '"old"', '"new"'


class Changing:
    """Serves URL as the old file until its first ranged answer, sent but for its last
    KiB, is cut (once ``held`` other answers of the old file are in flight, or with
    ``ended`` have ended), then as the new one. In flight, those others never end: one
    ranged answer before its head, the rest after a chunk of body. Cancelled, each hands
    over its head, or one more chunk, as a transport whose callbacks run after a cancel
    may; ``late`` says what the engine made of it."""

    schemes = ("http",)

    def __init__(self, old: bytes, new: bytes, held: int, *, ended: bool = False) -> None:
        self.files = {OLD: old, NEW: new}
        self.etag = OLD
        self.ended = ended
        self.want = held
        self.held = 0
        self.enough = asyncio.Event()
        self.cutting = False
        self.headless = False
        self.answers: list[tuple[Request, int, str]] = []  # (request, status, version)
        self.late: list[str] = []

    def _answer(self, req: Request, etag: str) -> tuple[int, bytes, Head]:
        data = self.files[etag]
        fields = {"etag": etag, "accept-ranges": "bytes"}
        rng = req.range
        status, body = 200, data
        if rng is not None and req.if_range == etag:
            end = len(data) if rng.end is None else rng.end
            status, body = 206, data[rng.start : end]
            fields["content-range"] = f"bytes {rng.start}-{end - 1}/{len(data)}"
        fields["content-length"] = str(len(body))
        return status, body, Head(status, req.url, Headers(fields.items()))

    async def fetch(self, request: Request, sink: Sink) -> Head:
        etag = self.etag
        status, body, head = self._answer(request, etag)
        self.answers.append((request, status, etag))
        await asyncio.sleep(0)
        try:
            if etag == NEW:
                await self._send(sink, head, body)
                return head
            if request.range is not None and not self.cutting:
                self.cutting = True
                await self._send(sink, head, body[:-KiB])
                await self.enough.wait()
                self.etag = NEW  # (the file changes before this span asks again)
                raise TransientError("connection reset")
            if self.ended:
                try:
                    await self._send(sink, head, body)
                finally:
                    self._held()
                return head
            headless = request.range is not None and not self.headless
            if headless:
                self.headless = True
            else:
                sink.on_head(head)
                sink.on_data(body[:CHUNK])
            self._held()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self._late(sink, head if headless else None, body[CHUNK : 2 * CHUNK])
                raise
        except StopTransfer:
            pass
        return head

    async def _send(self, sink: Sink, head: Head, body: bytes) -> None:
        sink.on_head(head)
        for at in range(0, len(body), CHUNK):
            sink.on_data(body[at : at + CHUNK])
            await asyncio.sleep(0)

    def _held(self) -> None:
        self.held += 1
        if self.held >= self.want:
            self.enough.set()

    def _late(self, sink: Sink, head: Head | None, chunk: bytes) -> None:
        try:
            if head is not None:
                sink.on_head(head)
            else:
                sink.on_data(chunk)
        except StopTransfer:
            self.late.append("refused")
        except Exception as exc:  # (what the engine would have made of it)
            self.late.append(repr(exc))
        else:
            self.late.append("taken")

    async def aclose(self) -> None:
        return None


def resumed_with_gaps(tmp_path: Path, old: bytes) -> Path:
    """A first run that wrote the old file's first 1.5 MiB; its record then says only
    some of them are there: the rerun asks for three gaps."""
    mem = MemoryTransport(chunk=CHUNK)
    mem.add(URL, old, etag=OLD)
    mem.on(URL, lambda req, n: MemResponse(200, old, {"etag": OLD}, reset_after=3 * MiB // 2))
    eng, _ = make(tmp_path, mem, retries=0, checkpoint_seconds=0.0)
    out = tmp_path / "out"
    report = run(eng, [Item(URL)], out, within=30)
    assert report.exit_code != 0
    with Journal(tmp_path / "state" / "journal.sqlite") as journal:
        [key] = journal.keys("")
        journal.save_spans(key, [(0, 400 * KiB), (MiB, MiB + 200 * KiB)])
    return out


@pytest.mark.parametrize("grow", [-100 * KiB, 0, 100 * KiB])
@pytest.mark.parametrize("how", ["split", "gaps"])
def test_the_200_if_range_gave_is_the_new_file_and_the_old_spans_are_dropped(
    tmp_path: Path, how: str, grow: int
) -> None:
    """``split``: a new file split into four connections, one of them cut while the three
    others stream the old file; ``gaps``: a resumed file's first gap answered (a 206 of the
    old file), its other gaps and a stolen piece in flight, then that first answer cut.
    Either way the file changes (to fewer bytes, as many, or more) before the cut span
    asks again, and its If-Range gets the new file with a 200: that answer is the
    download, split again into ranges of the new file; the old spans' late heads and
    bytes are refused."""
    old = blob(4 * MiB, 50)
    new = blob(4 * MiB + grow, 51)
    out = tmp_path / "out"
    if how == "gaps":
        out = resumed_with_gaps(tmp_path, old)
    fake = Changing(old, new, held=3)
    eng, _ = make(tmp_path, fake, split=4)  # type: ignore[arg-type]
    report = run(eng, [Item(URL)], out, within=30)
    assert report.exit_code == 0, report.failures
    assert (out / "data.bin").read_bytes() == new
    assert sorted(p.name for p in out.iterdir()) == ["data.bin"]
    answers = [(status, etag) for _, status, etag in fake.answers]
    assert answers.count((200, NEW)) == 1  # (the cut span's request again)
    [again] = [req for req, status, etag in fake.answers if etag == NEW and status == 200]
    assert again.range is not None and again.if_range == OLD
    assert (206, NEW) in answers  # split again
    plain = [req for req, _, _ in fake.answers if req.range is None]
    assert len(plain) == (1 if how == "split" else 0)  # (the first answer's, of the old)
    assert fake.late == ["refused"] * 3  # (a head and two chunks)


@pytest.mark.parametrize("how", ["split", "gaps"])
def test_a_file_that_changed_in_its_last_span_is_split_again(tmp_path: Path, how: str) -> None:
    """The other spans of the old file have ended: its last one, a KiB short of its end
    (too little to split), is cut, and the file changes. The 200 its If-Range gets is the
    download, and the new file is split again (the splitter was only waiting for that
    last span to end)."""
    old = blob(4 * MiB, 52)
    new = blob(4 * MiB, 53)
    out = tmp_path / "out"
    if how == "gaps":
        out = resumed_with_gaps(tmp_path, old)
    fake = Changing(old, new, held=3, ended=True)
    eng, _ = make(tmp_path, fake, split=4)  # type: ignore[arg-type]
    report = run(eng, [Item(URL)], out, within=30)
    assert report.exit_code == 0, report.failures
    assert (out / "data.bin").read_bytes() == new
    answers = [(status, etag) for _, status, etag in fake.answers]
    assert answers.count((200, NEW)) == 1
    assert (206, NEW) in answers  # split again
    assert [req.range for req, _, _ in fake.answers].count(None) == (1 if how == "split" else 0)
    assert fake.late == []
