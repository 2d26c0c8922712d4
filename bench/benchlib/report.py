"""Tables (markdown, as in the spec), target checks and JSON for bench/run.py."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .measure import Sample
from .tools import REFERENCE_ROWS


@dataclass
class Row:
    row: str
    command: list[str]
    samples: list[Sample] = field(default_factory=list)
    unavailable: str | None = None  # tool missing or not started: no samples at all

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def failed(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    @property
    def usable(self) -> bool:
        """A row counts only if it has runs and none of them failed."""
        return bool(self.good) and not self.failed

    def median(self, attr: str = "wall") -> float:
        values: list[float] = [getattr(s, attr) for s in self.good]
        return statistics.median(values)


@dataclass
class ScenarioResult:
    key: str
    title: str
    total_bytes: int
    n_files: int
    output_fs: str
    server: str
    rows: list[Row]
    note: str = ""

    def row(self, name: str) -> Row | None:
        for r in self.rows:
            if r.row == name:
                return r
        return None

    def best(self, peers_only: bool = False) -> float | None:
        """The fastest median; never a yardstick row; ``peers_only``: no omniget row."""
        walls = [
            r.median()
            for r in self.rows
            if r.usable
            and r.row not in REFERENCE_ROWS
            and not (peers_only and r.row.startswith("omniget"))
        ]
        return min(walls) if walls else None


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def scenario_markdown(sc: ScenarioResult) -> str:
    lines = [
        f"#### {sc.key} — {sc.title}",
        "",
        f"{sc.n_files} file(s), {sc.total_bytes / 2**20:.0f} MiB in all; output on {sc.output_fs}; "
        f"server: {sc.server}." + (f" {sc.note}" if sc.note else ""),
        "",
        "| tool | median wall s (min-max) | MB/s | CPU s | peak RSS MiB | ratio to best | n "
        "| other load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best = sc.best() or 1.0  # only None when no row is usable
    usable = sorted((r for r in sc.rows if r.usable), key=lambda r: r.median())
    for r in usable:
        walls = [s.wall for s in r.good]
        med = r.median()
        lines.append(
            f"| {r.row} | {_fmt(med)} ({_fmt(min(walls))}-{_fmt(max(walls))}) "
            f"| {sc.total_bytes / med / 1e6:.0f} | {_fmt(r.median('cpu'))} "
            f"| {max(s.rss_mib for s in r.good):.0f} | {med / best:.2f}x "
            f"| {len(walls)} | {_fmt(r.median('other_load'))} |"
        )
    for r in sc.rows:
        if r.usable:
            continue
        if r.unavailable:
            reason = r.unavailable
            if not reason.startswith("skipped"):
                reason = f"unavailable: {reason}"
        elif r.failed:
            reason = f"FAILED ({len(r.failed)} of {len(r.samples)} runs): {r.failed[0].error}"
        else:
            reason = "not run"
        reason = reason.replace("|", "/")
        lines.append(f"| {r.row} | {reason} | | | | | 0 | |")
    lines.append("")
    return "\n".join(lines)


@dataclass
class Check:
    label: str
    status: str  # PASS / FAIL / SKIP (subject or reference not measured) / INFO
    detail: str


def _ratio_check(
    sc: ScenarioResult | None,
    label: str,
    subject: str,
    refs: list[str] | None,
    limit: float,
    info: bool = False,
) -> Check:
    """subject's median <= limit x (best of refs; refs=None: best peer of the table)."""
    if sc is None:
        return Check(label, "SKIP", "scenario not run")
    s = sc.row(subject)
    if s is None or not s.usable:
        why = (
            "not run"
            if s is None
            else (s.unavailable or (s.failed[0].error if s.failed else "no runs"))
        )
        return Check(label, "SKIP" if s is None or s.unavailable else "FAIL", f"{subject}: {why}")
    if refs is None:
        ref = sc.best(peers_only=True)
        ref_name = "best peer"
        if ref is not None:
            ref_name = next(r.row for r in sc.rows if r.usable and r.median() == ref)
    else:
        cands = [(sc.row(n), n) for n in refs]
        meds = [(r.median(), n) for r, n in cands if r is not None and r.usable]
        if not meds:
            return Check(label, "SKIP", f"no usable reference among {', '.join(refs)}")
        ref, ref_name = min(meds)
    if ref is None:
        return Check(label, "SKIP", "no usable peer")
    ratio = s.median() / ref
    status = "PASS" if ratio <= limit else "FAIL"
    if info:
        status = "INFO"
    return Check(
        label,
        status,
        f"{subject} {s.median():.2f} s / {ref_name} {ref:.2f} s = "
        f"{ratio:.2f}x (limit {limit:.2f}x)",
    )


