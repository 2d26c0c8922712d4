"""Typed settings objects. The library reads no config file and no ``OMNIGET_<OPTION>``
variable on its own: the CLI builds these (``omniget.load_settings()`` does what the CLI
would) and callers pass them in. What it does read, as curl and other tools do: the state
folder's default (``$OMNIGET_STATE_DIR``, ``$XDG_STATE_HOME``), the ``*_proxy`` variables and
``CURL_CA_BUNDLE`` / ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` (see ``transports/trust.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import field, fields
from pathlib import Path
from typing import Literal, overload

from ._frozen import frozen_dataclass
from .errors import StorageError
from .keywords import named_fields
from .masks import MASK, SECRET_HEADERS, mask_proxy
from .model import Digest

__all__ = [
    "NetworkSettings",
    "Settings",
    "StrPath",
    "default_state_dir",
    "resolve_parts",
]

OnExists = Literal["skip", "overwrite", "rename"]
ON_EXISTS: tuple[OnExists, ...] = ("skip", "overwrite", "rename")

MiB = 1024 * 1024


class StrPath:
    """A settings field naming a file or folder: it takes a str or a Path (any
    ``os.PathLike`` of str) and is read as the str (None: not given), so the code that
    reads it, and a type checker, see a str. (A data descriptor: the instance's
    ``__dict__`` holds the value, made a str when the settings are made.)"""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> None: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> str | None: ...
    def __get__(self, obj: object, owner: type | None = None) -> str | None:
        if obj is None:  # (on the class: the default the dataclass finds)
            return None
        value: str | None = obj.__dict__[self.name]
        return value

    def __set__(self, obj: object, value: str | os.PathLike[str] | None) -> None:
        # (the frozen class refuses an assignment before this: only object.__setattr__)
        obj.__dict__[self.name] = None if value is None else os.fspath(value)


@named_fields
@frozen_dataclass
class NetworkSettings:
    """What every transport needs to reach a server the way the user asked.

    ``proxy``: a proxy URL (None: the ``*_proxy`` variables; "": none); ``insecure``:
    no TLS certificate check; ``ca_cert``: a CA bundle file or folder (None: as curl
    finds one); ``resolve``: curl's ``HOST:PORT:ADDRESS`` entries; ``connect_timeout``,
    ``stall_timeout``: seconds to connect, and with less than ``low_speed_limit`` bytes
    per second before a transfer counts as stalled (a threshold, not a cap: that is
    ``Settings(limit_rate=...)``); ``user``: ``"USER:PASSWORD"`` for ``user_origin``'s
    origin (None: each URL asked for), never sent across a redirect to another;
    ``netrc``, ``netrc_file``: read logins from ``~/.netrc`` or that file;
    ``cookies_file``: a Netscape ``cookies.txt`` (these files, and ``ca_cert``, are
    given as a str or a Path, and read as the str); ``headers``: a tuple of ``(name,
    value)`` pairs sent with each request; ``user_agent``; ``max_redirects``;
    ``proxy_from``, ``ca_cert_from``: where ``proxy`` and ``ca_cert`` were set, as errors
    name it: the flag (the default), or ``set in config file PATH, line 2``, ``set by
    environment variable NAME`` (see :func:`named_setting`)."""

    proxy: str | None = None  # None: the *_proxy variables apply; "": no proxy at all
    insecure: bool = False
    ca_cert: StrPath = StrPath()  # None: CURL_CA_BUNDLE / SSL_CERT_FILE / system store
    resolve: tuple[str, ...] = ()  # curl-style HOST:PORT:ADDR
    connect_timeout: float = 15.0
    #: A transfer slower than ``low_speed_limit`` bytes/s for ``stall_timeout`` s is stalled.
    stall_timeout: float = 20.0
    low_speed_limit: int = 1
    user: str | None = None  # USER:PASSWORD (never across a redirect to another origin)
    #: The URL whose origin ``user`` is for (the CLI: the first URL); None: every origin
    #: asked for directly.
    user_origin: str | None = None
    netrc: bool = True
    netrc_file: StrPath = StrPath()
    cookies_file: StrPath = StrPath()  # Netscape cookies.txt
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str = "omniget/0.1"
    max_redirects: int = 10
    proxy_from: str = "--proxy"
    ca_cert_from: str = "--ca-cert"

    def __post_init__(self) -> None:
        _check_fields(self, _NETWORK_CHECKS)
        for name in _FILES:  # (a Path given: kept as its str)
            given: object = self.__dict__[name]
            if isinstance(given, os.PathLike):
                text = os.fspath(given)
                if not isinstance(text, str):  # (a path of bytes)
                    raise TypeError(_takes(given, self, name, _FILE))
                self.__dict__[name] = text
        for name in ("headers", "resolve"):  # (a list given: kept as a tuple, hashable)
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)
                   for p in self.headers):
            raise TypeError(_takes(self.headers, self, "headers", _HEADERS))
        for name in ("proxy", "user", "user_origin", "user_agent", *_FILES):
            _no_nul(self, name, (getattr(self, name) or "",))
        _no_nul(self, "resolve", self.resolve)
        if "\r" in self.user_agent or "\n" in self.user_agent:  # (a header of its own)
            raise ValueError(f"NetworkSettings(user_agent=...) takes one line, not "
                             f"{self.user_agent!r:.60}")
        _no_nul(self, "headers", [x for pair in self.headers for x in pair])
        if not all(_one_line(n, v) for n, v in self.headers):  # (the value not shown)
            raise ValueError("NetworkSettings(headers=...) takes names without ':', blanks or"
                             " line breaks, and values of one line (one of them is not)")
        # what reaches pycurl as a str must be ASCII (the CLI's parsers see to it too)
        if self.proxy and not self.proxy.isascii():
            raise ValueError(PROXY_NOT_ASCII)
        if not all(map(str.isascii, self.resolve)):
            object.__setattr__(self, "resolve", tuple(map(ascii_resolve, self.resolve)))

    def __repr__(self) -> str:
        """A dataclass's, its secrets as ``***`` (a password in ``user`` or ``proxy``, a
        secret header's value), as in the errors: a program may log its settings."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "user" and value is not None and ":" in value:
                value = f"{value.partition(':')[0]}:{MASK}"
            elif f.name == "proxy" and value:
                value = mask_proxy(value)
            elif f.name == "headers":
                value = tuple((n, MASK if n.lower() in SECRET_HEADERS else v) for n, v in value)
            shown.append(f"{f.name}={value!r}")
        return f"NetworkSettings({', '.join(shown)})"


