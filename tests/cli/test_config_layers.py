"""The config file, the environment and the flags against each other, through the command
against the local server: a flag undoes a boolean the config file or the environment set,
the file's own problems (where it is, what it is, a key given twice) are one line naming
it before any request, and what belongs to one command (-O, URLs) is refused where it
cannot apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main
from omniget.cli.config import load_config

DATA = b"layers" * 200

pytestmark = pytest.mark.isolated(work=True)


def serve(httpd: HTTPServer, name: str = "a.bin") -> str:
    return httpd.add(httpd.new_path(name), DATA)


def config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def default_config(tmp_path: Path) -> Path:
    """Where the command looks for its config file in these tests (XDG_CONFIG_HOME)."""
    folder = tmp_path / "config" / "omniget"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "config.toml"


def json_text(text: str) -> str:
    import json

    return json.dumps(text)

# --- a flag undoes a boolean set elsewhere -------------------------------------------


@pytest.mark.parametrize("where", ["file", "env"])
def test_no_insecure_undoes_insecure_from_the_config_or_environment(
    httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    """``insecure = true`` in the config file (or OMNIGET_INSECURE=1) could not be undone
    for one run: there was no flag to switch it off (curl's --no-insecure)."""
    argv = ["-q", "--ca-cert", str(tls_ca_path), "-o", "out"]
    if where == "file":
        argv += ["--config", str(config(tmp_path, "insecure = true\n"))]
    else:
        monkeypatch.setenv("OMNIGET_INSECURE", "yes")
    url = serve(httpsd)
    assert main([*argv, url]) == 0
    assert capsys.readouterr().err == (
        "omniget: warning: TLS certificates are not verified (--insecure)\n")
    assert main([*argv, "--on-exists", "overwrite", "--no-insecure", url]) == 0
    assert capsys.readouterr().err == ""
    # (the last of the two on the command line wins, as in curl)
    assert main([*argv, "--on-exists", "overwrite", "--no-insecure", "--insecure", url]) == 0
    assert "not verified" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "env"])
def test_netrc_undoes_no_netrc_from_the_config_or_environment(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login bob password pw\n")
    argv = ["-q", "-o", "out", "--on-exists", "overwrite"]
    if where == "file":
        argv += ["--config", str(config(tmp_path, "no-netrc = true\n"))]
    else:
        monkeypatch.setenv("OMNIGET_NO_NETRC", "1")
    url = serve(httpd)
    assert main([*argv, url]) == 0
    assert main([*argv, "--netrc", url]) == 0
    assert main([*argv, "--netrc", "--no-netrc", url]) == 0
    auth = [r.header("authorization") for r in httpd.requests]
    assert auth == [None, "Basic Ym9iOnB3", None]


def test_the_undoing_flags_are_options_of_the_file_and_environment_too(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    path = config(tmp_path, "no-insecure = true\nnetrc = false\n")
    net = load_config(path, env).settings.network
    assert (net.insecure, net.netrc) == (False, False)
    net = load_config(path, {**env, "OMNIGET_INSECURE": "1", "OMNIGET_NETRC": "1"}).settings.network
    assert (net.insecure, net.netrc) == (True, True)
