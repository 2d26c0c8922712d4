"""Config file + environment + flags -> :class:`Settings` and per-source option tables.

Precedence: command-line flags > environment > config file > defaults. The config file is
TOML: top-level keys are named like the long flags (dashes or underscores), and each table
(``[gofile]``, ``[http]``, ...) holds the options of one source, passed to ``extract``.

The option table and the value parsers are in :mod:`omniget.cli.options` (its public names
are still importable from here); this module reads the config file and the environment
and merges them with the flags.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path

from .._frozen import plain_dataclass
from ..engine.transports.base import SECRET_HEADERS  # (masked as the engine guards them)
from ..errors import UsageError, nearest
from ..masks import proxy_password
from ..settings import NetworkSettings, Settings, default_config_dir
from ..userfiles import NotText, read_text
from .options import (
    COMMAND_LINE_ONLY,
    FLAG_ONLY,
    OPTIONS,
    SHORT_FLAGS,
    ArgumentError,
    Option,
    parse_bool,
    parse_count,
    parse_digest,
    parse_header,
    parse_path,
    parse_rate,
    parse_resolve,
    parse_user,
)

__all__ = [
    "OPTIONS",
    "Config",
    "Option",
    "load_config",
    "load_settings",
    "parse_bool",
    "parse_count",
    "parse_digest",
    "parse_header",
    "parse_rate",
    "parse_resolve",
    "parse_user",
]

#: The options a flag given ``""`` sets back to their default (none, or found as curl
#: finds it), whatever the config file or a variable set: their defaults have no value to
#: give. In a list (``-H``, ``--resolve``) it drops the values before it.
EMPTY_UNDOES = frozenset(["split", "header", "cookies", "user", "state-dir", "ca-cert",
                          "resolve", "netrc-file", "max-connections", "retry-max-wait",
                          "retry-max-time", "max-redirects", "user-agent"])

#: The options the engine's errors name, and the field that says where each was set
#: (the flag, by default: errors found later, mid-run, say the file's line or a variable).
NAMED_WHERE_SET = {"proxy": "network.proxy_from", "ca-cert": "network.ca_cert_from",
                   "state-dir": "state_dir_from"}

#: Source option names whose values are secrets.
SECRET_OPTION = r"token|pass|secret|sessid|session|cookie|key|auth"

#: The largest config file read (one of every option and source table is a few KiB).
CONFIG_MAX = 1 << 20

#: ``--config -``: the config is stdin's text (as curl's ``-K -``). Known by identity:
#: a file named ``-`` is ``Path("-")`` too.
STDIN = Path("-")

#: Megaloader's environment variables, feeding the source option tables.
MEGALOADER_ENV: dict[str, tuple[str, str]] = {
    "GOFILE_TOKEN": ("gofile", "token"),
    "GOFILE_SALT": ("gofile", "salt"),
    "PIXIV_PHPSESSID": ("pixiv", "session_id"),
    "FANBOX_SESSID": ("fanbox", "session_id"),
    "FANBOX_SESSION_ID": ("fanbox", "session_id"),
    "RULE34_API_KEY": ("rule34", "api_key"),
    "RULE34_USER_ID": ("rule34", "user_id"),
}


@plain_dataclass
class Config:
    """What the CLI runs with: settings, source option tables, output folder, secrets."""

    settings: Settings
    sources: dict[str, dict[str, object]] = field(default_factory=dict)
    output: Path | None = None
    secrets: tuple[str, ...] = ()
    #: Where an option's value was set, when not on the command line (``ca-cert`` ->
    #: ``config file PATH, line 3``), for an error about it found later.
    origins: dict[str, str] = field(default_factory=dict)

    def where_set(self, error: BaseException) -> str:
        """`` (set in config file PATH, line 3)`` for a UsageError about an option set
        there, or in a variable; else ""."""
        said = self.set_where(getattr(error, "setting", None) or "")
        return f" ({said})" if said else ""

    def set_where(self, option: str) -> str:
        """``set in config file PATH, line 3`` or ``set by environment variable X`` for an
        option set there; "" for one set on the command line, or not at all."""
        origin = self.origins.get(option)
        return "" if origin is None else _set_at(origin)


def _set_at(origin: str) -> str:
    """``set in config file PATH, line 3`` or ``set by environment variable X``."""
    return f"set {'by' if origin.startswith('environment') else 'in'} {origin}"


class _Twice(Exception):
    """A setting given a second time in one layer (the file, the environment); its arg:
    the name that gave it first."""


class _Layers:
    """Values by target, later layers replacing earlier ones (headers merge by name; a
    User-Agent header and ``user-agent`` are one setting)."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.sources: dict[str, dict[str, object]] = {}
        self.origins: dict[str, str] = {}  # option -> where it was set, but on the command line
        self.given: dict[str, str] = {}  # target -> the name that set it in this layer

    def layer(self) -> None:
        """The next layer begins: what it sets replaces, never repeats, the earlier's."""
        self.given = {}

    def set(self, opt: Option, raw: object, where: str, origin: str | None = None,
            name: str = "") -> None:
        """``raw`` for ``opt`` (ValueError: UsageError saying ``where``); _Twice when this
        layer set it already, under another ``name``."""
        try:
            value = opt.parse(raw)
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from None
        targets = list(opt.targets)
        if opt.name == "header" and any(n.lower() == "user-agent" for n, _ in value):
            targets.append("network.user_agent")
        first = next((self.given[t] for t in targets if t in self.given), None)
        if first is not None:
            raise _Twice(first)
        self.given.update(dict.fromkeys(targets, name))
        if "network.user_agent" in opt.targets:  # (an earlier layer's header: replaced)
            old = self.values.get("network.headers", ())
            assert isinstance(old, tuple)
            self.values["network.headers"] = tuple(
                h for h in old if h[0].lower() != "user-agent")
        if origin is None:
            self.origins.pop(opt.name, None)
        else:
            self.origins[opt.name] = origin
        if opt.invert:
            value = not value
        for target in opt.targets:
            if target == "network.headers":
                old = self.values.get(target, ())
                assert isinstance(old, tuple)
                names = {n.lower() for n, _ in value}
                value = tuple(h for h in old if h[0].lower() not in names) + value
            self.values[target] = value

    def undo(self, opt: Option, value: object) -> object:
        """A flag's ``value`` for ``opt`` of EMPTY_UNDOES: at a ``""`` in it, what the
        earlier layers (and the list's values before it) set is dropped. What is left to
        set (None: nothing)."""
        items = list(value) if isinstance(value, list | tuple) else [value]
        if "" not in items:
            return value
        for target in opt.targets:
            self.values.pop(target, None)
        if "network.user_agent" in opt.targets:  # (a User-Agent header is that setting too)
            old = self.values.get("network.headers", ())
            assert isinstance(old, tuple)
            self.values["network.headers"] = tuple(
                h for h in old if h[0].lower() != "user-agent")
        self.origins.pop(opt.name, None)
        rest = items[len(items) - items[::-1].index(""):]
        return tuple(rest) if rest else None

    def set_source(self, source: str, key: str, value: object) -> None:
        self.sources.setdefault(source.lower(), {})[key.replace("-", "_")] = value


