"""The README and ``omniget get --help`` against the parser and the settings: every option a
user can give is in both, and every default they state is the one the code has; every
``--json`` event and summary count is named."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from omniget.cli.args import build_parser
from omniget.cli.config import OPTIONS
from omniget.cli.output import SUMMARY_KEYS
from omniget.engine import events
from omniget.errors import OmnigetError
from omniget.settings import NetworkSettings, Settings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def _cli_part() -> str:
    """The README's command-line part: the command block, the option table, the config text."""
    return README[README.index("## The command line") : README.index("### Exit codes")]


def _flags() -> list[list[str]]:
    """Each option of ``omniget get`` (and ``--version``), as its option strings."""
    parser = build_parser("get")
    return [list(a.option_strings) for a in parser._actions
            if a.option_strings and a.option_strings != ["-h", "--help"]]


@pytest.mark.parametrize("names", _flags(), ids=lambda names: names[-1])
def test_readme_names_every_option(names: list[str]) -> None:
    text = _cli_part()
    assert any(re.search(rf"`[^`]*{re.escape(n)}\b", text) for n in names), names


def test_readme_flags_exist() -> None:
    """Every ``--flag`` the README's command-line part shows is an option of the command."""
    known = {n for names in _flags() for n in names} | {"--help", "--cacert"}  # (curl's)
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", _cli_part()))
    assert shown - known == set()


def test_readme_names_every_config_key_without_a_flag() -> None:
    flags = {n.removeprefix("--") for names in _flags() for n in names}
    text = _cli_part()
    for name in OPTIONS:
        if name not in flags:
            assert f"`{name}" in text, name


def _help_default(flag: str) -> str:
    text = " ".join(build_parser("get").format_help().split())
    m = re.search(rf"{re.escape(flag)} \S+ [^()]*\(default ([^)]*)\)", text)
    assert m is not None, flag
    return m[1]


def test_help_defaults_are_the_settings() -> None:
    s, net = Settings(), NetworkSettings()
    assert _help_default("--connections") == f"{s.connections_per_host}"
    assert _help_default("--retries") == f"{s.retries}"
    assert _help_default("--jobs") == f"{s.jobs}"
    assert _help_default("--max-connections").startswith(f"{s.max_connections};")
    assert _help_default("--max-redirects").startswith(f"{net.max_redirects};")
    assert _help_default("--retry-max-wait").startswith(f"{s.retry_max_wait:g};")
    assert _help_default("--retry-max-time").startswith(f"{s.retry_max_time:g};")
    assert _help_default("--user-agent").startswith(f"{net.user_agent};")
    assert _help_default("--timeout") == (
        f"{net.connect_timeout:g} s to connect, {net.stall_timeout:g} s with no data"
    )


def test_readme_defaults_are_the_settings() -> None:
    s, net = Settings(), NetworkSettings()
    text = _cli_part()
    assert f"default {s.jobs};" in text
    assert f"(default {s.connections_per_host})" in text
    assert f"`OMNIGET_MAX_CONNECTIONS`, default {s.max_connections})" in text
    assert ("retries of each piece, the whole file or a split file's part "
            f"(default {s.retries})") in text
    assert (f"(default {net.connect_timeout:g} s to connect, {net.stall_timeout:g} s with no "
            "data)") in text
    text = " ".join(text.split())
    assert ("`--max-redirects N` | redirects followed at most for one request (default "
            f"{net.max_redirects};") in text
    assert f"a server's `Retry-After` included (default {s.retry_max_wait:g})" in text
    assert f"to retry, in all (default {s.retry_max_time:g})" in text
    assert f"over every host (default {s.max_connections};" in text
    assert f"as curl's `-A` (default `{net.user_agent}`)" in text


