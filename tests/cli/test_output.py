"""list / JSON / dry-run consumers, masking and the summary line."""

from __future__ import annotations

import errno
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from omniget.cli.dryrun import dry_run
from omniget.cli.json_events import JsonEvents, event_to_dict
from omniget.cli.output import (
    Masker,
    display_path,
    format_size,
    item_to_dict,
    json_line,
    print_list,
    say,
    summary_line,
    whole_writes_out,
)
from omniget.engine.events import (
    Event,
    Failed,
    Finished,
    PieceDone,
    Progress,
    Queued,
    Retrying,
    Skipped,
    Started,
    Warned,
)
from omniget.engine.names import contain
from omniget.engine.report import FileResult, Report
from omniget.errors import AuthRequired, Cancelled, Refused, StorageError, TransientError
from omniget.model import Digest, Item, Origin, Piece

MD5 = "9e107d9d372bb6826bd81d3542a419d6"
MiB = 1024 * 1024


def make_item(**kw: object) -> Item:
    base: dict[str, object] = {
        "download_url": "https://cdn.example/f/clip.mp4",
        "filename": "clip.mp4",
        "size_bytes": 3 * MiB,
        "collection_name": "album",
        "source": "gofile",
    }
    return Item(**{**base, **kw})  # type: ignore[arg-type]


def test_masker_hides_secrets_everywhere() -> None:
    m = Masker(["s3cr3t-token"])
    assert m("token is s3cr3t-token!") == "token is ***!"
    assert m("https://bob:hunter2@host.example/x") == "https://bob:***@host.example/x"
    assert m("https://h/x?a=1&token=abcdef&b=2") == "https://h/x?a=1&token=***&b=2"
    assert m("https://h/x?access_token=zz#frag") == "https://h/x?access_token=***#frag"
    assert m("refused (HTTP 401 from https://h/x?auth=u:p)") == "refused (HTTP 401 from https://h/x?auth=***)"
    assert m("sent Authorization: Bearer xyz") == "sent Authorization: ***"
    assert m("https://h/monkey=1?skey=2") == "https://h/monkey=1?skey=2"  # not secret names
    assert Masker(["ab"])("abc") == "abc"  # too short to mask blindly


@pytest.mark.parametrize(
    "name",
    ["auth_token", "refresh_token", "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential",
     "client_secret", "api-key", "apiKey", "accessToken", "session_id", "JSESSIONID"],
)
def test_masker_hides_query_parameters_whose_name_has_a_secret_word(name: str) -> None:
    """Not only the names of a fixed list: a word of the name (split at ``_ - .`` and at a
    lower-to-upper case change) that says secret is enough (before, ``auth_token`` and a
    presigned URL's ``X-Amz-Signature`` came out whole)."""
    m = Masker()
    assert m(f"https://h/x?a=1&{name}=v4lue-9&b=2") == f"https://h/x?a=1&{name}=***&b=2"


def test_masker_hides_a_token_given_as_a_user_name() -> None:
    """``https://TOKEN@host/``: the user name alone is the secret (as git hosts take)."""
    m = Masker()
    assert m("see https://ghp_t0ken@host.example/x") == "see https://***@host.example/x"
    assert m("https://h/a@b") == "https://h/a@b"  # (an @ in the path is no user name)


def test_masker_headers() -> None:
    m = Masker()
    got = m.headers({"Authorization": "Bearer x", "Cookie": "a=b", "X-Site": "k", "Accept": "*/*"},
                    secret=("x-site",))
    assert got == {"Authorization": "***", "Cookie": "***", "X-Site": "***", "Accept": "*/*"}


def test_item_to_dict_has_every_field() -> None:
    item = make_item(
        digest=Digest("md5", MD5),
        pieces=(Piece(url="https://cdn.example/p1"), Piece(url="https://cdn.example/p2")),
        headers={"Authorization": "Bearer tok", "Referer": "https://gofile.io/"},
        meta={"title": "Clip", "tags": ("a", "b"), "when": Path("/x")},
        mirrors=("https://u:pw@mirror.example/clip.mp4",),
        origin=Origin("https://u:pw@gofile.io/d/x", {"password": "s3cr3t"}),
    )
    d = item_to_dict(item, Masker())
    for name in Item.__dataclass_fields__:
        assert name in d
    assert d["digest"] == f"md5={MD5}"
    assert d["pieces"] == 2
    assert d["headers"] == {"Authorization": "***", "Referer": "https://gofile.io/"}
    assert d["mirrors"] == ["https://u:***@mirror.example/clip.mp4"]
    assert d["meta"] == {"title": "Clip", "tags": ["a", "b"], "when": "/x"}
    assert d["output_path"] == "album/clip.mp4"
    assert d["origin"] == "https://u:***@gofile.io/d/x"  # (its options: never shown)
    assert json.loads(json.dumps(d)) == d and "s3cr3t" not in json.dumps(d)


