"""A split download cut with holes in its part file (ranges done after gaps), resumed
where the server no longer honours Range: every answer is the whole file from byte 0."""

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
