"""The command line of every benchmarked client, per kind of scenario (as in the spec).

Kinds: ``single`` (one big file, unthrottled), ``slow`` (one big file through nginx's
``/slow/`` location, 20m per connection) and ``many`` (a URL list).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .servers import REPO_ROOT

REFERENCE_ROWS = frozenset({"py-floor"})  # yardsticks: shown, never the "best" of a table
FLOOR = REPO_ROOT / "bench" / "floor.py"


@dataclass(frozen=True)
class Job:
    """What one timed run must fetch, and where to."""

    urls: list[str]
    names: list[str]  # remote file names, same order as urls
    out_dir: Path
    list_file: Path  # one URL per line (many-file kinds)
    curl_config: Path  # curl -K file (many-file kinds)
    ca: Path | None = None  # the CA to trust (HTTPS scenarios)


Builder = Callable[[str, Job], list[str]]


@dataclass(frozen=True)
class Variant:
    row: str  # label in the result tables
    tool: str  # --tools key that selects it
    binary: str  # executable name looked up on PATH (omniget: see find_omniget)
    kinds: frozenset[str]
    build: Builder
    note: str = ""


def _single(fn: Callable[[str, str, str, Path], list[str]]) -> Builder:
    def build(exe: str, job: Job) -> list[str]:
        return fn(exe, job.urls[0], job.names[0], job.out_dir)

    return build


ONE = frozenset({"single", "slow"})
MANY = frozenset({"many"})
ARIA2_MANY_TUNED = [
    "--file-allocation=none",
    "--auto-file-renaming=false",
    "--allow-overwrite=true",
    "--deferred-input=true",
    "--auto-save-interval=0",
]

VARIANTS: list[Variant] = [
    # omniget: defaults first, then the tuned rows the targets name.
    Variant(
        "omniget", "omniget", "omniget", ONE, _single(lambda e, u, n, d: [e, u, "-o", str(d), "-q"])
    ),
    Variant(
        "omniget-N8",
        "omniget-N8",
        "omniget",
        ONE,
        _single(lambda e, u, n, d: [e, "--connections", "8", u, "-o", str(d), "-q"]),
    ),
    Variant(
        "omniget",
        "omniget",
        "omniget",
        MANY,
        (lambda e, j: [e, "-i", str(j.list_file), "-o", str(j.out_dir), "-q"]),
    ),
    Variant(
        "omniget-N16-j16",
        "omniget-j16",
        "omniget",
        MANY,
        (
            lambda e, j: [
                e,
                "-N",
                "16",
                "-j",
                "16",
                "-i",
                str(j.list_file),
                "-o",
                str(j.out_dir),
                "-q",
            ]
        ),
    ),
    # curl
    Variant(
        "curl", "curl", "curl", ONE, _single(lambda e, u, n, d: [e, "-s", "-o", str(d / n), u])
    ),
    Variant(
        "curl-Z16",
        "curl",
        "curl",
        MANY,
        (
            lambda e, j: [
                e,
                "-s",
                "-Z",
                "--parallel-max",
                "16",
                "--output-dir",
                str(j.out_dir),
                "--remote-name-all",
                "-K",
                str(j.curl_config),
            ]
        ),
    ),
    # wget
    Variant(
        "wget", "wget", "wget", ONE, _single(lambda e, u, n, d: [e, "-q", "-O", str(d / n), u])
    ),
    Variant(
        "wget-i",
        "wget",
        "wget",
        MANY,
        (lambda e, j: [e, "-q", "-i", str(j.list_file), "-P", str(j.out_dir)]),
    ),
    # wget2
    Variant(
        "wget2", "wget2", "wget2", ONE, _single(lambda e, u, n, d: [e, "-q", "-O", str(d / n), u])
    ),
    Variant(
        "wget2-t16",
        "wget2",
        "wget2",
        MANY,
        (lambda e, j: [e, "-q", "--max-threads=16", "-i", str(j.list_file), "-P", str(j.out_dir)]),
    ),
    # aria2c (stock: one connection per download)
    Variant(
        "aria2c-x1",
        "aria2c",
        "aria2c",
        ONE,
        _single(lambda e, u, n, d: [e, "-q", "-d", str(d), "-o", n, u]),
    ),
    Variant(
        "aria2c-x8",
        "aria2c",
        "aria2c",
        ONE,
        _single(lambda e, u, n, d: [e, "-q", "-x8", "-s8", "-k1M", "-d", str(d), "-o", n, u]),
        note="-x8 -s8 -k1M",
    ),
    Variant(
        "aria2c-j16-tuned",
        "aria2c",
        "aria2c",
        MANY,
        (
            lambda e, j: [
                e,
                "-q",
                "-j16",
                *ARIA2_MANY_TUNED,
                "-i",
                str(j.list_file),
                "-d",
                str(j.out_dir),
            ]
        ),
    ),
    # axel (single files only: several URLs are mirrors of one file to axel)
    Variant(
        "axel-n8",
        "axel",
        "axel",
        ONE,
        _single(lambda e, u, n, d: [e, "-q", "-n", "8", "-o", str(d / n), u]),
    ),
    Variant(
        "axel",
        "axel",
        "axel",
        frozenset({"slow"}),
        _single(lambda e, u, n, d: [e, "-q", "-o", str(d / n), u]),
        note="axel defaults",
    ),
    # not a peer: the Python floor (bench/floor.py), run by omniget's interpreter
    Variant(
        "py-floor",
        "floor",
        "py-floor",
        MANY,
        (lambda e, j: [e, str(FLOOR), str(j.list_file), str(j.out_dir)]),
        note="bench/floor.py with omniget's Python; a yardstick, never a peer",
    ),
]

TOOL_KEYS = [
    "omniget",
    "omniget-N8",
    "omniget-j16",
    "curl",
    "wget",
    "wget2",
    "aria2c",
    "axel",
    "floor",
]


def tool_env(home: Path) -> dict[str, str]:
    """The environment for every client: no proxies, an empty HOME (no ~/.curlrc etc.)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HOME"] = str(home)
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        env[var] = str(home / sub)
    return env


