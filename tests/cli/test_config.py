"""Config file + environment + flags -> Settings: precedence, parsing, errors, secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import omniget
import omniget.cli
from omniget.cli.config import load_config, load_settings, parse_count, parse_rate
from omniget.errors import UsageError
from omniget.settings import Settings

MiB = 1024 * 1024


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def noenv(tmp_path: Path) -> dict[str, str]:
    """An environment with no config file in reach."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "empty")}


def test_defaults(tmp_path: Path) -> None:
    settings, sources = load_settings(environ=noenv(tmp_path))
    assert settings == Settings()
    assert sources == {}


def test_config_file_keys(tmp_path: Path, site_source: type[object]) -> None:
    path = write(tmp_path, """
connections = 8
limit-rate = "2M"
retries = 2
split = 3
jobs = 5
on-exists = "overwrite"
output = "~/dl"
timeout = 30
proxy = "socks5h://127.0.0.1:9050"
ca-cert = "ca.pem"
state_dir = "state"
header = ["Referer: https://example.com/"]
resolve = ["example.com:443:127.0.0.1"]
no-netrc = true
user-agent = "Mozilla/5.0"

[site]
token = "gf-token-123"
password = "open sesame"
max-pages = 4
""")
    cfg = load_config(path, noenv(tmp_path))
    s, net = cfg.settings, cfg.settings.network
    assert (s.connections_per_host, s.retries, s.split, s.jobs) == (8, 2, 3, 5)
    assert s.limit_rate == 2 * MiB
    assert s.on_exists == "overwrite"
    assert cfg.output == Path("~/dl").expanduser()
    assert net.connect_timeout == net.stall_timeout == 30.0
    assert net.proxy == "socks5h://127.0.0.1:9050"
    assert net.ca_cert == "ca.pem"
    assert s.state_dir == Path("state")
    assert net.headers == (("Referer", "https://example.com/"),)
    assert net.resolve == ("example.com:443:127.0.0.1",)
    assert net.netrc is False
    assert net.user_agent == "Mozilla/5.0"
    assert cfg.sources == {
        "site": {"token": "gf-token-123", "password": "open sesame", "max_pages": 4},
    }
    assert {"gf-token-123", "open sesame"} <= set(cfg.secrets)


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "connections = 2\nretries = 1\nsplit = 1\n")
    env = {"OMNIGET_CONNECTIONS": "3", "OMNIGET_RETRIES": "9"}
    s, _ = load_settings(path, env, {"connections": 4})
    assert s.connections_per_host == 4  # flag > env > file
    assert s.retries == 9  # env > file
    assert s.split == 1  # file > default
    assert s.jobs == Settings().jobs  # default


def test_env_names(tmp_path: Path, site_source: type[object]) -> None:
    env = {
        **noenv(tmp_path),
        "OMNIGET_STATE_DIR": str(tmp_path / "st"),
        "OMNIGET_LIMIT_RATE": "500k",
        "OMNIGET_ON_EXISTS": "rename",
        "OMNIGET_INSECURE": "yes",
        "OMNIGET_GOFILE_TOKEN": "omni-token",
        "GOFILE_TOKEN": "megaloader-token",
        "PIXIV_PHPSESSID": "12345_abcdef",
        "FANBOX_SESSID": "fanbox-sess",
        "OMNIGET_SITE_MAX_PAGES": "3",
        "UNRELATED": "x",
    }
    cfg = load_config(None, env)
    assert cfg.settings.state_dir == tmp_path / "st"
    assert cfg.settings.limit_rate == 500 * 1024
    assert cfg.settings.on_exists == "rename"
    assert cfg.settings.network.insecure is True
    assert cfg.sources["gofile"] == {"token": "omni-token"}  # OMNIGET_ name wins
    assert cfg.sources["pixiv"] == {"session_id": "12345_abcdef"}
    assert cfg.sources["fanbox"] == {"session_id": "fanbox-sess"}
    assert cfg.sources["site"] == {"max_pages": "3"}
    assert {"omni-token", "12345_abcdef", "fanbox-sess"} <= set(cfg.secrets)


