"""Text in a config file or the environment that no setting can take (a NUL, a line break
in what goes into a request) is refused by the option's parser, naming the config key or
the variable, never showing the value (a password or a token, maybe). Before, the
library's settings said it in their own words (``NetworkSettings(user_agent=...)``, the
value shown), a NUL in ``output`` was an internal error, and a line break in ``user``
went through."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniget.cli import main
from omniget.cli.config import load_config
from omniget.errors import UsageError

SECRET = "s3cr3t"

#: key, the TOML value with {bad} where the character goes
KEYS = [
    ("user-agent", '"agent{bad}" '), ("header", '["X-A: v{bad}"]'),
    ("header", '{{X-A = "v{bad}"}}'),
    ("user", '"bob:pw{bad}"'), ("proxy", '"http://127.0.0.1:{bad}8080"'),
    ("resolve", '["files.test:80:127.0.0.1{bad}"]'), ("on-exists", '"skip{bad}"'),
]
#: keys naming a file or folder: a line break may be in a name, a NUL never
PATHS = ["output", "state-dir", "cookies", "ca-cert", "netrc-file"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "empty")}


def _refused(tmp_path: Path, key: str, toml: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(f"{key} = {toml}\n", encoding="utf-8")
    with pytest.raises(UsageError) as err:
        load_config(path, _env(tmp_path))
    said = str(err.value)
    assert said.startswith(f"config file {path}, line 1: key {key!r}: "), said
    assert SECRET not in said and "\0" not in said and "\n" not in said, said
    return said


@pytest.mark.parametrize(("key", "value"), KEYS, ids=[f"{k}{i}" for i, (k, _) in enumerate(KEYS)])
@pytest.mark.parametrize("bad", ["\\u0000", "\\n", "\\r"], ids=["nul", "lf", "cr"])
def test_a_config_value_no_request_can_carry_names_its_key(
    tmp_path: Path, key: str, value: str, bad: str
) -> None:
    said = _refused(tmp_path, key, value.format(bad=bad + SECRET))
    assert ("NUL" in said) if bad == "\\u0000" else ("line break" in said), said


@pytest.mark.parametrize("key", PATHS)
def test_a_nul_in_a_config_path_names_its_key(tmp_path: Path, key: str) -> None:
    said = _refused(tmp_path, key, f'"a\\u0000{SECRET}"')
    assert "NUL" in said


@pytest.mark.parametrize(
    ("var", "value"),
    [("OMNIGET_USER_AGENT", f"x\r\nEvil: {SECRET}"), ("OMNIGET_USER", f"bob:pw\n{SECRET}"),
     ("OMNIGET_PROXY", f"http://127.0.0.1:8080\n{SECRET}")],
)
def test_an_environment_value_with_a_line_break_names_its_variable(
    tmp_path: Path, var: str, value: str
) -> None:
    with pytest.raises(UsageError) as err:
        load_config(None, {**_env(tmp_path), var: value})
    said = str(err.value)
    assert said.startswith(f"environment variable {var}: ") and "line break" in said, said
    assert SECRET not in said and "Evil" not in said


def test_the_command_says_a_nul_in_the_output_folder_of_its_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was 'internal error: ValueError: embedded null byte' (exit 1)."""
    for var in ("OMNIGET_OUTPUT", "OMNIGET_STATE_DIR", "OMNIGET_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "c.toml"
    config.write_text('output = "o\\u0000ut"\n', encoding="utf-8")
    assert main(["--config", str(config), "--dry-run", "http://127.0.0.1:9/x.bin"]) == 2
    err = capsys.readouterr().err
    assert err == (f"omniget: error: config file {config}, line 1: key 'output': the value "
                   "has a NUL character\n")


def test_a_line_break_in_a_folder_s_name_is_a_name(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('output = "two\\nlines"\n', encoding="utf-8")
    assert load_config(path, _env(tmp_path)).output == Path("two\nlines")