def _option(key: str) -> Option | None:
    return OPTIONS.get(key.replace("_", "-").lower())


def _read_file(path: Path, layers: _Layers, named_by: str = "") -> None:
    import sys
    import tomllib  # (only with a config file: its import costs start-up time)

    shown = "config from stdin" if path is STDIN else f"config file {path}"
    try:
        if path is STDIN:
            stdin = getattr(sys.stdin, "buffer", None)
            if stdin is None:
                raise UsageError("cannot read stdin (--config -): it is closed")
            text = read_text(stdin, limit=CONFIG_MAX).removeprefix("\ufeff")
        else:
            with open(path, "rb") as f:  # (a BOM goes, as in -i)
                text = read_text(f, limit=CONFIG_MAX).removeprefix("\ufeff")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{shown}: invalid TOML: {e}") from None
    except NotText as e:
        raise UsageError(f"{shown}: {e}") from None
    except OSError as e:
        raise UsageError(f"{shown}: {e.strerror or e}{named_by}") from None
    lines = _key_lines(text)

    def where(*keys: str) -> str:
        line = lines.get(keys) or lines.get(keys[:1])
        return shown + (f", line {line}" if line else "")

    layers.layer()
    for key, value in data.items():
        opt = _option(key)
        if opt is not None and opt.in_file:
            try:
                layers.set(opt, value, f"{where(key)}: key {key!r}", where(key), key)
            except _Twice as e:
                first = str(e)
                line = lines.get((first,))
                raise UsageError(f"{where(key)}: key {key!r} sets what key {first!r}"
                                 f"{f' on line {line}' if line else ''} sets (give it once)"
                                 ) from None
        elif isinstance(value, dict) and opt is None:
            _check_table(key, value, where)
            for k, v in value.items():
                layers.set_source(key, k, v)
        elif opt is not None:  # a flag-only option (checksum)
            raise UsageError(f"{where(key)}: key {key!r} cannot be set in a config "
                             f"file, it belongs to one URL (give --{opt.name} on the command line)")
        else:
            raise UsageError(f"{where(key)}: {_not_a_key(key)}")