def test_env_beats_file_for_source_options(tmp_path: Path, site_source: type[object]) -> None:
    path = write(tmp_path, '[site]\ntoken = "from-file"\npassword = "p1"\n')
    _, sources = load_settings(path, {"OMNIGET_SITE_TOKEN": "from-env"})
    assert sources["site"] == {"token": "from-env", "password": "p1"}


def test_default_config_path_from_xdg(tmp_path: Path) -> None:
    (tmp_path / "xdg" / "omniget").mkdir(parents=True)
    write(tmp_path / "xdg" / "omniget", "jobs = 2\n")
    s, _ = load_settings(environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert s.jobs == 2
    s, _ = load_settings(environ={"OMNIGET_CONFIG": str(write(tmp_path, "jobs = 7\n", "o.toml"))})
    assert s.jobs == 7


def test_headers_merge_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, 'header = ["Referer: a", "X-One: 1"]\n')
    s, _ = load_settings(path, {}, {"header": (("referer", "b"),)})
    assert s.network.headers == (("X-One", "1"), ("referer", "b"))


@pytest.mark.parametrize("line", ["Range: bytes=0-3", "if-range: \"e1\""])
def test_headers_the_engine_sets_are_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(UsageError, match=r"--header: cannot set .*sends it itself"):
        load_settings(environ=noenv(tmp_path), flags={"header": [line]})
    with pytest.raises(UsageError, match=r"key 'header': cannot set .*sends it itself"):
        load_settings(write(tmp_path, f"header = [{line!r}]\n"), {})


def test_flags_take_strings_and_underscores(tmp_path: Path) -> None:
    s, _ = load_settings(environ=noenv(tmp_path), flags={"limit_rate": "1G", "on-exists": "skip"})
    assert s.limit_rate == 1024**3
    with pytest.raises(UsageError, match="unknown option 'colour'"):
        load_settings(environ=noenv(tmp_path), flags={"colour": "red"})


def test_zero_rate_means_unlimited(tmp_path: Path) -> None:
    s, _ = load_settings(environ={**noenv(tmp_path), "OMNIGET_LIMIT_RATE": "1M"},
                         flags={"limit-rate": 0})
    assert s.limit_rate is None


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "connections = = 3\n")
    with pytest.raises(UsageError) as e:
        load_settings(path, {})
    assert str(path) in str(e.value) and "invalid TOML" in str(e.value)
    assert e.value.exit_code == 2


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "conections = 3\n")
    with pytest.raises(UsageError, match="unknown key 'conections'") as e:
        load_settings(path, {})
    assert str(path) in str(e.value)


def test_near_misses_of_keys_and_source_tables_are_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="did you mean 'connections'"):
        load_settings(write(tmp_path, "conections = 3\n"), {})
    with pytest.raises(UsageError,
                       match=r"\[htpp\] is not a source \(sources: http\); did you mean 'http'"):
        load_settings(write(tmp_path, "[htpp]\nmax_pages = 3\n"), {})
    # a table for a source not installed here is refused as well (as wget and aria2 refuse
    # an unknown setting in their files); it was kept and silently unused
    with pytest.raises(UsageError, match=r"\[zzsite\] is not a source \(sources: http\)$"):
        load_settings(write(tmp_path, "[zzsite]\nkey = 1\n"), {})


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[network]\nproxy = "http://p:3128"\n',
         r"\[network\] is not a source \(sources: site, http\); 'proxy' is a top-level key: "
         r"put it above the first \[table\], without a \[network\] line$"),
        ("[http]\nfoo = 1\n",
         r"\[http\]: unknown option 'foo' \(the http source takes: none\)$"),
        ('[site]\ntokn = "t"\n',
         r"\[site\]: unknown option 'tokn' \(the site source takes: token, password, "
         r"max_pages\); did you mean 'token'\?$"),
        ('[site]\ntoken = "t"\njobs = 4\n',
         r"\[site\]: 'jobs' is not an option of the site source; as a top-level key it goes "
         r"above the first \[table\]"),
    ],
    ids=["unknown-table", "unknown-key", "near-key", "top-level-key-in-a-table"],
)
def test_a_table_or_key_no_source_takes_is_an_error(
    tmp_path: Path, site_source: type[object], text: str, said: str
) -> None:
    """Was: accepted, and the setting silently did nothing."""
    path = write(tmp_path, text)
    with pytest.raises(UsageError, match=said) as e:
        load_settings(path, noenv(tmp_path))
    assert re.match(rf"config file {re.escape(str(path))}, line [123]: \[", str(e.value))