@named_fields
@frozen_dataclass
class Settings:
    """Everything the engine needs. Defaults are the CLI's defaults; each field is
    checked when made (TypeError, ValueError). The command's names and forms
    (``connections``, ``limit-rate = "2M"``): ``omniget.load_settings(flags={...})``.

    ``network``: an :class:`omniget.NetworkSettings` (proxy, TLS, timeouts, login,
    headers); ``connections_per_host`` and ``max_connections``: connections at once to
    one host, and in all; ``jobs``: files transferring at once; ``split``: connections
    per file (None: adaptive, or one under ``limit_rate``), each span at least
    ``min_split_size`` bytes;
    ``limit_rate``: bytes per second over the whole run (None or 0: no limit);
    ``retries``: tries again per piece after the first; ``retry_max_time``: seconds of
    backing off before a file is given up, ``retry_max_wait`` at most one wait;
    ``checksum``: the one file's :class:`omniget.Digest`; ``on_exists``: a file already
    there is kept (``skip``), fetched again over it (``overwrite``) or next to it under
    another name (``rename``); ``state_dir``: the resume journal's folder (None:
    ``$OMNIGET_STATE_DIR``, else ``$XDG_STATE_HOME/omniget``, else
    ``~/.local/state/omniget``); ``checkpoint_bytes``, ``checkpoint_seconds``: how often
    resume state is recorded, ``fsync_seconds`` part files synced to disk;
    ``state_dir_from``: where ``state_dir`` was set, as a warning names it (as
    ``NetworkSettings.proxy_from``).
    A file's size is always checked."""

    network: NetworkSettings = field(default_factory=NetworkSettings)
    connections_per_host: int = 4
    max_connections: int = 16
    jobs: int = 128  # files transferring at once (as many more are set up ahead)
    split: int | None = None  # connections per file; None = adaptive
    min_split_size: int = 1 * MiB  # never make a span smaller than this
    limit_rate: int | None = None  # bytes/s over the whole run
    retries: int = 5  # per piece / span, after the first try
    retry_max_time: float = 300.0  # give up on a file after this much backing off
    retry_max_wait: float = 120.0  # cap on one wait (Retry-After included)
    checksum: Digest | None = None  # one file's digest: a run of one URL (else refused)
    on_exists: OnExists = "skip"
    state_dir: str | os.PathLike[str] | None = None  # None: default_state_dir(); read: a Path
    checkpoint_bytes: int = 2 * MiB
    checkpoint_seconds: float = 0.5
    fsync_seconds: float = 5.0  # part files synced to disk this often (see journal.py)
    state_dir_from: str = "--state-dir"

    def __post_init__(self) -> None:
        _check_fields(self, _SETTINGS_CHECKS)
        _no_nul(self, "state_dir", (os.fspath(self.state_dir or ""),))
        if isinstance(self.state_dir, str) and not self.state_dir:  # (Path(""): ".")
            raise ValueError(_takes(self.state_dir, self, "state_dir", "a folder ('.' for the "
                                    "current one; None: the default)"))
        if self.state_dir is not None and not isinstance(self.state_dir, Path):  # (a str)
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if self.on_exists not in ON_EXISTS:  # (any other word meant overwrite)
            raise ValueError(f"on_exists must be one of {', '.join(ON_EXISTS)}, "
                             f"not {self.on_exists!r}")


