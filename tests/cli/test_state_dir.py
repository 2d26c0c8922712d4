"""Where the resume journal goes when the environment says little or nonsense: no HOME,
an empty or relative HOME / XDG_STATE_HOME, a ``~user`` that names nobody. The CLI
in-process against the local server."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main
from omniget.errors import StorageError
from omniget.settings import default_config_dir, default_state_dir

DATA = b"state" * 100


pytestmark = pytest.mark.isolated(work=True, xdg=False)


def _no_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """This user has no passwd entry (a container's arbitrary uid)."""

    def missing(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", missing)


def test_relative_or_empty_xdg_and_home_are_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The XDG spec: a relative path in these variables is invalid and ignored. Before, a
    relative XDG_STATE_HOME put the journal under whatever folder the run started in, and
    an empty HOME put it in /.local/state."""
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_STATE_HOME", "rel/state")
    monkeypatch.setenv("XDG_CONFIG_HOME", "rel/config")
    assert default_state_dir() == home / ".local" / "state" / "omniget"
    assert default_config_dir() == home / ".config" / "omniget"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "")
    account = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert default_state_dir() == account / ".local" / "state" / "omniget"
    monkeypatch.setenv("HOME", "relative")
    assert default_state_dir() == account / ".local" / "state" / "omniget"


def test_no_home_at_all_is_a_clear_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME")
    _no_account(monkeypatch)
    with pytest.raises(StorageError, match="no folder for resume state"):
        default_state_dir()
    assert default_config_dir() is None


def test_no_home_downloads_without_resume_state(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: 'omniget: error: internal error: RuntimeError: Could not determine home
    directory.', exit 1, nothing downloaded."""
    url = httpd.add(httpd.new_path("h.bin"), DATA)
    monkeypatch.delenv("HOME")
    _no_account(monkeypatch)
    assert main([url, "-o", "out"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "omniget: warning: no folder for resume state: HOME is not set and XDG_STATE_HOME"
        " names none (give --state-dir or set OMNIGET_STATE_DIR); downloading without"
        " resume state")
    assert Path("out/h.bin").read_bytes() == DATA
    # with a state folder given, the same environment keeps resume state
    assert main([url, "-o", "out2", "--state-dir", "st"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert Path("st/journal.sqlite").exists()


@pytest.mark.parametrize("flag", ["--state-dir", "-o"])
def test_a_tilde_user_that_names_nobody_is_a_usage_error(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """``--state-dir '~nosuchuser/x'`` (quoted, or from a config file: no shell expands
    it). Before: 'internal error: RuntimeError: Could not determine home directory.',
    exit 1."""
    url = httpd.add(httpd.new_path("t.bin"), DATA)
    assert main([url, flag, "~nosuchuser-omniget/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal" not in err, err
    assert "~nosuchuser-omniget: no such user" in err
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize(("target", "said"), [
    ("nowhere", "is a symbolic link to nowhere, which is not there (see --state-dir)"),
    ("link", "is a loop of symbolic links, leading to no folder (see --state-dir)"),
], ids=["dangling", "loop"])
def test_a_state_folder_that_is_a_broken_link_says_so(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], target: str, said: str
) -> None:
    """Before: "open failed: File exists: .../link" (mkdir's words)."""
    url = httpd.add(httpd.new_path("s.bin"), DATA)
    os.symlink(target, "link")
    assert main(["--state-dir", "link", "-o", "out", url]) == 0
    err = capsys.readouterr().err
    [warning] = [ln for ln in err.splitlines() if "warning" in ln]
    assert f"{os.path.abspath('link')} {said}" in warning, warning
    assert Path("out/s.bin").read_bytes() == DATA


def test_a_state_dir_variable_may_start_with_a_tilde(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The library's default (no ``Settings(state_dir=...)``) took OMNIGET_STATE_DIR=~/st
    as a folder named ``~`` in the current one; the command expands it (a variable set
    in quotes, where no shell did)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMNIGET_STATE_DIR", "~/st")
    assert default_state_dir() == tmp_path / "home" / "st"
