"""A private nginx on 127.0.0.1 for integration tests and benchmarks.

Everything it writes (config, pid, logs, temp paths) lives in its own work directory; it
serves ``root`` with sendfile and Range at ``/``, and the same files at ``/slow/`` limited
to 20 MB/s per connection (``limit_rate 20m``). From a script::

    from tests.servers.nginx import running_nginx
    with running_nginx(Path("data")) as srv:
        print(srv.url("big.bin"))

With ``tls=`` (a :class:`~tests.servers.tls.TLSFiles`) it speaks HTTPS, with HTTP/2 offered by
ALPN unless ``http2=False``. With ``access_log=True`` every request is logged as one line of
``connection protocol method target status range`` (see :meth:`NginxServer.requests`), and
a second port answers nginx's own counts (``stub_status``: how many requests it took, so
that ``requests()`` can wait for their lines).

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
import urllib.request
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
    status_port: int = 0  # nginx's counts (stub_status) here; 0: none
    _asked: int = field(default=0, init=False, repr=False)  # (requests to status_port)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def requests(self, timeout: float = 10.0) -> list[Logged]:
        """The access log (``access_log=True``), once it has a line for every request
        nginx took (up to ``timeout`` seconds; then as it is). nginx writes a request's
        line after the answer's last byte went out: a client may be done before it, and
        a log read at once miss it (CI saw 6 lines of 7)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self._lines()
            taken = self._taken() if self.status_port else None
            if taken is None or len(lines) >= taken or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        out = []
        for line in lines:
            conn, proto, method, target, status, rng = [*line.split(" ", 5), ""][:6]
            out.append(Logged(int(conn), proto, method, target, int(status), rng.strip('"-')))
        return out

    def _lines(self) -> list[str]:
        """The access log's whole lines (one being written has no end yet)."""
        log = self.workdir / "access.log"
        text = log.read_text() if log.exists() else ""
        return text[: text.rfind("\n") + 1].splitlines()

    def _taken(self) -> int | None:
        """How many requests nginx took (counted as it reads them), less the ones asked
        of ``status_port`` (logged nowhere); None if it did not say."""
        self._asked += 1  # (this one counts as soon as nginx reads it)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # (no *_proxy)
        try:
            with direct.open(f"http://127.0.0.1:{self.status_port}/", timeout=5) as r:
                return int(r.read().decode().splitlines()[2].split()[2]) - self._asked
        except (OSError, IndexError, ValueError):
            return None

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
    status_port: int = 0,
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
{_status_server(status_port)}}}
"""


def _status_server(port: int) -> str:
    """A server block answering nginx's counts at ``port`` (0: none), logging nothing."""
    if not port:
        return ""
    return f"""    server {{
        listen 127.0.0.1:{port};
        access_log off;
        location / {{ stub_status; }}
    }}
"""


def _has_stub_status(binary: str) -> bool:
    """Whether this nginx was built with the stub_status module (``nginx -V`` says)."""
    try:
        built = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--with-http_stub_status_module" in built.stderr + built.stdout


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
    counts = access_log and _has_stub_status(binary)
    for _ in range(5):  # another process may grab a free port first: try new ones
        port = status_port = _free_port()
        while counts and status_port == port:
            status_port = _free_port()
        status_port = status_port if counts else 0
        (work / "nginx.pid").unlink(missing_ok=True)
        conf.write_text(
            _config(root, work, port, workers, access_log, tls, http2, extra, status_port)
        )
        cmd = [binary, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        server = NginxServer(root, port, work, proc, tls=tls is not None,
                             status_port=status_port)
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