#: The largest count or number of seconds taken: libcurl takes them as a C long (seconds
#: as milliseconds), and a value beyond this means "no limit" in no useful way.
MAX_NUMBER = 2**31 - 1

_COUNT = "a whole number of at least {least}"
_SECONDS = "a number of seconds of at least 0"
_RATE = "bytes per second, a whole number (2M: 2 * 1024 * 1024; 0 or None: no limit)"
_STR = "a str or None"
_ABOVE_0 = "a number of seconds above 0"
_HEADERS = "a tuple of (name, value) pairs of strs (tuple(d.items()) for a dict)"
_FILE = "a file's name, a str or a Path (or None)"
#: NetworkSettings' fields that name a file (StrPath: given as a str or a Path).
_FILES = ("ca_cert", "netrc_file", "cookies_file")
#: Each field a caller may get wrong: (name, what it takes, its kind, the least it takes,
#: None allowed). Checked when made: a wrong kind failed deep in the engine, mid-run.
_Check = tuple[str, str, object, float, bool]
_SETTINGS_CHECKS: tuple[_Check, ...] = (
    ("network", "an omniget.NetworkSettings", NetworkSettings, 0, False),
    ("connections_per_host", _COUNT, int, 1, False),
    ("max_connections", _COUNT, int, 1, False),
    ("jobs", _COUNT, int, 1, False),
    ("split", _COUNT + " (or None: adaptive)", int, 1, True),
    ("min_split_size", _COUNT, int, 1, False),
    ("limit_rate", _RATE, int, 0, True),
    ("retries", _COUNT, int, 0, False),
    ("retry_max_time", _SECONDS, float, 0, False),
    ("retry_max_wait", _SECONDS, float, 0, False),
    ("checksum", "an omniget.Digest (Digest.parse('sha256=HEX'))", Digest, 0, True),
    ("state_dir", "a folder, a str or a Path (or None: the default)", str | os.PathLike, 0,
     True),
    ("checkpoint_bytes", _COUNT, int, 1, False),
    ("checkpoint_seconds", _SECONDS, float, 0, False),
    ("fsync_seconds", _SECONDS, float, 0, False),
    ("state_dir_from", "a str", str, 0, False),
)
_NETWORK_CHECKS: tuple[_Check, ...] = (
    ("proxy", _STR, str, 0, True),
    ("insecure", "True or False", bool, 0, False),
    ("ca_cert", _FILE, str | os.PathLike, 0, True),
    ("resolve", "a tuple of 'HOST:PORT:ADDRESS' strs", tuple | list, 0, False),
    ("connect_timeout", _ABOVE_0, float, 0, False),
    ("stall_timeout", _ABOVE_0, float, 0, False),
    ("low_speed_limit", _COUNT, int, 0, False),
    ("user", _STR, str, 0, True),
    ("user_origin", _STR, str, 0, True),
    ("netrc", "True or False", bool, 0, False),
    ("netrc_file", _FILE, str | os.PathLike, 0, True),
    ("cookies_file", _FILE, str | os.PathLike, 0, True),
    ("headers", _HEADERS, tuple | list, 0, False),
    ("user_agent", "a str", str, 0, False),
    ("max_redirects", _COUNT, int, 0, False),
    ("proxy_from", "a str", str, 0, False),
    ("ca_cert_from", "a str", str, 0, False),
)


