"""A private nginx on 127.0.0.1 for integration tests and benchmarks.

Everything it writes (config, pid, logs, temp paths) lives in its own work directory; it
serves ``root`` with sendfile and Range at ``/``, and the same files at ``/slow/`` limited
to 20 MB/s per connection (``limit_rate 20m``). From a script::

    from tests.servers.nginx import running_nginx
    with running_nginx(Path("data")) as srv:
        print(srv.url("big.bin"))

With ``tls=`` (a :class:`~tests.servers.tls.TLSFiles`) it speaks HTTPS, with HTTP/2 offered by
ALPN unless ``http2=False``. With ``access_log=True`` every request is logged as one line of
``connection protocol method target status range`` (see :meth:`NginxServer.requests`).

When run as root, the workers run as the current user (``user root root;``) so they can read
files in private temp directories; otherwise no ``user`` line is written.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

if TYPE_CHECKING:
    from .tls import TLSFiles

__all__ = ["NginxServer", "NginxUnavailable", "nginx_binary", "running_nginx", "start_nginx"]

SLOW_RATE = "20m"


class Logged(NamedTuple):
    """One access-log line: which connection carried which request."""

    connection: int
    protocol: str  # "HTTP/1.1", "HTTP/2.0"
    method: str
    target: str
    status: int
    range: str  # the Range header, "" when none


class NginxUnavailable(RuntimeError):
    """nginx is not installed or would not start."""


def nginx_binary() -> str | None:
    """The nginx executable, or None. ``$OMNIGET_NGINX`` overrides the search."""
    env = os.environ.get("OMNIGET_NGINX")
    if env:
        return env
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@dataclass
class NginxServer:
    root: Path
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    owns_workdir: bool = False  # remove ``workdir`` on stop
    tls: bool = False

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def requests(self) -> list[Logged]:
        """The access log so far (``access_log=True``); nginx writes a line as each
        request ends."""
        log = self.workdir / "access.log"
        out = []
        for line in log.read_text().splitlines() if log.exists() else []:
            conn, proto, method, target, status, rng = [*line.split(" ", 5), ""][:6]
            out.append(Logged(int(conn), proto, method, target, int(status), rng.strip('"-')))
        return out

    def url(self, name: str, *, slow: bool = False) -> str:
        """URL of ``root/name`` (``slow=True``: through the rate-limited ``/slow/``)."""
        return f"{self.base_url}/{'slow/' if slow else ''}{quote(name.lstrip('/'))}"

    def add(self, name: str, data: bytes) -> str:
        """Write ``root/name`` and return its URL."""
        path = self.root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.url(name)

    @property
    def error_log(self) -> str:
        log = self.workdir / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    root: Path,
    work: Path,
    port: int,
    workers: int,
    access_log: bool,
    tls: TLSFiles | None,
    http2: bool,
    extra: str = "",
) -> str:
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
    temps = "\n".join(
        f"    {kind}_temp_path {work / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    log = "access_log off;"
    if access_log:
        log = (
            "log_format omniget '$connection $server_protocol $request_method $request_uri"
            " $status \"$http_range\"';\n"
            f"    access_log {work / 'access.log'} omniget;"
        )
    listen = f"127.0.0.1:{port}"
    if tls is not None:
        listen += (
            f" ssl{' http2' if http2 else ''};\n        ssl_certificate {tls.cert_path};"
            f"\n        ssl_certificate_key {tls.key_path}"
        )
    return f"""# generated by tests/servers/nginx.py
{user}
worker_processes {workers};
daemon off;
pid {work / "nginx.pid"};
error_log {work / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
{temps}
    {log}
    types {{ application/octet-stream bin; text/plain txt; text/html html; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen {listen};
        server_name _;
        root {root};
        {extra}
        location / {{ }}
        location /slow/ {{ alias {root}/; limit_rate {SLOW_RATE}; }}
    }}
}}
"""


def _wait_ready(proc: subprocess.Popen[bytes], work: Path, port: int, timeout: float) -> bool:
    """nginx writes its pid file after binding: wait for it, then for a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if not (work / "nginx.pid").exists():
            time.sleep(0.02)
            continue
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.02)
    return False


def start_nginx(
    root: Path,
    workdir: Path | None = None,
    *,
    workers: int = 2,
    access_log: bool = False,
    timeout: float = 10.0,
    tls: TLSFiles | None = None,
    http2: bool = True,
    extra: str = "",
) -> NginxServer:
    """Start nginx serving ``root``; the caller must ``stop()`` it. Raises NginxUnavailable.
    ``extra``: directives for its ``server`` block (``keepalive_requests 5;``, say)."""
    binary = nginx_binary()
    if binary is None:
        raise NginxUnavailable("nginx is not installed")
    root = root.resolve()
    owns = workdir is None
    work = Path(tempfile.mkdtemp(prefix="omniget-nginx-")) if workdir is None else workdir
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    for _ in range(5):  # another process may grab the free port first: try a new one
        port = _free_port()
        (work / "nginx.pid").unlink(missing_ok=True)
        conf.write_text(_config(root, work, port, workers, access_log, tls, http2, extra))
        cmd = [binary, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        server = NginxServer(root, port, work, proc, tls=tls is not None)
        if _wait_ready(proc, work, port, timeout):
            server.owns_workdir = owns
            return server
        server.stop()
        if "Address already in use" not in server.error_log:
            break
    log = server.error_log[-2000:]
    if owns:
        shutil.rmtree(work, ignore_errors=True)
    raise NginxUnavailable(f"nginx did not start:\n{log}")


@contextlib.contextmanager
def running_nginx(
    root: Path,
    *,
    workdir: Path | None = None,
    workers: int = 2,
    access_log: bool = False,
    tls: TLSFiles | None = None,
    http2: bool = True,
) -> Iterator[NginxServer]:
    """``with running_nginx(root) as srv:`` start nginx, stop it on exit."""
    server = start_nginx(
        root, workdir, workers=workers, access_log=access_log, tls=tls, http2=http2
    )
    try:
        yield server
    finally:
        server.stop()
