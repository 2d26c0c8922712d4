"""kill -9 at random moments of a many-file CLI run, then reruns until it ends.

Files of mixed sizes and framings (some split, some pipelined, some gzip or chunked),
with passing faults; the process is killed one to three times at random moments (during
set-up, mid-transfer, while files are being renamed into place), then a last run must
end with exit 0, every file byte-exact, and nothing else in the folder. Seeded;
``OMNIGET_SOAK_SEEDS=50`` soaks (see tests/faults/_soak.py).
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tests.faults._soak import run_to_end, seeds, spawn
from tests.servers.httpd import HTTPServer

KiB = 1024


@pytest.mark.parametrize("seed", seeds(2))
def test_killed_runs_then_a_last_one_give_exact_files(
    httpd: HTTPServer, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    want: dict[str, bytes] = {}
    urls = []
    for i in range(40):
        size = rng.choice([1, 5 * KiB, 16 * KiB, 200 * KiB, 1024 * KiB, 3072 * KiB])
        name = f"k{i}.bin"
        path = httpd.new_path(name)
        data = rng.randbytes(size)
        httpd.add(path, data)
        q: dict[str, Any] = {}
        mode = rng.choice(["plain", "plain", "plain", "chunked", "gzip"])
        if mode != "plain":
            q[mode] = 1
        fault = rng.choice(["none", "none", "reset", "status"])
        if fault == "reset" and size > 1:
            q.update(reset=size // 2, times=1)
        elif fault == "status":
            q.update(status=503, times=1)
        urls.append(httpd.url(path, **q))
        want[name] = data
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(u + "\n" for u in urls))
    out, state = tmp_path / "out", tmp_path / "state"
    args = ["-i", str(listing), "-o", str(out), "-q", "--limit-rate", "30M"]

    for _ in range(rng.randrange(1, 4)):
        proc = spawn(args, state, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()

    last = run_to_end(args, state)
    assert last.returncode == 0, f"seed {seed}: {last.stderr}"
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert got == {n: hashlib.sha256(d).hexdigest() for n, d in want.items()}, f"seed {seed}"