def target_checks(results: dict[str, ScenarioResult]) -> list[Check]:
    get = results.get
    checks = [
        _ratio_check(get("S1"), "S1 omniget <= 1.4x best peer", "omniget", None, 1.4),
        _ratio_check(
            get("S2"),
            "S2 omniget --connections 8 <= 1.1x best of axel -n8 / aria2c -x8",
            "omniget-N8",
            ["axel-n8", "aria2c-x8"],
            1.1,
        ),
        _ratio_check(
            get("S2"), "S2 omniget defaults no slower than axel defaults", "omniget", ["axel"], 1.0
        ),
        _ratio_check(
            get("S3tmpfs"),
            "S3 (tmpfs) omniget <= 1.0x curl -Z --parallel-max 16",
            "omniget",
            ["curl-Z16"],
            1.0,
        ),
        _ratio_check(
            get("S3tmpfs"),
            "S3 (tmpfs) omniget -N 16 -j 16 vs curl -Z --parallel-max 16 (not a target)",
            "omniget-N16-j16",
            ["curl-Z16"],
            1.0,
            info=True,
        ),
        _ratio_check(get("S4"), "S4 omniget <= 1.3x best peer", "omniget", None, 1.3),
        _ratio_check(
            get("S5p"), "S5p omniget <= 1.0x wget2 --max-threads=16", "omniget", ["wget2-t16"], 1.0
        ),
        _ratio_check(
            get("S5h"),
            "S5h (https) omniget vs the best peer (not a target)",
            "omniget",
            None,
            1.0,
            info=True,
        ),
    ]
    s1 = get("S1")
    label = "S1 omniget peak RSS <= 64 MiB"
    row = s1.row("omniget") if s1 else None
    if s1 is None or row is None or not row.usable:
        checks.append(Check(label, "SKIP", "no usable omniget S1 run"))
    else:
        peak = max(s.rss_mib for s in row.good)
        checks.append(
            Check(label, "PASS" if peak <= 64 else "FAIL", f"max over runs {peak:.0f} MiB")
        )
    return checks


def checks_markdown(checks: list[Check]) -> str:
    lines = ["### Targets", ""]
    lines += [f"- {c.status}: {c.label} — {c.detail}" for c in checks]
    lines.append("")
    return "\n".join(lines)


def to_json(
    results: dict[str, ScenarioResult], checks: list[Check], meta: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"meta": meta, "scenarios": {}, "checks": []}
    for key, sc in results.items():
        best = sc.best()
        rows = []
        for r in sc.rows:
            entry: dict[str, Any] = {
                "tool": r.row,
                "command": r.command,
                "unavailable": r.unavailable,
                "runs": [vars(s) for s in r.samples],
            }
            if r.usable and best:
                entry.update(
                    median_wall_s=r.median(),
                    median_cpu_s=r.median("cpu"),
                    peak_rss_mib=max(s.rss_mib for s in r.good),
                    mb_per_s=sc.total_bytes / r.median() / 1e6,
                    ratio_to_best=r.median() / best,
                )
            rows.append(entry)
        out["scenarios"][key] = {
            "title": sc.title,
            "total_bytes": sc.total_bytes,
            "files": sc.n_files,
            "output_fs": sc.output_fs,
            "server": sc.server,
            "note": sc.note,
            "rows": rows,
        }
    out["checks"] = [vars(c) for c in checks]
    return out