def _not_a_key(key: str) -> str:
    """Why a top-level key that names no option is refused."""
    flag = key.replace("_", "-").lower()
    why = COMMAND_LINE_ONLY.get(key) or COMMAND_LINE_ONLY.get(flag)
    if why is None and flag in FLAG_ONLY:
        why = f"give --{flag} on the command line"
    if why is None and SHORT_FLAGS.get(key) in FLAG_ONLY:
        why = f"give --{SHORT_FLAGS[key]} on the command line"
    if why is not None:
        return f"key {key!r} cannot be set in a config file ({why})"
    if key in SHORT_FLAGS:
        return (f"unknown key {key!r} (keys are the long flags' names: -{key} is "
                f"{SHORT_FLAGS[key]!r})")
    return f"unknown key {key!r}{_did_you_mean(flag, OPTIONS)}"


#: A TOML key as a line gives it: bare, or in quotes.
_KEY = r"""[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'"""
_DOTTED = rf"[ \t]*(?:{_KEY})(?:[ \t]*\.[ \t]*(?:{_KEY}))*[ \t]*"


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line of each key (``("jobs",)``, ``("site", "token")``) and table header
    (``("site",)``) of a config file's text that TOML took, for the errors: the first
    line a key starts on (lines within multi-line strings are skipped)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    quote = ""  # the multi-line string the line is in
    for number, line in enumerate(text.split("\n"), 1):
        if quote:
            if line.count(quote) % 2:
                quote = ""
            continue
        header = re.match(rf"[ \t]*\[\[?({_DOTTED})\]", line)
        key = None if header else re.match(rf"({_DOTTED})=", line)
        if header:
            table = _key_parts(header[1])
            lines.setdefault(table, number)
        elif key:
            lines.setdefault(table + _key_parts(key[1]), number)
            rest = line[key.end():]
            quote = next((q for q in ('"""', "'''") if rest.count(q) % 2), "")
    return lines


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(k[1:-1] if k[0] in "\"'" else k for k in re.findall(_KEY, dotted))


def _check_table(name: str, table: Mapping[str, object], where: Callable[..., str]) -> None:
    """A table holds the options of one source installed here, and only options it takes
    (as wget and aria2 stop at an unknown setting in their files). Keys below a ``[table]``
    line belong to it, so a top-level key there is said to be misplaced."""
    from ..sources import source_classes
    from ..sources.base import option_problem

    classes = {cls.name: cls for cls in source_classes()}
    cls = classes.get(name.lower())
    if cls is None:
        hint = _did_you_mean(name.lower(), classes)
        top = [k for k in table if _option(k) is not None]
        if not hint and top:
            hint = (f"; {top[0]!r} is a top-level key: put it above the first [table], "
                    f"without a [{name}] line")
        raise UsageError(f"{where(name)}: [{name}] is not a source (sources: "
                         f"{', '.join(classes)}){hint}")
    for key in table:
        if option_problem(cls, [key.replace("-", "_")]) is None:
            continue
        if _option(key) is not None:
            raise UsageError(f"{where(name, key)}: [{name}]: {key!r} is not an option of the "
                             f"{cls.name} source; as a top-level key it goes above the first "
                             f"[table] (the keys below [{name}] belong to it)")
        raise UsageError(f"{where(name, key)}: [{name}]: "
                         f"{option_problem(cls, [key.replace('-', '_')])}")


def _flag_hint(key: str) -> str:
    """For a flag not known: the option that sets a Settings field of that name (a library
    caller's ``connections_per_host``), else the nearest option's name."""
    for opt in OPTIONS.values():
        for target in opt.targets:
            if key in (target, target.removeprefix("network.")):
                return (f" (flags take the command's names: {opt.name!r} sets Settings' "
                        f"{target})")
    flag = key.replace("_", "-").lower()
    if flag == "config":
        return " (the config file is load_settings' config=)"
    if flag in FLAG_ONLY:
        return f" (--{flag} shapes one command: it is no setting)"
    return _did_you_mean(flag, OPTIONS)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    near = nearest(word, choices)
    return f"; did you mean {near!r}?" if near else ""


