"""Local servers for the benchmark, 127.0.0.1 only.

nginx comes from the project's test helper ``tests/servers/nginx.py`` (``running_nginx(root)``:
sendfile, Range, access log off, ``root`` at ``/`` and again at ``/slow/`` with
``limit_rate 20m`` per connection); for HTTPS scenarios the same nginx with a throw-away CA
(``tests/servers/tls.py``, needs ``trustme`` from the test extras) and HTTP/2 offered by
ALPN. The delay proxy is ``bench/delayproxy.py`` run as a child
process, so that its CPU time is not mixed with this process's.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    base_url: str  # no trailing slash
    kind: str  # which implementation serves it (for the report)
    root_pids: list[int] = field(default_factory=list)  # for CPU accounting (may be empty)


def _wait_http(
    url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 10.0, ca: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ca is not None:
        handlers.append(
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(ca)))
        )
    opener = urllib.request.build_opener(*handlers)
    while True:
        try:
            with opener.open(url, timeout=1) as r:
                r.read()
                return
        except OSError as e:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}") from e
            if time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not answer: {e}") from e
            time.sleep(0.05)


@contextlib.contextmanager
def running_server(www: Path, probe_path: str) -> Iterator[Server]:
    """The project's test nginx (tests/servers/nginx.py) serving www; probe_path must be small."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.servers.nginx import running_nginx

    with running_nginx(www) as srv:
        base = str(srv.base_url).rstrip("/")
        _wait_http(f"{base}/{probe_path}", None)
        _wait_http(f"{base}/slow/{probe_path}", None)
        yield Server(
            base,
            "tests/servers/nginx.py (sendfile, Range, /slow/ at limit_rate 20m)",
            [srv.process.pid],
        )


@contextlib.contextmanager
def running_tls_server(www: Path, probe_path: str, certs: Path) -> Iterator[tuple[Server, Path]]:
    """The test nginx over HTTPS (HTTP/2 offered); yields it and the CA file to trust."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.servers.nginx import running_nginx
    from tests.servers.tls import make_tls

    tls = make_tls(certs)
    with running_nginx(www, tls=tls) as srv:
        base = str(srv.base_url).rstrip("/")
        _wait_http(f"{base}/{probe_path}", None, ca=tls.ca_path)
        yield (
            Server(base, "tests/servers/nginx.py over TLS, HTTP/2 offered", [srv.process.pid]),
            tls.ca_path,
        )


@contextlib.contextmanager
def delay_proxy(target_base_url: str, delay: float) -> Iterator[Server]:
    """Start bench/delayproxy.py in front of target_base_url; yields the proxied base URL."""
    scheme, _, rest = target_base_url.partition("://")
    hostport = rest.split("/", 1)[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH_DIR / "delayproxy.py"),
            "--target",
            hostport,
            "--delay",
            str(delay),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 3 or line[0] != "LISTENING":
            raise RuntimeError(f"delay proxy did not start: {line!r}")
        yield Server(
            f"{scheme}://127.0.0.1:{line[2]}",
            f"delayproxy {delay * 1000:g} ms each way",
            [proc.pid],
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def tree_cpu_seconds(root_pids: list[int]) -> float:
    """user+sys CPU seconds of the given processes and all their live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = set(root_pids)
    for p in root_pids:
        pids.update(_descendants(p))
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick
