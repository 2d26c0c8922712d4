"""A download cut with bytes in its part file, resumed where the server no longer
honours Range (from the first answer, or after one that did): every answer is then the
whole file from byte 0, and the bytes kept are not said to be resumed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.integration._cli import omniget, start
from tests.integration.test_part_content import spans
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer
from tests.servers.wire import LoggedRequest

MiB = 1 << 20
SIZE = 32 * MiB
Answer = tuple[int, list[tuple[str, str]], bytes]


class Server:
    """``data`` with Range honoured until ``ranges`` is set False (then 200, whole)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.ranges = data, True

    def __call__(self, req: LoggedRequest) -> Answer:
        data = self.data
        head = [("ETag", '"v1"'), ("Last-Modified", "Sat, 21 Nov 2026 10:00:00 GMT")]
        asked = req.headers.get("range")
        if not self.ranges:
            return 200, head, data
        head.append(("Accept-Ranges", "bytes"))
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", asked or "")
        if m is None:
            return 200, head, data
        a, b = int(m[1]), int(m[2]) + 1 if m[2] else len(data)
        return 206, [*head, ("Content-Range", f"bytes {a}-{b - 1}/{len(data)}")], data[a:b]


def test_a_resume_with_holes_the_server_answers_whole_resumes_nothing(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Every byte kept comes again (its part file is the server's bytes, as wget would
    have it), in one stream: none is said to be resumed, and the file is fetched about
    once (was: "59.8 MiB (+5.2 MiB resumed)" of a 32 MiB file: a whole answer for each
    gap, and the kept ranges after the first gap still said to be resumed)."""
    server = Server(payload(SIZE, 87))
    path = httpd.new_path("f.bin")
    httpd.handle(path, server)
    url = httpd.url(path, hold="h", stall_after=3 * MiB)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(url, "-o", str(out), "--split", "4", state=state)
    try:
        assert httpd.held("h")
        wait_for(lambda: len(spans(state)) >= 3)  # (holes: ranges after gaps)
        proc.kill()
        proc.wait(30)
    finally:
        httpd.release("h")
    assert spans(state)[1][0] > spans(state)[0][1]
    server.ranges = False
    done = omniget(url, "-o", str(out), "--split", "4", state=state)
    assert done.returncode == 0, done.stderr
    assert (out / "f.bin").read_bytes() == server.data
    summary = done.stderr.splitlines()[-1]
    assert "resumed" not in summary, summary
    m = re.search(r"0 failed, ([\d.]+) MiB in", summary)
    assert m is not None and float(m[1]) < 1.5 * SIZE / MiB, summary


class Honours(Server):
    """``data`` with Range honoured at the first ``answers`` requests only."""

    def __init__(self, data: bytes, answers: int) -> None:
        super().__init__(data)
        self.answers = answers

    def __call__(self, req: LoggedRequest) -> Answer:
        self.answers -= 1
        self.ranges = self.answers >= 0
        return super().__call__(req)


def test_kept_bytes_sent_again_after_a_ranged_answer_are_not_said_to_be_resumed(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The rerun's first answer honours Range (the kept MiB is resumed, as its start
    says); cut, the retry's answer is the whole file from byte 0: the kept MiB comes
    again, and the summary does not say it was resumed (it said "+1.0 MiB resumed": the
    count was the one the file's start gave)."""
    server = Honours(payload(4 * MiB, 88), answers=2)
    path = httpd.new_path("f.bin")
    httpd.handle(path, server)
    url = httpd.url(path, reset=MiB, times=2)  # (each of the first two answers cut at 1 MiB)
    out, state = tmp_path / "out", tmp_path / "state"
    # (one connection: a split would add answers; a reset may lose bytes the client had
    # not read yet, so where each answer was cut is not asserted)
    cut = omniget(url, "-o", str(out), "--retries", "0", "--split", "1", state=state)
    assert cut.returncode == 3, cut.stderr
    ((start, kept),) = spans(state)
    assert start == 0 < kept <= MiB
    done = omniget(url, "-o", str(out), "--split", "1", state=state)
    assert done.returncode == 0, done.stderr
    assert (out / "f.bin").read_bytes() == server.data
    asked = [r.header("range") for r in httpd.requests_to(path)]
    assert len(asked) == 3 and asked[0] is None and asked[1] == f"bytes={kept}-{4 * MiB - 1}"
    assert asked[2] is not None  # (answered with the whole file)
    summary = done.stderr.splitlines()[-1]
    assert "resumed" not in summary, summary
