"""Settings from the config file or the environment, through the real command (a
subprocess): a proxy that fails is said where it was set; a flag given ``""`` undoes
what the file or a variable set; ``--config -`` reads stdin, ``--config`` twice reads
both; a user without a password is asked for it wherever it was set."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
DATA = b"undone" * 300


def cli(*args: str, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                          text=True, env=full, timeout=120, check=False,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def write(name: str, text: str) -> Path:
    path = Path(name).resolve()
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses every connection (bound, not listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# --- 1. a proxy that fails, said where it was set ----------------------------------


@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_a_proxy_that_refuses_is_said_where_it_was_set(
    httpd: HTTPServer, closed_port: int, where: str
) -> None:
    """A proxy from the config file or OMNIGET_PROXY was said as ``(--proxy)``: a flag the
    command line did not have."""
    proxy = f"http://127.0.0.1:{closed_port}"
    path = write("c.toml", f'jobs = 2\nproxy = "{proxy}"\n')
    args = ["--retries", "0", "-o", "out", httpd.add(httpd.new_path("a.bin"), DATA)]
    env = {"no_proxy": "", "NO_PROXY": ""}
    if where == "flag":
        args[:0] = ["--proxy", proxy]
    elif where == "env":
        env["OMNIGET_PROXY"] = proxy
    else:
        args[:0] = ["--config", str(path)]
    origin = {"flag": "--proxy", "env": "set by environment variable OMNIGET_PROXY",
              "file": f"set in config file {path}, line 2"}[where]
    done = cli(*args, env=env)
    assert done.returncode == 3, done.stderr
    said = f"could not connect to the proxy {proxy} ({origin})"
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("omniget: error")]
    assert errors and all(said in ln for ln in errors), done.stderr
    assert "(--proxy)" not in done.stderr or where == "flag"
    done = cli("--json", *args, env=env)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    failed = [e for e in events if e.get("event") == "failed"]
    assert failed and all(said in e["error"] for e in failed), events
