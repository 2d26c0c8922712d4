"""A resumed file's bytes on disk are shown from its start: its Started comes before its
first request, with them, not at its first answer (a file 40% done from an earlier run
showed no bar, or 0%, while its server did not answer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.events import Event, Failed, Started
from omniget.settings import Settings

KiB = 1024


def test_a_resumed_file_starts_with_its_bytes_before_any_answer(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    body = payload(1536 * KiB, 71)
    httpd.add("/a/x.bin", body)
    out, state = tmp_path / "out", tmp_path / "state"
    settings = Settings(state_dir=state, retries=0, split=1)
    first = download([httpd.url("/a/x.bin", reset=600 * KiB, times=1)], out,
                     settings=settings)
    assert first.failed == 1 and (out / f"x.bin{PART_SUFFIX}").exists()
    events: list[Event] = []
    again = download([httpd.url("/a/x.bin", status=503)], out, settings=settings,
                     on_event=events.append)
    assert again.failed == 1  # (no answer taken: a 503, no retry)
    kinds = [type(e).__name__ for e in events]
    assert "Started" in kinds and kinds.index("Started") < kinds.index("Failed"), kinds
    [started] = [e for e in events if isinstance(e, Started)]
    assert started.resumed >= 64 * KiB and started.size == len(body), started
    assert isinstance(events[-1], Failed)