def _read_env(environ: Mapping[str, str], layers: _Layers) -> None:
    for var, (source, key) in MEGALOADER_ENV.items():
        if environ.get(var):
            layers.set_source(source, key, environ[var])
    env_names = {"OMNIGET_" + o.name.upper().replace("-", "_"): o for o in OPTIONS.values()}
    layers.layer()
    for var in sorted(environ):
        value = environ[var]
        if var != var.upper() and var.upper() in env_names and value != "":  # (OMNIGET_jobs)
            raise UsageError(f"environment variable {var} names no option; did you mean "
                             f"{var.upper()}? (variable names are in upper case)")
        if not var.startswith("OMNIGET_") or var == "OMNIGET_CONFIG":
            continue
        opt = env_names.get(var)
        if opt is not None:
            if value == "" and not opt.empty:
                continue  # set but empty: as if unset
            if not opt.in_file:
                raise UsageError(f"environment variable {var} cannot be used: it belongs to "
                                 f"one URL (give --{opt.name} on the command line)")
            where = f"environment variable {var}"
            try:
                layers.set(opt, value, where, where, var)
            except _Twice as e:  # (OMNIGET_NETRC and OMNIGET_NO_NETRC)
                raise UsageError(f"{where} sets what {e} sets (set one of them)") from None
            continue
        flag = var[len("OMNIGET_") :].lower().replace("_", "-")
        if value != "" and (problem := _command_line_only(flag)) is not None:
            raise UsageError(f"environment variable {var} {problem}")
        source, sep, key = var[len("OMNIGET_") :].partition("_")
        if value != "":
            _check_env(var, source.lower(), key.lower() if sep else "", env_names)
        if sep and source and key:  # OMNIGET_<SOURCE>_<OPTION>
            layers.set_source(source, key.lower(), value)


def _command_line_only(flag: str) -> str | None:
    """What to say of ``OMNIGET_<FLAG>`` (``flag`` in lower case, dashes for ``_``) that
    the command line alone gives: a flag-only option (OMNIGET_DRY_RUN=1: never a silent
    download), -O, URLs, a short flag's letter. None for any other name."""
    if flag in FLAG_ONLY:
        return f"cannot be used: --{flag} is a command-line flag only"
    if flag in COMMAND_LINE_ONLY:
        return f"cannot be used: {COMMAND_LINE_ONLY[flag]}"
    shorts = [s for s in SHORT_FLAGS if s.lower() == flag] + (["O"] if flag == "o" else [])
    hints = [f"-{s} is a command-line flag only" if s == "O" or SHORT_FLAGS[s] in FLAG_ONLY
             else f"-{s} is OMNIGET_{SHORT_FLAGS[s].upper().replace('-', '_')}" for s in shorts]
    if hints:
        return f"names no option (variables take the long flags' names: {'; '.join(hints)})"
    return None


def _check_env(var: str, source: str, key: str, options: Iterable[str]) -> None:
    """``OMNIGET_<SOURCE>_<OPTION>`` of a source installed here names an option it takes;
    any other name is a source's not installed here (kept), unless it is close to a
    source's (``OMNIGET_HTPP_X``) or an option's (``OMNIGET_LIMIT_RAT``): a typo."""
    from ..sources import source_classes
    from ..sources.base import option_problem

    classes = source_classes()
    for cls in classes:
        if cls.name == source:
            problem = option_problem(cls, [key]) if key else (
                f"names the {cls.name} source but no option (OMNIGET_{source.upper()}_OPTION)")
            if problem is not None:
                raise UsageError(f"environment variable {var}: {problem}")
            return
    if key and (near := nearest(source, [cls.name for cls in classes])):
        raise UsageError(f"environment variable {var}: no source is called {source!r}; did "
                         f"you mean {near!r}?")
    # (compared without the OMNIGET_ every name shares: OMNIGET_NGINX is not OMNIGET_NETRC)
    near = nearest(var.removeprefix("OMNIGET_"), [o.removeprefix("OMNIGET_") for o in options])
    if near is not None:
        raise UsageError(f"environment variable {var} names no option; did you mean "
                         f"OMNIGET_{near}?")