def find_omniget(override: str | None = None) -> str | None:
    """``override`` (``--omniget``), else the repo's ``.venv``, else ``omniget`` on PATH."""
    if override:
        return override if Path(override).is_file() else shutil.which(override)
    venv = REPO_ROOT / ".venv" / "bin" / "omniget"
    if venv.is_file():
        return str(venv)
    return shutil.which("omniget")


def compile_bytecode(script: str, env: dict[str, str]) -> None:
    """Write omniget's .pyc files, as a regular ``pip install`` does: an editable install
    under PYTHONDONTWRITEBYTECODE would otherwise compile every module on every run."""
    python = Path(script).with_name("python")
    if not python.is_file():
        return
    code = (
        "import compileall, os, omniget; "
        "compileall.compile_dir(os.path.dirname(omniget.__file__), quiet=1)"
    )
    subprocess.run([str(python), "-c", code], env=env, capture_output=True, timeout=120)


def interpreter(script: str, env: dict[str, str]) -> str:
    """Which Python runs an omniget console script (builds differ: a distribution's
    optimised build starts and runs faster than a plain source build such as pyenv's)."""
    python = Path(script).with_name("python")
    code = "import sys; print(sys.version.split()[0], sys._base_executable)"
    try:
        r = subprocess.run(
            [str(python), "-c", code], env=env, capture_output=True, text=True, timeout=30
        )
    except OSError:
        return ""
    return f"Python {r.stdout.strip()}" if r.returncode == 0 else ""


def probe(
    binary: str, env: dict[str, str], omniget: str | None = None
) -> tuple[str | None, str]:
    """Locate a tool and check that it starts. Returns (path or None, version or reason);
    ``omniget``: the omniget executable to use instead of the usual one."""
    if binary == "py-floor":  # omniget's own interpreter, so that the two compare
        script = find_omniget(omniget)
        python = Path(script).with_name("python") if script else None
        if python is None or not python.is_file():
            return None, "needs omniget installed in a virtual environment (its python)"
        return str(python), interpreter(str(script), env) or "Python ?"
    path = find_omniget(omniget) if binary == "omniget" else shutil.which(binary)
    if path is None:
        return None, "not installed"
    if binary == "omniget":
        compile_bytecode(path, env)
    reason = ""
    for flag in ("--version", "--help"):
        try:
            r = subprocess.run(
                [path, flag],
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"does not start: {e}"
        if r.returncode == 0:
            lines = (r.stdout or r.stderr).strip().splitlines()
            version = lines[0][:80] if lines and flag == "--version" else "(no --version)"
            if binary == "omniget":
                version = f"{version} ({interpreter(path, env) or 'Python ?'})"
            return path, version
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        reason = reason or f"`{flag}` exited {r.returncode}: {tail[0][:200]}"
    return None, reason


# How each tool is told which CA to trust (flags go right after the executable).
CA_FLAGS: dict[str, Callable[[Path], list[str]]] = {
    "omniget": lambda ca: ["--ca-cert", str(ca)],
    "curl": lambda ca: ["--cacert", str(ca)],
    "wget": lambda ca: [f"--ca-certificate={ca}"],
    "wget2": lambda ca: [f"--ca-certificate={ca}"],
    "aria2c": lambda ca: [f"--ca-certificate={ca}"],
}


def command(v: Variant, exe: str, job: Job) -> list[str] | None:
    """The variant's command for this job; None if it cannot trust the job's CA."""
    cmd = v.build(exe, job)
    if job.ca is None:
        return cmd
    flags = CA_FLAGS.get(v.binary)
    return None if flags is None else [cmd[0], *flags(job.ca), *cmd[1:]]


def variants_for(kind: str, tools: list[str]) -> list[Variant]:
    return [v for v in VARIANTS if kind in v.kinds and v.tool in tools]
