"""The settings that had a config key and a variable but no flag (``user-agent``,
``max-connections``, ``max-redirects``, ``retry-max-wait``, ``retry-max-time``): each is a
flag of the same name now, its bad values one line and exit 2, ``""`` the default again."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main
from omniget.cli.args import build_parser, flags_from_args, parse_args
from omniget.cli.config import load_config
from omniget.settings import Settings

pytestmark = pytest.mark.isolated(work=True)

DATA = b"flagged" * 200

#: flag -> (a good value, the Settings field it sets as reached from Settings, that value)
GOOD: dict[str, tuple[str, Callable[[Settings], object], object]] = {
    "user-agent": ("agent/2", lambda s: s.network.user_agent, "agent/2"),
    "max-connections": ("3", lambda s: s.max_connections, 3),
    "max-redirects": ("0", lambda s: s.network.max_redirects, 0),
    "retry-max-wait": ("1.5", lambda s: s.retry_max_wait, 1.5),
    "retry-max-time": ("30", lambda s: s.retry_max_time, 30.0),
}


def settings(*argv: str, environ: dict[str, str] | None = None) -> Settings:
    ns = parse_args([*argv, "http://127.0.0.1:9/x"])
    configs = [Path(c) for c in ns.config] if ns.config else [Path(os.devnull)]
    return load_config(configs, environ or {}, flags_from_args(ns)).settings


@pytest.mark.parametrize("flag", list(GOOD))
def test_each_setting_has_a_flag_of_its_config_key_s_name(flag: str) -> None:
    value, field, expected = GOOD[flag]
    assert field(settings(f"--{flag}", value)) == expected
    assert field(settings(f"--{flag}={value}")) == expected
    assert f"--{flag}" in " ".join(build_parser("get").format_help().split())


@pytest.mark.parametrize("flag", list(GOOD))
def test_the_flag_wins_over_the_file_and_the_variable_and_empty_undoes_them(
    tmp_path: Path, flag: str
) -> None:
    value, field, expected = GOOD[flag]
    other = {"user-agent": '"from-file"', "retry-max-wait": "7", "retry-max-time": "9"}.get(
        flag, "5")
    path = tmp_path / "c.toml"
    path.write_text(f"{flag} = {other}\n", encoding="utf-8")
    var = {"OMNIGET_" + flag.upper().replace("-", "_"): other.strip('"')}
    default = field(Settings())
    for env, config in (({}, ["--config", str(path)]), (var, [])):
        assert field(settings(*config, environ=env)) not in (default, expected)
        assert field(settings(*config, f"--{flag}", value, environ=env)) == expected
        assert field(settings(*config, f"--{flag}", "", environ=env)) == default
        assert field(settings(*config, f"--{flag}=", environ=env)) == default


def test_an_empty_user_agent_flag_undoes_the_file_s_user_agent_header(tmp_path: Path) -> None:
    """A User-Agent header and ``user-agent`` are one setting (see the config layers)."""
    path = tmp_path / "c.toml"
    path.write_text('header = ["User-Agent: from-file", "X-Kept: 1"]\n', encoding="utf-8")
    got = settings("--config", str(path), "--user-agent", "").network
    assert (got.user_agent, got.headers) == (Settings().network.user_agent, (("X-Kept", "1"),))


BAD = [
    *[(f, v) for f in ("max-connections",) for v in ("0", "-1", "x", "2.5", "99999999999")],
    *[("max-redirects", v) for v in ("-1", "ten", "1.5", "99999999999")],
    *[(f, v) for f in ("retry-max-wait", "retry-max-time")
      for v in ("0", "-3", "soon", "1e3", "99999999999")],
    ("user-agent", "a\nb"),
]


@pytest.mark.parametrize(("flag", "value"), BAD)
def test_a_bad_value_is_one_line_and_exit_2_before_any_request(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    url = httpd.add(httpd.new_path("a.bin"), DATA)
    assert main([f"--{flag}={value}", "-o", "out", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith(f"omniget: error: argument --{flag}: "), err
    assert "expected" in err or "line break" in err, err
    assert httpd.requests == [] and not os.path.exists("out")


def test_a_flag_given_without_its_value_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["http://127.0.0.1:9/x", "--max-redirects"]) == 2
    err = capsys.readouterr().err
    assert "--max-redirects: expected one argument" in err and err.count("\n") == 1, err


def test_the_flags_reach_the_server(httpd: HTTPServer) -> None:
    """--user-agent is the header sent; --max-redirects 0 follows none (curl's
    --max-redirs 0), 1 follows one."""
    target = httpd.add(httpd.new_path("b.bin"), DATA)
    hop = httpd.url(httpd.new_path("hop"), redirect=target)
    assert main(["-q", "--user-agent", "agent/7", "-o", "one", hop]) == 0
    assert {r.header("user-agent") for r in httpd.requests} == {"agent/7"}
    assert main(["-q", "--max-redirects", "0", "-o", "none", hop]) != 0
    assert not os.path.exists("none/b.bin") and not os.path.exists("none/hop")
    assert main(["-q", "--max-redirects", "1", "-o", "two", hop]) == 0


@pytest.mark.parametrize(
    ("peer", "hint"),
    [(["-A", "x/1"], "the User-Agent is --user-agent TEXT"),
     (["-U", "x/1"], "the User-Agent is --user-agent TEXT"),
     (["--max-redirs", "3"], "the redirects followed at most are --max-redirects N"),
     (["--max-redirect", "3"], "the redirects followed at most are --max-redirects N"),
     (["-L"], "redirects are always followed (up to --max-redirects N, 10 by default)"),
     (["--retry-delay", "3"], "the wait before a retry grows by itself, up to "
                              "--retry-max-wait SECONDS"),
     (["--waitretry=3"], "the wait before a retry grows by itself"),
     (["--retry-wait", "3"], "the wait before a retry grows by itself")],
)
def test_curl_s_and_wget_s_names_point_to_the_flags(
    capsys: pytest.CaptureFixture[str], peer: list[str], hint: str
) -> None:
    assert main([*peer, "http://127.0.0.1:9/x"]) == 2
    err = capsys.readouterr().err
    assert f"is not an option of 'omniget get'; {hint}" in err, err


def test_a_user_agent_flag_that_took_the_url_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``omniget --user-agent URL``: "no URL given", and nothing on what took it. A URL
    in a User-Agent with URLs given is no slip (``... +http://example.com/bot``)."""
    url = "http://127.0.0.1:9/x"
    assert main(["--user-agent", url]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: no URL given: --user-agent took {url!r} for its value "
        "(--user-agent wants the User-Agent's text before the URL) (see 'omniget --help')\n")
    assert settings("--user-agent", "bot/1 (+http://example.com/bot)").network.user_agent == (
        "bot/1 (+http://example.com/bot)")
