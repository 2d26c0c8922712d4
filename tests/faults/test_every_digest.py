"""A file is kept only when every digest known for it holds: the item's (or --checksum),
and each the server gives (Repr-Digest, Digest, Content-MD5), not only the strongest;
a digest a resumed file's first answer gave is still checked when the answer to the
resume gives none; a stream checks the server's digests as a download does."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import threading
from pathlib import Path

import pytest
from tests.faults.test_http_faults import fetch, files
from tests.servers.httpd import HTTPServer
from tests.servers.wire import LoggedRequest

from omniget import download, stream
from omniget.engine import job
from omniget.engine.events import Event, Progress
from omniget.errors import IntegrityError
from omniget.model import Digest, Item
from omniget.settings import Settings

KiB = 1024
DATA = random.Random(71).randbytes(300 * KiB)
OTHER = random.Random(72).randbytes(300 * KiB)
Answer = tuple[int, list[tuple[str, str]], bytes]


def b64(algo: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algo, data).digest()).decode()


def ranged(data: bytes, headers: list[tuple[str, str]], whole_only: bool = False):  # type: ignore[no-untyped-def]
    """A handler serving ``data`` with Range; ``headers`` on every answer, or with
    ``whole_only`` on the 200s alone."""

    def answer(req: LoggedRequest) -> Answer:
        rng = req.header("range")
        base = [("ETag", '"one"'), ("Accept-Ranges", "bytes")]
        if rng is None:
            return 200, base + headers, data
        first, _, last = rng.removeprefix("bytes=").partition("-")
        a, b = int(first), int(last) + 1 if last else len(data)
        cr = [("Content-Range", f"bytes {a}-{b - 1}/{len(data)}")]
        return 206, base + cr + ([] if whole_only else headers), data[a:b]

    return answer


#: Headers where one digest is of DATA and another of other bytes.
CONTRADICTIONS = {
    "sha512-right-sha256-wrong": [
        ("Repr-Digest", f"sha-512=:{b64('sha512', DATA)}:, sha-256=:{b64('sha256', OTHER)}:")
    ],
    "repr-right-md5-wrong": [
        ("Repr-Digest", f"sha-256=:{b64('sha256', DATA)}:"), ("Content-MD5", b64("md5", OTHER))
    ],
    "two-sha256": [
        ("Repr-Digest", f"sha-256=:{b64('sha256', DATA)}:"),
        ("Digest", f"SHA-256={b64('sha256', OTHER)}"),
    ],
}


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_a_server_digest_that_fails_fails_the_file_though_a_stronger_one_holds(
    httpd: HTTPServer, tmp_path: Path, case: str
) -> None:
    """Before, only the strongest digest was checked: the file was kept (exit 0) though
    the server said, in another digest, that its bytes were others."""
    path = httpd.new_path("c.bin")
    url = httpd.handle(path, ranged(DATA, CONTRADICTIONS[case]))
    report, _, out = fetch(url, tmp_path, retries=3)
    assert report.exit_code == 4
    error = report.failures[0].error
    assert isinstance(error, IntegrityError) and "mismatch" in str(error)
    assert files(out) == ["c.bin.omniget-part"]
    assert len(httpd.requests_to(path)) == 2  # (the same bytes twice: not a third time)


def test_the_item_s_digest_and_the_server_s_must_both_hold(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    path = httpd.new_path("i.bin")
    url = httpd.handle(path, ranged(DATA, [("Repr-Digest", f"sha-256=:{b64('sha256', OTHER)}:")]))
    item = Item(url, filename="i.bin", digest=Digest("md5", hashlib.md5(DATA).hexdigest()))
    report, _, out = fetch("", tmp_path, item=item, retries=3)
    assert report.exit_code == 4
    assert "sha256 mismatch" in str(report.failures[0].error)
    assert files(out) == ["i.bin.omniget-part"]


def test_digests_that_agree_are_all_checked_and_the_file_kept(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    headers = [
        ("Repr-Digest", f"sha-512=:{b64('sha512', DATA)}:, sha-256=:{b64('sha256', DATA)}:"),
        ("Content-MD5", b64("md5", DATA)),
    ]
    url = httpd.handle(httpd.new_path("a.bin"), ranged(DATA, headers))
    item = Item(url, filename="a.bin", digest=Digest("sha1", hashlib.sha1(DATA).hexdigest()))
    report, _, out = fetch("", tmp_path, item=item)
    assert report.exit_code == 0, report.failures
    assert (out / "a.bin").read_bytes() == DATA
    assert report.results[0].verified == "sha1"


def test_a_digest_the_first_answer_gave_is_checked_after_a_resume_that_gives_none(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content-MD5 comes on a 200 only: the run is cut, and the rerun's 206 has none.
    Before, the digest the journal kept from the first answer was dropped at the rerun's
    first answer: the file was checked by its size alone."""
    data = random.Random(73).randbytes(1024 * KiB)
    path = httpd.new_path("r.bin")
    httpd.handle(path, ranged(data, [("Content-MD5", b64("md5", data))], whole_only=True))
    url = httpd.url(path, drip=2_000_000)
    settings = Settings(
        state_dir=tmp_path / "state", split=1, checkpoint_bytes=64 * KiB,
        checkpoint_seconds=0.05,
    )
    cancel = threading.Event()
    monkeypatch.setattr(job, "PROGRESS_EVERY", 0.02)

    def cut(event: Event) -> None:
        if isinstance(event, Progress) and event.done > 300 * KiB:
            cancel.set()

    first = download([url], tmp_path / "out", settings=settings, on_event=cut, cancel=cancel)
    assert first.interrupted == 1
    second = download([url], tmp_path / "out", settings=settings)
    assert second.exit_code == 0, second.failures
    assert (tmp_path / "out" / "r.bin").read_bytes() == data
    assert httpd.requests_to(path)[-1].header("range") is not None  # (resumed)
    assert second.results[0].verified == "md5"


def test_a_stream_checks_the_server_s_digest(httpd: HTTPServer) -> None:
    """``-O -``: the bytes are out, but a digest the server gave that they fail fails the
    stream (exit 4). Before, only the item's and --checksum were checked: exit 0."""
    bad = httpd.handle(
        httpd.new_path("s.bin"),
        ranged(DATA, [("Repr-Digest", f"sha-256=:{b64('sha256', OTHER)}:")]),
    )
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        stream(bad, io.BytesIO())
    good = httpd.handle(
        httpd.new_path("t.bin"),
        ranged(DATA, [("Repr-Digest", f"sha-256=:{b64('sha256', DATA)}:")]),
    )
    out = io.BytesIO()
    assert stream(good, out) == len(DATA) and out.getvalue() == DATA