@pytest.mark.parametrize(
    ("var", "said"),
    [
        ("OMNIGET_HTTP_FOO", r"OMNIGET_HTTP_FOO: unknown option 'foo' \(the http source "
                             r"takes: none\)$"),
        ("OMNIGET_SITE_TOKN", r"OMNIGET_SITE_TOKN: unknown option 'tokn' .*did you mean 'token'"),
        ("OMNIGET_SITE", r"OMNIGET_SITE: names the site source but no option "
                         r"\(OMNIGET_SITE_OPTION\)"),
        ("OMNIGET_HTPP_FOO", r"OMNIGET_HTPP_FOO: no source is called 'htpp'; did you mean "
                             r"'http'\?"),
        ("OMNIGET_LIMIT_RAT", r"OMNIGET_LIMIT_RAT names no option; did you mean "
                              r"OMNIGET_LIMIT_RATE\?"),
    ],
)
def test_a_source_option_in_the_environment_is_checked(
    tmp_path: Path, site_source: type[object], var: str, said: str
) -> None:
    with pytest.raises(UsageError, match=f"environment variable {said}"):
        load_settings(environ={**noenv(tmp_path), var: "2M"})
    load_settings(environ={**noenv(tmp_path), var: ""})  # (set but empty: as if unset)


def test_an_empty_proxy_variable_means_no_proxy(tmp_path: Path) -> None:
    """OMNIGET_PROXY="" switches the proxy off, as --proxy "" and curl's (it was taken as
    unset, so http_proxy or the config file's proxy still applied)."""
    path = write(tmp_path, 'proxy = "http://proxy.test:3128"\n')
    assert load_settings(path, {"OMNIGET_PROXY": ""})[0].network.proxy == ""
    assert load_settings(path, {})[0].network.proxy == "http://proxy.test:3128"
    assert load_settings(path, {"OMNIGET_JOBS": ""})[0].jobs == Settings().jobs  # (unset)


def test_source_tables_of_sources_not_installed_stay_in_the_environment(
    tmp_path: Path,
) -> None:
    """Megaloader's names (GOFILE_TOKEN) and OMNIGET_<SOURCE>_<KEY> of a source not installed
    here are not errors: the environment is shared with other programs and versions."""
    env = {**noenv(tmp_path), "OMNIGET_GOFILE_TOKEN": "t", "PIXIV_PHPSESSID": "s",
           "OMNIGET_SOAK_SEEDS": "3", "OMNIGET_HOME": "h", "OMNIGET_CACHE": "c"}
    _, sources = load_settings(environ=env)
    assert sources["gofile"] == {"token": "t"} and sources["pixiv"] == {"session_id": "s"}


def test_flag_only_key_is_refused_in_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'checksum' cannot be set in a config file") as e:
        load_settings(write(tmp_path, 'checksum = "md5=00"\n'), {})
    assert "unknown" not in str(e.value) and "belongs to one URL" in str(e.value)


def test_bad_value_in_file_names_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"key 'connections'.*at least 1"):
        load_settings(write(tmp_path, "connections = 0\n"), {})
    with pytest.raises(UsageError, match="key 'insecure'"):
        load_settings(write(tmp_path, 'insecure = "perhaps"\n'), {})


@pytest.mark.parametrize(
    ("line", "got"),
    [("jobs = true", "true"), ("retries = false", "false"), ("timeout = true", "true"),
     ("limit-rate = true", "true"), ("output = true", "true"), ("insecure = 1", "1")],
)
def test_a_bad_value_in_the_file_is_said_as_toml_writes_it(
    tmp_path: Path, line: str, got: str
) -> None:
    """``jobs = true`` was refused with "got True" (Python's spelling, not the file's)."""
    key = line.partition(" ")[0]
    with pytest.raises(UsageError, match=rf"key '{key}': expected .*, got {got}$"):
        load_settings(write(tmp_path, line + "\n"), noenv(tmp_path))


