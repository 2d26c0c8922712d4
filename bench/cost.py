"""omniget's CPU cost per small file, counted in instructions under valgrind (callgrind).

Wall and CPU times on a shared VM swing by 20% from one minute to the next; the number of
user-space instructions a run executes changes by ~1-2%. This script downloads N files of
16 KiB (S3's shape) from the private nginx, once with one file and once with N, each under
``valgrind --tool=callgrind``, and reports

* start-up: the one-file run's instructions (interpreter, imports, one download), and
* per file: (N-file run - one-file run) / (N - 1).

Use it to compare two versions of the code (run it on each), not to compare with other
tools: valgrind slows the process ~50x, so pipelining depths and batching differ from a
normal run. Needs valgrind (``apt-get install valgrind``) and nginx.

    .venv/bin/python bench/cost.py                    # 1,000 files, 2 rounds
    .venv/bin/python bench/cost.py --count 300 --omniget /tmp/v/bin/omniget
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchlib.data import ensure_dataset
from benchlib.servers import running_server
from benchlib.tools import compile_bytecode, find_omniget, tool_env

SIZE = 16 * 1024
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(omniget: str, url_list: Path, work: Path, env: dict[str, str]) -> int:
    """User-space instructions of one ``omniget -i url_list`` run (fresh output, state)."""
    out, state = work / "out", work / "state"
    for d in (out, state):
        shutil.rmtree(d, ignore_errors=True)
    out.mkdir()
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        omniget, "-i", str(url_list), "-o", str(out), "-q", "--state-dir", str(state),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    m = _COLLECTED.search(r.stderr)
    if r.returncode != 0 or m is None:
        tail = (r.stderr.strip().splitlines() or [""])[-1]
        raise SystemExit(f"omniget failed under valgrind (exit {r.returncode}): {tail}")
    got = len(list(out.iterdir()))
    want = len(url_list.read_text().split())
    if got != want:
        raise SystemExit(f"omniget wrote {got} files, expected {want}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="files in the large run")
    p.add_argument("--rounds", type=int, default=2, help="pairs of runs (median taken)")
    p.add_argument("--omniget", metavar="BIN", help="omniget executable (default: .venv)")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "omniget-bench-cache",
        help="where the source data is generated once (shared with run.py)",
    )
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    omniget = find_omniget(args.omniget)
    if omniget is None:
        raise SystemExit("omniget not found (make .venv or pass --omniget)")
    www = args.cache.resolve() / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "probe.txt").write_text("ok\n")
    ds = ensure_dataset(www, args.count, SIZE)
    with tempfile.TemporaryDirectory(prefix="omniget-cost-") as tmp:
        work = Path(tmp)
        env = tool_env(work / "home")
        (work / "home").mkdir()
        compile_bytecode(omniget, env)
        with running_server(www, "probe.txt") as server:
            urls = [f"{server.base_url}/{ds.name}/{n}" for n in sorted(ds.files)]
            one, many = work / "one.txt", work / "many.txt"
            one.write_text(urls[0] + "\n")
            many.write_text("".join(u + "\n" for u in urls))
            starts, per_file = [], []
            for i in range(args.rounds):
                a = instructions(omniget, one, work, env)
                b = instructions(omniget, many, work, env)
                starts.append(a)
                per_file.append((b - a) / (len(urls) - 1))
                print(f"round {i + 1}: one file {a / 1e6:.1f} M, {len(urls)} files "
                      f"{b / 1e6:.1f} M, per file {per_file[-1] / 1e3:.0f} K", flush=True)
    print(f"start-up (one-file run): {statistics.median(starts) / 1e6:.1f} M instructions")
    print(f"per file: {statistics.median(per_file) / 1e3:.0f} K instructions "
          f"(spread {min(per_file) / 1e3:.0f}-{max(per_file) / 1e3:.0f} K)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
