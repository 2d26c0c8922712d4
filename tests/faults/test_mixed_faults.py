"""Many files at once, each misbehaving its own way, through the real transport.

One run fetches files of several sizes (small ones pipelined on shared connections, large
ones split over several) while the fault server resets, truncates, refuses, corrupts or
reframes some of their answers. Whatever the mix, every file must end either complete with
exactly the server's bytes, or failed with nothing under its final name; files whose
faults stop within the retry budget must all succeed; and so again when a first run is
cut off midway and a second one resumes it. Seeded: a failure names its seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.faults._soak import run_maybe_cut, seeds
from tests.servers.httpd import HTTPServer

from omniget.engine import Report
from omniget.model import Item
from omniget.settings import NetworkSettings, Settings

KiB = 1024
MiB = 1024 * KiB

SIZES = (1, 16 * KiB, 40 * KiB, 300 * KiB, 3 * MiB)
SIZE_WEIGHTS = (1, 8, 4, 3, 1)


@dataclass
class Case:
    """One file of the run: its query, and what must come of it."""

    path: str
    size: int
    query: dict[str, Any] = field(default_factory=dict)
    fails: bool = False  # the fault never stops (or is not retryable)
    versions: tuple[int, ...] = (0,)  # which versions of the file may end up on disk
    mirror: dict[str, Any] | None = None  # a second URL of the same file: its query


def framing(rng: random.Random, case: Case) -> None:
    """How the answers are framed: plain, chunked, close-delimited, gzip, Range ignored."""
    mode = rng.choice(["plain", "plain", "plain", "chunked", "nolength", "gzip", "norange"])
    if mode != "plain":
        case.query[mode] = 1
    if mode == "nolength":
        case.query["digest"] = "sha256"  # else a cut body cannot be told from a whole one


def fault(rng: random.Random, case: Case) -> None:
    """At most one fault; ``times`` 1 or 2 (the retry budget is 5; 1 for a fault only the
    file's digest catches); now and then an error status for good."""
    q, size = case.query, case.size
    cut = rng.randrange(max(1, size // 2)) if size > 1 else 0
    choices = ["none", "none", "status", "reset", "truncate", "corrupt", "etag"]
    if "chunked" in q:
        choices.append("chunked_truncate")
    if size >= MiB and not any(k in q for k in ("norange", "gzip", "chunked", "nolength")):
        choices.append("badrange")
    kind = rng.choice(choices)
    if kind == "none":
        return
    times = rng.choice([1, 1, 2])
    if kind == "status":
        q["status"] = rng.choice([500, 502, 503, 429])
        if rng.random() < 0.5:
            q["retry_after"] = rng.choice([0, 1, 3])
    elif kind in ("reset", "truncate", "chunked_truncate"):
        if "nolength" in q and kind == "truncate":
            q["digest"] = "sha256"
        q[kind] = cut
    elif kind == "corrupt":
        q["corrupt"] = 1
        q["digest"] = "sha256"  # (undetectable otherwise: same length)
    elif kind == "etag":
        q["etag_change"] = 1
        case.versions = (0, 1)  # whole either way, never a mix
    elif kind == "badrange":
        q["badrange"] = 1
    if rng.random() < 0.1 and kind == "status":
        case.fails = True  # always: retried to the end of the budget, then failed
        return  # (a reset always is no failure: each answer brings bytes, Range the rest)
    q["times"] = times
    if kind == "etag" or kind == "corrupt" or (kind == "truncate" and "nolength" in q):
        # (bytes only the whole file's digest tells wrong, alike at two downloads, are
        # what the server sends: no third download, the file fails; see test_http_faults)
        q["times"] = 1


def plan(rng: random.Random, httpd: HTTPServer, count: int) -> list[Case]:
    cases = []
    for i in range(count):
        size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
        case = Case(httpd.new_path(f"m{i}.bin"), size)
        httpd.add(case.path, rng.randbytes(size))
        framing(rng, case)
        fault(rng, case)
        if rng.random() < 0.03:
            case.query, case.fails = {"status": 404}, True
        if rng.random() < 0.15 and case.versions == (0,):
            mirror(rng, case)
        cases.append(case)
    return cases


FRAMING = ("chunked", "nolength", "gzip", "norange", "digest")


def mirror(rng: random.Random, case: Case) -> None:
    """A mirror answering the same way (validators alike), with a passing fault of its
    own; a file whose first URL fails for good comes from it."""
    q = {k: v for k, v in case.query.items() if k in FRAMING}
    kind = rng.choice(["none", "status", "reset"])
    if kind == "status":
        q.update(status=503, times=1)
    elif kind == "reset" and case.size > 1:
        q.update(reset=case.size // 3, times=1)
    case.mirror = q
    case.fails = False  # (however the first URL fails, the mirror serves it)


def run(
    items: list[Item],
    tmp_path: Path,
    cut_after: float | None,
    rng: random.Random,
    ca: Path | None = None,
) -> Report:
    """One run of ``items``; with ``cut_after``, a first run is cut off after that many
    seconds (as by Ctrl+C) and a second one finishes from the journal. Connection caps,
    split and jobs vary with the seed."""
    settings = Settings(
        state_dir=tmp_path / "state",
        min_split_size=256 * KiB,
        connections_per_host=rng.choice([1, 2, 4, 4, 8]),
        split=rng.choice([None, None, None, 1, 3]),
        jobs=rng.choice([2, 16, 128, 128]),
        checkpoint_seconds=rng.choice([0.0, 0.5]),
        network=NetworkSettings(
            stall_timeout=2.0, connect_timeout=5.0, ca_cert=None if ca is None else str(ca)
        ),
    )

    return run_maybe_cut(settings, items, tmp_path / "out", cut_after)


@pytest.mark.parametrize("how", ["whole", "interrupted", "https"])
@pytest.mark.parametrize("seed", seeds(6))
def test_a_crowd_of_misbehaving_files(
    request: pytest.FixtureRequest, tmp_path: Path, seed: int, how: str
) -> None:
    """``whole``: one run; ``interrupted``: cut off midway, then resumed; ``https``: one
    run over TLS (libcurl alone: no pipelining there)."""
    httpd: HTTPServer = request.getfixturevalue("httpsd" if how == "https" else "httpd")
    ca = request.getfixturevalue("tls_ca_path") if how == "https" else None
    cut = how == "interrupted"
    rng = random.Random(seed)
    cases = plan(rng, httpd, 60)
    items = [
        Item(
            httpd.url(c.path, **c.query),
            filename=Path(c.path).name,
            mirrors=() if c.mirror is None else (httpd.url(c.path, k="m", **c.mirror),),
        )
        for c in cases
    ]
    report = run(items, tmp_path, rng.uniform(0.02, 0.3) if cut else None, rng, ca)

    by_name = {r.item.filename: r for r in report.results}
    assert len(by_name) == len(cases)
    out = tmp_path / "out"
    for c in cases:
        name = Path(c.path).name
        result = by_name[name]
        asked = [(r.header("range"), r.status, r.conn_id) for r in httpd.requests_to(c.path)]
        where = f"seed {seed}, {name} ({c.size} B, {c.query}); (range, status, conn): {asked}"
        if c.fails:
            assert result.status == "failed", where
            assert not (out / name).exists(), where
            continue
        done = ("ok", "skipped") if cut else ("ok",)  # (skipped: done by the first run)
        assert result.status in done, f"{where}: {result.error}"
        got = hashlib.sha256((out / name).read_bytes()).hexdigest()
        wanted = [hashlib.sha256(httpd.variant(c.path, v)).hexdigest() for v in c.versions]
        assert got in wanted, where
    failed = {Path(c.path).name for c in cases if c.fails}
    parts = {p.name.removesuffix(".omniget-part") for p in out.glob("*.omniget-part")}
    assert parts <= failed  # (a failed file keeps its bytes for a rerun)