def test_event_dicts() -> None:
    item = make_item()
    path = Path.cwd() / "album" / "clip.mp4"
    m = Masker()
    events: list[tuple[Event, dict[str, object]]] = [
        (Started(item, path, size=10, resumed=2, connections=3),
         {"size": 10, "resumed": 2, "connections": 3}),
        (Progress(item, path, done=5, size=10), {"done": 5, "size": 10}),
        (PieceDone(item, path, index=1, size=4), {"index": 1, "size": 4}),
        (Retrying(item, path, error=TransientError("reset"), attempt=2, delay=1.5),
         {"attempt": 2, "delay": 1.5, "error": "reset", "error_type": "TransientError",
          "exit_code": 3}),
        (Skipped(item, path, reason="exists"), {"reason": "exists"}),
        (Finished(item, path, size=10, verified="md5", fetched=8),
         {"size": 10, "verified": "md5", "fetched": 8}),
        (Failed(item, None, error=AuthRequired("no")), {"error": "no", "exit_code": 5}),
        (Failed(item, path, error=StorageError("lost"), after_finished=True),
         {"error": "lost", "exit_code": 7, "after_finished": True}),
        (Warned(item, path, message="odd"), {"message": "odd"}),
    ]
    for event, expected in events:
        d = event_to_dict(event, m)
        assert d["event"] == type(event).__name__.lower()
        assert d["url"] == item.download_url
        assert d["path"] == str(Path("album") / "clip.mp4")  # relative to the cwd
        assert expected.items() <= d.items()
        assert "after_finished" not in d or expected["after_finished"] is True
        json.dumps(d)


class Partial(io.RawIOBase):
    """A terminal or a pipe without Python's buffer (``PYTHONUNBUFFERED=1``, ``-u``): a
    write a signal interrupts takes a part of the bytes (here at most 100)."""

    def __init__(self) -> None:
        self.got = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        took = bytes(b[:100])
        self.got += took
        return len(took)


def test_an_unbuffered_stdout_or_stderr_still_gets_every_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Was: a bar's frame or a JSON line cut after its first bytes, the rest lost (Python's
    text layer drops what an unbuffered write did not take), a Ctrl+Z during a frame
    leaving a garbled screen, or a JSON line no JSON."""
    out, err = Partial(), Partial()
    for name, raw, errors in (("stdout", out, "surrogateescape"), ("stderr", err,
                                                                    "backslashreplace")):
        unbuffered: Any = raw  # (as Python makes them: the raw file under the text)
        monkeypatch.setattr(sys, name, io.TextIOWrapper(unbuffered, encoding="utf-8",
                                                        errors=errors, write_through=True))
    whole_writes_out()
    say("━" * 500 + "\n")
    json_line(sys.stdout, {"event": "finished", "path": "é" * 300})
    assert err.got.decode() == "━" * 500 + "\n"
    assert json.loads(out.got) == {"event": "finished", "path": "é" * 300}
    assert (sys.stdout.errors, sys.stderr.errors) == ("surrogateescape", "backslashreplace")


def test_a_file_without_a_path_yet_is_named_as_a_download_would_write_it() -> None:
    """Its own name, decoded from the URL, held an escape and a BEL as they were (a
    failure before the file had a place: ``-v``'s line and the ``--json`` path)."""
    item = make_item(filename="a\x1b[31mred\x07.mp4")
    event = Failed(item, None, error=AuthRequired("no"))
    assert event_to_dict(event, Masker())["path"] == "album/a_[31mred_.mp4"
    assert event_to_dict(event, Masker(), Path("out"))["path"] == "out/album/a_[31mred_.mp4"


def test_json_events_rate_limit_progress_and_mask() -> None:
    out = io.StringIO()
    now = [0.0]
    sink = JsonEvents(out, Masker(["hunter22"]), interval=1.0, clock=lambda: now[0])
    item = make_item(download_url="https://h.example/f?token=abc")
    with sink:
        sink(Started(item, None, size=100, resumed=0))
        for t, done in [(0.1, 10), (0.5, 20), (1.2, 30), (1.3, 40), (2.5, 50)]:
            now[0] = t
            sink(Progress(item, None, done=done, size=100))
        sink(Failed(item, None, error=AuthRequired("password hunter22 refused")))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["event"] for d in lines] == ["started", "progress", "progress", "progress", "failed"]
    assert [d["done"] for d in lines if d["event"] == "progress"] == [10, 30, 50]
    assert "hunter22" not in out.getvalue() and "abc" not in out.getvalue()
    assert lines[-1]["error"] == "password *** refused"