def named_setting(option: str, where: str) -> str:
    """A setting as a hint names it (``check ...``): ``where`` itself when it is a flag or
    a variable's name (``--proxy``, ``http_proxy``), else ``the OPTION set in config file
    PATH, line 2`` (``where``: ``set in ...`` or ``set by ...``)."""
    return f"the {option} {where}" if where.startswith("set ") else where


def _check_fields(obj: object, checks: tuple[_Check, ...]) -> None:
    """TypeError for a field of the wrong kind, ValueError for one out of range (a bool
    is no number; an int is a number of seconds)."""
    for name, what, kind, least, optional in checks:
        value = getattr(obj, name)
        if value is None and optional:
            continue
        what = what.format(least=least)
        if kind is int or kind is float:
            number = isinstance(value, int | float) if kind is float else isinstance(value, int)
            if not number or isinstance(value, bool):
                raise TypeError(_takes(value, obj, name, what))
            # (a NaN is out of every range: it compares False with any bound)
            if what == _ABOVE_0 and not value <= MAX_NUMBER:  # (libcurl: a C long of ms)
                raise ValueError(_takes(value, obj, name, f"{what} and at most {MAX_NUMBER}"))
            if not value >= least or (value == 0 and what == _ABOVE_0):
                raise ValueError(_takes(value, obj, name, what))
        elif not isinstance(value, kind):  # type: ignore[arg-type]
            raise TypeError(_takes(value, obj, name, what))


def _no_nul(obj: object, name: str, texts: Sequence[str]) -> None:
    """ValueError for a NUL in ``texts``, the field ``name``'s: libcurl and the file
    system raised "embedded null byte" mid-run, naming no setting. (The value is not
    shown: it may be a password.)"""
    if any("\0" in text for text in texts):
        raise ValueError(f"{type(obj).__name__}({name}=...) takes text without NUL bytes "
                         "(its value has one)")


def _one_line(name: str, value: str) -> bool:
    """A header a request can carry: each line break would start a header of its own (a
    request smuggled in a value), a ':' or blank in its name another name."""
    return bool(name) and not any(c in name for c in "\r\n: ") and (
        "\n" not in value and "\r" not in value)


def _takes(value: object, obj: object, name: str, what: str) -> str:
    shown = repr(value)
    return (f"{type(obj).__name__}({name}=...) takes {what}, "
            f"not {shown if len(shown) <= 60 else type(value).__name__}")


def resolve_parts(entry: str) -> tuple[str, str, str]:
    """A curl-style ``[+]HOST:PORT:ADDR[,ADDR...]`` entry as ``(HOST, PORT, ADDRS)``, HOST
    without the brackets of an IPv6 address (``[::1]:80:127.0.0.1``, as libcurl takes
    it); a part that is not there is empty."""
    text = entry.removeprefix("+")
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not rest.startswith(":"):
            return "", "", ""
        rest = rest[1:]
    else:
        host, _, rest = text.partition(":")
    port, _, addrs = rest.partition(":")
    return host, port, addrs


