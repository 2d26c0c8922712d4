"""Shared fixtures. Local servers (all on 127.0.0.1, any free port, safe under ``-n``):

``httpd`` / ``httpd2``
    the fault-injecting HTTP server (``tests.servers.httpd``, vocabulary in its docstring)
    and a second one (another port, so another origin). One server per session, handed to
    each test freshly ``reset()`` on a port of its own (``next_test``: no files, handlers,
    counters or log left from other tests, and none of their late requests).
    ``httpd_session`` / ``httpd2_session`` are the same servers for session-scoped fixtures.
``httpsd``
    the same server over TLS; trust ``tls_ca_path`` (``tls_files`` has cert and key too).
``httpd6`` / ``httpsd6``
    the same servers on the IPv6 loopback, ::1 (URLs ``http://[::1]:PORT/...``); a test
    that takes one is skipped where ::1 cannot be bound.
``httpd_factory``
    ``httpd_factory(root=None, tls=False) -> HTTPServer``: extra servers for one test,
    stopped after it (e.g. to stop one mid-test).
``nginx``
    a private nginx serving ``nginx.root`` (session-scoped; write files under unique names
    with ``nginx.add(name, data)``); skipped where nginx is not installed.
``payload``
    ``payload(n, seed=0) -> bytes``: deterministic, fast pseudo-random data.
``refused_port``
    a port on 127.0.0.1 that refuses connections for the whole test.
``site_source``
    registers :class:`SiteSource` (``https://site.test/...``; it takes options, which the
    built-in http source does not) before the built-in sources, for one test.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from omniget.model import Item
from omniget.sources.base import Source

# ``tests.servers`` must import the same way here, in test modules and in bench scripts.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.servers.httpd import HTTPServer, ipv6_loopback  # noqa: E402
from tests.servers.nginx import NginxServer, nginx_binary, start_nginx  # noqa: E402

# Hypothesis fails an example that takes over 200 ms of wall time (DeadlineExceeded, or
# Flaky when the rerun is quick): a loaded machine stalls a worker that long. The
# properties are what these tests check, not their speed.
settings.register_profile("omniget", deadline=None)
settings.load_profile("omniget")

# A test run started with SIGINT ignored (`&` in a script, a nohup loop) would pass that on
# to every CLI it starts, and the CLI keeps an ignored SIGINT ignored, as Unix programs do:
# the tests that send it a Ctrl+C want the terminal's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
from tests.servers.payload import payload as _payload  # noqa: E402
from tests.servers.tls import TLSFiles, make_tls  # noqa: E402


@pytest.fixture(scope="session")
def payload() -> Callable[..., bytes]:
    """``payload(n, seed=0)``: n deterministic pseudo-random bytes."""
    return _payload


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_ca_path(tls_files: TLSFiles) -> Path:
    """The CA certificate (PEM) that signed ``httpsd``'s certificate."""
    return tls_files.ca_path


@pytest.fixture(scope="session")
def httpd_session() -> Iterator[HTTPServer]:
    with HTTPServer() as server:
        yield server


@pytest.fixture(scope="session")
def httpd2_session() -> Iterator[HTTPServer]:
    with HTTPServer() as server:
        yield server


@pytest.fixture(scope="session")
def httpsd_session(tls_files: TLSFiles) -> Iterator[HTTPServer]:
    with HTTPServer(tls=tls_files.server_context()) as server:
        yield server


@pytest.fixture(scope="session")
def httpd6_session() -> Iterator[HTTPServer]:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) here")
    with HTTPServer(host="::1") as server:
        yield server


@pytest.fixture(scope="session")
def httpsd6_session(tls_files: TLSFiles) -> Iterator[HTTPServer]:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) here")
    with HTTPServer(host="::1", tls=tls_files.server_context()) as server:
        yield server


def _fresh(server: HTTPServer) -> Iterator[HTTPServer]:
    server.next_test()
    yield server
    server.reset()


@pytest.fixture
def httpd(httpd_session: HTTPServer) -> Iterator[HTTPServer]:
    yield from _fresh(httpd_session)


@pytest.fixture
def httpd2(httpd2_session: HTTPServer) -> Iterator[HTTPServer]:
    yield from _fresh(httpd2_session)


@pytest.fixture
def httpsd(httpsd_session: HTTPServer) -> Iterator[HTTPServer]:
    yield from _fresh(httpsd_session)


@pytest.fixture
def httpd6(httpd6_session: HTTPServer) -> Iterator[HTTPServer]:
    yield from _fresh(httpd6_session)


@pytest.fixture
def httpsd6(httpsd6_session: HTTPServer) -> Iterator[HTTPServer]:
    yield from _fresh(httpsd6_session)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A socket bound there and never listening: a connection gets a RST, and no other
    socket can bind the port meanwhile (one closed again at once could be taken by a
    server another test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def httpd_factory(tls_files: TLSFiles) -> Iterator[Callable[..., HTTPServer]]:
    started: list[HTTPServer] = []

    def make(root: Path | None = None, tls: bool = False) -> HTTPServer:
        server = HTTPServer(root=root, tls=tls_files.server_context() if tls else None)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    # Installed but failing to start is an error, not a skip.
    server = start_nginx(tmp_path_factory.mktemp("nginx-root"), tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


class SiteSource(Source):
    """A source that takes options: each item carries them in ``meta``."""

    name = "site"
    patterns = (r"^https?://site\.test/",)
    examples = ("https://site.test/a.bin",)
    option_names = ("token", "password", "max_pages")

    def items_at_once(self) -> tuple[Item]:
        return (Item(download_url=self.url, source=self.name, meta=dict(self.options)),)

    async def items(self) -> AsyncIterator[Item]:
        for item in self.items_at_once():
            yield item


@pytest.fixture
def site_source(monkeypatch: pytest.MonkeyPatch) -> type[Source]:
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (SiteSource, *builtin))
    return SiteSource
