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
    origin = {"flag": "--proxy", "env": "the proxy set by environment variable OMNIGET_PROXY",
              "file": f"the proxy set in config file {path}, line 2"}[where]
    done = cli(*args, env=env)
    assert done.returncode == 3, done.stderr
    said = f"could not connect to the proxy {proxy} for "
    check = f": Connection refused (check {origin})"
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("omniget: error")]
    assert errors and all(said in ln and check in ln for ln in errors), done.stderr
    assert "--proxy" not in done.stderr or where == "flag"
    done = cli("--json", *args, env=env)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    failed = [e for e in events if e.get("event") == "failed"]
    assert failed and all(said in e["error"] and check in e["error"] for e in failed), events


# --- 2. a flag given "" undoes what the file or a variable set -----------------------


@pytest.mark.parametrize("where", ["env", "file"])
def test_an_empty_flag_undoes_the_file_s_or_environment_s_setting(
    httpd: HTTPServer, where: str
) -> None:
    """``user``, ``header``, ``cookies`` and ``netrc-file`` set in the file or a variable
    had no flag to undo them for one run (``--proxy ""`` and ``--limit-rate 0`` had)."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    values = {"user": "bob:pw", "header": "X-From: there", "cookies": "no-such-cookies",
              "netrc-file": "no-such-netrc"}
    env: dict[str, str] = {}
    args = ["-q", "-o", "out", "--on-exists", "overwrite"]
    if where == "env":
        env = {"OMNIGET_" + k.upper().replace("-", "_"): v for k, v in values.items()}
    else:
        lines = [f'{k} = {[v] if k == "header" else v!r}' for k, v in values.items()]
        args += ["--config", str(write("c.toml", "\n".join(lines).replace("'", '"')))]
    done = cli(*args, url, env=env)
    assert done.returncode == 2 and "no-such" in done.stderr, done.stderr
    for undo, kept in (("cookies", "netrc"), ("netrc-file", "cookies")):
        done = cli(*args, f"--{undo}", "", url, env=env)
        assert done.returncode == 2 and f"no-such-{kept}" in done.stderr, done.stderr
    done = cli(*args, *[a for k in values for a in (f"--{k}", "")], url, env=env)
    assert (done.returncode, done.stderr) == (0, "")
    got = httpd.requests[-1]
    assert (got.header("authorization"), got.header("x-from")) == (None, None)


def test_an_empty_header_flag_drops_the_headers_before_it(httpd: HTTPServer) -> None:
    """As wget's ``--header=""``: the file's, the variable's and the earlier -H's headers
    go; a -H after it is sent."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    path = write("c.toml", 'header = ["X-File: 1"]\n')
    done = cli("-q", "--config", str(path), "-o", "out", "-H", "X-Before: 1", "-H", "",
               "-H", "X-After: 1", url, env={"OMNIGET_HEADER": "X-Env: 1"})
    assert (done.returncode, done.stderr) == (0, "")
    got = httpd.requests[-1]
    assert [got.header(n) for n in ("x-file", "x-env", "x-before", "x-after")] == [
        None, None, None, "1"]


def test_an_empty_ca_cert_flag_undoes_the_file_s(httpsd: HTTPServer) -> None:
    """A ``ca-cert`` of the file that cannot be read stops the run (dry run too);
    ``--ca-cert ""`` is curl's own search for CAs again."""
    url = httpsd.add(httpsd.new_path("a.bin"), DATA)
    path = write("c.toml", 'ca-cert = "no-such-ca.pem"\n')
    done = cli("--config", str(path), "--dry-run", "-o", "out", url)
    assert done.returncode == 2 and "no-such-ca.pem" in done.stderr, done.stderr
    done = cli("--config", str(path), "--ca-cert", "", "--dry-run", "-o", "out", url)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("where", ["env", "file"])
def test_an_empty_resolve_flag_undoes_the_file_s_entries(
    httpd: HTTPServer, where: str
) -> None:
    url = httpd.add(httpd.new_path("a.bin"), DATA).replace("127.0.0.1", "files.test")
    entry = f"files.test:{httpd.port}:127.0.0.1"
    args = ["-q", "--retries", "0", "-o", "out"]
    env: dict[str, str] = {}
    if where == "env":
        env["OMNIGET_RESOLVE"] = entry
    else:
        args += ["--config", str(write("c.toml", f'resolve = ["{entry}"]\n'))]
    assert cli(*args, url, env=env).returncode == 0
    done = cli(*args, "--on-exists", "overwrite", "--resolve", "", url, env=env)
    assert done.returncode == 3 and "could not resolve host files.test" in done.stderr


def test_an_empty_split_or_state_dir_flag_is_the_default_again(tmp_path: Path) -> None:
    """``split`` had no value for "adaptive", ``state-dir`` none for its default folder."""
    from omniget.cli.args import flags_from_args, parse_args
    from omniget.cli.config import load_config

    path = write("c.toml", 'split = 3\nstate-dir = "elsewhere"\n')
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    ns = parse_args(["--config", str(path), "--split", "", "--state-dir", "", "URL"])
    settings = load_config(path, env, flags_from_args(ns)).settings
    assert settings.split is None
    assert load_config(None, env).settings.state_dir == settings.state_dir


# --- 3. --config - reads stdin; --config twice reads both ------------------------------


