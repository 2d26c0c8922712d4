"""Socket-level misbehaviour from the fault server, through the real libcurl transport.

Every test checks the exit code, the exact bytes on disk (or that nothing is left under the
final name), and where it matters what the client sent. Backoff sleeps run on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import os
import random
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer
from tests.servers.nginx import NginxServer
from tests.servers.tls import JSSE_ALERT
from tests.servers.wire import LoggedRequest
from tests.transports._server import Req, Server, reply, static

from omniget import download, stream
from omniget.engine import Engine, Report, job
from omniget.engine.events import Event, Finished, Progress, Retrying, Started, Warned
from omniget.engine.journal import Journal
from omniget.engine.retry import FakeClock
from omniget.errors import RemoteError, TransientError
from omniget.model import Digest, Item, Piece
from omniget.settings import NetworkSettings, Settings

KiB = 1024
MiB = 1024 * KiB
#: What a handler of the server gives: status, headers, body.
Answer = tuple[int, list[tuple[str, str]], bytes]


def fetch(
    url: str | list[Item],
    tmp_path: Path,
    *,
    network: NetworkSettings | None = None,
    item: Item | None = None,
    **kw: object,
) -> tuple[Report, list[Event], Path]:
    out = tmp_path / "out"
    events: list[Event] = []
    settings = Settings(
        state_dir=tmp_path / "state",
        min_split_size=256 * KiB,
        network=network or NetworkSettings(stall_timeout=1.0, connect_timeout=5.0),
        **kw,  # type: ignore[arg-type]
    )
    items = url if isinstance(url, list) else [item or Item(url, name_from_server=True)]

    async def go() -> Report:
        eng = Engine(settings, clock=FakeClock(), on_event=events.append)
        try:
            return await eng.run(items, out)
        finally:
            await eng.aclose()

    return asyncio.run(go()), events, out


def files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def fetch_whole(
    httpd: HTTPServer,
    tmp_path: Path,
    name: str,
    data: bytes,
    settings: dict[str, Any] | None = None,
    **query: Any,
) -> tuple[str, Report, list[Event]]:
    """``data`` served as ``name`` with the faults in ``query``, fetched (``settings``:
    more of fetch()'s); it must come whole. Its path on the server, the report, the events."""
    path = httpd.new_path(name)
    httpd.add(path, data)
    report, events, out = fetch(httpd.url(path, **query), tmp_path, **(settings or {}))
    assert report.exit_code == 0, report.failures
    assert (out / name).read_bytes() == data
    return path, report, events


@pytest.mark.parametrize("times", ["1", "3"])
def test_reset_midway_is_resumed_with_range(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, times: str
) -> None:
    data = payload(600 * KiB, 1)
    path, _, events = fetch_whole(httpd, tmp_path, "r.bin", data, reset=100_000, times=times)
    ranges = [r.header("range") for r in httpd.requests_to(path)]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])
    assert sum(isinstance(e, Retrying) for e in events) == int(times)


def test_reset_always_gives_up_with_exit_3(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    path = httpd.new_path("a.bin")
    httpd.add(path, payload(8 * MiB, 2))
    # one connection: at 8 MiB the file is split at its first answer when the reset comes
    # a moment after that answer's head (a loaded machine: 12 requests, not 4)
    report, _, out = fetch(httpd.url(path, reset=1000), tmp_path, retries=3, split=1)
    assert report.exit_code == 3
    assert len(httpd.requests_to(path)) == 4
    assert files(out) == ["a.bin.omniget-part"]  # kept for a later resume


@pytest.mark.parametrize(
    ("name", "seed", "query", "cut"),
    [
        ("t.bin", 3, {"truncate": 50_000}, 50_000),
        ("c.bin", 4, {"chunked": 1, "chunked_truncate": 70_000}, 70_000),
    ],
    ids=["length", "chunked"],
)
def test_truncated_body_is_completed(
    httpd: HTTPServer,
    payload: Callable[..., bytes],
    tmp_path: Path,
    name: str,
    seed: int,
    query: dict[str, Any],
    cut: int,
) -> None:
    path, _, _ = fetch_whole(httpd, tmp_path, name, payload(300 * KiB, seed), times=1, **query)
    # resumed from the bytes it had, not started over
    ranges = [r.header("range") for r in httpd.requests_to(path)]
    assert len(ranges) == 2 and ranges[0] is None
    assert (ranges[1] or "").startswith(f"bytes={cut}-"), ranges


def test_chunked_body_whose_last_chunk_is_lost_ends_on_the_416(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Every byte came, but the connection closed before the terminating chunk (a reset
    behind it on the connection discards it, say): the resumed request from the end gets
    416 with ``bytes */SIZE``, which says the file is whole."""
    data = payload(40 * KiB, 9)
    path, _, _ = fetch_whole(
        httpd, tmp_path, "c.bin", data, chunked=1, chunked_truncate=len(data), times=1
    )
    asked = [(r.header("range"), r.status) for r in httpd.requests_to(path)]
    assert asked == [(None, 200), (f"bytes={len(data)}-", 416)]


def test_a_416_showing_a_shorter_file_starts_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A body of unknown length cut short; then the server's file is shorter than the
    bytes we have: it changed, so it is fetched again whole."""
    old, new = payload(45 * KiB, 10), payload(40 * KiB, 12)
    path = httpd.new_path("s.bin")
    answers = iter([(200, [], old), (416, [("Content-Range", f"bytes */{len(new)}")], b"")])
    httpd.handle(path, lambda req: next(answers, (200, [], new)))
    url = httpd.url(path, chunked=1, chunked_truncate=44 * KiB, times=1)
    report, _, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "s.bin").read_bytes() == new
    asked = [(r.header("range"), r.status) for r in httpd.requests_to(path)]
    assert asked == [(None, 200), (f"bytes={44 * KiB}-", 416), (None, 200)]


@pytest.mark.parametrize("now", ["shorter", "empty"])
def test_a_whole_answer_shorter_than_the_bytes_kept_starts_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, now: str
) -> None:
    """A body of unknown length cut short; the resume is answered with a whole body
    (200) that ends before the bytes we have, or with none (200 with Content-Length 0):
    the file is shorter now. It was finished as the bytes kept (exit 0; the short
    body's bytes written over their start: neither file)."""
    old, new = payload(45 * KiB, 10), payload(1000, 12)
    answer: dict[str, Answer] = {"shorter": (200, [], new), "empty": (200, [], b"")}
    status, _, body = answer[now]
    path = httpd.new_path("s.bin")
    answers: Iterator[Answer] = iter([(200, [], old)])
    httpd.handle(path, lambda req: next(answers, answer[now]))
    report, _, out = fetch(httpd.url(path, chunked=1, chunked_truncate=44 * KiB, times=1),
                           tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "s.bin").read_bytes() == body
    asked = [(r.header("range"), r.status) for r in httpd.requests_to(path)]
    assert asked == [(None, 200), (f"bytes={44 * KiB}-", status), (None, status)]