class FullStdout(io.StringIO):
    """stdout on a full disk (the OS error comes with the write, or the flush)."""

    name = "<stdout>"

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def flush(self) -> None:
        raise self.error


def test_write_errors_are_storage_errors_but_a_gone_reader_is_not() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StorageError, match=r"^cannot write to stdout: disk full$"):
        print_list([make_item()], FullStdout(full), Masker(), as_json=True, table=False)
    with pytest.raises(StorageError, match=r"^cannot write to stdout: disk full$"):
        dry_run([make_item()], Path("d"), FullStdout(full), Masker(), as_json=False,
                contain=contain, on_error=lambda item, e, path: None)
    with pytest.raises(BrokenPipeError):  # (``list | head``: the CLI ends quietly)
        print_list([make_item()], FullStdout(BrokenPipeError()), Masker(), as_json=True,
                   table=False)


def test_json_events_keep_a_write_error_and_go_on() -> None:
    """A display problem never stops the download: the error is kept for the CLI."""
    out = FullStdout(OSError(errno.EIO, "Input/output error"))
    sink = JsonEvents(out, Masker())
    with sink:
        sink(Started(make_item(), None, size=1, resumed=0))
        out.error = OSError(errno.ENOSPC, "later")  # (nothing more is tried)
        sink(Finished(make_item(), None, size=1, verified=None, fetched=1))
        sink.line({"event": "summary"})
    assert str(sink.error) == "cannot write to stdout: Input/output error"


def test_json_events_write_nothing_after_the_summary() -> None:
    """The summary stays the last line: a warning the run's file thread logs after it
    (its handler lives until the command returns) is not written."""
    out = io.StringIO()
    sink = JsonEvents(out, Masker())
    with sink:
        sink.line({"event": "summary", "exit_code": 130})
        sink.line({"event": "warning", "level": "warning", "message": "late"})
        sink(Finished(make_item(), None, size=1, verified=None, fetched=1))
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["summary"]


def test_print_list_json_tsv_and_table() -> None:
    items = [
        make_item(),
        make_item(filename="b.jpg", size_bytes=None, collection_name=None),
        make_item(filename="empty.txt", size_bytes=0, collection_name=None),
    ]
    out = io.StringIO()
    assert print_list(items, out, Masker(), as_json=True, table=False) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["filename"] for r in rows] == ["clip.mp4", "b.jpg", "empty.txt"]

    out = io.StringIO()
    print_list(items, out, Masker(), as_json=False, table=False)
    lines = [line.split("\t") for line in out.getvalue().splitlines()]
    assert lines[0] == [
        "album/clip.mp4", str(3 * MiB), "gofile", "https://cdn.example/f/clip.mp4"]
    assert [line[1] for line in lines[1:]] == ["", "0"]  # unknown size, empty file

    out = io.StringIO()
    print_list(items, out, Masker(), as_json=False, table=True)
    text = out.getvalue()
    assert "album/clip.mp4" in text and "3.0 MiB" in text and "gofile" in text


def test_list_s_table_says_names_as_they_are() -> None:
    """Was: ``ab💿ef.bin`` and ``d.bin`` in bold: rich took ``:cd:`` for an emoji's code
    and ``[bold]`` for its markup."""
    out = io.StringIO()
    names = ["ab:cd:ef.bin", "[bold]d.bin"]
    print_list([make_item(filename=n, collection_name=None) for n in names], out, Masker(),
               as_json=False, table=True)
    rows = [line.split()[0] for line in out.getvalue().splitlines()[1:]]
    assert rows == names, out.getvalue()


def test_dry_run_lines_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    items = [make_item(), make_item(path="../../etc/passwd", size_bytes=10)]
    out = io.StringIO()
    found = dry_run(iter(items), Path("dl"), out, Masker(), as_json=False,
                    contain=contain, on_error=lambda i, e, path: None)
    assert (found.files, found.size, found.unknown, found.skipped) == (2, 3 * MiB + 10, 0, 0)
    lines = out.getvalue().splitlines()
    assert lines[0].split("\t") == [str(Path("dl/album/clip.mp4")), "3.0 MiB",
                                    "https://cdn.example/f/clip.mp4"]
    target = lines[1].split("\t")[0]
    assert target.startswith("dl") and ".." not in target  # sanitised, stays inside
    assert not (tmp_path / "dl").exists()  # nothing written

    out = io.StringIO()
    dry_run(iter(items[:1]), Path("dl"), out, Masker(), as_json=True, contain=contain,
            on_error=lambda i, e, path: None)
    assert json.loads(out.getvalue())["path"] == str(Path("dl/album/clip.mp4"))


