"""Benchmark omniget against peer download tools on a private nginx at 127.0.0.1.

Scenarios (see bench/README.md and the transfer-bench spec):

  S1       one 1 GiB file, unthrottled, output on disk
  S2       one 256 MiB file through nginx's /slow/ location (limit_rate 20m per connection)
  S3       5,000 x 16 KiB, output on disk (dominated by file creation: noise)
  S3tmpfs  the same, output under /dev/shm (the one S3 is judged on)
  S4       500 x 1 MiB, output on disk
  S5p      S3 through bench/delayproxy.py (10 ms each way = 20 ms RTT), output on tmpfs
  S5h      S5p over HTTPS (nginx offers HTTP/2), output on tmpfs

Every run clears and recreates its output directory inside the timed window, checks every
output file's sha256 (a mismatch makes the run FAILED, not a time), and tools alternate
run by run. Results are medians reported as ratios to the best tool of the same table:
they compare tools in one run on one machine, nothing more.

Usage:  .venv/bin/python bench/run.py [--quick] [--scenarios S1,S2] [--tools curl,omniget]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from benchlib.data import DataSet, ensure_dataset, verify_output, warm_page_cache
from benchlib.measure import clear_output, run_timed
from benchlib.report import (
    Row,
    ScenarioResult,
    checks_markdown,
    scenario_markdown,
    target_checks,
    to_json,
)
from benchlib.servers import Server, delay_proxy, running_server, running_tls_server
from benchlib.tools import TOOL_KEYS, Job, Variant, command, probe, tool_env, variants_for

BENCH_DIR = Path(__file__).resolve().parent
KiB, MiB, GiB = 1024, 1024**2, 1024**3


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # single | slow | many
    count: int
    size: int
    runs: int
    output_fs: str  # disk | tmpfs
    delay: float = 0.0  # seconds each way through the delay proxy (0 = direct)
    skip: tuple[tuple[str, str], ...] = ()  # (row, reason) not run in this scenario
    tls: bool = False  # served over HTTPS (HTTP/2 offered)


S5P = Scenario(
    "S5p",
    "S3 with 20 ms RTT through bench/delayproxy.py",
    "many",
    5000,
    16 * KiB,
    3,
    "tmpfs",
    delay=0.010,
    skip=(("wget-i", "one file at a time: count x RTT (100 s for 5,000 files)"),),
)

SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in [
        Scenario("S1", "1 GiB, unthrottled, one file", "single", 1, GiB, 5, "disk"),
        Scenario(
            "S2", "256 MiB, nginx limit_rate 20m per connection", "slow", 1, 256 * MiB, 3, "disk"
        ),
        Scenario(
            "S3",
            "5,000 x 16 KiB, output on disk (noise: judged on tmpfs)",
            "many",
            5000,
            16 * KiB,
            3,
            "disk",
        ),
        Scenario("S3tmpfs", "5,000 x 16 KiB, output on tmpfs", "many", 5000, 16 * KiB, 5, "tmpfs"),
        Scenario("S4", "500 x 1 MiB", "many", 500, MiB, 3, "disk"),
        S5P,
        replace(S5P, key="S5h", title="S5p over HTTPS, HTTP/2 offered (ALPN)", tls=True),
    ]
}

QUICK: dict[str, tuple[int, int]] = {  # (count, size) of a --quick data set
    "S1": (1, 32 * MiB),
    "S2": (1, 8 * MiB),
    "S3": (300, 16 * KiB),
    "S3tmpfs": (300, 16 * KiB),
    "S4": (40, MiB),
    "S5p": (160, 16 * KiB),
    "S5h": (160, 16 * KiB),
}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 16K, 256M, 1G)")
    mult = {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep:
            raise SystemExit(f"--{what} wants SCENARIO=VALUE, got {v!r}")
        if key not in SCENARIOS:
            raise SystemExit(f"--{what}: unknown scenario {key!r}")
        out[key] = val
    return out


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    sizes = _pairs(args.size, "size")
    counts = _pairs(args.count, "count")
    outs = _pairs(args.output_fs, "output-fs")
    runs_all: int | None = None
    runs: dict[str, str] = {}
    for r in args.runs:
        if "=" in r:
            runs.update(_pairs([r], "runs"))
        else:
            runs_all = int(r)
    out = []
    for k in keys:
        sc = SCENARIOS[k]
        if args.quick:
            count, size = QUICK[k]
            sc = replace(sc, runs=1, count=count, size=size)
        if runs_all is not None:
            sc = replace(sc, runs=runs_all)
        if k in runs:
            sc = replace(sc, runs=int(runs[k]))
        if k in sizes:
            sc = replace(sc, size=parse_size(sizes[k]))
        if k in counts:
            sc = replace(sc, count=int(counts[k]))
        if k in outs:
            if outs[k] not in ("disk", "tmpfs"):
                raise SystemExit("--output-fs values are disk or tmpfs")
            sc = replace(sc, output_fs=outs[k])
        out.append(sc)
    return out


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    real = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def make_job(
    sc: Scenario, ds: DataSet, base_url: str, job_dir: Path, ca: Path | None = None
) -> Job:
    prefix = f"{base_url}/slow" if sc.kind == "slow" else base_url
    names = sorted(ds.files)
    urls = [f"{prefix}/{ds.name}/{n}" for n in names]
    job_dir.mkdir(parents=True, exist_ok=True)
    list_file = job_dir / "urls.txt"
    list_file.write_text("".join(u + "\n" for u in urls))
    curl_config = job_dir / "curl.cfg"
    curl_config.write_text("".join(f'url = "{u}"\n' for u in urls))
    return Job(urls, names, job_dir / "out", list_file, curl_config, ca)


@contextlib.contextmanager
def scenario_server(sc: Scenario, server: Server) -> Iterator[Server]:
    if sc.delay:
        with delay_proxy(server.base_url, sc.delay) as proxy:
            yield proxy
    else:
        yield server


def run_scenario(
    sc: Scenario,
    ds: DataSet,
    server: Server,
    work_root: dict[str, Path],
    tools: list[str],
    available: dict[str, tuple[str | None, str]],
    env: dict[str, str],
    args: argparse.Namespace,
    ca: Path | None = None,
) -> ScenarioResult:
    base = work_root[sc.output_fs]
    job_dir = base / sc.key
    with scenario_server(sc, server) as srv:
        job = make_job(sc, ds, srv.base_url, job_dir, ca)
        logs = job_dir / "logs"
        logs.mkdir(exist_ok=True)
        variants: list[Variant] = variants_for(sc.kind, tools)
        rows: list[Row] = []
        for v in variants:
            path, info = available[v.binary]
            cmd = command(v, path or v.binary, job)
            row = Row(v.row, cmd or [])
            if path is None:
                row.unavailable = f"{v.binary} {info}"
            elif cmd is None:
                row.unavailable = f"skipped: no way to make {v.binary} trust the test CA"
            elif v.row in dict(sc.skip):
                row.unavailable = f"skipped: {dict(sc.skip)[v.row]}"
            rows.append(row)
        warm_page_cache(ds)
        server_pids = server.root_pids + (srv.root_pids if srv is not server else [])
        timeout = args.timeout
        active = [r for r in rows if r.unavailable is None]
        print(
            f"\n== {sc.key}: {sc.title} — {sc.count} x {sc.size} B, {sc.runs} run(s), "
            f"output on {fs_type(base)}, tools: {', '.join(r.row for r in active) or '-'}",
            flush=True,
        )
        for i in range(sc.runs):
            shift = i % len(active) if active else 0
            for row in active[shift:] + active[:shift]:  # alternate A/B/C, rotating the lead
                if row.failed:
                    continue  # one failure is enough; do not spend time on more
                clear_output(job.out_dir, sync=not args.no_sync)
                sample = run_timed(
                    row.command, job.out_dir, env, logs / f"{row.row}.{i + 1}", timeout, server_pids
                )
                if sample.ok:
                    problem = verify_output(job.out_dir, ds)
                    if problem:
                        sample.error = f"verification: {problem}"
                row.samples.append(sample)
                status = "ok" if sample.ok else f"FAILED: {sample.error}"
                print(
                    f"  {sc.key:<7} run {i + 1}/{sc.runs} {row.row:<16} {sample.wall:7.2f} s  "
                    f"cpu {sample.cpu:6.2f} s  rss {sample.rss_mib:5.0f} MiB  {status}",
                    flush=True,
                )
        if job.out_dir.exists():
            shutil.rmtree(job.out_dir)
        note = ""
        if sc.key == "S3":
            note = (
                "File creation on disk dominates and drifts between minutes: S3 is judged on "
                "tmpfs (S3tmpfs)."
            )
        kind = fs_type(base)
        return ScenarioResult(
            sc.key, sc.title, ds.total_bytes, len(ds.files), kind, srv.kind, rows, note
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Benchmark omniget against peer tools (ratios, not absolute times).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Sizes: 16K, 256M, 1G. Example: --quick --scenarios S1,S4 --tools curl,wget2",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma list (default all: {','.join(SCENARIOS)})",
    )
    p.add_argument(
        "--tools",
        default=",".join(TOOL_KEYS),
        help=f"comma list (default all: {','.join(TOOL_KEYS)}); 'peers' = the native tools",
    )
    p.add_argument(
        "--runs",
        action="append",
        default=[],
        metavar="N|SCENARIO=N",
        help="runs per tool (all scenarios, or one); default S1 5, S3tmpfs 5, else 3",
    )
    p.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="SCENARIO=SIZE",
        help="bytes per file, e.g. S1=2G",
    )
    p.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="SCENARIO=N",
        help="number of files, e.g. S3=1000",
    )
    p.add_argument(
        "--output-fs",
        action="append",
        default=[],
        metavar="SCENARIO=disk|tmpfs",
        help="where the output goes (default: tmpfs for S3tmpfs, S5p and S5h)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small data and one run per tool: a smoke test in seconds",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=BENCH_DIR / "results",
        help="directory for the markdown + JSON results (default bench/results)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "omniget-bench-cache",
        help="where the source data is generated once (default: system temp dir)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="parent of the on-disk output dirs (default: system temp dir)",
    )
    p.add_argument(
        "--tmpfs",
        type=Path,
        default=Path("/dev/shm"),
        help="parent of the tmpfs output dirs (default /dev/shm)",
    )
    p.add_argument(
        "--omniget",
        metavar="BIN",
        help="the omniget executable to measure (default: .venv/bin/omniget, else PATH)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run (default 300)")
    p.add_argument(
        "--no-sync",
        action="store_true",
        help="do not call sync() before each run (outside the timed window)",
    )
    args = p.parse_args(argv)
    # SIGTERM (and SIGINT, even when started in the background) unwind like Ctrl+C, so the
    # running client, nginx, the delay proxy and the temp dirs are all cleaned up.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)

    scenarios = build_scenarios(args)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if "peers" in tools:
        tools = [t for t in tools if t != "peers"] + [
            t for t in TOOL_KEYS if not t.startswith("omniget") and t != "floor"
        ]
    bad = [t for t in tools if t not in TOOL_KEYS]
    if bad:
        raise SystemExit(f"unknown tool(s): {', '.join(bad)}; known: {', '.join(TOOL_KEYS)}")

    www = args.cache.resolve() / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "probe.txt").write_text("ok\n")
    print(f"data cache: {www}")
    datasets = {sc.key: ensure_dataset(www, sc.count, sc.size) for sc in scenarios}

    with contextlib.ExitStack() as stack:
        work_root: dict[str, Path] = {}
        disk = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="omniget-bench-", dir=args.workdir)
            )
        )
        work_root["disk"] = disk
        if args.tmpfs.is_dir() and os.access(args.tmpfs, os.W_OK):
            work_root["tmpfs"] = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="omniget-bench-", dir=args.tmpfs)
                )
            )
        env = tool_env(disk / "home")
        (disk / "home").mkdir()

        binaries = {v.binary for sc in scenarios for v in variants_for(sc.kind, tools)}
        available = {b: probe(b, env, args.omniget) for b in sorted(binaries)}
        for b, (path, info) in available.items():
            print(f"  {b:<8} {'-> ' + info if path else 'SKIPPED: ' + info}")

        server = stack.enter_context(running_server(www, "probe.txt"))
        print(f"server: {server.base_url} ({server.kind})")
        tls: tuple[Server, Path] | None = None
        if any(sc.tls for sc in scenarios):
            try:
                certs = disk / "certs"
                certs.mkdir()
                tls = stack.enter_context(running_tls_server(www, "probe.txt", certs))
                print(f"server: {tls[0].base_url} ({tls[0].kind})")
            except ImportError as e:  # trustme: a test extra
                print(f"HTTPS scenarios skipped: {e} (install the test extras)")
        results: dict[str, ScenarioResult] = {}
        for sc in scenarios:
            if sc.output_fs not in work_root:
                print(f"\n== {sc.key}: skipped, no writable tmpfs at {args.tmpfs}")
                continue
            if sc.tls and tls is None:
                continue
            srv, ca = tls if sc.tls and tls is not None else (server, None)
            results[sc.key] = run_scenario(
                sc, datasets[sc.key], srv, work_root, tools, available, env, args, ca
            )

    checks = target_checks(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "quick": args.quick,
        "sync_between_runs": not args.no_sync,
        "tools": {
            b: (info if path else f"SKIPPED: {info}") for b, (path, info) in available.items()
        },
        "scenarios": {
            sc.key: {
                "count": sc.count,
                "size": sc.size,
                "runs": sc.runs,
                "output_fs": sc.output_fs,
                "delay_s": sc.delay,
            }
            for sc in scenarios
        },
    }
    md = [
        f"# omniget transfer bench — {meta['date']}",
        "",
        f"{meta['machine']}; Python {meta['python']}"
        + ("; **--quick** (small data: a smoke test, not a measurement)" if args.quick else "")
        + ". Wall time is mkdir of the output dir + the client (the previous output is removed "
        "and synced before); ratio = median wall / best median of the table. Ratios compare "
        "tools in this one run on this one machine.",
        "",
        "Tools: " + "; ".join(f"{b}: {v}" for b, v in meta["tools"].items()),
        "",
    ]
    md += [scenario_markdown(r) for r in results.values()]
    md.append(checks_markdown(checks))
    text = "\n".join(md)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    md_path = args.out / f"bench-{stamp}.md"
    json_path = args.out / f"bench-{stamp}.json"
    md_path.write_text(text)
    json_path.write_text(json.dumps(to_json(results, checks, meta), indent=1))
    print(f"written: {md_path} and {json_path.name}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
