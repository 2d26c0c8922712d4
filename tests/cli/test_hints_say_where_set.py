"""The hints after a failure name the setting where it was set: ``--proxy`` and
``--ca-cert`` on the command line, a config file's line or a variable otherwise (they said
"check --proxy", "--ca-cert names", "see --state-dir" whatever had set it). Each through the
real command (a subprocess), with the setting as a flag, in a variable and in the file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer
from tests.servers.listener import Canned

import omniget

pytestmark = pytest.mark.isolated(work=True)

SRC = str(Path(omniget.__file__).resolve().parent.parent)
DATA = b"where" * 300
#: The variables that would choose a proxy or CAs for the command but the test's own.
UNSET = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
         "NO_PROXY", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
WHERES = ["flag", "env", "file"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in UNSET and
            not k.startswith("OMNIGET_")}
    full.update({"PYTHONPATH": SRC, "NO_COLOR": "1", **env})
    return subprocess.run([sys.executable, "-m", "omniget", *args], capture_output=True,
                          text=True, env=full, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


def given(where: str, option: str, value: str) -> tuple[list[str], dict[str, str], str]:
    """The arguments and variables that set ``option`` to ``value`` ``where``, and how a
    hint names it there (the flag, or ``the OPTION set ...``)."""
    if where == "flag":
        return [f"--{option}", value], {}, f"--{option}"
    if where == "env":
        var = "OMNIGET_" + option.upper().replace("-", "_")
        return [], {var: value}, f"the {option} set by environment variable {var}"
    path = Path("c.toml").resolve()
    path.write_text(f'jobs = 2\n{option} = "{value}"\n', encoding="utf-8")
    return ["--config", str(path)], {}, f"the {option} set in config file {path}, line 2"


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in done.stderr.splitlines() if ln.startswith("omniget: error")]


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


#: A proxy's answer to every request, CONNECT too: it wants a login it never gets.
LOGIN_WANTED = (b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n")


@pytest.mark.parametrize("where", [*WHERES, "http_proxy"])
def test_a_proxy_that_refuses_says_where_to_check(
    httpd: HTTPServer, closed_port: int, where: str
) -> None:
    """Was "(check --proxy and *_proxy)", whichever of them had named it."""
    proxy = f"http://127.0.0.1:{closed_port}"
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    args: list[str] = []
    if where == "http_proxy":
        env, named = {"http_proxy": proxy}, "http_proxy"
    else:
        args, env, named = given(where, "proxy", proxy)
    done = cli(*args, "--retries", "0", "-o", "out", url, env=env)
    assert done.returncode == 3, done.stderr
    said = f"could not connect to the proxy {proxy} for {url}: Connection refused (check {named})"
    assert errors(done) == [f"omniget: error: out/a.bin: {said}"], done.stderr
    assert "*_proxy" not in done.stderr
    assert "--proxy" not in done.stderr or where == "flag", done.stderr


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_wants_a_login_says_where_it_was_set(
    scheme: str, where: str
) -> None:
    """Was "put its user name and password in the proxy's URL (--proxy or *_proxy)"."""
    with Canned(LOGIN_WANTED) as proxy:
        args, env, named = given(where, "proxy", f"http://127.0.0.1:{proxy.port}")
        url = f"{scheme}://files.test/a.bin"
        done = cli(*args, "--retries", "0", "-o", "out", url, env=env)
    assert done.returncode == 5, done.stderr
    said = f"put its user name and password in the proxy's URL ({named})"
    assert len(errors(done)) == 1 and errors(done)[0].endswith(said), done.stderr
    assert "--proxy" not in done.stderr or where == "flag", done.stderr


@pytest.mark.parametrize("where", WHERES)
def test_a_ca_file_without_the_server_s_ca_says_where_it_was_set(
    httpsd: HTTPServer, tmp_path: Path, where: str
) -> None:
    """Was "its CA is not among those --ca-cert names"."""
    trustme = pytest.importorskip("trustme")
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    args, env, named = given(where, "ca-cert", str(other))
    url = httpsd.add(httpsd.new_path("a.bin"), DATA)
    done = cli(*args, "--retries", "0", "-o", "out", url, env=env)
    assert done.returncode == 3, done.stderr
    why = ("its CA is not among those --ca-cert names" if where == "flag"
           else f"its CA is not in {named}")
    assert len(errors(done)) == 1, done.stderr
    assert errors(done)[0].endswith(f"; {why}; --insecure skips the check"), done.stderr
    assert "--ca-cert" not in done.stderr or where == "flag", done.stderr


@pytest.mark.parametrize("where", WHERES)
def test_a_ca_file_that_is_not_there_says_where_it_was_set(
    httpsd: HTTPServer, tmp_path: Path, where: str
) -> None:
    """Was "--ca-cert PATH: no such file or folder (set in config file ...)": a flag the
    command line did not have."""
    missing = tmp_path / "gone.pem"
    args, env, named = given(where, "ca-cert", str(missing))
    done = cli(*args, "-o", "out", httpsd.add(httpsd.new_path("a.bin"), DATA), env=env)
    assert done.returncode == 2, done.stderr
    line = (f"--ca-cert {missing}: no such file or folder" if where == "flag" else
            f"ca-cert {missing}: no such file or folder ({named.removeprefix('the ca-cert ')})")
    assert done.stderr == f"omniget: error: {line}\n"


@pytest.mark.parametrize("where", WHERES)
def test_a_state_folder_that_cannot_be_made_says_where_it_was_set(
    httpd: HTTPServer, where: str
) -> None:
    """Was "(see --state-dir)"; the run goes on without resume state."""
    Path("file").write_bytes(b"")
    state = Path("file/state").resolve()
    args, env, named = given(where, "state-dir", str(state))
    done = cli(*args, "-o", "out", httpd.add(httpd.new_path("a.bin"), DATA), env=env)
    assert done.returncode == 0, done.stderr
    assert f"is a file, not a folder (see {named}); downloading without resume state" in (
        done.stderr), done.stderr
    assert "--state-dir" not in done.stderr or where == "flag", done.stderr