def test_readme_names_every_json_event_and_summary_count() -> None:
    """Before: the README said only that failures are events and the last line a summary."""
    text = _cli_part()
    written = {cls.__name__.lower() for cls in vars(events).values()
               if isinstance(cls, type) and issubclass(cls, events.Event)
               and cls not in (events.Event, events.Queued, events.Listed)}  # (not written)
    assert written >= {"started", "finished", "failed"}
    for name in sorted(written | {"error", "warning", "level", "summary", "exit_code"}):
        assert f"`{name}`" in text, name
    for key in {k for keys in SUMMARY_KEYS.values() for k in keys}:
        assert f"`{key}`" in text, key
    for action in ("write", "skip", "overwrite", "rename"):
        assert f"`{action}`" in text, action


def test_list_says_a_plain_link_is_listed_without_a_request() -> None:
    """Before: neither said so, and `omniget list` of a link that is gone (404) printed it,
    exit 0, as if it had been checked."""
    assert "(plain links unchecked)" in build_parser("list").format_help()
    assert "plain links make no request there" in " ".join(_cli_part().split())


def test_help_and_readme_say_a_zero_rate_is_no_limit(tmp_path: Path) -> None:
    from omniget.cli.config import load_settings

    env = {"XDG_CONFIG_HOME": str(tmp_path), "OMNIGET_LIMIT_RATE": "2M"}
    settings, _ = load_settings(environ=env, flags={"limit-rate": "0"})
    assert settings.limit_rate is None  # (what both must say)
    text = " ".join(build_parser("get").format_help().split())
    assert re.search(r"--limit-rate RATE [^-]*\(0: no limit\)", text), text
    row = next(line for line in _cli_part().splitlines() if line.startswith("| `--limit-rate"))
    assert "`0`: no limit" in row


NOTES = Path(__file__).parents[2] / "docs" / "design-notes.md"
SRC = Path(__file__).parents[2] / "src" / "omniget"


def test_readme_links_the_design_notes() -> None:
    assert "(docs/design-notes.md)" in README
    assert NOTES.is_file()


def test_design_notes_name_modules_and_functions_that_exist() -> None:
    """Each ``module.py`` the notes name is a module of the package (a bare name: one of that
    name somewhere in it), and each ``(`module.py`, `name`)`` a function or class there."""
    text = NOTES.read_text(encoding="utf-8")
    modules = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")}
    named = set(re.findall(r"`((?:[\w]+/)*[\w]+\.py)`", text))
    assert len(named) > 20
    for name in named:
        name = name.removeprefix("omniget/")
        assert any(m == name or m.endswith("/" + name) for m in modules), name
    pairs = re.findall(r"`([\w/]+\.py)`,\s+`(\w+)`", text)
    assert pairs
    for module, name in pairs:
        code = (SRC / module).read_text(encoding="utf-8")
        assert re.search(rf"^\s*(?:async )?(?:def|class) {name}\b", code, re.M), (module, name)


def test_every_error_has_what_the_readme_says() -> None:
    """The README's library part: each error has an ``exit_code``, ``retryable``,
    ``retry_after`` and ``max_retries``, under ``omniget.OmnigetError``."""
    import omniget
    from omniget import errors

    library = README.partition("## The library")[2].partition("\n## ")[0]
    assert "`exit_code`, `retryable`, `retry_after` and\n`max_retries`" in library
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not isinstance(cls, type):
            continue
        assert issubclass(cls, omniget.OmnigetError) and getattr(omniget, name) is cls, name
        err = cls("x")
        assert isinstance(cls.exit_code, int)
        assert (err.retryable, err.retry_after, err.max_retries) == (
            cls.retryable, None, cls.max_retries), name


def _table_cells() -> set[str]:
    """The backticked snippets of the option table's first column (``-o/--output DIR``)."""
    rows = [line for line in _cli_part().splitlines() if line.startswith("| `")]
    return {snippet for row in rows for snippet in re.findall(r"`([^`]+)`", row.split(" | ")[0])}


def _shown_as(action: argparse.Action) -> str:
    """An option as the table must show it: its names joined by ``/``, then its value as
    the help names it (``{a,b}`` as ``a\\|b``, the table's escaped bar)."""
    shown = "/".join(action.option_strings)
    if action.nargs != 0:
        metavar = str(action.metavar or action.dest.upper())
        if metavar.startswith("{"):
            metavar = metavar.strip("{}").replace(",", "\\|")
        shown += f" {metavar}"
    return shown