@pytest.mark.parametrize(
    ("line", "got"),
    [("output = 5", "5"), ("state-dir = 1.5", "1.5"), ("cookies = 0", "0"),
     ("ca-cert = 2", "2"), ("user-agent = 7", "7"), ("netrc-file = 3", "3"),
     ("user = 12", "12"), ("proxy = 8080", "8080"), ("on-exists = 1", "1"),
     ('header = ["A: b", 3]', "3"), ("resolve = [1]", "1")],
)
def test_a_number_for_a_string_setting_in_the_file_is_refused(
    tmp_path: Path, line: str, got: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``output = 5`` was taken for a folder named "5"."""
    path = write(tmp_path, line + "\n")
    key = line.partition(" ")[0]
    with pytest.raises(UsageError, match=rf"key '{key}': expected a string in quotes, "
                       rf"got {re.escape(got)}$"):
        load_settings(path, noenv(tmp_path))
    assert omniget.cli.main(["--config", str(path), "http://127.0.0.1:9/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"key '{key}': expected a string" in err


def test_a_number_as_a_header_value_in_a_table_is_text(tmp_path: Path) -> None:
    s, _ = load_settings(write(tmp_path, "header = {X-Version = 2}\n"), noenv(tmp_path))
    assert s.network.headers == (("X-Version", "2"),)


@pytest.mark.parametrize("key", ["retries", "max-redirects"])
def test_negative_number_in_file_is_refused(tmp_path: Path, key: str) -> None:
    # (TOML gives a real int: it must not slip past the digits-only check of strings)
    with pytest.raises(UsageError, match=rf"key '{key}'.*at least 0, got -1"):
        load_settings(write(tmp_path, f"{key} = -1\n"), {})
    with pytest.raises(UsageError, match="at least 0"):
        load_settings(environ=noenv(tmp_path), flags={key: -1})


@pytest.mark.parametrize("agent", ["x\r\nEvil: 1", "a\x00b"])
def test_a_user_agent_that_no_request_can_carry_is_a_usage_error(
    tmp_path: Path, agent: str
) -> None:
    """A line break sent a header of its own with every request; a NUL (since refused
    by the settings) was an internal error. The variable is named (not the library's
    field: user_agent)."""
    with pytest.raises(UsageError, match=r"^environment variable OMNIGET_USER_AGENT: "):
        load_settings(environ={**noenv(tmp_path), "OMNIGET_USER_AGENT": agent})


def test_bad_env_value_names_variable(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="OMNIGET_CONNECTIONS"):
        load_settings(environ={**noenv(tmp_path), "OMNIGET_CONNECTIONS": "zero"})


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config file"):
        load_settings(tmp_path / "missing.toml", {})


@pytest.mark.parametrize(
    ("text", "value"),
    [("100", 100), ("500k", 512000), ("500K", 512000), ("2M", 2 * MiB), ("1.5G", 3 * 1024**3 // 2),
     ("2MB", 2 * MiB), ("2MiB/s", 2 * MiB), (" 10k ", 10240), ("0", 0), (4096, 4096)],
)
def test_parse_rate(text: object, value: int) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize("text", ["5Q", "", "k", "-1", "1.2.3", "fast", True, -5, None, "0.5",
                                  "0.0001k"])
def test_parse_rate_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize("text", ["zero", "0", "-3", "1.5", "", False,
                                  "99999999999999999999", 2**63])
def test_parse_count_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_count(text)


def test_secrets_collected(tmp_path: Path) -> None:
    cfg = load_config(None, noenv(tmp_path), {
        "user": "bob:hunter22",
        "header": (("Authorization", "Bearer abc.def"), ("Referer", "https://x/")),
        "proxy": "http://u:proxypass@proxy:8080",
    })
    assert set(cfg.secrets) == {"hunter22", "Bearer abc.def", "proxypass"}


def test_a_proxy_password_is_a_secret_with_or_without_a_scheme(tmp_path: Path) -> None:
    """(Without a scheme, it was not masked.)"""
    for proxy in ("u:proxypass@proxy:8080", "socks5h://u:proxypass@proxy:1080"):
        cfg = load_config(None, noenv(tmp_path), {"proxy": proxy})
        assert set(cfg.secrets) == {"proxypass"}, proxy


def test_reexported_from_package(tmp_path: Path, site_source: type[object]) -> None:
    s, sources = omniget.load_settings(
        write(tmp_path, "jobs = 3\n[site]\ntoken = 't'\n"), {}
    )
    assert s.jobs == 3 and sources == {"site": {"token": "t"}}


@pytest.mark.parametrize("var", ["OMNIGET_DRY_RUN", "OMNIGET_QUIET", "OMNIGET_JSON",
                                 "OMNIGET_INCLUDE"])
def test_a_flag_only_name_in_the_environment_is_an_error(tmp_path: Path, var: str) -> None:
    """OMNIGET_DRY_RUN=1 looks like a dry run: it must not download (before: taken as
    option "run" of a source "dry", and ignored)."""
    flag = "--" + var.removeprefix("OMNIGET_").lower().replace("_", "-")
    with pytest.raises(UsageError, match=f"{var} cannot be used: {flag} is a command-line"):
        load_settings(environ={**noenv(tmp_path), var: "1"})
    load_settings(environ={**noenv(tmp_path), var: ""})  # (set but empty: as if unset)


def test_a_flag_only_name_in_the_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"key 'dry_run' cannot be set in a config file "
                                         r"\(give --dry-run on the command line\)"):
        load_settings(write(tmp_path, "dry_run = true\n"), {})


def test_every_long_flag_is_an_option_or_flag_only() -> None:
    from omniget.cli.args import COMMANDS, build_parser
    from omniget.cli.options import FLAG_ONLY, OPTIONS

    for name in COMMANDS:
        for action in build_parser(name)._actions:
            for flag in action.option_strings:
                if flag.startswith("--"):
                    assert flag[2:] in OPTIONS or flag[2:] in FLAG_ONLY, flag


def test_a_config_file_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    """Before: "internal error: UnicodeDecodeError", exit 1."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('user-agent = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin1.toml: not UTF-8 text \(invalid "):
        load_settings(path, {})