#: Why a proxy URL beyond ASCII is refused (the CLI's ``--proxy`` says the same).
PROXY_NOT_ASCII = ("expected a proxy URL in ASCII (its host name as punycode, xn--..., a user "
                   "or password beyond ASCII percent-encoded)")


#: The proxy schemes libcurl takes (``socks``: SOCKS4, as curl reads it).
PROXY_SCHEMES = ("http", "https", "socks", "socks4", "socks4a", "socks5", "socks5h")


def proxy_problem(proxy: str) -> str | None:
    """Why libcurl cannot use this proxy URL, said as what is expected (None: it can).
    Without a scheme it is an HTTP proxy (``host:port``)."""
    scheme, sep, rest = proxy.partition("://")
    if sep and scheme.lower() not in PROXY_SCHEMES:
        return (f"expected a proxy URL starting {', '.join(s + '://' for s in PROXY_SCHEMES)}"
                " (or host:port)")
    from urllib.parse import urlsplit

    try:  # (a port out of range raises)
        parts = urlsplit("//" + (rest if sep else proxy))
        ok = bool(parts.hostname) and parts.port != 0 and proxy.isprintable()
        ok = ok and " " not in proxy  # (libcurl: "Unsupported proxy syntax", at a request)
    except ValueError:
        ok = False
    if not ok:
        return "expected a proxy URL with a host (and a port from 1 to 65535)"
    if parts.netloc.count("@") > 1:  # (libcurl takes the host from the first one on)
        return "expected a proxy URL with an @ in its user name or password written as %40"
    return None


def ascii_resolve(entry: str) -> str:
    """A resolve entry (``-HOST:PORT`` too) with its host as punycode, as the URL's host
    is asked for; ValueError if it stays beyond ASCII."""
    mark = entry[:1] if entry[:1] in "+-" else ""
    body = entry[len(mark):]
    host = body.partition(":")[0]
    try:
        if body.startswith("["):  # (an IPv6 address)
            raise UnicodeError
        text = mark + host.encode("idna").decode("ascii") + body[len(host):]
    except UnicodeError:
        raise ValueError(f"expected HOST:PORT:ADDRESS, got {entry!r}: {host!r} is no "
                         "host name") from None
    if not text.isascii():
        raise ValueError(f"expected HOST:PORT:ADDRESS (an IP address), got {entry!r}")
    return text


def home_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The user's home: ``$HOME`` if it is an absolute path, else the account's; None when
    neither says (no HOME and no passwd entry: a container's arbitrary uid)."""
    env = os.environ if environ is None else environ
    home = env.get("HOME", "")
    if os.path.isabs(home):
        return Path(home)
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):
        return None
    return Path(home) if os.path.isabs(home) else None


def _base(var: str, under_home: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$var`` if it is an absolute path (the XDG spec ignores a relative one), else
    ``under_home`` in the home folder; None without either."""
    value = (os.environ if environ is None else environ).get(var, "")
    if os.path.isabs(value):
        return Path(value)
    home = home_dir(environ)
    return home / under_home if home is not None else None


def default_state_dir() -> Path:
    """``$OMNIGET_STATE_DIR``, else ``$XDG_STATE_HOME/omniget``, else ``~/.local/state/omniget``.
    StorageError when none of them names a folder."""
    env = os.environ.get("OMNIGET_STATE_DIR")
    if env:  # (~ expanded, as the command expands it: set in quotes, no shell did)
        try:
            return Path(env).expanduser()
        except RuntimeError:  # (a ~user who is not there, or no home for ~)
            raise StorageError(f"OMNIGET_STATE_DIR={env}: {env.split('/', 1)[0]} names no "
                               "home folder") from None
    base = _base("XDG_STATE_HOME", ".local/state")
    if base is None:
        raise StorageError(
            "no folder for resume state: HOME is not set and XDG_STATE_HOME names none"
            " (give --state-dir or set OMNIGET_STATE_DIR)")
    return base / "omniget"


def default_config_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$XDG_CONFIG_HOME/omniget``, else ``~/.config/omniget``; None without a home."""
    base = _base("XDG_CONFIG_HOME", ".config", environ)
    return base / "omniget" if base is not None else None
