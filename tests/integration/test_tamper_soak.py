"""kill -9 a many-file CLI run at a random moment, then tamper with its part files, then
run again until it ends.

Each part file left gets one of: nothing, its start or the end of one of its recorded
ranges overwritten (the fingerprints see both), a byte in the middle of a range changed
(only a digest sees that: done to files whose server sends Repr-Digest, others get
nothing), another file's bytes copied over it with ``cp`` (the same inode, cut to that
file's shorter length), a cut, or a new file of foreign bytes in its place. The last run
must end with exit 0, every file byte-exact, and nothing else in the folder. Seeded;
``OMNIGET_SOAK_SEEDS=50`` soaks (see tests/faults/_soak.py).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from tests.faults._soak import run_to_end, seeds, spawn
from tests.servers.httpd import HTTPServer

from omniget.engine.assemble import PART_SUFFIX
from omniget.engine.journal import FILENAME, Journal
from omniget.engine.prints import PRINT_BYTES

KiB = 1024
MiB = 1024 * KiB
MUTATIONS = ("nothing", "start", "end", "middle", "cp", "truncate", "replace")


def recorded(state: Path) -> dict[str, list[tuple[int, int]]]:
    """The byte ranges the journal in ``state`` claims, by part file name."""
    if not (state / FILENAME).exists():
        return {}
    out: dict[str, list[tuple[int, int]]] = {}
    with Journal.in_dir(state) as journal:
        for key, _ in journal.unfinished():
            rec = journal.get(key)
            if rec is not None:
                out[Path(rec.path).name + PART_SUFFIX] = journal.spans(key)
    return out


def overwrite(path: Path, at: int, n: int, rng: random.Random) -> None:
    """Change ``n`` bytes of ``path`` from ``at`` (each one: flipped, never the same)."""
    with open(path, "r+b") as f:
        f.seek(at)
        old = f.read(n)
        f.seek(at)
        f.write(bytes(b ^ rng.randrange(1, 256) for b in old))


def shorter(size: int, rng: random.Random) -> int:
    """A length below ``size``: as often as not about a print's length (a file cut, or
    copied over, inside a range's first print: neither end of it can be read back)."""
    return rng.randrange(0, min(size, PRINT_BYTES + KiB) if rng.random() < 0.5 else size)


def tamper(part: Path, spans: list[tuple[int, int]], digest: bool, rng: random.Random) -> str:
    """Apply a random mutation to ``part`` (whose journal claims ``spans``); its name."""
    size = part.stat().st_size
    what = rng.choice(MUTATIONS)
    inner = [(s, e) for s, e in spans if e - s > 2 * PRINT_BYTES + 2 and e <= size]
    if what == "middle" and not (digest and inner):
        what = "nothing"  # (not seen but by a digest: none here, or no range long enough)
    if size == 0 and what in ("start", "end", "middle", "truncate"):
        what = "nothing"
    if what == "start":
        at = spans[0][0] if spans and spans[0][0] < size else 0
        overwrite(part, at, rng.randint(1, min(2 * PRINT_BYTES, size - at)), rng)
    elif what == "end":
        ends = [e for _, e in spans if e <= size] or [size]
        end = rng.choice(ends)
        n = rng.randint(1, min(PRINT_BYTES, end))
        overwrite(part, end - n, n, rng)
    elif what == "middle":
        s, e = rng.choice(inner)
        overwrite(part, rng.randrange(s + PRINT_BYTES, e - PRINT_BYTES), 1, rng)
    elif what == "cp":  # (cp: O_TRUNC, the same inode)
        part.write_bytes(rng.randbytes(shorter(size, rng)))
    elif what == "truncate":
        os.truncate(part, shorter(size, rng))
    elif what == "replace":
        new = part.with_name("stand-in")
        new.write_bytes(rng.randbytes(rng.randrange(0, size + 1)))
        os.replace(new, part)
    return what


@pytest.mark.parametrize("seed", seeds(2))
def test_tampered_part_files_after_a_kill_give_exact_files(
    httpd: HTTPServer, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    want: dict[str, bytes] = {}
    digests: set[str] = set()
    urls = []
    for i in range(16):
        size = rng.choice([1, 5 * KiB, 20 * KiB, 300 * KiB, MiB, 2 * MiB, 4 * MiB])
        name = f"t{i}.bin"
        path = httpd.new_path(name)
        data = rng.randbytes(size)
        httpd.add(path, data)
        q: dict[str, Any] = {}
        if rng.random() < 0.5:
            q["digest"] = 1
            digests.add(name)
        if rng.random() < 0.2:
            q["chunked"] = 1
        urls.append(httpd.url(path, **q))
        want[name] = data
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(u + "\n" for u in urls))
    out, state = tmp_path / "out", tmp_path / "state"
    args = ["-i", str(listing), "-o", str(out), "-q"]
    if rng.random() < 0.5:
        args += ["--split", str(rng.choice([2, 4]))]

    done: list[str] = []
    for _ in range(rng.randrange(1, 3)):
        proc = spawn([*args, "--limit-rate", "10M"], state)
        time.sleep(rng.uniform(0.6, 1.4))  # (checkpoints come every 0.5 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        claims = recorded(state)
        parts = sorted(out.glob(f"*{PART_SUFFIX}")) if out.exists() else []
        for part in parts:
            name = part.name.removesuffix(PART_SUFFIX)
            what = tamper(part, claims.get(part.name, []), name in digests, rng)
            done.append(f"{what}{'+spans' if claims.get(part.name) else ''}")

    last = run_to_end(args, state)
    print(f"seed {seed}: {sorted(collections.Counter(done).items())}")  # (pytest -s)
    assert last.returncode == 0, f"seed {seed}: {last.stderr}"
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(got) == sorted(want), f"seed {seed}"
    wrong = [n for n, d in want.items() if got[n] != d]
    assert not wrong, f"seed {seed}: {wrong} ({done})"