def test_a_config_file_with_a_bom_is_read(tmp_path: Path) -> None:
    """Windows editors start UTF-8 files with a BOM (as -i lists): before, "invalid TOML:
    Invalid statement (at line 1, column 1)"."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbfjobs = 3\r\n")
    assert load_settings(path, {})[0].jobs == 3


@pytest.mark.parametrize(
    "line", ["max-connections = 99999999999999999999", "max-redirects = 9223372036854775808",
             "timeout = 1e300", "timeout = 9223372036854775"],
)
def test_numbers_libcurl_cannot_take_are_refused(tmp_path: Path, line: str) -> None:
    # (they reached libcurl and ended in "internal error: OverflowError", exit 1)
    with pytest.raises(UsageError, match=f"key '{line.split()[0]}': expected"):
        load_settings(write(tmp_path, line + "\n"), noenv(tmp_path))


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        ({"conections": 4}, "unknown option 'conections'; did you mean 'connections'?"),
        ({"connections_per_host": 4}, "unknown option 'connections_per_host' (flags take the "
         "command's names: 'connections' sets Settings' connections_per_host)"),
        ({"connect_timeout": 5}, "unknown option 'connect_timeout' (flags take the command's "
         "names: 'timeout' sets Settings' network.connect_timeout)"),
    ],
)
def test_a_flag_load_settings_does_not_know_is_named_with_the_one_meant(
    tmp_path: Path, flags: dict[str, object], said: str
) -> None:
    """``omniget.load_settings(flags=...)`` said only ``unknown option 'conections'``, and
    the same of a Settings field's name (``connections_per_host``)."""
    with pytest.raises(UsageError) as err:
        omniget.load_settings(environ=noenv(tmp_path), flags=flags)
    assert str(err.value) == said


@pytest.mark.parametrize(
    "line", ['jobs = "\u0664"', 'retries = "\u0664"', 'timeout = "1_0"',
             'timeout = "\u0664"', 'retry-max-time = "1_0"', 'retry-max-wait = "\u0664"',
             'limit-rate = "\u0664M"', 'connections = "1_0"'],
)
def test_numbers_in_the_file_are_ascii_digits(tmp_path: Path, line: str) -> None:
    """``jobs = "\u0664"`` (an Arabic-Indic 4) and ``timeout = "1_0"`` were taken:
    the same rule as the command line's."""
    with pytest.raises(UsageError, match=f"key '{line.split()[0]}': expected"):
        load_settings(write(tmp_path, line + "\n"), noenv(tmp_path))
