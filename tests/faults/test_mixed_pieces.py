"""Files assembled from pieces (as GOG depots are), fetched from a misbehaving server.

Each run builds a few files from pieces of every kind at once: zlib chunks and raw byte
ranges cut from a shared blob (some chunks shared between files), segments of unknown
size appended in order, each piece with digests before and after its transform. The blob
URLs reset, truncate, refuse, corrupt or misplace their answers now and then; half the
runs are cut off midway and resumed. Every file must end with exactly its bytes.
``OMNIGET_SOAK_SEEDS=200`` soaks (see _soak.py).
"""

from __future__ import annotations

import hashlib
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.faults._soak import run_maybe_cut, seeds
from tests.servers.httpd import HTTPServer

from omniget.engine import Report
from omniget.model import ByteRange, Digest, Item, Piece, Transform
from omniget.settings import NetworkSettings, Settings

KiB = 1024


def md5(data: bytes) -> Digest:
    return Digest("md5", hashlib.md5(data).hexdigest())


@dataclass
class Blob:
    """The server's shared blob: what is in it, and where each stored chunk sits."""

    data: bytearray = field(default_factory=bytearray)
    where: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # stored -> range

    def put(self, stored: bytes) -> ByteRange:
        if stored not in self.where:
            self.where[stored] = (len(self.data), len(self.data) + len(stored))
            self.data += stored
        start, end = self.where[stored]
        return ByteRange(start, end)


def blob_fault(rng: random.Random) -> dict[str, Any]:
    """The query of one piece's URL: at most one passing fault."""
    kind = rng.choice(["none", "none", "reset", "truncate", "status", "corrupt", "badrange"])
    times = rng.choice([1, 2])
    if kind == "reset":
        return {"reset": rng.randrange(1, 4000), "times": times}
    if kind == "truncate":
        return {"truncate": rng.randrange(0, 4000), "times": times}
    if kind == "status":
        return {"status": rng.choice([500, 503, 429]), "times": times}
    if kind in ("corrupt", "badrange"):
        return {kind: 1, "times": times}
    return {}


def build(
    rng: random.Random, httpd: HTTPServer, count: int
) -> tuple[list[Item], dict[str, bytes]]:
    blob, blob_path = Blob(), httpd.new_path("blob.bin")
    shared = [rng.randbytes(rng.randrange(1, 60 * KiB)) for _ in range(3)]
    plans: list[tuple[str, list[tuple[str, bytes, Any]]]] = []
    want: dict[str, bytes] = {}
    for i in range(count):
        name = f"p{i}.bin"
        parts: list[tuple[str, bytes, Any]] = []
        for _ in range(rng.randrange(1, 7)):
            kind = rng.choice(["zlib", "zlib", "raw", "shared", "segment"])
            size = rng.randrange(1, 90 * KiB)
            data = rng.choice(shared) if kind == "shared" else rng.randbytes(size)
            parts.append((kind, data, blob_fault(rng)))
        plans.append((name, parts))
    items = []
    for name, parts in plans:
        pieces, offset, out = [], 0, b""
        appended = any(kind == "segment" for kind, _, _ in parts)
        for kind, data, q in parts:
            if kind == "segment":  # its own URL, its size unknown: appended in order
                seg = httpd.new_path("seg.bin")
                httpd.add(seg, data)
                pieces.append(Piece(url=httpd.url(seg, **q), digest=md5(data)))
            else:
                stored = data if kind == "raw" else zlib.compress(data, 6)
                rng_ = blob.put(stored)
                pieces.append(
                    Piece(
                        url=httpd.url(blob_path, **q),
                        range=rng_,
                        offset=None if appended else offset,
                        size=len(data),
                        transform=Transform.IDENTITY if kind == "raw" else Transform.ZLIB,
                        fetched_digest=md5(stored),
                        digest=md5(data),
                    )
                )
            offset += len(data)
            out += data
        items.append(
            Item(
                httpd.url(blob_path),
                filename=name,
                size_bytes=None if appended else len(out),
                digest=md5(out),
                pieces=tuple(pieces),
            )
        )
        want[name] = out
    httpd.add(blob_path, bytes(blob.data))
    return items, want


def run(items: list[Item], tmp_path: Path, cut_after: float | None, rng: random.Random) -> Report:
    settings = Settings(
        state_dir=tmp_path / "state",
        connections_per_host=rng.choice([1, 4, 8]),
        jobs=rng.choice([1, 4, 128]),
        checkpoint_seconds=0.0,
        network=NetworkSettings(stall_timeout=2.0, connect_timeout=5.0),
    )

    return run_maybe_cut(settings, items, tmp_path / "out", cut_after)


@pytest.mark.parametrize("cut", [False, True], ids=["whole", "interrupted"])
@pytest.mark.parametrize("seed", seeds(6))
def test_files_of_pieces_from_a_misbehaving_server(
    httpd: HTTPServer, tmp_path: Path, seed: int, cut: bool
) -> None:
    rng = random.Random(seed)
    items, want = build(rng, httpd, 8)
    report = run(items, tmp_path, rng.uniform(0.01, 0.15) if cut else None, rng)
    out = tmp_path / "out"
    for result in report.results:
        name = result.item.filename
        pieces = [(p.url.partition("?")[2], p.range) for p in result.item.pieces]
        where = f"seed {seed}, {name}: {pieces}"
        assert result.status in (("ok", "skipped") if cut else ("ok",)), f"{where}: {result.error}"
        assert (out / name).read_bytes() == want[name], where
    assert sorted(p.name for p in out.iterdir()) == sorted(want)