def test_a_resume_answered_with_no_content_fails_the_file(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A 204 where the rest of a file cut short was asked for: there is no content there
    now, so no file (it was saved as an empty one, as if the file were empty now)."""
    path = httpd.new_path("s.bin")
    answers: Iterator[Answer] = iter([(200, [], payload(45 * KiB, 10))])
    httpd.handle(path, lambda req: next(answers, (204, [], b"")))
    report, _, out = fetch(httpd.url(path, chunked=1, chunked_truncate=44 * KiB, times=1),
                           tmp_path)
    assert report.exit_code == 3
    assert "(HTTP 204 No Content from " in str(report.failures[0].error)
    assert not (out / "s.bin").exists()
    asked = [(r.header("range"), r.status) for r in httpd.requests_to(path)]
    assert asked == [(None, 200), (f"bytes={44 * KiB}-", 204)]


def test_a_corrupt_encoded_answer_leaves_none_of_its_bytes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """gzip forced on us and corrupt once: the stream decodes to wrong bytes before its
    CRC fails at the end. The next answer is a whole body again; none of the first one's
    bytes may stay (they were only skipped before)."""
    data = payload(300 * KiB, 13)
    _, _, events = fetch_whole(httpd, tmp_path, "g.bin", data, gzip=1, corrupt=1, times=1)
    assert sum(isinstance(e, Retrying) for e in events) == 1


def test_an_unknown_length_failing_its_digest_is_fetched_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The first close-delimited answer ends at once (an empty body, a FIN): its size,
    read off its end, is no size at all once the digest says the bytes are wrong."""
    path, _, _ = fetch_whole(
        httpd, tmp_path, "e.bin", payload(1, 11), nolength=1, digest="sha256", truncate=0,
        times=1,
    )
    assert len(httpd.requests_to(path)) == 2


@pytest.mark.parametrize("fault", ["norange", "badrange"])
def test_broken_range_support_never_splices(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, fault: str
) -> None:
    fetch_whole(httpd, tmp_path, "s.bin", payload(3 * MiB, 5), {"split": 4}, **{fault: 1})


def ranges_from(data: bytes, whole: Callable[[], Answer]) -> Callable[[LoggedRequest], Answer]:
    """A handler serving ``data`` that answers a request with Range as it should, and one
    without it with ``whole()``."""

    def answer(req: LoggedRequest) -> Answer:
        rng = req.header("range")
        if rng is None:
            return whole()
        first, _, last = rng.removeprefix("bytes=").partition("-")
        a, b = int(first), int(last) + 1 if last else len(data)
        return 206, [("Content-Range", f"bytes {a}-{b - 1}/{len(data)}")], data[a:b]

    return answer


@pytest.mark.parametrize("how", ["elsewhere", "multipart"])
def test_a_206_to_a_request_without_range_is_never_spliced_at_byte_0(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, how: str
) -> None:
    """A plain GET answered with a 206 of bytes from 500 on, or with a multipart/byteranges
    body (no Content-Range of its own): was written from byte 0 (the next requests with
    Range filled the end), exit 0 with the wrong bytes. It is a wrong byte range."""
    data = payload(100 * KiB, 16)
    path = httpd.new_path("p.bin")
    if how == "elsewhere":
        wrong = (206, [("Content-Range", f"bytes 500-{len(data) - 1}/{len(data)}")], data[500:])
    else:
        body = (b"--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes "
                + f"0-{len(data) - 1}/{len(data)}\r\n\r\n".encode() + data + b"\r\n--B--\r\n")
        wrong = (206, [("Content-Type", "multipart/byteranges; boundary=B")], body)
    httpd.handle(path, ranges_from(data, lambda: wrong))
    report, _, out = fetch(httpd.url(path), tmp_path)
    assert report.exit_code == 3
    assert "the server answered a wrong byte range" in str(report.failures[0].error)
    assert files(out) == []
    assert [r.header("range") for r in httpd.requests_to(path)] == [None] * 4


def overflowing_once(data: bytes) -> Callable[[LoggedRequest], Answer]:
    """``data`` with ranges; the first ranged answer says 100 bytes in its Content-Range,
    then sends zeros past them to the end of the file (its Content-Length)."""
    ranged = 0

    def answer(req: LoggedRequest) -> Answer:
        nonlocal ranged
        rng = req.header("range")
        if rng is not None:
            ranged += 1
        if rng is None or ranged > 1:
            return ranges_from(data, lambda: (200, [("Accept-Ranges", "bytes")], data))(req)
        a = int(rng.removeprefix("bytes=").partition("-")[0])
        body = data[a : a + 100] + bytes(len(data) - a - 100)
        return 206, [("Content-Range", f"bytes {a}-{a + 99}/{len(data)}")], body

    return answer


def test_bytes_past_the_end_of_a_206_s_range_are_not_written(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A resume's 206 says bytes a..a+99, its body goes on past them (its Content-Length):
    those bytes were written as the rest of the file, exit 0 with the wrong bytes."""
    data = payload(600 * KiB, 17)
    path = httpd.new_path("o.bin")
    httpd.handle(path, overflowing_once(data))
    report, _, out = fetch(httpd.url(path, truncate=100 * KiB, times=1), tmp_path, split=1)
    assert report.exit_code == 0, report.failures
    assert (out / "o.bin").read_bytes() == data
    asked = [r.header("range") for r in httpd.requests_to(path)]
    assert asked == [None, f"bytes={100 * KiB}-{len(data) - 1}",
                     f"bytes={100 * KiB + 100}-{len(data) - 1}"]


def capped(data: bytes, cap: int) -> Callable[[LoggedRequest], Answer]:
    """``data`` in 206 answers of ``cap`` bytes at most, whatever the range asked (or
    none: from byte 0)."""

    def answer(req: LoggedRequest) -> Answer:
        first, _, last = (req.header("range") or "bytes=0-").removeprefix("bytes=").partition("-")
        a = int(first)
        b = min(int(last) + 1 if last else len(data), a + cap)
        headers = [("Content-Range", f"bytes {a}-{b - 1}/{len(data)}"), ("Accept-Ranges", "bytes")]
        return 206, headers, data[a:b]

    return answer


def test_a_server_that_sends_fewer_bytes_than_asked_is_asked_for_the_rest_at_once(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Each answer is a whole 206 of 256 KiB at most, whatever the range asked (its
    Content-Range and Content-Length say so). Each was taken for a cut connection: a
    backoff before the next part, and with parts under the checkpoint size the file gave
    up after its retries ("connection closed at byte 1572864"), exit 3."""
    data = payload(3 * MiB, 18)
    path = httpd.new_path("k.bin")
    httpd.handle(path, capped(data, 256 * KiB))
    report, events, out = fetch(httpd.url(path), tmp_path, split=1)
    assert report.exit_code == 0, report.failures
    assert (out / "k.bin").read_bytes() == data
    assert not [e for e in events if isinstance(e, Retrying)]
    assert len(httpd.requests_to(path)) == 12


def cut_where_range_is_ignored(
    httpd: HTTPServer, data: bytes, name: str, tmp_path: Path
) -> tuple[str, str, Report]:
    """``data`` as ``name`` on a server that ignores Range, and a first run of it cut short
    after 3 MB (kept for a rerun): its path, its URL and that run's report."""
    path = httpd.new_path(name)
    httpd.add(path, data)
    url = httpd.url(path, norange=1, truncate=3_000_000, times=1)
    report, _, _ = fetch(url, tmp_path, retries=0)
    return path, url, report


def test_a_resume_the_server_answers_from_byte_0_says_the_kept_bytes_come_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Was: silence, the bar still at 75% and 0 B/s while the first 3 MB came again (it
    looked like a hang), and the summary counted 1 MB fetched."""
    data = payload(4_000_000, 12)
    _, url, report = cut_where_range_is_ignored(httpd, data, "r.bin", tmp_path)
    assert report.failed == 1
    report, events, out = fetch(url, tmp_path, retries=0)
    assert report.exit_code == 0, report.failures
    assert (out / "r.bin").read_bytes() == data
    said = [e.message for e in events if isinstance(e, Warned)]
    assert said == ["the server ignores Range: the 3000000 bytes already here come again "
                    "before the rest"]


def test_bytes_a_resume_fetches_again_are_written_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The server ignored Range on a resume (a 200 from byte 0): the bytes already here
    come again, and are written over what the part file holds (they were dropped: a part
    file changed by hand at its start kept the change, exit 0)."""
    data = payload(4_000_000, 14)
    _, url, report = cut_where_range_is_ignored(httpd, data, "w.bin", tmp_path)
    assert report.failed == 1
    part = next(tmp_path.rglob("w.bin.omniget-part"))
    with part.open("r+b") as f:
        f.write(bytes(1_000_000))
    report, _, out = fetch(url, tmp_path, retries=0)
    assert report.exit_code == 0, report.failures
    assert (out / "w.bin").read_bytes() == data
    assert report.fetched == 4_000_000


def test_bytes_a_resume_fetches_again_are_not_said_to_be_resumed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """They are fetched and written again: the file starts again at the answer, saying
    none resumed (the summary said "4 MB (+3 MB resumed)" of a 4 MB file; its first start,
    before the first request, says the bytes on disk), and its progress goes from 0 to its
    size."""
    data = payload(4_000_000, 15)
    _, url, report = cut_where_range_is_ignored(httpd, data, "p.bin", tmp_path)
    assert report.failed == 1
    monkeypatch.setattr(job, "PROGRESS_EVERY", 0.0)  # (an event per chunk)
    report, events, _ = fetch(url, tmp_path, retries=0)
    assert report.exit_code == 0, report.failures
    assert [e.resumed for e in events if isinstance(e, Started)] == [3_000_000, 0]
    last = max(i for i, e in enumerate(events) if isinstance(e, Started))
    assert not any(isinstance(e, Progress) for e in events[:last])
    done = [e.done for e in events if isinstance(e, Progress)]
    assert done == sorted(done) and done[0] < 3_000_000 and done[-1] <= len(data), done


def test_bytes_a_resume_fetches_again_count_as_fetched(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The server ignored Range on a resume (a 200 from byte 0): before, the run said 1 MB
    fetched (the file's Finished and the report: the summary's size and speed) where
    4 MB came."""
    data = payload(4_000_000, 13)
    path, url, report = cut_where_range_is_ignored(httpd, data, "f.bin", tmp_path)
    assert report.failed == 1 and report.fetched == 3_000_000
    report, events, _ = fetch(url, tmp_path, retries=0)
    assert report.exit_code == 0, report.failures
    assert httpd.requests_to(path)[-1].sent == 4_000_000
    assert report.fetched == 4_000_000
    assert [e.fetched for e in events if isinstance(e, Finished)] == [4_000_000]


def test_server_errors_then_success(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(10 * KiB, 6)
    for status in (500, 502, 503, 504, 429):
        path, _, events = fetch_whole(
            httpd, tmp_path / str(status), f"e{status}.bin", data, status=status, times=2
        )
        assert len(httpd.requests_to(path)) == 3
        # backed off (exponentially, with jitter: the policy's own tests check how)
        delays = [e.delay for e in events if isinstance(e, Retrying)]
        assert len(delays) == 2 and 0 < delays[0] < delays[1], delays


def test_the_backoff_is_jittered(httpd: HTTPServer, tmp_path: Path) -> None:
    """Files turned away at once by one server do not all come back at once: their
    first waits differ, each within 25 % of the first backoff step (0.5 s)."""
    items = []
    for i in range(6):
        path = httpd.new_path(f"j{i}.bin")
        httpd.add(path, b"j")
        items.append(Item(httpd.url(path, status=503, times=1), filename=f"j{i}.bin"))
    report, events, _ = fetch(items, tmp_path)
    assert report.ok == 6, report.failures
    delays = [e.delay for e in events if isinstance(e, Retrying)]
    assert len(delays) == 6 and all(0.375 <= d <= 0.625 for d in delays), delays
    assert len(set(delays)) > 1, delays


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_a_client_error_is_not_retried(httpd: HTTPServer, tmp_path: Path, status: int) -> None:
    path = httpd.new_path("c.bin")
    httpd.add(path, b"x")
    report, events, out = fetch(httpd.url(path, status=status), tmp_path)
    assert report.exit_code != 0
    assert len(httpd.requests_to(path)) == 1
    assert not [e for e in events if isinstance(e, Retrying)]
    assert files(out) == []


def test_default_timeouts_are_well_under_30_s() -> None:
    """The stall test below uses a short stall time to stay quick; these are what a
    user gets."""
    net = NetworkSettings()
    assert 0 < net.connect_timeout <= 20 and 0 < net.stall_timeout <= 20
    assert net.low_speed_limit >= 1  # (0 would switch the stall check off)


def test_503_forever_gives_up_bounded(httpd: HTTPServer, tmp_path: Path) -> None:
    path = httpd.new_path("gone.bin")
    httpd.add(path, b"x")
    report, _events, out = fetch(httpd.url(path, status=503), tmp_path, retries=4)
    assert report.exit_code == 3
    # what the server said, and that it was given up on after the retries (before, the
    # error read as the first 503's: nothing said it had been tried again)
    said = str(report.failures[0].error)
    assert said.startswith("HTTP 503 from ") and said.endswith(" (gave up after 4 retries)")
    assert len(httpd.requests_to(path)) == 5
    assert files(out) == []


def test_503_forever_gives_up_within_the_time_budget(httpd: HTTPServer, tmp_path: Path) -> None:
    """Retries to spare, but the backoff would take the waits past ``retry_max_time``:
    it gives up there, not after the count (the waits on the fake clock)."""
    path = httpd.new_path("slow.bin")
    httpd.add(path, b"x")
    report, events, out = fetch(httpd.url(path, status=503), tmp_path, retries=50,
                                retry_max_time=20.0)
    assert report.exit_code == 3
    delays = [e.delay for e in events if isinstance(e, Retrying)]
    assert 3 <= len(delays) < 50 and sum(delays) <= 20.0, delays
    assert delays == sorted(delays)  # (growing: exponential backoff)
    assert len(httpd.requests_to(path)) == len(delays) + 1
    assert str(report.failures[0].error).endswith(f"(gave up after {len(delays)} retries)")
    assert files(out) == []


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("after", ["7", "date:30"])
def test_retry_after_is_honoured(
    httpd: HTTPServer, tmp_path: Path, status: int, after: str
) -> None:
    path = httpd.new_path("ra.bin")
    httpd.add(path, b"payload")
    url = httpd.url(path, status=status, times=1, retry_after=after)
    report, events, _out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    delays = [e.delay for e in events if isinstance(e, Retrying)]
    want = 7.0 if after == "7" else 30.0
    assert len(delays) == 1 and want - 2 <= delays[0] <= want + 1


def test_retry_after_beyond_cap_is_capped(httpd: HTTPServer, tmp_path: Path) -> None:
    path = httpd.new_path("cap.bin")
    httpd.add(path, b"payload")
    url = httpd.url(path, status=503, times=1, retry_after=120)
    report, events, _ = fetch(url, tmp_path, retry_max_wait=60.0, retry_max_time=600.0)
    assert report.exit_code == 0
    assert [e.delay for e in events if isinstance(e, Retrying)] == [60.0]


def test_retry_after_beyond_the_whole_budget_gives_up_at_once(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    path = httpd.new_path("later.bin")
    httpd.add(path, b"payload")
    url = httpd.url(path, status=503, times=1, retry_after=100_000)
    report, events, _ = fetch(url, tmp_path, retry_max_time=600.0)
    assert report.exit_code == 3
    assert not [e for e in events if isinstance(e, Retrying)]
    # why it gave up, and what to do (before: only the server's words, "HTTP 503 from URL
    # (Retry-After: 28 h)", as if nothing had been tried)
    said = str(report.failures[0].error)
    assert said.endswith(" (Retry-After: 28 h): gave up at once: a file waits at most 10 min"
                         " in all (retry-max-time); run again later, or raise retry-max-time"
                         " and retry-max-wait above 28 h"), said


def test_a_retry_after_past_any_number_gives_up_at_once_in_one_line(tmp_path: Path) -> None:
    """A Retry-After of 400 digits (a float too large: infinity) was an internal error
    (OverflowError: the wait said as a duration), exit 1."""
    with Server() as srv:
        srv.route("/inf.bin", static(b"busy\n", 503, [("Retry-After", "9" * 400)]))
        report, events, out = fetch(srv.url("/inf.bin"), tmp_path, retry_max_time=600.0)
        asked = len(srv.requests)
    assert report.exit_code == 3
    assert asked == 1 and not [e for e in events if isinstance(e, Retrying)]
    said = str(report.failures[0].error)
    assert said.startswith("HTTP 503 from ") and "gave up at once" in said, said
    assert "\n" not in said and len(said) < 400, said
    assert "(Retry-After: 100 years)" in said, said  # (the longest taken as said)
    assert files(out) == []


@pytest.mark.parametrize("value", ["\xb2", "\xb9", "-5", "1e5", "soon", "0x10", "12.5"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(
    tmp_path: Path, value: str
) -> None:
    """Header bytes are read as Latin-1: a superscript digit (0xB2, 0xB9) passed
    str.isdigit() and then failed float(): an internal error (ValueError), exit 1. Such a
    value, like any other that is no delta-seconds or HTTP-date, is ignored: the backoff's
    own waits, then the file."""
    answers = iter([(503, [("Retry-After", value)], b"busy\n")] * 2)

    def answer(req: Req, sock: socket.socket) -> None:
        status, headers, body = next(answers, (200, [], b"payload"))
        reply(sock, status, body, headers)  # (the head goes out as Latin-1)

    with Server() as srv:
        srv.route("/odd.bin", answer)
        report, events, out = fetch(srv.url("/odd.bin"), tmp_path)
        asked = len(srv.requests)
    assert report.exit_code == 0, report.failures
    assert (out / "odd.bin").read_bytes() == b"payload"
    assert asked == 3
    delays = [e.delay for e in events if isinstance(e, Retrying)]
    assert len(delays) == 2 and all(d < 3 for d in delays), delays


def test_slow_drip_completes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    fetch_whole(httpd, tmp_path, "d.bin", payload(60 * KiB, 7), drip=200_000)


def test_stall_is_detected_and_retried(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    _, _, events = fetch_whole(httpd, tmp_path, "st.bin", payload(200 * KiB, 8), stall=30, times=1)
    assert any(isinstance(e, Retrying) for e in events)


def test_a_transfer_paused_for_its_turn_under_limit_rate_is_no_stall(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Ten files share --limit-rate 32k: what one reads puts the budget in debt, and the
    others, paused, wait their turns, longer than the stall window. Before, the watchdog
    cut each such wait as a stall ("less than 1 B/s for 0.5 s") and counted a retry: a
    file failed with its retries spent though the server was never slow (with --timeout 3
    and 10k, one file in eight failed)."""
    names = [f"t{i}.bin" for i in range(10)]
    datas = [payload(8 * KiB, 40 + i) for i in range(10)]
    paths = [httpd.new_path(n) for n in names]
    items = [Item(httpd.add(p, d), filename=n) for p, d, n in zip(paths, datas, names,
                                                                 strict=True)]
    start = time.monotonic()
    report, events, out = fetch(items, tmp_path, retries=0, limit_rate=32 * KiB, split=1,
                                network=NetworkSettings(stall_timeout=0.5))
    took = time.monotonic() - start
    assert report.exit_code == 0, report.failures
    assert [(out / n).read_bytes() for n in names] == datas
    assert not [e for e in events if isinstance(e, Retrying)]
    assert sum(len(httpd.requests_to(p)) for p in paths) == 10
    # 80 KiB at 32 KiB/s (a margin: the bucket starts empty, the last read is paid for)
    assert took >= 2.0


def test_a_file_that_comes_in_one_read_keeps_to_limit_rate_too(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """8 KiB at --limit-rate 2k take about 4 s. Before, libcurl read the whole answer at
    once (its buffer is 1 MiB), the budget let that one read through, and the file came in
    a few milliseconds (10 KiB at 1k: 0.06 s, 170 KiB/s): reads are cut to a tenth of a
    second's worth now (1 KiB at the least, libcurl's smallest buffer), as curl does."""
    data = payload(8 * KiB, 45)
    path = httpd.new_path("small.bin")
    httpd.add(path, data)
    start = time.monotonic()
    report, events, out = fetch(httpd.url(path), tmp_path, limit_rate=2 * KiB)
    took = time.monotonic() - start
    assert report.exit_code == 0, report.failures
    assert (out / "small.bin").read_bytes() == data
    assert not [e for e in events if isinstance(e, Retrying)]
    assert took >= 2.5  # 8 KiB at 2 KiB/s (a margin)


def test_a_silent_server_is_a_stall_under_limit_rate_too(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """(A transfer paused by the budget is no stall: one whose server stopped sending is.)"""
    data = payload(64 * KiB, 44)
    path = httpd.new_path("q.bin")
    httpd.add(path, data)
    report, events, out = fetch(httpd.url(path, stall=30, stall_after=1000, times=1),
                                tmp_path, limit_rate=1 * MiB,
                                network=NetworkSettings(stall_timeout=0.5))
    assert report.exit_code == 0, report.failures
    assert (out / "q.bin").read_bytes() == data
    said = [str(e.error) for e in events if isinstance(e, Retrying)]
    assert len(said) == 1 and "stalled" in said[0], said


def test_a_loop_held_up_past_the_stall_window_cuts_nothing(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The process stopped (Ctrl+Z, a long GC, a loaded machine) for longer than the stall
    window, its server silent meanwhile (here: held; in the tests, servers in the same
    process stop with it): the watchdog did not watch, so that time is no stall. Before,
    its first check after the pause cut the transfer, before the server's next bytes."""
    data = payload(100 * KiB, 14)
    path = httpd.new_path("p.bin")
    httpd.add(path, data)
    events: list[Event] = []
    net = NetworkSettings(stall_timeout=2.0, connect_timeout=5.0)  # (checked every 0.5 s)
    settings = Settings(state_dir=tmp_path / "state", network=net)

    async def go() -> Report:
        eng = Engine(settings, clock=FakeClock(), on_event=events.append)
        try:
            task = asyncio.ensure_future(
                eng.run([Item(httpd.url(path, hold="p"), filename="p.bin")], tmp_path / "out")
            )
            assert await asyncio.to_thread(httpd.held, "p")
            await asyncio.sleep(0.6)  # a check sees the bytes before the hold
            time.sleep(3.0)  # the loop held up: no check runs, nothing is read
            # the server goes on a moment after the loop does (the first check comes first)
            threading.Timer(0.2, httpd.release, ("p",)).start()
            return await task
        finally:
            await eng.aclose()

    report = asyncio.run(go())
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "out" / "p.bin").read_bytes() == data
    assert not [e for e in events if isinstance(e, Retrying)]
    assert len(httpd.requests_to(path)) == 1


@pytest.mark.parametrize("digest", [False, True])
def test_etag_change_restarts_the_file(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, digest: bool
) -> None:
    """The first answer is cut short; by the retry the file has changed: the If-Range
    request gets the whole new file with a 200, and that answer is the download (two
    requests, not a third from byte 0); with a digest header, it is of the new file."""
    data = payload(400 * KiB, 9)
    path = httpd.new_path("v.bin")
    httpd.add(path, data)
    query: dict[str, Any] = {"digest": 1} if digest else {}
    url = httpd.url(path, etag_change=1, times=1, reset=100_000, **query)
    report, _, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "v.bin").read_bytes() == httpd.variant(path, 1)
    asked = httpd.requests_to(path)
    assert asked[1].header("if-range") and asked[1].range
    assert [r.status for r in asked] == [200, 200]
    assert report.results[0].verified == ("sha256" if digest else "size")


@pytest.mark.parametrize("digest", [False, True])
@pytest.mark.parametrize("etag", ["noetag", "weaketag"])
def test_a_last_modified_change_restarts_the_file(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, etag: str, digest: bool
) -> None:
    """No ETag, or a weak one (no If-Range validator): Last-Modified alone tells that the
    file changed between the cut answer and the resumed request, whose 200 is the
    download (two requests)."""
    data = payload(400 * KiB, 19)
    path = httpd.new_path("lm.bin")
    httpd.add(path, data)
    query: dict[str, Any] = {etag: 1, **({"digest": 1} if digest else {})}
    url = httpd.url(path, etag_change=1, times=1, reset=100_000, **query)
    report, _, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "lm.bin").read_bytes() == httpd.variant(path, 1)
    res = httpd.lookup(path)
    assert res is not None
    asked = httpd.requests_to(path)
    assert asked[1].header("if-range") == res.last_modified  # (version 0's)
    assert [r.status for r in asked] == [200, 200]
    assert report.results[0].verified == ("sha256" if digest else "size")


@pytest.mark.parametrize("digest", [False, True])
@pytest.mark.parametrize("size", [60 * KiB, 300 * KiB, 450 * KiB])
@pytest.mark.parametrize("validator", ["etag", "noetag"])
def test_a_resumed_file_that_changed_comes_in_the_answer_if_range_gave(
    httpd: HTTPServer,
    payload: Callable[..., bytes],
    tmp_path: Path,
    validator: str,
    size: int,
    digest: bool,
) -> None:
    """A run ends with part of the file (its journal records it); the file then changes
    on the server, to fewer bytes than were kept, as many, or more. The rerun's resumed
    request (If-Range) gets the whole new file with a 200, and that answer is the
    download: one request in the rerun, not a second from byte 0."""
    data = payload(300 * KiB, 42)
    new = payload(size, 43)
    path = httpd.new_path("k.bin")
    httpd.add(path, data, last_modified=1_000_000)
    query: dict[str, Any] = {"reset": 100_000, "times": 1}
    if validator != "etag":
        query[validator] = 1
    if digest:
        query["digest"] = 1
    url = httpd.url(path, **query)
    first, _, out = fetch(url, tmp_path, retries=0)
    assert first.exit_code != 0
    assert files(out) == ["k.bin.omniget-part"]
    httpd.add(path, new, last_modified=1_000_100)
    report, _, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "k.bin").read_bytes() == new
    assert files(out) == ["k.bin"]
    asked = httpd.requests_to(path)
    assert asked[1].header("if-range") and asked[1].range
    assert [r.status for r in asked] == [200, 200]
    assert report.results[0].verified == ("sha256" if digest else "size")


@pytest.mark.parametrize("validator", ["etag", "noetag"])
def test_a_restarted_file_s_record_has_the_new_file_s_validators(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, validator: str
) -> None:
    """A run keeps part of version A; the next finds B (a restart) and keeps part of B;
    then the server goes back to A. The record kept A's validators after the restart:
    the third run's If-Range named A, the server sent A's bytes after B's (a 206), and the
    file was B's start and A's end, the right size, reported finished."""
    old = payload(300 * KiB, 46)
    new = payload(300 * KiB, 47)
    path = httpd.new_path("v.bin")
    httpd.add(path, old, last_modified=1_000_000)
    query: dict[str, Any] = {"reset": 100_000, "times": 2}
    if validator != "etag":
        query[validator] = 1
    url = httpd.url(path, **query)
    first, _, out = fetch(url, tmp_path, retries=0)
    assert first.exit_code != 0 and files(out) == ["v.bin.omniget-part"]
    httpd.add(path, new, last_modified=1_000_100)
    second, _, out = fetch(url, tmp_path, retries=0)
    assert second.exit_code != 0 and files(out) == ["v.bin.omniget-part"]
    httpd.add(path, old, last_modified=1_000_000)  # (back to A)
    third, _, out = fetch(url, tmp_path)
    assert third.exit_code == 0, third.failures
    assert (out / "v.bin").read_bytes() == old
    asked = httpd.requests_to(path)
    assert [r.status for r in asked] == [200, 200, 200]


@pytest.mark.parametrize("digest", [False, True])
def test_a_resumed_file_with_gaps_that_changed_comes_in_the_answer_if_range_gave(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, digest: bool
) -> None:
    """A file resumed with several gaps asks for the first (If-Range); the 200 it gets
    instead is the new file's whole body, and the download: the other gaps, of the old
    file, are never asked for, and nothing is asked again from byte 0 (two requests in
    all: the first run's and this one)."""
    data = payload(300 * KiB, 44)
    new = payload(300 * KiB, 45)
    path = httpd.new_path("g.bin")
    httpd.add(path, data, last_modified=1_000_000)
    query: dict[str, Any] = {"digest": 1} if digest else {}
    url = httpd.url(path, reset=100_000, times=1, **query)
    first, _, out = fetch(url, tmp_path, retries=0)
    assert first.exit_code != 0
    with Journal(tmp_path / "state" / "journal.sqlite") as journal:
        [key] = journal.keys("")
        journal.save_spans(key, [(0, 40_000), (80_000, 90_000)])  # (bytes the part holds)
    httpd.add(path, new, last_modified=1_000_100)
    report, _, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "g.bin").read_bytes() == new
    assert files(out) == ["g.bin"]
    asked = httpd.requests_to(path)
    assert asked[1].range == "bytes=40000-79999" and asked[1].header("if-range")
    assert [r.status for r in asked] == [200, 200]
    assert report.results[0].verified == ("sha256" if digest else "size")


@pytest.mark.parametrize("split", [2, 4])
def test_a_split_file_that_changed_comes_in_a_200_if_range_gave(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, split: int
) -> None:
    """The file changes once its first answer left: the ranged requests of the split
    (If-Range) get the whole new file with 200s. The first of them to come is the
    download (the others, and the first answer, are dropped, their bytes never written
    into the new file), split again; nothing is asked again from byte 0."""
    data = payload(3 * MiB, 46)
    path = httpd.new_path("c.bin")
    httpd.add(path, data)
    url = httpd.url(path, etag_change=1, times=1, reset=200_000)
    report, _, out = fetch(url, tmp_path, split=split)
    assert report.exit_code == 0, report.failures
    assert (out / "c.bin").read_bytes() == httpd.variant(path, 1)
    assert files(out) == ["c.bin"]
    asked = httpd.requests_to(path)
    assert [r.range for r in asked].count(None) == 1
    assert asked[0].range is None and asked[0].status == 200
    assert all(r.header("if-range") for r in asked[1:])


def test_corrupt_first_answer_caught_by_digest_header(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(100 * KiB, 10)
    path, report, _ = fetch_whole(httpd, tmp_path, "x.bin", data, corrupt=1, times=1, digest=1)
    assert report.results[0].verified == "sha256"
    assert len(httpd.requests_to(path)) == 2


def test_corrupt_always_is_an_integrity_failure(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    path = httpd.new_path("bad.bin")
    data = payload(50 * KiB, 11)
    httpd.add(path, data)
    good = Digest("sha256", hashlib.sha256(data).hexdigest())
    item = Item(httpd.url(path, corrupt=1), filename="bad.bin", digest=good)
    report, _, out = fetch("", tmp_path, item=item)
    assert report.exit_code == 4
    # the flip is at the same byte every time: the second answer hashes as the first, and
    # no third is asked for; the bytes stay in the part file, never under the final name
    assert len(httpd.requests_to(path)) == 2
    assert files(out) == ["bad.bin.omniget-part"]


def served(httpd: HTTPServer, data: bytes, name: str, **query: Any) -> tuple[str, Item]:
    """``data`` served as ``name`` (with the faults in ``query``): its path on the server,
    and an item asking for it with a checksum it does not have."""
    path = httpd.new_path(name)
    httpd.add(path, data)
    return path, Item(httpd.url(path, **query), filename=name, digest=Digest("sha256", "a" * 64))


def twice(name: str, got: str) -> str:
    return (
        f"sha256 mismatch for {name}: expected {'a' * 64}, got {got} twice (the server sends"
        f" the same bytes each time: is the checksum right?); kept as {name}.omniget-part"
    )


def test_a_wrong_checksum_stops_when_the_same_bytes_come_twice(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """A mistyped checksum (or another version's): the second download hashes as the
    first, so a third would too. It fails (exit 4) after two requests, not three, says
    why, and keeps the bytes in its part file (none under the final name)."""
    data = payload(64 * KiB, 31)
    path, item = served(httpd, data, "w.bin")
    report, events, out = fetch([item], tmp_path)  # (--retries 5: not what stops it)
    assert report.exit_code == 4
    assert len(httpd.requests_to(path)) == 2
    assert str(report.failures[0].error) == twice("w.bin", hashlib.sha256(data).hexdigest())
    assert files(out) == ["w.bin.omniget-part"]
    assert (out / "w.bin.omniget-part").read_bytes() == data
    assert sum(isinstance(e, Warned) and "downloading again" in e.message for e in events) == 1


#: How the kept tests' server sends the file: with a Content-Length; gzip-encoded (its
#: Content-Length is of the gzip bytes, so the file's size is known only at the end of
#: the gzip stream, which checks itself); chunked (no length: the last chunk ends it)
#: (a checkpoint every 16 KiB: the file's record is made before its end, as a large
#: file's is, not at the end, where its size is known)
BODIES = pytest.mark.parametrize("body", [{}, {"gzip": 1}, {"chunked": 1}],
                                 ids=["length", "gzip", "chunked"])
SMALL_CHECKPOINTS = 16 * KiB


@BODIES
def test_kept_bytes_are_finished_by_a_rerun_with_the_right_checksum_without_a_request(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, body: dict[str, int],
) -> None:
    """The rerun with the right checksum hashes the part file the first run kept, and
    puts it in place: no byte is fetched again. Before, a body whose size is known only
    at its end (gzip-encoded, chunked) left no size in the record: the rerun asked the
    server for the rest (a gzip answer then started the file over)."""
    from omniget.engine import finish
    from omniget.engine.verify import file_digests

    data = payload(64 * KiB, 32)
    path, item = served(httpd, data, "k.bin", **body)
    assert fetch([item], tmp_path, checkpoint_bytes=SMALL_CHECKPOINTS)[0].exit_code == 4
    hashed: list[Path] = []

    def spy(part: Path, *args: Any) -> list[str]:
        hashed.append(part)
        return file_digests(part, *args)

    monkeypatch.setattr(finish, "file_digests", spy)
    right = Digest("sha256", hashlib.sha256(data).hexdigest())
    report, _, out = fetch([Item(item.download_url, filename="k.bin", digest=right)], tmp_path,
                           checkpoint_bytes=SMALL_CHECKPOINTS)
    assert report.exit_code == 0, report.failures
    assert len(httpd.requests_to(path)) == 2  # the first run's two
    assert report.fetched == 0 and report.results[0].verified == "sha256"
    assert hashed == [out / "k.bin.omniget-part"]
    assert files(out) == ["k.bin"] and (out / "k.bin").read_bytes() == data


@BODIES
def test_a_rerun_with_the_same_wrong_checksum_fetches_once_and_fails_the_same_way(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, body: dict[str, int]
) -> None:
    """The kept bytes fail again: one download more (they may have been damaged here),
    which hashes as they do, and the file fails as before, its bytes kept; each rerun
    costs one download, never a loop (a gzip body's took three: see above). That download
    asks for the whole file, no range: the size the kept bytes gave is not taken for the
    next answer's (a gzip body's is not its encoded size, which a range would count)."""
    data = payload(64 * KiB, 33)
    path, item = served(httpd, data, "r.bin", **body)
    got = hashlib.sha256(data).hexdigest()
    for run in (1, 2, 3):
        report, events, out = fetch([item], tmp_path, checkpoint_bytes=SMALL_CHECKPOINTS)
        assert report.exit_code == 4
        assert len(httpd.requests_to(path)) == 1 + run
        assert [r.header("range") for r in httpd.requests_to(path)] == [None] * (1 + run)
        assert str(report.failures[0].error) == twice("r.bin", got)
        # the rerun's warning says which bytes failed: those kept, checked before a request
        where = "" if run == 1 else " (the bytes an earlier run kept as r.bin.omniget-part)"
        assert [e.message for e in events if isinstance(e, Warned)] == [
            f"sha256 mismatch for r.bin: expected {'a' * 64}, got {got}{where}; downloading again"
        ]
        assert files(out) == ["r.bin.omniget-part"]


def test_a_wrong_checksum_with_other_bytes_each_time_is_fetched_again_as_before(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Other bytes at each request (the file changes, or something on the way damages
    them): a fault of the transfer or the server, fetched again up to twice as before;
    the last bytes are kept all the same."""
    data = payload(64 * KiB, 34)
    path, item = served(httpd, data, "o.bin", etag_change=1)
    report, _, out = fetch([item], tmp_path)
    assert report.exit_code == 4
    assert len(httpd.requests_to(path)) == 3
    last = hashlib.sha256(httpd.variant(path, 2)).hexdigest()
    assert str(report.failures[0].error) == (
        f"sha256 mismatch for o.bin: expected {'a' * 64}, got {last}; kept as o.bin.omniget-part"
    )
    assert files(out) == ["o.bin.omniget-part"]


def test_a_wrong_digest_header_with_the_same_bytes_twice_stops(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The server's own Repr-Digest is wrong, the same at each answer, and so are its
    bytes: two requests, and the line says the server is at fault."""
    data = payload(64 * KiB, 35)
    path = httpd.new_path("h.bin")
    httpd.add(path, data)
    report, _, out = fetch(httpd.url(path, digest="bad"), tmp_path)
    assert report.exit_code == 4
    assert len(httpd.requests_to(path)) == 2
    message = str(report.failures[0].error)
    assert message.startswith("sha256 mismatch for h.bin: expected ")
    assert message.endswith(
        f", got {hashlib.sha256(data).hexdigest()} twice (the server sends the same bytes and"
        " the same digest of them each time: one of the two is wrong); kept as"
        " h.bin.omniget-part"
    )
    assert files(out) == ["h.bin.omniget-part"]


def test_forced_gzip_saves_identity_bytes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    fetch_whole(httpd, tmp_path, "g.txt", b"hello gzip world\n" * 5000, gzip=1)


@pytest.mark.parametrize(
    ("name", "content_type", "disposition"),
    [("pkg.tar.gz", "application/x-tar", None), ("pkg.TGZ", "application/octet-stream", None),
     ("pkg", "application/gzip", None), ("pkg", "application/x-gzip; charset=binary", None),
     ("get", "application/x-tar", 'attachment; filename="pkg.tar.gz"'),
     ("get", "application/x-tar", "attachment; filename*=UTF-8''pkg.tgz")],
)
def test_a_gzip_file_labelled_with_its_encoding_is_saved_as_served(
    httpd: HTTPServer, tmp_path: Path, name: str, content_type: str, disposition: str | None
) -> None:
    """A server that gives a .gz file's own compression as the answer's Content-Encoding
    (Apache's ``AddEncoding x-gzip .gz``, say; the name in the URL or the one the server
    gives) sends the file as it is on its disk: saved so, as curl, wget, wget2 and aria2c
    save it, by a list's files (libcurl's transfer, then pipelined) and by stream().
    Before: decompressed, a tar named pkg.tar.gz that ``tar xzf`` refused. A text file
    forced into gzip is still decoded (above)."""
    packed = gzip.compress(b"the bytes of a tar archive\n" * 4000, mtime=0)
    headers = {"Content-Encoding": "x-gzip"}
    if disposition is not None:  # (the name the server gives)
        headers["Content-Disposition"] = disposition
    urls = [httpd.add(httpd.new_path(name), packed, content_type=content_type, headers=headers)
            for _ in range(4)]
    out = tmp_path / "out"
    report = download([Item(u, filename=f"{i}-{name}") for i, u in enumerate(urls)], out,
                      settings=Settings(state_dir=tmp_path / "state"))
    assert report.succeeded, report.failures
    assert all(r.verified == "size" for r in report.results)
    assert [(out / f"{i}-{name}").read_bytes() == packed for i in range(4)] == [True] * 4
    sent = io.BytesIO()
    assert stream(urls[0], sent) == len(packed) and sent.getvalue() == packed


@pytest.mark.parametrize(
    ("codings", "pack"),
    [(["gzip", "gzip"], lambda b: gzip.compress(gzip.compress(b, mtime=0), mtime=0)),
     (["deflate", "gzip"], lambda b: gzip.compress(zlib.compress(b), mtime=0)),
     (["gzip", "identity"], lambda b: gzip.compress(b, mtime=0))],
    ids=["gzip-gzip", "deflate-gzip", "gzip-identity"],
)
def test_codings_given_in_several_content_encoding_lines_are_all_undone(
    httpd: HTTPServer, tmp_path: Path, codings: list[str], pack: Callable[[bytes], bytes]
) -> None:
    """Content-Encoding given in two lines is one list of codings (RFC 9110 5.3), as in
    one line: every one is undone, by libcurl's transfer and on a pipelined connection.
    Before: only the last line's was, and the file kept with the first coding's bytes,
    exit 0."""
    data = b"a line of a text stacked in two codings\n" * 5000
    body = pack(data)
    headers = [("Content-Type", "text/plain")] + [("Content-Encoding", c) for c in codings]
    urls = [httpd.handle(httpd.new_path("s.txt"), lambda _req: (200, headers, body))
            for _ in range(4)]
    out = tmp_path / "out"
    report = download([Item(u, filename=f"{i}.txt") for i, u in enumerate(urls)], out,
                      settings=Settings(state_dir=tmp_path / "state"))
    assert report.succeeded, report.failures
    assert [(out / f"{i}.txt").read_bytes() == data for i in range(4)] == [True] * 4
    sent = io.BytesIO()
    assert stream(urls[0], sent) == len(data) and sent.getvalue() == data


@pytest.mark.parametrize("digest", ["1", "bad"])
def test_a_digest_of_the_gzip_body_is_checked_on_the_gzip_bytes(
    httpd: HTTPServer, tmp_path: Path, digest: str
) -> None:
    """The server's Repr-Digest and Content-MD5 are of its gzip bytes, not of the file:
    right, the file is saved; wrong (every time), it fails with exit 4 and no file."""
    data = b"a line of text that compresses\n" * 20000
    path = httpd.new_path("d.txt")
    httpd.add(path, data)
    report, events, out = fetch(httpd.url(path, gzip=1, digest=digest), tmp_path, retries=2)
    if digest == "1":
        assert report.exit_code == 0, report.failures
        assert (out / "d.txt").read_bytes() == data
        assert not any(isinstance(e, Retrying) for e in events)
    else:
        assert report.exit_code == 4
        assert "fails its sha256" in str(report.failures)
        assert not (out / "d.txt").exists()
        assert len(httpd.requests_to(path)) == 3  # the first answer and 2 retries


HOSTILE = [
    "../../etc/passwd",
    "/etc/passwd",
    "..\\..\\win.ini",
    "a\x00b.txt",
    "evil\x1b[31m.txt",
    "invoice\u202egpj.exe",
    "CON",
    "nul.txt",
    "x" * 1000,
    "..",
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_content_disposition_stays_inside(
    httpd: HTTPServer, tmp_path: Path, name: str
) -> None:
    path = httpd.new_path("plain.bin")
    httpd.add(path, b"data")
    url = (
        httpd.url(path, cdraw=f'attachment; filename="{name}"')
        if "\x00" not in name
        else (httpd.url(path, cdstar=name))
    )
    report, _, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "state" not in p.parts]
    assert len(written) == 1
    target = written[0]
    assert target.parent == out
    assert target.read_bytes() == b"data"
    raw = target.name
    assert "/" not in raw and "\\" not in raw and "\x00" not in raw and "\u202e" not in raw
    assert len(raw.encode()) <= 255
    assert raw.upper().split(".")[0] not in {"CON", "NUL"}


def test_redirect_loop_is_refused(httpd: HTTPServer, tmp_path: Path) -> None:
    path = httpd.new_path("loop.bin")
    httpd.add(path, b"x")
    report, _, out = fetch(httpd.url(path, loop=1), tmp_path)
    assert report.exit_code == 3
    assert len(httpd.requests_to(path)) <= 12
    assert files(out) == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_redirect_to_other_schemes_is_refused(
    httpd: HTTPServer, tmp_path: Path, target: str
) -> None:
    path = httpd.new_path("r.bin")
    httpd.add(path, b"x")
    report, _, out = fetch(httpd.url(path, redirect=target), tmp_path)
    assert report.exit_code == 3
    assert target.split(":")[0] in str(report.failures[0].error)
    assert files(out) == []


def test_cross_origin_redirect_drops_credentials(
    httpd: HTTPServer, httpd2: HTTPServer, tmp_path: Path
) -> None:
    other = httpd2.new_path("there.bin")
    httpd2.add(other, b"moved")
    path = httpd.new_path("here.bin")
    httpd.add(path, b"x")
    item = Item(
        httpd.url(path, redirect=httpd2.url(other)),
        filename="there.bin",
        headers={"Authorization": "Bearer s3cret", "Cookie": "sid=1", "X-Api-Key": "k"},
        secret_headers=("X-Api-Key",),
    )
    report, _, out = fetch("", tmp_path, item=item)
    assert report.exit_code == 0, report.failures
    assert (out / "there.bin").read_bytes() == b"moved"
    first = httpd.requests_to(path)[0]
    assert first.header("authorization") == "Bearer s3cret"
    (hop,) = httpd2.requests_to(other)
    for name in ("authorization", "cookie", "x-api-key"):
        assert hop.header(name) is None, name


def test_a_refusal_after_a_redirect_names_the_server_that_refused(
    httpd: HTTPServer, httpd2: HTTPServer, tmp_path: Path
) -> None:
    other = httpd2.new_path("there.bin")
    httpd2.add(other, b"moved")
    path = httpd.new_path("here.bin")
    httpd.add(path, b"x")
    there = httpd2.url(other, auth="u:p")
    report, _, _ = fetch(httpd.url(path, redirect=there), tmp_path)
    assert report.exit_code == 5
    message = str(report.failures[0].error)
    # (it named the first URL alone: as if its server, which only redirected, had refused;
    # its auth= is masked, as every secret of a URL in a message)
    shown = there.replace("auth=u%3Ap", "auth=***")
    assert message.startswith(f"access refused (HTTP 401 from {shown}, redirected from ")
    # no redirect: the URL as asked, even when what was sent differs (encoded, no user)
    spaced = httpd2.new_path("a b.bin")
    httpd2.add(spaced, b"x")
    asked = httpd2.url(spaced, auth="u:p").replace("//", "//x:y@", 1).replace("%20", " ")
    assert " " in asked
    report, _, _ = fetch(asked, tmp_path)
    assert report.exit_code == 5
    assert "HTTP 401 from" in str(report.failures[0].error)
    assert "redirected" not in str(report.failures[0].error)


def test_self_signed_certificate(httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path) -> None:
    path = httpsd.new_path("tls.bin")
    httpsd.add(path, b"secure")
    url = httpsd.url(path)
    report, _, out = fetch(url, tmp_path / "a")
    assert report.exit_code == 3
    assert "--ca-cert" in str(report.failures[0].error)
    assert files(out) == []
    ok, _, out = fetch(url, tmp_path / "b", network=NetworkSettings(ca_cert=str(tls_ca_path)))
    assert ok.exit_code == 0 and (out / "tls.bin").read_bytes() == b"secure"
    ok, _, out = fetch(url, tmp_path / "c", network=NetworkSettings(insecure=True))
    assert ok.exit_code == 0


def test_https_to_a_plain_http_server_fails_without_retries(
    nginx: NginxServer, tmp_path: Path
) -> None:
    """nginx answers the TLS hello with a 400 in plain text: the handshake fails with
    "wrong version number", which no retry can help (curl does not retry it either).
    Before, it was retried like a dropped connection (14 s from the CLI)."""
    url = nginx.add("plain.bin", b"plain").replace("http://", "https://", 1)
    report, events, out = fetch(url, tmp_path)
    assert report.exit_code == 3
    assert "plain http:// server" in str(report.failures[0].error)
    assert not [e for e in events if isinstance(e, Retrying)]
    assert files(out) == []


def test_http_to_a_tls_server_that_answers_in_tls_fails_without_retries(
    httpd_factory: Callable[..., HTTPServer], tls_ca_path: Path, tmp_path: Path
) -> None:
    """http:// typed for https://, to a server that answers a plain request with a TLS
    alert (as Java's does): one try, a message naming the https:// URL, which works."""
    server = httpd_factory(tls=True)
    server.plain_answer = JSSE_ALERT
    path = server.new_path("tls.bin")
    https = server.add(path, b"secure")
    url = "http" + https[5:]
    report, events, out = fetch(url, tmp_path / "a")
    assert report.exit_code == 3
    assert str(report.failures[0].error).startswith(
        f"{url} did not answer in HTTP (if it speaks TLS, use {https}): ")
    assert not [e for e in events if isinstance(e, Retrying)]
    assert files(out) == [] and server.requests == []
    ok, _, out = fetch(https, tmp_path / "b", network=NetworkSettings(ca_cert=str(tls_ca_path)))
    assert ok.exit_code == 0 and (out / "tls.bin").read_bytes() == b"secure"


def test_http_to_a_tls_server_that_only_closes_keeps_its_retries(
    httpsd: HTTPServer, tmp_path: Path
) -> None:
    """An OpenSSL server sends no byte to a plain request: a reset, as from a server
    that fails mid-request, which is retried (omniget cannot tell them apart)."""
    path = httpsd.new_path("tls.bin")
    url = "http" + httpsd.add(path, b"secure")[5:]
    report, events, _ = fetch(url, tmp_path, retries=2)
    assert report.exit_code == 3
    assert len([e for e in events if isinstance(e, Retrying)]) == 2
    assert "TLS" not in str(report.failures[0].error)


def test_a_dead_mirror_is_left_at_once_for_a_live_one(
    httpd: HTTPServer, tmp_path: Path, refused_port: int
) -> None:
    """The first URL refuses connections: every span goes to the mirror at once, and no
    new span is sent to the dead one. Before, each span waited and retried it (a screen
    of "retry" lines for one dead mirror)."""
    dead = f"http://127.0.0.1:{refused_port}/m.bin"
    data = random.Random(5).randbytes(3 * MiB)
    good = httpd.add(httpd.new_path("m.bin"), data) + "?drip=20000000"
    item = Item(dead, mirrors=(good,), filename="m.bin")
    report, events, out = fetch("", tmp_path, item=item, split=4)
    assert report.exit_code == 0, report.failures
    assert (out / "m.bin").read_bytes() == data
    assert not [e for e in events if isinstance(e, Retrying)]
    warned = [e for e in events if isinstance(e, Warned)]
    assert len(warned) == 1 and "trying a mirror" in warned[0].message


@pytest.mark.parametrize("other", ["smaller", "larger"])
def test_a_mirror_of_another_size_is_left_for_the_others(
    httpd: HTTPServer, tmp_path: Path, other: str
) -> None:
    """A "mirror" (an -i line's second URL) whose file has another size is another file:
    it is dropped with a word and the download goes on from the first URL. Before, its
    answer counted as the file changing on the server: every byte was dropped, three
    times, and the file failed (exit 3)."""
    data = random.Random(6).randbytes(4 * MiB)
    good = httpd.add(httpd.new_path("s.bin"), data) + "?drip=20000000"
    size = 1 * MiB if other == "smaller" else 6 * MiB
    wrong = httpd.add(httpd.new_path("s.bin"), random.Random(7).randbytes(size))
    item = Item(good, mirrors=(wrong,), filename="s.bin")
    report, events, out = fetch("", tmp_path, item=item, split=4)
    assert report.exit_code == 0, report.failures
    assert (out / "s.bin").read_bytes() == data
    warned = [e.message for e in events if isinstance(e, Warned)]
    assert len(warned) == 1 and f"{size} bytes, not {len(data)}" in warned[0], warned


@pytest.mark.parametrize("first", ["dead", "missing", "cut", "other-size"])
def test_a_stream_goes_on_from_a_mirror(
    httpd: HTTPServer, refused_port: int, first: str
) -> None:
    """-O - with an -i line of mirrors: the stream takes them as a download into a file
    does. Before, only the first URL was ever asked (a dead one: exit 3 and nothing out,
    however good the mirror)."""
    data = random.Random(8).randbytes(600 * KiB)
    good = httpd.add(httpd.new_path("st.bin"), data)
    if first == "dead":
        bad = f"http://127.0.0.1:{refused_port}/st.bin"
    elif first == "missing":
        bad = httpd.url(httpd.new_path("st.bin"))
    elif first == "cut":  # the same bytes, cut after 200 KB every time
        bad = httpd.add(httpd.new_path("st.bin"), data) + "?reset=200000"
    else:  # asked once the good one is cut: another file, left for the good one again
        bad = httpd.add(httpd.new_path("st.bin"), random.Random(9).randbytes(KiB))
    events: list[Event] = []
    out = io.BytesIO()
    item = Item(bad, mirrors=(good,), filename="st.bin")
    if first == "other-size":
        item = Item(good + "?reset=200000&times=1", mirrors=(bad,), filename="st.bin")

    written = stream(item, out, settings=Settings(retries=2), on_event=events.append)

    assert written == len(data) and out.getvalue() == data
    assert any("trying a mirror" in e.message for e in events if isinstance(e, Warned))


def test_a_stream_resumed_with_a_wrong_byte_range_splices_nothing(httpd: HTTPServer) -> None:
    """-O -: the resumed request's 206 starts elsewhere than asked (badrange). Its bytes
    went out as the rest of the stream (exit 0, the wrong bytes); now the next request
    asks for the whole body, and the bytes already out are skipped."""
    data = random.Random(10).randbytes(600 * KiB)
    path = httpd.new_path("w.bin")
    httpd.add(path, data)
    out = io.BytesIO()
    url = httpd.url(path, reset=200_000, badrange=1, times=2)
    written = stream(Item(url, filename="w.bin"), out, settings=Settings(retries=3))
    assert written == len(data) and out.getvalue() == data
    asked = [(r.header("range"), r.status) for r in httpd.requests_to(path)]
    assert asked == [(None, 200), ("bytes=200000-", 206), (None, 200)]


def test_a_stream_answered_with_a_206_from_elsewhere_writes_nothing(
    httpd: HTTPServer,
) -> None:
    """-O -: a request without Range answered with a 206 of bytes 500 on (its bytes went
    out as the stream's start, then a resume asked for more: exit 0, the wrong bytes)."""
    data = random.Random(11).randbytes(100 * KiB)
    path = httpd.new_path("e.bin")
    elsewhere = (206, [("Content-Range", f"bytes 500-{len(data) - 1}/{len(data)}")], data[500:])
    httpd.handle(path, ranges_from(data, lambda: elsewhere))
    out = io.BytesIO()
    with pytest.raises(TransientError, match="the server answered a wrong byte range"):
        stream(Item(httpd.url(path), filename="e.bin"), out, settings=Settings(retries=2))
    assert out.getvalue() == b""
    assert [r.header("range") for r in httpd.requests_to(path)] == [None] * 3


def test_bytes_past_the_end_of_a_206_s_range_do_not_go_out_in_a_stream(
    httpd: HTTPServer,
) -> None:
    """-O -: the same 206 (see test_bytes_past_the_end_of_a_206_s_range_are_not_written):
    its bytes past its range went out as the rest of the stream."""
    data = random.Random(12).randbytes(600 * KiB)
    path = httpd.new_path("o.bin")
    httpd.handle(path, overflowing_once(data))
    out = io.BytesIO()
    url = httpd.url(path, truncate=100 * KiB, times=1)
    assert stream(Item(url, filename="o.bin"), out, settings=Settings(retries=2)) == len(data)
    assert out.getvalue() == data
    asked = [r.header("range") for r in httpd.requests_to(path)]
    assert asked == [None, f"bytes={100 * KiB}-", f"bytes={100 * KiB + 100}-"]


def test_a_stream_from_a_server_that_sends_fewer_bytes_than_asked_goes_on_at_once(
    httpd: HTTPServer,
) -> None:
    """-O -: each answer a whole 206 of 256 KiB at most: each was a failed try, with a
    backoff before the next part."""
    data = random.Random(13).randbytes(3 * MiB)
    path = httpd.new_path("k.bin")
    httpd.handle(path, capped(data, 256 * KiB))
    out = io.BytesIO()
    events: list[Event] = []
    item = Item(httpd.url(path), filename="k.bin")
    assert stream(item, out, settings=Settings(retries=2), on_event=events.append) == len(data)
    assert out.getvalue() == data
    assert not [e for e in events if isinstance(e, Retrying)]
    assert len(httpd.requests_to(path)) == 12


def test_a_stream_whose_resume_is_answered_with_a_shorter_file_fails(httpd: HTTPServer) -> None:
    """-O -: the body of unknown length was cut; the resume's answer is a whole body
    shorter than the bytes already out (the file changed). The stream ended there, as
    if whole (exit 0)."""
    old, new = random.Random(14).randbytes(45 * KiB), random.Random(15).randbytes(1000)
    path = httpd.new_path("s.bin")
    answers: Iterator[Answer] = iter([(200, [], old)])
    httpd.handle(path, lambda req: next(answers, (200, [], new)))
    out = io.BytesIO()
    url = httpd.url(path, chunked=1, chunked_truncate=44 * KiB, times=1)
    with pytest.raises(TransientError, match="the file changed on the server while streaming"):
        stream(Item(url, filename="s.bin"), out, settings=Settings(retries=1))
    assert out.getvalue() == old[: 44 * KiB]


def test_a_stream_cut_after_a_few_bytes_each_time_gives_up_after_its_retries(
    httpd: HTTPServer,
) -> None:
    """-O -: every answer is cut after 1000 bytes. Any byte more reset the count of
    tries, so the stream went on for as long as its backoff budget (retry_max_time),
    hundreds of requests by default; a download into a file gives up after its retries
    (a try counts as a success from a checkpoint's worth of bytes)."""
    path = httpd.new_path("c.bin")
    httpd.add(path, random.Random(16).randbytes(600 * KiB))
    out = io.BytesIO()
    settings = Settings(retries=2, retry_max_time=8.0)
    with pytest.raises(TransientError, match=r"\(gave up after 2 retries\)"):
        stream(Item(httpd.url(path, reset=1000), filename="c.bin"), out, settings=settings)
    assert len(httpd.requests_to(path)) == 3


def test_a_stream_whose_last_chunk_is_lost_ends_on_the_416(httpd: HTTPServer) -> None:
    """-O -: every byte went out, but the connection closed before the terminating chunk;
    the resume from the end gets 416 with ``bytes */SIZE``, which says the stream is
    whole (a download into a file takes it so). The stream failed: "HTTP 416"."""
    data = random.Random(17).randbytes(40 * KiB)
    path = httpd.new_path("c.bin")
    httpd.add(path, data)
    out = io.BytesIO()
    events: list[Event] = []
    url = httpd.url(path, chunked=1, chunked_truncate=len(data), times=1)
    written = stream(Item(url, filename="c.bin"), out, settings=Settings(retries=2),
                     on_event=events.append)
    assert written == len(data) and out.getvalue() == data
    assert [(e.size, e.verified) for e in events if isinstance(e, Finished)] == [
        (len(data), "size")
    ]
    asked = [(r.header("range"), r.status) for r in httpd.requests_to(path)]
    assert asked == [(None, 200), (f"bytes={len(data)}-", 416)]


def test_a_stream_resumed_after_a_last_modified_change_splices_nothing(
    httpd: HTTPServer,
) -> None:
    """-O -: no ETag, and the file changed (its Last-Modified with it) after the first
    answer was cut. The resume sent no If-Range and took the new file's 206 as the rest
    of the old one (exit 0, a file that never was); a download into a file sends
    Last-Modified as its If-Range."""
    data = random.Random(18).randbytes(600 * KiB)
    path = httpd.new_path("m.bin")
    httpd.add(path, data)
    out = io.BytesIO()
    url = httpd.url(path, noetag=1, etag_change=1, reset=200_000, times=1)
    with pytest.raises(TransientError, match="the file changed on the server while streaming"):
        stream(Item(url, filename="m.bin"), out, settings=Settings(retries=1))
    assert out.getvalue() == data[:200_000]
    res = httpd.lookup(path)
    assert res is not None
    _, *resumed = httpd.requests_to(path)
    assert resumed and all(r.header("if-range") == res.last_modified for r in resumed)


def test_a_stream_resumed_from_a_file_of_another_size_splices_nothing(
    httpd: HTTPServer,
) -> None:
    """-O -: no validators; the resume's 206 says the file has another size now. It was
    taken as the rest of the old file (only a mirror's size was checked)."""
    old, new = random.Random(19).randbytes(600 * KiB), random.Random(20).randbytes(700 * KiB)
    path = httpd.new_path("z.bin")
    httpd.handle(path, ranges_from(new, lambda: (200, [], old)))
    out = io.BytesIO()
    url = httpd.url(path, truncate=200_000, times=1)
    with pytest.raises(TransientError, match="the file changed on the server while streaming"):
        stream(Item(url, filename="z.bin"), out, settings=Settings(retries=1))
    assert out.getvalue() == old[:200_000]


def ranges_of_gzip(data: bytes) -> Callable[[LoggedRequest], Answer]:
    """``data`` whole to a request without Range; to one with Range, a 206 of the gzip
    of it from there (Content-Encoding: gzip, a Content-Range of the compressed bytes),
    which cannot be decoded from its middle."""
    packed = gzip.compress(data, 1, mtime=0)

    def answer(req: LoggedRequest) -> Answer:
        rng = req.header("range")
        if rng is None:
            return 200, [("Accept-Ranges", "bytes")], data
        a = int(rng.removeprefix("bytes=").partition("-")[0])
        cr = ("Content-Range", f"bytes {a}-{len(packed) - 1}/{len(packed)}")
        return 206, [("Content-Encoding", "gzip"), cr], packed[a:]

    return answer


def test_a_resume_that_comes_as_a_range_of_gzip_bytes_asks_for_the_whole_body(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    data = random.Random(22).randbytes(300 * KiB) + bytes(range(256)) * 1200
    path = httpd.new_path("g.bin")
    httpd.handle(path, ranges_of_gzip(data))
    report, _, out = fetch(httpd.url(path, truncate=100 * KiB, times=1), tmp_path, split=1)
    assert report.exit_code == 0, report.failures
    assert (out / "g.bin").read_bytes() == data
    asked = [r.header("range") for r in httpd.requests_to(path)]
    assert asked == [None, f"bytes={100 * KiB}-{len(data) - 1}", None]


def test_a_stream_whose_resume_comes_as_a_range_of_gzip_bytes_asks_for_the_whole_body(
    httpd: HTTPServer,
) -> None:
    """-O -: the resume's 206 is a range of gzip bytes (see ranges_of_gzip). The stream
    asked for it again until its retries ran out; a download into a file asks for the
    whole body instead, and so does it now."""
    data = random.Random(21).randbytes(300 * KiB) + bytes(range(256)) * 1200
    path = httpd.new_path("g.bin")
    httpd.handle(path, ranges_of_gzip(data))
    out = io.BytesIO()
    url = httpd.url(path, truncate=100 * KiB, times=1)
    assert stream(Item(url, filename="g.bin"), out, settings=Settings(retries=2)) == len(data)
    assert out.getvalue() == data
    asked = [r.header("range") for r in httpd.requests_to(path)]
    assert asked == [None, f"bytes={100 * KiB}-", None]


def test_a_compressed_body_does_not_continue_bytes_kept_from_a_cut_run(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip answer (whose Repr-Digest is of the compressed bytes) carries a flipped
    byte; the run is cut after that byte was decoded and saved. The rerun's answer is a
    whole, good gzip body again (no Range for compressed bodies): it must not be glued
    after the kept bytes, which no check covers. Before, the rerun skipped the kept
    bytes, verified its own compressed stream, and saved a file with the wrong byte."""
    data = random.Random(9).randbytes(600 * KiB)  # (incompressible: the flip stays one byte)
    path = httpd.new_path("z.bin")
    httpd.add(path, data)
    url = httpd.url(path, gzip=1, corrupt=1, times=1, digest="sha256", drip=800_000)
    settings = Settings(
        state_dir=tmp_path / "state", checkpoint_bytes=64 * KiB, checkpoint_seconds=0.05
    )
    cancel = threading.Event()
    # Progress every 20 ms: the cut lands within the last third however busy the machine
    # (at 0.25 s, one late tick under load let the first run finish)
    monkeypatch.setattr(job, "PROGRESS_EVERY", 0.02)

    def cut(event: Event) -> None:
        if isinstance(event, Progress) and event.done > 400 * KiB:  # past the flip
            cancel.set()

    first = download([url], tmp_path / "out", settings=settings, on_event=cut, cancel=cancel)
    assert first.interrupted == 1
    second = download([url], tmp_path / "out", settings=settings)
    assert second.exit_code == 0, second.failures
    assert (tmp_path / "out" / "z.bin").read_bytes() == data


@pytest.mark.parametrize("length", [4, 100_000])
def test_a_chunked_body_with_a_content_length_too_is_read_as_chunked(
    tmp_path: Path, length: int
) -> None:
    """Transfer-Encoding: chunked and a Content-Length both (RFC 9112 6.3: the chunked
    framing wins, as libcurl reads it). The Content-Length was taken for the file's size:
    "connection closed at byte 40960 of 100000", or "more than the 4 bytes expected",
    retried, then failed."""
    data = random.Random(23).randbytes(40 * KiB)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:KiB], data[KiB:]))

    def answer(req: Req, sock: socket.socket) -> bool:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nTransfer-Encoding: chunked"
        sock.sendall(head.encode() + b"\r\n\r\n" + chunks + b"0\r\n\r\n")
        return False

    with Server() as srv:
        srv.route("/c.bin", answer)
        report, _, out = fetch(srv.url("/c.bin"), tmp_path, retries=1)
        asked = len(srv.requests)
    assert report.exit_code == 0, report.failures
    assert (out / "c.bin").read_bytes() == data
    assert asked == 1


@pytest.mark.parametrize("shape", ["one-line-of-120k", "400-lines-of-1k"])
def test_a_head_too_large_is_said_so_and_not_retried(
    httpd: HTTPServer, tmp_path: Path, shape: str
) -> None:
    """A head past libcurl's bounds (a header line over 100 KiB, heads over 300 KiB) was
    "transfer failed, curl error 100", or "connection failed", and retried: the same
    server sends the same head again."""
    if shape == "one-line-of-120k":
        extra = [("X-Big", "a" * 120_000)]
    else:
        extra = [(f"X-H{i}", "b" * 1000) for i in range(400)]
    path = httpd.new_path("h.bin")
    url = httpd.handle(path, lambda req: (200, extra, b"data"))
    report, _, out = fetch(url, tmp_path, retries=2)
    assert report.exit_code == 3
    said = str(report.failures[0].error)
    assert said.startswith(f"the answer's head is too large ({url})"), said
    assert len(httpd.requests_to(path)) == 1
    assert files(out) == []


def test_404_is_exit_6_and_leaves_nothing(httpd: HTTPServer, tmp_path: Path) -> None:
    report, _, out = fetch(httpd.url("/nothing/here.bin"), tmp_path)
    assert report.exit_code == 6
    assert files(out) == []


def test_html_error_page_is_not_a_media_file(httpd: HTTPServer, tmp_path: Path) -> None:
    path = httpd.new_path("img.jpg")
    httpd.add(path, b"\xff\xd8jpeg")
    item = Item(httpd.url(path, body="html"), filename="img.jpg", expect="media")
    report, _, out = fetch("", tmp_path, item=item)
    assert report.exit_code == 3
    assert files(out) == []


def test_html_error_page_is_not_a_media_piece(httpd: HTTPServer, tmp_path: Path) -> None:
    """Before: only a plain download checked ``expect="media"``; an item of pieces (a DASH
    representation's segments, say) wrote the web page as a segment."""
    path = httpd.new_path("seg.m4s")
    httpd.add(path, b"\x00\x00\x00\x18ftyp")
    url = httpd.url(path, body="html")
    item = Item(url, filename="video.mp4", expect="media", pieces=(Piece(url),))
    report, _, out = fetch("", tmp_path, item=item, retries=0)
    assert report.exit_code == 3, report.failures
    assert "web page" in str(report.failures[0].error)
    assert "video.mp4" not in files(out)  # (its part file stays, as any failed file's)


def test_html_error_page_is_not_a_media_stream(httpd: HTTPServer, tmp_path: Path) -> None:
    """Before: ``stream`` (``-O -``) wrote the web page out as the file."""
    path = httpd.new_path("img.jpg")
    httpd.add(path, b"\xff\xd8jpeg")
    item = Item(httpd.url(path, body="html"), filename="img.jpg", expect="media")
    out = io.BytesIO()
    with pytest.raises(RemoteError, match="web page"):
        stream(item, out, settings=Settings(state_dir=tmp_path / "state", retries=0))
    assert out.getvalue() == b""


def test_close_delimited_body_without_digest_is_unverified(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    _, report, events = fetch_whole(httpd, tmp_path, "n.bin", payload(70 * KiB, 12), nolength=1)
    assert report.results[0].verified is None  # nothing could check it
    assert not os.path.exists(tmp_path / "out" / "n.bin.omniget-part")
    [warned] = [e for e in events if isinstance(e, Warned)]  # and the user is told so
    assert warned.message.startswith("not verified: the server gave no size or hash")



@pytest.mark.parametrize("digest", [None, "1"], ids=["unverified", "digest"])
def test_a_close_delimited_body_over_tls_without_close_notify_ends_it(
    httpsd: HTTPServer, payload: Callable[..., bytes], tls_ca_path: Path, tmp_path: Path,
    digest: str | None,
) -> None:
    """A server that closes its TLS connection without a close_notify (many do) at the end
    of a body without length: as a close ends such a body over plain http, unverified
    (or checked by the server's digest). libcurl calls it an error ("unexpected eof while
    reading"): each try fetched the whole file again, then it failed after 5 retries
    (curl 7.88 took the body; wget said a read error)."""
    data = payload(70 * KiB, 13)
    path = httpsd.new_path("t.bin")
    httpsd.add(path, data)
    query: dict[str, Any] = {"nolength": 1} | ({"digest": digest} if digest else {})
    net = NetworkSettings(stall_timeout=10.0, connect_timeout=5.0, ca_cert=str(tls_ca_path))
    report, events, out = fetch(httpsd.url(path, **query), tmp_path, network=net)
    assert report.exit_code == 0, report.failures
    assert (out / "t.bin").read_bytes() == data
    assert len(httpsd.requests_to(path)) == 1
    assert not [e for e in events if isinstance(e, Retrying)]
    warned = [e.message for e in events if isinstance(e, Warned)]
    if digest:
        assert report.results[0].verified is not None and warned == []
    else:
        assert report.results[0].verified is None
        assert len(warned) == 1 and warned[0].startswith("not verified: the server gave no")

@pytest.mark.parametrize("how", ["chunked", "gzip"])
def test_a_body_without_length_that_ends_by_its_own_framing_is_complete(
    httpd: HTTPServer, tmp_path: Path, how: str
) -> None:
    """A chunked body ends with its last chunk, a gzip stream with its trailer: a cut
    connection would fail them, so coming whole they are as good as a length."""
    data = b"some text that compresses well\n" * 4000
    query: dict[str, Any] = {"chunked": 1} if how == "chunked" else {"gzip": 1, "nolength": 1}
    _, report, events = fetch_whole(httpd, tmp_path, "c.txt", data, **query)
    assert report.results[0].verified == "size"
    assert not any(isinstance(e, Warned) for e in events)


def test_a_refused_connection_gets_two_quick_retries(tmp_path: Path, refused_port: int) -> None:
    """Nobody listens on the port (a typo, a stopped server): fail after two retries
    (1.5 s of backoff), not the full budget."""
    report, events, out = fetch(f"http://127.0.0.1:{refused_port}/x.bin", tmp_path)
    assert report.exit_code == 3
    assert "could not connect" in str(report.failures[0].error)
    # (the OS's reason, and the retries given up after)
    assert str(report.failures[0].error).endswith(": Connection refused (gave up after 2 retries)")
    assert [round(e.delay) for e in events if isinstance(e, Retrying)] in ([0, 1], [1, 1])
    assert files(out) == []


def test_a_part_file_cut_short_since_the_run_resumes_from_its_end(
    httpd: HTTPServer,
    payload: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal says more bytes are in than the part file holds (cut by hand, copied
    half-way): the rerun resumes where the file ends, not past a gap of zeros."""
    data = payload(3 * MiB, 61)
    path = httpd.new_path("cut.bin")
    httpd.add(path, data)
    url = httpd.url(path, drip=3_000_000)
    settings = Settings(
        state_dir=tmp_path / "state", split=1, checkpoint_bytes=64 * KiB, checkpoint_seconds=0.05
    )
    cancel = threading.Event()
    monkeypatch.setattr(job, "PROGRESS_EVERY", 0.02)

    def cut(event: Event) -> None:
        if isinstance(event, Progress) and event.done > 2 * MiB:
            cancel.set()

    first = download([url], tmp_path / "out", settings=settings, on_event=cut, cancel=cancel)
    assert first.interrupted == 1
    part = tmp_path / "out" / "cut.bin.omniget-part"
    os.truncate(part, 1 * MiB)
    events: list[Event] = []
    second = download([url], tmp_path / "out", settings=settings, on_event=events.append)
    assert second.exit_code == 0, second.failures
    assert (tmp_path / "out" / "cut.bin").read_bytes() == data
    assert any(isinstance(e, Warned) and "shorter" in e.message for e in events)
    assert httpd.requests[-1].header("range") == f"bytes={MiB}-{3 * MiB - 1}"


@pytest.mark.parametrize("blank", [" ", "\t"])
def test_a_length_with_a_blank_before_its_colon_is_ignored_as_curl_ignores_it(
    tmp_path: Path, blank: str
) -> None:
    """``Content-Length : 2`` (RFC 9112 5.1: no blank before the colon): libcurl ignores
    the field and reads the body to the close, as curl saves it. Before, omniget took the
    2 from it and failed the file with a size mismatch (exit 4)."""
    body = b"hello, whole body"
    head = f"HTTP/1.1 200 OK\r\nContent-Length{blank}: 2\r\nConnection: close\r\n\r\n"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        with contextlib.suppress(OSError):  # (closed at the end of the test)
            while True:  # (a retry would come back)
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(head.encode() + body)

    threading.Thread(target=answer, daemon=True).start()
    try:
        report, events, out = fetch(f"http://127.0.0.1:{port}/b.bin", tmp_path)
    finally:
        listener.close()
    assert report.exit_code == 0, report.failures
    assert (out / "b.bin").read_bytes() == body
    [warned] = [e for e in events if isinstance(e, Warned)]  # (close-delimited: unverified)
    assert warned.message.startswith("not verified: the server gave no size or hash")


@pytest.mark.parametrize("digest", ["sha256", "legacy"], ids=["repr-digest", "digest"])
def test_a_close_delimited_body_cut_short_is_caught_by_the_servers_digest(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, digest: str
) -> None:
    """No length: the cut answer ends as a whole one would. The server's Repr-Digest (or
    legacy Digest) tells them apart: fetched again, and the file says it was checked."""
    path, report, _ = fetch_whole(
        httpd, tmp_path, "cd.bin", payload(200 * KiB, 71), nolength=1, digest=digest,
        truncate=50_000, times=1,
    )
    assert len(httpd.requests_to(path)) == 2
    assert report.results[0].verified == "sha256"


def test_a_redirect_chain_that_never_ends_is_cut_at_a_bound(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Every hop a new URL (no loop to see): it stops after a bounded number of hops."""
    path = httpd.new_path("hops.bin")
    httpd.add(path, b"x")
    report, _, out = fetch(httpd.url(path, loop="hop"), tmp_path)
    assert report.exit_code == 3
    hops = [r.query.get("hop", "0") for r in httpd.requests_to(path)]
    assert 2 <= len(set(hops)) <= 50, hops
    assert "redirect" in str(report.failures[0].error)
    assert files(out) == []


@pytest.mark.parametrize("where", ["host", "scheme"])
def test_a_redirect_to_another_host_or_scheme_drops_credentials(
    httpd: HTTPServer, httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path, where: str
) -> None:
    """The same server under another host name (``localhost``, same port), or the same
    host over https: neither is the origin the secrets were given for."""
    target = httpd if where == "host" else httpsd
    other = target.new_path("there.bin")
    target.add(other, b"moved")
    there = target.url(other, host="localhost" if where == "host" else None)
    path = httpd.new_path("here.bin")
    httpd.add(path, b"x")
    item = Item(
        httpd.url(path, redirect=there),
        filename="there.bin",
        headers={"Authorization": "Bearer s3cret", "Cookie": "sid=1", "X-Api-Key": "k"},
        secret_headers=("X-Api-Key",),
    )
    net = NetworkSettings(stall_timeout=1.0, connect_timeout=5.0, ca_cert=str(tls_ca_path))
    report, _, out = fetch("", tmp_path, item=item, network=net)
    assert report.exit_code == 0, report.failures
    assert (out / "there.bin").read_bytes() == b"moved"
    assert httpd.requests_to(path)[0].header("authorization") == "Bearer s3cret"
    (hop,) = target.requests_to(other)
    for name in ("authorization", "cookie", "x-api-key"):
        assert hop.header(name) is None, name



def test_a_redirect_from_https_to_plain_http_drops_credentials_and_says_so(
    httpd: HTTPServer, httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path
) -> None:
    """A downgrade: as curl and wget, it is followed, without the secrets (another origin),
    and, unlike them, said once for the file: its bytes came unencrypted, unverified
    (before: nothing was said, and the run looked like an https one)."""
    other = httpd.new_path("plain.bin")
    httpd.add(other, b"over plain http" * 100)
    path = httpsd.new_path("secure.bin")
    httpsd.add(path, b"x")
    item = Item(
        httpsd.url(path, redirect=httpd.url(other)),
        filename="plain.bin",
        headers={"Authorization": "Bearer s3cret", "Cookie": "sid=1", "X-Api-Key": "k"},
        secret_headers=("X-Api-Key",),
    )
    net = NetworkSettings(stall_timeout=1.0, connect_timeout=5.0, ca_cert=str(tls_ca_path))
    report, events, out = fetch("", tmp_path, item=item, network=net)
    assert report.exit_code == 0, report.failures
    assert (out / "plain.bin").read_bytes() == b"over plain http" * 100
    assert httpsd.requests_to(path)[0].header("authorization") == "Bearer s3cret"
    (hop,) = httpd.requests_to(other)
    for name in ("authorization", "cookie", "x-api-key"):
        assert hop.header(name) is None, name
    warned = [e.message for e in events if isinstance(e, Warned)]
    said = (f"redirected from https:// to plain http:// ({httpd.url(other)}): the file comes"
            " unencrypted, its server unverified")
    assert warned == [said], warned
    # and to a stream (-O -)
    events.clear()
    sent = io.BytesIO()
    settings = Settings(state_dir=tmp_path / "state", network=net)
    assert stream(item, sent, settings=settings, on_event=events.append) == 1500
    assert sent.getvalue() == b"over plain http" * 100
    assert [e.message for e in events if isinstance(e, Warned)] == [said]
    assert httpd.requests_to(other)[-1].header("authorization") is None

def test_a_connection_that_never_gets_through_is_abandoned_and_retried(
    tmp_path: Path,
) -> None:
    """A server whose kernel takes the connection but which never answers the TLS
    handshake: the connect timeout ends each try, and the file fails after its retries
    (the waits between them on the fake clock). A stall window as long leaves a
    connecting transfer to it: "timed out", never "stalled" (as the race came out)."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        url = f"https://127.0.0.1:{mute.getsockname()[1]}/x.bin"
        net = NetworkSettings(stall_timeout=1.0, connect_timeout=1.0)
        report, events, out = fetch(url, tmp_path, network=net, retries=1)
    assert report.exit_code == 3
    assert "timed out" in str(report.failures[0].error)
    assert sum(isinstance(e, Retrying) for e in events) == 1
    assert files(out) == []


@pytest.mark.parametrize("first", ["x", "x.omniget-part"])
def test_an_item_named_as_another_s_part_file_takes_another_name(
    httpd: HTTPServer, tmp_path: Path, first: str
) -> None:
    """Items "x" and "x.omniget-part" in one run: the second was skipped as "exists"
    while x's part file stood in its place (none of its bytes anywhere), or x failed,
    its part file "replaced" by the other's finished file."""
    data = {"x": b"1" * 3_000_000, "x.omniget-part": b"2" * 3_000_000}
    urls = {name: httpd.add(httpd.new_path(f"{n}.bin"), data[name]) + "?drip=6000000"
            for n, name in enumerate(data)}
    order = [first, *(name for name in data if name != first)]
    report, _, out = fetch([Item(urls[name], filename=name) for name in order], tmp_path)
    assert [r.status for r in report.results] == ["ok", "ok"], report.failures
    assert (out / "x").read_bytes() == data["x"]
    assert (out / "x.omniget-part_").read_bytes() == data["x.omniget-part"]
    assert sorted(p.name for p in out.iterdir()) == ["x", "x.omniget-part_"]


def test_names_from_the_url_path_and_from_a_source_stay_inside(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The URL's last segment (with encoded separators and dots) and a source's own names
    (an API's filename, a manifest's relative path, both hostile) all land inside the
    output folder, under safe names."""
    httpd.add("/d/../../up.bin", b"one")  # (the path as the server gets it, decoded)
    by_url = f"http://{httpd.host}:{httpd.port}/d/..%2F..%2Fup.bin"
    httpd.add("/api.bin", b"two")
    httpd.add("/manifest.bin", b"three")
    items = [
        Item(by_url, name_from_server=True),
        Item(httpd.url("/api.bin"), filename="../../api\x00CON.bin"),
        Item(httpd.url("/manifest.bin"), filename="m.bin", path="../../../etc/m.bin"),
    ]
    report, _, out = fetch(items, tmp_path)
    assert report.exit_code == 0, report.failures
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "state" not in p.parts]
    assert sorted(p.read_bytes() for p in written) == [b"one", b"three", b"two"]
    for p in written:
        rel = p.relative_to(out)  # (raises for one outside)
        assert not {"..", "."} & set(rel.parts) and "\x00" not in str(rel), rel
    assert (out / "up.bin").read_bytes() == b"one"


@pytest.mark.parametrize(
    "body", [b"\x0b\x02\x80hel", b"\x0b\x02\x80hello\x03"], ids=["cut", "whole"])
def test_a_coding_libcurl_undoes_leaves_the_file_unverified_and_said(
    httpd: HTTPServer, tmp_path: Path, body: bytes
) -> None:
    """A coding omniget does not undo itself (br: libcurl does) has no checked end:
    libcurl does not look for the coded stream's. Such a file is said unverified, as a
    body ended by a close is; before, a brotli stream cut short was saved as what it
    gave, exit 0, with no word."""
    headers = [("Content-Type", "text/plain"), ("Content-Encoding", "br")]
    url = httpd.handle(httpd.new_path("b.txt"), lambda _req: (200, headers, body))
    report, events, out = fetch(url, tmp_path)
    assert report.exit_code == 0, report.failures
    warned = [e for e in events if isinstance(e, Warned)]
    assert len(warned) == 1 and "not verified" in warned[0].message
    assert report.results[0].verified is None
    if body.endswith(b"\x03"):  # (the whole stream)
        assert (out / "b.txt").read_bytes() == b"hello"
