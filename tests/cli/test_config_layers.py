"""The config file, the environment and the flags against each other, through the command
against the local server: a flag undoes a boolean the config file or the environment set,
the file's own problems (where it is, what it is, a key given twice) are one line naming
it before any request, and what belongs to one command (-O, URLs) is refused where it
cannot apply."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main
from omniget.cli.config import load_config
from omniget.errors import UsageError

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


# --- one setting given twice in one place --------------------------------------------


@pytest.mark.parametrize(
    ("text", "said"),
    [("jobs = 3\nJOBS = 4\n", "key 'JOBS' sets what key 'jobs' on line 1 sets"),
     ('on-exists = "skip"\n# why\non_exists = "overwrite"\n',
      "key 'on_exists' sets what key 'on-exists' on line 1 sets"),
     ("netrc = true\nno-netrc = true\n", "key 'no-netrc' sets what key 'netrc' on line 1 sets"),
     ("insecure = true\nno-insecure = true\n",
      "key 'no-insecure' sets what key 'insecure' on line 1 sets")],
)
def test_one_setting_under_two_spellings_in_one_file_is_refused(
    httpd: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    """TOML refuses a key given twice, but ``jobs`` and ``JOBS`` (or ``on-exists`` and
    ``on_exists``, ``netrc`` and ``no-netrc``) are two keys to it: the last one won,
    silently."""
    path = config(tmp_path, text)
    line = text.count("\n")
    assert main(["--config", str(path), "-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: config file {path}, line {line}: {said} (give it once)\n")
    assert httpd.requests == [] and os.listdir() == []


def test_one_setting_under_two_variables_is_refused(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "OMNIGET_NETRC": "1",
           "OMNIGET_NO_NETRC": "1"}
    with pytest.raises(UsageError) as err:
        load_config(None, env)
    assert str(err.value) == ("environment variable OMNIGET_NO_NETRC sets what OMNIGET_NETRC "
                              "sets (set one of them)")
    load_config(None, {**env, "OMNIGET_NETRC": ""})  # (empty: as if unset)


def test_a_user_agent_variable_wins_over_a_user_agent_header_of_the_file(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``header = ["User-Agent: ..."]`` in the file beat OMNIGET_USER_AGENT: the
    environment is to win over the file, whichever key of it sets the header."""
    path = config(tmp_path, 'header = ["User-Agent: from-file", "X-A: 1"]\n')
    monkeypatch.setenv("OMNIGET_USER_AGENT", "from-env")
    assert main(["-q", "--config", str(path), "-o", "out", serve(httpd)]) == 0
    assert main(["-q", "--config", str(path), "-H", "User-Agent: from-flag", "-o", "out2",
                 serve(httpd)]) == 0
    first, second = httpd.requests
    assert (first.header("user-agent"), first.header("x-a")) == ("from-env", "1")
    assert second.header("user-agent") == "from-flag"


def test_a_user_agent_key_and_header_in_one_file_are_one_setting_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, 'user-agent = "a"\nheader = ["user-agent: b"]\n')
    assert main(["--config", str(path), "-o", "out", "http://127.0.0.1:9/x"]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: config file {path}, line 2: key 'header' sets what key "
        "'user-agent' on line 1 sets (give it once)\n")
    with pytest.raises(UsageError, match="OMNIGET_USER_AGENT sets what OMNIGET_HEADER sets"):
        load_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "none"),
                           "OMNIGET_HEADER": "User-Agent: b", "OMNIGET_USER_AGENT": "a"})