def _config_path(config: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The config file to read and whether it must exist (None: no home, no file)."""
    if config is not None:
        return config, True
    if environ.get("OMNIGET_CONFIG"):
        try:
            return parse_path(environ["OMNIGET_CONFIG"]), True
        except ValueError as e:  # (~user who is not there)
            raise UsageError(f"environment variable OMNIGET_CONFIG: {e}") from None
    folder = default_config_dir(environ)
    return (folder / "config.toml" if folder is not None else None), False


def _default_there(path: Path) -> bool:
    """Whether the default config file is there to read. Not there is no error; a folder,
    a link to nothing, a FIFO (which would wait for a writer) or a folder that cannot be
    searched in its place is (it was taken for none: its settings silently unused)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.islink(path):
            return False
        raise UsageError(f"config file {path}: a link to {os.readlink(path)}, which is not "
                         "there") from None
    except OSError as e:  # (no search permission on its folder, a loop of links)
        raise UsageError(f"config file {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"config file {path}: a folder, not a file")
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket"
        raise UsageError(f"config file {path}: {kind}, not a file (give it with --config to "
                         "read it)")
    return True


def _secrets(values: Mapping[str, object], sources: Mapping[str, Mapping[str, object]]) -> set[str]:
    found: set[str] = set()
    user = values.get("network.user")
    if isinstance(user, str):
        found.add(user.partition(":")[2])
    headers = values.get("network.headers", ())
    assert isinstance(headers, tuple)
    found.update(v for n, v in headers if n.lower() in SECRET_HEADERS)
    proxy = values.get("network.proxy")
    if isinstance(proxy, str):
        found.add(proxy_password(proxy) or "")
    for table in sources.values():
        found.update(
            str(v) for k, v in table.items() if re.search(SECRET_OPTION, k, re.IGNORECASE) and v
        )
    return {s for s in found if s}


def load_config(
    config: Path | Sequence[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> Config:
    """Merge defaults < config file < environment < flags. Bad values raise UsageError.
    Several config files (``--config`` given again) are read in turn, as curl reads its
    ``-K`` files: a later one's values win; :data:`STDIN` is stdin's text."""
    env = os.environ if environ is None else environ
    layers = _Layers()
    if config is not None and not isinstance(config, str | os.PathLike):
        for given in config:
            _read_file(given, layers)
    else:
        path, required = _config_path(config, env)
        if path is not None and (required or _default_there(path)):
            named = config is None and required  # (by OMNIGET_CONFIG, not --config)
            _read_file(path, layers, " (named by OMNIGET_CONFIG)" if named else "")
    _read_env(env, layers)
    layers.layer()
    for key, value in (flags or {}).items():
        opt = _option(key)
        if opt is None:
            raise ArgumentError(f"unknown option {key!r}{_flag_hint(key)}")
        if opt.name in EMPTY_UNDOES and value is not None:
            value = layers.undo(opt, value)
        if value is not None:
            try:
                layers.set(opt, value, f"--{opt.name}", name=opt.name)
            except UsageError as e:  # (the command line's: not the file's or environment's)
                raise ArgumentError(str(e)) from None
            except _Twice as e:  # (a library caller's {"netrc": ..., "no-netrc": ...})
                raise ArgumentError(f"--{opt.name} sets what --{e} sets (give one of "
                                    "them)") from None
    values = dict(layers.values)
    if values.get("limit_rate") == 0:
        values["limit_rate"] = None  # 0 = no limit
    output = values.pop("output", None)
    for option, target in NAMED_WHERE_SET.items():  # (errors say where it was set)
        if (origin := layers.origins.get(option)) is not None:
            values[target] = _set_at(origin)
    net = {k.removeprefix("network."): v for k, v in values.items() if k.startswith("network.")}
    top = {k: v for k, v in values.items() if not k.startswith("network.")}
    try:
        settings = Settings(network=NetworkSettings(**net), **top)  # type: ignore[arg-type]
    except ValueError as e:  # (a value no request or file name can carry: a NUL, ...)
        raise UsageError(str(e)) from None
    return Config(
        settings=settings,
        sources=layers.sources,
        output=output if isinstance(output, Path) else None,
        secrets=tuple(sorted(_secrets(values, layers.sources))),
        origins=layers.origins,
    )


def load_settings(
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> tuple[Settings, dict[str, dict[str, object]]]:
    """What the CLI would use: ``(settings, {source: {option: value}})``.

    ``config`` is the TOML file (default ``$XDG_CONFIG_HOME/omniget/config.toml`` when it
    exists), ``environ`` the environment (default ``os.environ``), ``flags`` option values by
    long-flag name (``{"connections": 8, "limit-rate": "2M"}``), which win over both.
    """
    cfg = load_config(config, environ, flags)
    user = cfg.settings.network.user
    if user is not None and ":" not in user:  # (the command asks for it: see its main)
        where = cfg.set_where("user")
        raise UsageError(f"user {user}: no password (give USER:PASSWORD)"
                         + (f" ({where})" if where else ""))
    return cfg.settings, cfg.sources
