"""A run killed (SIGKILL) while a zlib piece or a piece of unknown size is half in, then
run again: the file comes exact, and nothing of the killed run is left beside it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from tests.faults.test_http_faults import fetch, files
from tests.servers.httpd import HTTPServer

from omniget.model import ByteRange, Digest, Item, Piece, Transform

KiB = 1024
CHILD = """
import json, sys
import omniget
from omniget.model import ByteRange, Digest, Item, Piece, Transform
spec = json.load(open(sys.argv[1]))
def digest(hexv):
    return None if hexv is None else Digest("md5", hexv)
pieces = tuple(
    Piece(p["url"], range=None if p["range"] is None else ByteRange(*p["range"]),
          size=p["size"], transform=Transform(p["transform"]),
          fetched_digest=digest(p["fetched"]), digest=digest(p["digest"]))
    for p in spec["pieces"]
)
item = Item(spec["url"], filename=spec["filename"], pieces=pieces, digest=digest(spec["digest"]))
omniget.download([item], sys.argv[2], settings=omniget.Settings(state_dir=sys.argv[3]))
"""


def spec(item: Item) -> str:
    """``item`` as the child makes it again (an Item does not pickle)."""
    def hexv(d: Digest | None) -> str | None:
        return None if d is None else d.hex

    return json.dumps({
        "url": item.download_url, "filename": item.filename,
        "digest": hexv(item.digest),
        "pieces": [{
            "url": p.url, "range": None if p.range is None else [p.range.start, p.range.end],
            "size": p.size, "transform": p.transform.value,
            "fetched": hexv(p.fetched_digest), "digest": hexv(p.digest),
        } for p in item.pieces],
    })


def md5(data: bytes) -> Digest:
    return Digest("md5", hashlib.md5(data).hexdigest())


@pytest.mark.parametrize("held", ["zlib", "appended"])
def test_a_run_killed_mid_piece_then_run_again_gives_the_exact_file(
    httpd: HTTPServer, tmp_path: Path, held: str
) -> None:
    rng = random.Random(3)
    head, middle, tail = (rng.randbytes(n) for n in (50 * KiB, 400 * KiB, 30 * KiB))
    stored = zlib.compress(middle)
    blob = httpd.add(httpd.new_path("blob.bin"), head + stored)
    seg = httpd.new_path("seg.bin")
    httpd.add(seg, tail)
    hold = {"hold": "z", "times": "1"}
    z_query = {**hold, "stall_after": str(100 * KiB)} if held == "zlib" else {}
    s_query = {**hold, "stall_after": str(10 * KiB)} if held == "appended" else {}
    pieces = (
        Piece(blob, range=ByteRange(0, len(head)), size=len(head), digest=md5(head)),
        Piece(httpd.url("/" + blob.split("/", 3)[3], **z_query),
              range=ByteRange(len(head), len(head) + len(stored)), size=len(middle),
              transform=Transform.ZLIB, fetched_digest=md5(stored), digest=md5(middle)),
        Piece(httpd.url(seg, **s_query), digest=md5(tail)),  # (appended: no offset known)
    )
    whole = head + middle + tail
    item = Item(blob, filename="k.bin", pieces=pieces, digest=md5(whole))
    out, state = tmp_path / "out", tmp_path / "state"
    (tmp_path / "item.json").write_text(spec(item))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "item.json"), str(out), str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert httpd.held("z", timeout=60), "the piece's answer never came"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    httpd.release("z")
    assert "k.bin" not in files(out) and "k.bin.omniget-part" in files(out)
    report, _, _ = fetch([item], tmp_path)
    assert report.exit_code == 0, report.failures
    assert (out / "k.bin").read_bytes() == whole
    assert files(out) == ["k.bin"] and sorted(p.name for p in out.iterdir()) == ["k.bin"]