def test_dry_run_reports_refused_items() -> None:
    errors: list[str] = []

    def refuse(root: Path, rel: str) -> Path:
        raise Refused(f"unsafe output path {rel!r}")

    found = dry_run(iter([make_item()]), Path("d"), io.StringIO(), Masker(), as_json=False,
                    contain=refuse, on_error=lambda i, e, path: errors.append(str(e)))
    assert found.files == 0 and errors == ["unsafe output path 'album/clip.mp4'"]


def test_summary_line() -> None:
    item = make_item()
    report = Report(
        results=[
            FileResult(item, None, "ok", size=3 * MiB, fetched=3 * MiB),
            FileResult(item, None, "ok", size=MiB, fetched=MiB),
            FileResult(item, None, "skipped", reason="exists"),
            FileResult(item, None, "failed", error=TransientError("x")),
        ],
        elapsed=2.0,
    )
    assert summary_line(report) == "2 files ok, 1 skipped, 1 failed, 4.0 MiB in 2.0s (2.0 MiB/s)"
    assert summary_line(Report(), failed=1, skipped=2).startswith("0 files ok, 2 skipped, 1 failed")
    one = Report(results=[FileResult(item, None, "ok", size=1)])
    assert summary_line(one).startswith("1 file ok, 0 skipped")
    cut = Report(
        results=[
            FileResult(item, None, "failed", error=Cancelled("interrupted")),
            FileResult(item, None, "failed", error=TransientError("x")),
        ]
    )
    assert summary_line(cut) == (
        "0 files ok, 0 skipped, 1 failed, 1 interrupted, 0 B in 0.00s"
    )
    # small runs read in their own units (not "0.0 MiB in 0.0s")
    small = Report(results=[FileResult(item, None, "ok", size=16384, fetched=16384)], elapsed=0.02)
    assert summary_line(small) == "1 file ok, 0 skipped, 0 failed, 16.0 KiB in 0.02s (800.0 KiB/s)"


def test_display_path_and_format_size(tmp_path: Path) -> None:
    assert display_path(tmp_path / "a" / "b", cwd=tmp_path) == str(Path("a/b"))
    assert display_path("/elsewhere/x", cwd=tmp_path) == "/elsewhere/x"
    assert display_path("rel/x") == str(Path("rel/x"))
    assert [format_size(n) for n in (None, 0, 1023, 1536, 5 * MiB)] == [
        "?", "0 B", "1023 B", "1.5 KiB", "5.0 MiB"]


def test_json_events_tally_a_file_that_failed_after_it_finished_as_failed() -> None:
    """A Failed event ``after_finished`` takes back the file's Finished one (the disk
    lost its bytes once it was in place): one file, failed, in a second Ctrl+C's summary
    as in the run's own."""
    sink = JsonEvents(io.StringIO(), Masker(), clock=lambda: 0.0)
    a, b = (make_item(download_url=f"https://h.example/{n}.bin") for n in "ab")
    with sink:
        for item in (a, b):
            sink(Queued(item, None, more=False))
            sink(Started(item, None, size=MiB, resumed=0))
            sink(Finished(item, None, size=MiB, verified="size", fetched=MiB))
        sink(Failed(a, None, error=StorageError("lost"), after_finished=True))
    counts = sink.tally()
    assert (counts["ok"], counts["failed"], counts["interrupted"]) == (1, 1, 0)
    assert counts["not_started"] == 0


def test_json_events_tally_the_list_s_files_never_begun_and_the_bytes_resumed() -> None:
    """What a summary takes when the run has no report (a second Ctrl+C): files of the
    list never begun (none while the list may grow), bytes resumed, and bytes fetched
    (of the file cut too, as its progress told them)."""
    out = io.StringIO()
    sink = JsonEvents(out, Masker(), clock=lambda: 0.0)
    a, b, c, d = (make_item(download_url=f"https://h.example/{n}.bin") for n in "abcd")
    with sink:
        for item in (a, b, c):
            sink(Queued(item, None, more=False, ahead=1))  # (d counted, not announced)
        sink(Started(a, None, size=3 * MiB, resumed=MiB))
        sink(Finished(a, None, size=3 * MiB, verified="size", fetched=2 * MiB))
        sink(Started(b, None, size=3 * MiB, resumed=0))
        sink(Progress(b, None, done=MiB, size=3 * MiB))
    counts = sink.tally()
    assert (counts["ok"], counts["interrupted"], counts["not_started"]) == (1, 1, 2)
    assert (counts["fetched"], counts["resumed"]) == (3 * MiB, MiB)
    assert "queued" not in out.getvalue()  # (still no line per entry of the list)
    sink(Queued(d, None, more=True))
    assert sink.tally()["not_started"] == 0  # (the list's length is not known)