# --- where a bad value is: the file's line -------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [("# mine\njobs = 3\n\nlimit-rate = \"fast\"\n", 4,
      "key 'limit-rate': expected a rate like 500k, 2M or 1G (bytes/s), got 'fast'"),
     ('"retries" = -1\n', 1, "key 'retries': expected a whole number of at least 0, got -1"),
     ("jobs = 2\nheader = [\n  \"X-A: 1\",\n  \"bad\",\n]\n", 2,
      "key 'header': expected 'Name: value', got 'bad'"),
     ("jobs = 2\nconections = 3\n", 2, "unknown key 'conections'; did you mean 'connections'?"),
     ('jobs = 2\n\n[htpp]\nx = 1\n', 3,
      "[htpp] is not a source (sources: http); did you mean 'http'?"),
     ('jobs = 2\n\n[http]\n\nfoo = 1\n', 5,
      "[http]: unknown option 'foo' (the http source takes: none)"),
     ("jobs = 2\nchecksum = \"md5=00\"\n", 2, "key 'checksum' cannot be set in a config "
      "file, it belongs to one URL (give --checksum on the command line)")],
    ids=["value", "quoted-key", "multi-line-list", "unknown-key", "table", "table-key",
         "flag-only"],
)
def test_a_bad_line_in_the_config_file_is_named_by_its_number(
    httpd: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    text: str, line: int, said: str,
) -> None:
    path = config(tmp_path, text)
    assert main(["--config", str(path), "-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == f"omniget: error: config file {path}, line {line}: {said}\n"
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize("var", ["OMNIGET_jobs", "omniget_limit_rate", "Omniget_Jobs"])
def test_an_option_s_variable_in_lower_case_is_refused(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    var: str,
) -> None:
    """OMNIGET_jobs=0 was ignored without a word (not even its 0 refused): variable names
    are case-sensitive, so it set nothing."""
    monkeypatch.setenv(var, "0")
    assert main(["-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: environment variable {var} names no option; did you mean "
        f"{var.upper()}? (variable names are in upper case)\n")
    assert httpd.requests == [] and os.listdir() == []
    monkeypatch.setenv(var, "")  # (set but empty: as if unset)
    assert main(["-q", "-o", "out", serve(httpd)]) == 0


# --- what belongs to one command -------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "said"),
    [("OMNIGET_OUTPUT_FILE", "cannot be used: give -O on the command line"),
     ("OMNIGET_URL", "cannot be used: URLs are given on the command line, or with -i"),
     ("OMNIGET_URLS", "cannot be used: URLs are given on the command line, or with -i"),
     ("OMNIGET_O", "names no option (variables take the long flags' names: -o is "
      "OMNIGET_OUTPUT; -O is a command-line flag only)"),
     ("OMNIGET_N", "names no option (variables take the long flags' names: -N is "
      "OMNIGET_CONNECTIONS)")],
)
def test_o_or_urls_in_the_environment_are_refused(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    var: str, said: str,
) -> None:
    """They were taken for a source not installed here, and ignored: the file went to
    its own name, not to OMNIGET_OUTPUT_FILE's."""
    url = serve(httpd)
    monkeypatch.setenv(var, url if "URL" in var else "4" if var == "OMNIGET_N" else "x.bin")
    assert main(["-o", "out", url]) == 2
    assert capsys.readouterr().err == f"omniget: error: environment variable {var} {said}\n"
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize(
    ("line", "said"),
    [('O = "x.bin"', "key 'O' cannot be set in a config file (give -O on the command line)"),
     ('output-file = "x.bin"',
      "key 'output-file' cannot be set in a config file (give -O on the command line)"),
     ('urls = ["http://127.0.0.1:9/"]', "key 'urls' cannot be set in a config file (URLs are "
      "given on the command line, or with -i)"),
     ("N = 3", "unknown key 'N' (keys are the long flags' names: -N is 'connections')"),
     ("j = 3", "unknown key 'j' (keys are the long flags' names: -j is 'jobs')"),
     ('H = ["X-A: 1"]', "unknown key 'H' (keys are the long flags' names: -H is 'header')"),
     ('i = "list.txt"', "key 'i' cannot be set in a config file (give --input-file on the "
      "command line)")],
)
def test_short_flags_o_and_urls_in_the_config_file_say_what_they_are(
    httpd: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, said: str
) -> None:
    """Each was "unknown key 'N'" and no more (``output-file``: "did you mean 'output'?")."""
    path = config(tmp_path, f"{line}\n")
    assert main(["--config", str(path), "-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == f"omniget: error: config file {path}, line 1: {said}\n"
    assert httpd.requests == [] and os.listdir() == []


def test_the_short_flags_named_in_messages_are_the_parser_s() -> None:
    from omniget.cli.args import COMMANDS, build_parser
    from omniget.cli.options import SHORT_FLAGS

    found = {}
    for name in COMMANDS:
        for action in build_parser(name)._actions:
            short = [o[1:] for o in action.option_strings if len(o) == 2 and o != "-h"]
            long = [o[2:] for o in action.option_strings if o.startswith("--")]
            if short and long:
                found[short[0]] = long[0]
    assert found == SHORT_FLAGS


# --- the default config file that is there but no file -------------------------------


@pytest.mark.parametrize("kind", ["folder", "broken link", "fifo"])
def test_a_default_config_that_is_no_file_is_said(
    httpd: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Before: skipped without a word, as if there were none (its settings unused)."""
    path = default_config(tmp_path)
    why = {"folder": "a folder, not a file",
           "broken link": f"a link to {tmp_path / 'gone.toml'}, which is not there",
           "fifo": "a FIFO, not a file (give it with --config to read it)"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "gone.toml")
    assert main(["-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == f"omniget: error: config file {path}: {why}\n"
    assert httpd.requests == [] and os.listdir() == []
    assert main(["-q", "--config", os.devnull, "-o", "out", serve(httpd)]) == 0  # (ignored)


def test_a_default_config_in_a_folder_that_cannot_be_searched_is_one_line(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """Was "internal error: PermissionError" (exit 1): the file's folder had no x bit."""
    from tests.integration._cli import drop_mode_overrides

    path = default_config(tmp_path)
    path.write_text("jobs = 2\n")
    path.parent.chmod(0o600)
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        res = subprocess.run([sys.executable, "-m", "omniget", "-o", "out", serve(httpd)],
                             capture_output=True, text=True, env=env, timeout=60,
                             preexec_fn=drop_mode_overrides if os.geteuid() == 0 else None)
    finally:
        path.parent.chmod(0o755)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == f"omniget: error: config file {path}: Permission denied\n"
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize(("kind", "why"), [("missing", "No such file or directory"),
                                           ("folder", "Is a directory"),
                                           ("unreadable", "Permission denied")])
def test_a_config_file_given_that_cannot_be_read_is_one_line(
    httpd: HTTPServer, tmp_path: Path, kind: str, why: str
) -> None:
    """``--config`` naming what is no readable file: one line, exit 2, nothing asked for or
    made (as root, run without the capabilities that bypass file modes)."""
    from tests.integration._cli import drop_mode_overrides

    path = tmp_path / "c.toml"
    if kind == "folder":
        path.mkdir()
    elif kind == "unreadable":
        path.write_text("jobs = 2\n")
        path.chmod(0)
    env = {**os.environ, "NO_COLOR": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "--config", str(path), "-o", "out", serve(httpd)],
        capture_output=True, text=True, env=env, timeout=60,
        preexec_fn=drop_mode_overrides if os.geteuid() == 0 else None)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == f"omniget: error: config file {path}: {why}\n"
    assert httpd.requests == [] and os.listdir() == []


@pytest.mark.parametrize(("kind", "why"), [("missing", "No such file or directory"),
                                           ("folder", "Is a directory")])
def test_a_config_file_omniget_config_names_says_that_variable_named_it(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], kind: str, why: str,
) -> None:
    """Before: "config file PATH: No such file or directory", no word of OMNIGET_CONFIG (a
    variable set long ago in a shell's profile, maybe)."""
    path = tmp_path / "c.toml"
    if kind == "folder":
        path.mkdir()
    monkeypatch.setenv("OMNIGET_CONFIG", str(path))
    assert main(["-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: config file {path}: {why} (named by OMNIGET_CONFIG)\n")
    assert httpd.requests == [] and os.listdir() == []


def test_omniget_config_naming_a_user_who_is_not_there_is_one_line(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was "internal error: ValueError: ~nosuchuser: no such user", exit 1."""
    monkeypatch.setenv("OMNIGET_CONFIG", "~nosuchuser-omniget/c.toml")
    assert main(["-o", "out", serve(httpd)]) == 2
    assert capsys.readouterr().err == ("omniget: error: environment variable OMNIGET_CONFIG: "
                                       "~nosuchuser-omniget: no such user\n")
    assert httpd.requests == [] and os.listdir() == []


# --- one value, one spelling ----------------------------------------------------------


def test_a_rate_with_a_point_is_taken_unquoted_in_the_file_as_on_the_command_line(
    tmp_path: Path,
) -> None:
    """``--limit-rate 1.5`` and ``OMNIGET_LIMIT_RATE=1.5`` were taken, ``limit-rate = 1.5``
    refused ("expected a rate like 500k")."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    assert load_config(config(tmp_path, "limit-rate = 1500.5\n"), env).settings.limit_rate == 1500
    assert load_config(None, {**env, "OMNIGET_LIMIT_RATE": "1500.5"}).settings.limit_rate == 1500
    with pytest.raises(UsageError, match=r"key 'limit-rate': expected a rate of at least 1"):
        load_config(config(tmp_path, "limit-rate = 0.5\n"), env)
    with pytest.raises(UsageError, match=r"key 'limit-rate': expected a rate like 500k"):
        load_config(config(tmp_path, "limit-rate = -1.5\n"), env)


def test_several_resolve_entries_go_in_one_variable_one_per_line(
    httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMNIGET_RESOLVE took one entry (a line break was refused), where OMNIGET_HEADER
    takes one header per line, as the file's list and repeated flags take several."""
    url = serve(httpd).replace("127.0.0.1", "files.test")
    monkeypatch.setenv("OMNIGET_RESOLVE", f"other.test:80:127.0.0.1\n"
                                          f"files.test:{httpd.port}:127.0.0.1\n")
    assert main(["-q", "-o", "out", url]) == 0
    assert (Path("out") / "a.bin").read_bytes() == DATA


# --- secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization Bearer tok-s3cr3t",
                                    "Authorization=Bearer tok-s3cr3t",
                                    "Cookie sid=tok-s3cr3t:x"])
@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_a_header_without_its_colon_is_refused_without_its_value(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], header: str, where: str,
) -> None:
    """``-H "Authorization Bearer TOKEN"`` (the ':' forgotten) was refused quoting it
    whole, the token with it, on stderr and in the --json error event."""
    argv = ["--json", "-o", "out", serve(httpd)]
    if where == "flag":
        argv[:0] = ["-H", header]
    elif where == "env":
        monkeypatch.setenv("OMNIGET_HEADER", header)
    else:
        argv[:0] = ["--config", str(config(tmp_path, f"header = [{header!r}]\n"))]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "s3cr3t" not in out + err and err.count("\n") == 1, err
    name = header.split(" ")[0].split("=")[0]
    assert f"'{name}'" in err and "(the rest is not shown)" in err, err
    assert httpd.requests == [] and os.listdir() == []


# --- a file a setting names, found unusable later --------------------------------------


FILE_SETTINGS = [("ca-cert", "ca-cert {path}: no such file or folder"),
                 ("cookies", "cannot read cookies file {path}: No such file or directory"),
                 ("netrc-file", "netrc-file {path}: no such file")]


@pytest.mark.parametrize(
    ("key", "said", "where"),
    [(key, said, where) for key, said in FILE_SETTINGS for where in ("flag", "env", "file")],
)
def test_a_file_setting_that_cannot_be_read_says_where_it_was_set(
    httpsd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], key: str, said: str, where: str,
) -> None:
    """``ca-cert = "..."`` in the config file naming no file was said as ``--ca-cert
    PATH: no such file or folder``: a flag the command line did not have."""
    missing = tmp_path / "gone"
    var = "OMNIGET_" + key.upper().replace("-", "_")
    argv = ["--json", "-o", "out", serve(httpsd)]
    path = config(tmp_path, f'jobs = 2\n{key} = "{missing}"\n')
    origin = {"flag": "", "env": f" (set by environment variable {var})",
              "file": f" (set in config file {path}, line 2)"}[where]
    if where == "flag":
        argv[:0] = [f"--{key}", str(missing)]
    elif where == "env":
        monkeypatch.setenv(var, str(missing))
    else:
        argv[:0] = ["--config", str(path)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    line = said.format(path=missing) + origin
    if where == "flag":  # (as the command line said it)
        line = line.replace(f"{key} ", f"--{key} ", 1) if key == "ca-cert" else line
    assert err == f"omniget: error: {line}\n"
    assert out.startswith('{"event": "error", "error": ' + json_text(line))
    assert httpsd.requests == [] and os.listdir() == []


@pytest.mark.parametrize("flags", [["--debug"], ["-v", "--json"]], ids=["debug", "json"])
def test_secrets_from_the_config_file_and_environment_never_reach_the_output(
    httpd: HTTPServer, tmp_path: Path, refused_port: int, flags: list[str]
) -> None:
    """A password, a token and a proxy's password given in the config file or a variable,
    as the real command says a run through a proxy that is down: masked in each line."""
    path = config(tmp_path, f'user = "carol:user-pass-789"\n'
                            f'header = ["Authorization: Bearer head-tok-000"]\n'
                            f'proxy = "http://pu:proxy-pass-321@127.0.0.1:{refused_port}"\n')
    env = {**os.environ, "NO_COLOR": "1", "OMNIGET_HEADER": "Cookie: sid=cookie-val-111",
           "OMNIGET_STATE_DIR": str(tmp_path / "state")}
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "--config", str(path), "--retries", "0", *flags,
         "-o", "out", serve(httpd)], capture_output=True, text=True, env=env, timeout=60)
    said = res.stdout + res.stderr
    assert res.returncode == 3 and "proxy" in said, said
    for secret in ("user-pass-789", "head-tok-000", "proxy-pass-321", "cookie-val-111"):
        assert secret not in said, secret


def test_one_setting_under_two_flag_names_of_the_library_is_refused(tmp_path: Path) -> None:
    import omniget

    env = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    with pytest.raises(UsageError) as err:
        omniget.load_settings(environ=env, flags={"netrc": True, "no-netrc": True})
    assert str(err.value) == "--no-netrc sets what --netrc sets (give one of them)"
    with pytest.raises(UsageError, match="--header sets what --user-agent sets"):
        omniget.load_settings(environ=env, flags={"user-agent": "a",
                                                  "header": ["User-Agent: b"]})


@pytest.mark.parametrize(
    ("flag", "said"),
    [("config", "unknown option 'config' (the config file is load_settings' config=)"),
     ("dry-run", "unknown option 'dry-run' (--dry-run shapes one command: it is no setting)"),
     ("input_file", "unknown option 'input_file' (--input-file shapes one command: it is no "
      "setting)")],
)
def test_a_command_s_own_flag_given_to_load_settings_says_what_it_is(
    tmp_path: Path, flag: str, said: str
) -> None:
    """Was "unknown option 'dry-run'" and no more: a long flag of the command's."""
    import omniget

    with pytest.raises(UsageError) as err:
        omniget.load_settings(environ={"XDG_CONFIG_HOME": str(tmp_path / "none")},
                              flags={flag: "x"})
    assert str(err.value) == said