def test_config_dash_reads_the_config_from_stdin(httpd: HTTPServer) -> None:
    """As curl's ``-K -``. Before: a file named ``-`` was looked for."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    done = cli("-q", "--config", "-", "-o", "out", url, stdin='header = ["X-Stdin: 1"]\n')
    assert (done.returncode, done.stderr) == (0, "")
    assert httpd.requests[-1].header("x-stdin") == "1"
    done = cli("-q", "--config", "-", "-o", "out", url, stdin="jobs = 0\n")
    assert done.returncode == 2
    assert done.stderr.startswith("omniget: error: config from stdin, line 1: key 'jobs': ")


@pytest.mark.parametrize("second", [["-i", "-"], ["--config", "-"]])
def test_config_dash_with_another_reader_of_stdin_is_one_line(
    httpd: HTTPServer, second: list[str]
) -> None:
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    done = cli("--config", "-", *second, "-o", "out", url, stdin=f"{url}\n")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "omniget: error: --config - and -i - both read stdin (give one of them a file)\n"
        if second[0] == "-i" else
        "omniget: error: --config - is given twice (stdin is read once)\n")
    assert httpd.requests == []


def test_config_given_twice_reads_both_in_order(httpd: HTTPServer) -> None:
    """As curl reads each -K file in turn: the later file's values win, each error names
    its own file. Before: the first --config was silently dropped."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    one = write("one.toml", 'header = ["X-One: 1", "X-Both: one"]\nproxy = ""\n')
    two = write("two.toml", 'header = ["X-Both: two"]\n')
    done = cli("-q", "--config", str(one), "--config", str(two), "-o", "out", url)
    assert (done.returncode, done.stderr) == (0, "")
    got = httpd.requests[-1]
    assert (got.header("x-one"), got.header("x-both")) == ("1", "two")
    bad = write("bad.toml", "jobs = 0\n")
    done = cli("-q", "--config", str(one), "--config", str(bad), "-o", "out", url)
    assert done.returncode == 2
    assert done.stderr.startswith(f"omniget: error: config file {bad}, line 1: key 'jobs'")


# --- 4. a user without a password, from the file or a variable -------------------------


def user_set(where: str, name: str = "bob") -> tuple[list[str], dict[str, str], str]:
    """Arguments, environment and origin (" (set ...)") giving ``user`` = ``name``."""
    if where == "flag":
        return ["--user", name], {}, ""
    if where == "env":
        return [], {"OMNIGET_USER": name}, " (set by environment variable OMNIGET_USER)"
    path = write("c.toml", f'jobs = 2\nuser = "{name}"\n')
    return ["--config", str(path)], {}, f" (set in config file {path}, line 2)"


@pytest.mark.parametrize("where", ["env", "file"])
def test_a_user_without_a_password_and_no_terminal_is_said_as_for_the_flag(
    httpd: HTTPServer, where: str
) -> None:
    """Before: ``expected USER:PASSWORD``, where ``--user bob`` said there was no
    terminal to ask on."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    flag = cli("--user", "bob", "-o", "out", url)
    args, env, origin = user_set(where)
    done = cli(*args, "-o", "out", url, env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == flag.stderr.rstrip("\n") + origin + "\n"
    assert flag.stderr.startswith("omniget: error: --user bob: no password, and no terminal")
    assert httpd.requests == [] and not Path("out").exists()


@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_a_user_without_a_password_is_asked_for_it_on_a_terminal_wherever_set(
    httpd: HTTPServer, where: str
) -> None:
    import base64
    import contextlib
    import pty

    """As curl: ``--user bob`` on a terminal asks for the password, without echo (it was
    refused: "expected USER:PASSWORD"); so does a user the file or a variable names."""
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    args, env, _ = user_set(where)
    main_fd, term = pty.openpty()
    full = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1", **env}
    with subprocess.Popen(  # (a session of its own: no /dev/tty but this terminal)
        [sys.executable, "-m", "omniget", "-q", *args, "-O", "f", url], stdin=term,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, start_new_session=True,
    ) as proc:
        os.close(term)
        assert proc.stderr is not None
        prompt = b"Enter host password for user 'bob': "
        assert proc.stderr.read(len(prompt)) == prompt
        os.write(main_fd, b"s3cret\n")
        out, err = proc.communicate(timeout=60)
    echoed = b""
    with contextlib.suppress(OSError):  # (EIO: the terminal's other end is gone)
        echoed = os.read(main_fd, 1024)
    os.close(main_fd)
    assert (proc.returncode, out, err) == (0, b"", b"\n")  # (getpass ends the line)
    assert b"s3cret" not in echoed and Path("f").read_bytes() == DATA
    auth = base64.b64encode(b"bob:s3cret").decode()
    assert [r.header("authorization") for r in httpd.requests] == [f"Basic {auth}"]


def test_the_library_s_load_settings_still_wants_the_password(tmp_path: Path) -> None:
    """No terminal to ask on there: a user without a password is refused, saying where."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "OMNIGET_USER": "bob"}
    with pytest.raises(omniget.UsageError) as err:
        omniget.load_settings(environ=env)
    assert str(err.value) == ("user bob: no password (give USER:PASSWORD) (set by "
                              "environment variable OMNIGET_USER)")