@pytest.mark.parametrize("command", ["get", "list"])
def test_readme_table_shows_every_option_as_the_help_does(command: str) -> None:
    """Before: the table left out --input-file, --header, --quiet and --verbose, and showed
    ``--resolve HOST:PORT:ADDR`` after the help had taken several addresses."""
    cells = _table_cells()
    for action in build_parser(command)._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        assert _shown_as(action) in cells, _shown_as(action)


def test_general_help_shows_options_as_get_does() -> None:
    """The general help's 'often used' block: each option there is one of ``get``'s, with
    the value the command's own help names."""
    epilog = build_parser().epilog or ""
    block = epilog.partition("often used")[2]
    actions = {o: a for a in build_parser("get")._actions for o in a.option_strings}
    shown = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)(?: ([A-Z][A-Z=]*|[a-z]+(?:\|[a-z]+)+))?",
                       block)
    assert len(shown) >= 12
    for flag, value in shown:
        assert flag in actions, flag
        if value:
            metavar = str(actions[flag].metavar).strip("{}").replace(",", "|")
            assert value == metavar, (flag, value)


def test_state_dir_default_is_said_as_the_code_has_it(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the help said ~/.local/state/omniget alone; $XDG_STATE_HOME moves it."""
    from omniget.settings import default_state_dir

    monkeypatch.delenv("OMNIGET_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "omniget"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / ".local/state/omniget"
    text = " ".join(build_parser("get").format_help().split())
    assert re.search(r"--state-dir DIR [^()]*\(default: \$XDG_STATE_HOME/omniget, else "
                     r"~/\.local/state/omniget\)", text), text
    cli = " ".join(_cli_part().split())
    assert "`$XDG_STATE_HOME/omniget/` (default `~/.local/state/omniget/`" in cli


def test_readme_names_the_variables_the_code_reads() -> None:
    """Each ``OMNIGET_`` variable read by name (not as ``OMNIGET_<OPTION>``) is in the README."""
    read = set()
    for path in SRC.rglob("*.py"):
        code = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"environ(?:\.get\(|\[)\"(OMNIGET_\w+)\"", code))
    assert read >= {"OMNIGET_CONFIG", "OMNIGET_STATE_DIR"}
    for var in read:
        assert f"`{var}`" in README, var


def test_readme_names_every_json_field_of_each_event() -> None:
    """Each ``--json`` event's fields, as the README lists them after its name. Before:
    ``progress`` had ``connections`` too, and the README did not say so."""
    from omniget.cli.json_events import event_to_dict
    from omniget.cli.output import Masker
    from omniget.model import Item

    item, err = Item(download_url="http://h/f"), OmnigetError("x")
    made = [
        events.Started(item, None, size=1, resumed=0),
        events.Progress(item, None, done=0, size=1),
        events.PieceDone(item, None, index=0, size=1),
        events.Retrying(item, None, error=err, attempt=1, delay=1.0),
        events.Skipped(item, None, reason="exists"),
        events.Finished(item, None, size=1, verified=None, fetched=1),
        events.Failed(item, None, error=err),
        events.Warned(item, None, message="m"),
    ]
    error_keys = {"error", "error_type", "exit_code"}
    text = " ".join(_cli_part().split())
    for event in made:
        d = event_to_dict(event, Masker())
        assert list(d)[:3] == ["event", "path", "url"]
        m = re.search(rf"`{d['event']}` \(((?:[^()]|\([^()]*\))*)\)", text)
        assert m is not None, d["event"]
        named = set(re.findall(r"`(\w+)`", m[1]))
        if "the error's fields" in m[1]:
            named |= error_keys
        assert named == set(d) - {"event", "path", "url"}, d["event"]
    # (a field of one kind of failed event only: said apart, with its value)
    late = event_to_dict(events.Failed(item, None, error=err, after_finished=True), Masker())
    assert set(late) - set(event_to_dict(made[-2], Masker())) == {"after_finished"}
    assert '`"after_finished": true`' in text
