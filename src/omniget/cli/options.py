"""The options every run takes, by long-flag name (:data:`OPTIONS`, the same in flags,
environment and config file), and their value parsers: each accepts the string form (flags,
environment) and the TOML or library form, and raises ValueError on a bad value."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._frozen import plain_dataclass
from ..engine.transports.base import ENGINE_HEADERS  # (refused: the engine sets them itself)
from ..errors import UsageError
from ..masks import mask_proxy
from ..model import BODY_HEADERS, Digest, body_header
from ..settings import (
    MAX_NUMBER,
    PROXY_NOT_ASCII,
    ascii_resolve,
    proxy_problem,
    resolve_parts,
)

ON_EXISTS = ("skip", "overwrite", "rename")
_RATE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# (patterns as strings: re compiles one when it is first used, not at every start)
#: A number as the command line and the config take it: ASCII digits and one point
#: (no Unicode digits, no ``1_0`` grouping, no exponent: the same rule for every option)
_DECIMAL = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_RATE_RE = _DECIMAL + r"[ \t]*([kmg]?)(?:i?b)?(?:/s)?"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"


class ArgumentError(UsageError):
    """An error in the command line itself, found once it is parsed: options that do not
    go together, a value that names nothing. As argparse's own, it is one line on stderr
    and, with ``--json``, nothing on stdout (the run never started; the ``error`` event
    is for a run that failed as a whole: see README)."""


# --- value parsers: accept the string form (flags, env) and the TOML / parsed form ---


def _shown(v: object) -> str:
    """A refused value as the user wrote it: ``true`` for a TOML boolean (not Python's
    ``True``), else its repr (a string in quotes)."""
    return str(v).lower() if isinstance(v, bool) else repr(v)


def _text(v: object, *, lines: bool = False) -> str:
    """A string setting's value: a str (or a Path, from a library caller); a TOML number
    is refused (``output = 5`` is no folder name: a typo or a misplaced key, most likely).
    A NUL in it is refused (no request nor file name carries one), and a line break but
    with ``lines`` (a file's name may have one): the value is not shown, a secret maybe."""
    if not isinstance(v, str | Path):
        raise ValueError(f"expected a string in quotes, got {_shown(v)}")
    text = str(v).strip()
    if "\0" in text:
        raise ValueError("the value has a NUL character")
    if not lines and ("\n" in text or "\r" in text):  # (a header line of its own)
        raise ValueError("the value has a line break")
    return text


def _is_utf8(text: str) -> bool:
    """No bytes of another encoding in ``text``: Python makes each byte of an argument or
    an environment variable that is no UTF-8 a lone surrogate, which nothing can send."""
    return text.isascii() or re.search("[\ud800-\udfff]", text) is None


def _header_value(v: object) -> str:
    """A header's value in a TOML table (``header = {X-Version = 2}``): a number is text."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return _text(v)


def _int(v: object, what: str) -> int:
    """A whole number >= 0 (TOML and library callers may pass negative ints)."""
    n = -1
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, str) and re.fullmatch(r"[0-9]+", v.strip(" \t")):
        n = int(v)
    if n < 0:
        raise ValueError(f"expected {what}, got {_shown(v)}")
    if n > MAX_NUMBER:
        raise ValueError(f"expected {what} and at most {MAX_NUMBER}, got {_shown(v)}")
    return n


def parse_count(v: object) -> int:
    """A whole number >= 1 (connections, jobs, split)."""
    n = _int(v, "a whole number of at least 1")
    if n < 1:
        raise ValueError(f"expected a whole number of at least 1, got {_shown(v)}")
    return n


def parse_nonneg(v: object) -> int:
    return _int(v, "a whole number of at least 0")


def parse_seconds(v: object) -> float:
    s = -1.0
    if isinstance(v, int | float) and not isinstance(v, bool):
        s = v
    elif isinstance(v, str) and re.fullmatch(_DECIMAL, v.strip(" \t")):
        s = float(v)
    if not 0 < s <= MAX_NUMBER:
        raise ValueError(f"expected a number of seconds above 0 and at most {MAX_NUMBER}, "
                         f"got {_shown(v)}")
    return s


def parse_rate(v: object) -> int:
    """Bytes per second: ``500k``, ``2M``, ``1.5G`` (binary units), ``0`` = no limit. A
    TOML number with a point (``1500.5``) is taken as the same text is."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    text = f"{v:f}" if isinstance(v, float) and 0 <= v < float(1 << 63) else v  # (no NaN)
    m = re.fullmatch(_RATE_RE, text.strip(" \t"), re.IGNORECASE) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected a rate like 500k, 2M or 1G (bytes/s), got {_shown(v)}")
    rate = int(float(m[1]) * _RATE_UNITS[m[2].lower()])
    if rate == 0 and float(m[1]) > 0:  # (0.5: not "no limit", which 0 means)
        raise ValueError(f"expected a rate of at least 1 byte/s (0: no limit), got {_shown(v)}")
    return rate


def parse_bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {_shown(v)}")


def parse_header(v: object) -> tuple[str, str]:
    """``"Name: value"`` -> ``(name, value)``."""
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, str) for x in v):
        name, value = v
    else:
        name, sep, value = _text(v).partition(":")
        if not sep:
            curl = (" (curl's 'Name;' sends it empty: omniget sends no empty header; 'Name:' "
                    "leaves it out)" if name.endswith(";") else "")
            raise ValueError(f"expected 'Name: value', got {_first_word(name)}{curl}")
    name, value = name.strip(), value.strip()
    if "\0" in name or "\0" in value:  # (the library's form: not through _text)
        raise ValueError("a NUL character in a header")
    if not name:  # (": v": the value is not shown, a token maybe)
        raise ValueError("no header name before the ':' (expected 'Name: value')")
    if not re.fullmatch(_HEADER_NAME, name):
        raise ValueError(f"not a valid header name: {_first_word(name)}")
    if "\n" in value or "\r" in value:
        raise ValueError(f"header {name}: a line break in its value")
    if not _is_utf8(value):  # (bytes of another encoding, in an argument or a variable)
        raise ValueError(f"header {name}: its value is not UTF-8 text")
    if name.lower() in ENGINE_HEADERS:
        raise ValueError(
            f"cannot set {name}: omniget sends it itself, to resume and split downloads"
        )
    if name.lower() in BODY_HEADERS and value:
        raise ValueError(body_header(name))
    return name, value


def _first_word(text: str) -> str:
    """A header line that is no header, as a message shows it: whole if it is one word,
    else its first word only (``Authorization Bearer TOKEN``, its ':' forgotten: the
    rest, a token maybe, is not shown)."""
    text = text.strip()
    word = re.match(r"[^\s=]*", text)[0]  # type: ignore[index]
    return repr(text) if word == text else f"{word!r} and more (the rest is not shown)"


def parse_headers(v: object) -> tuple[tuple[str, str], ...]:
    if isinstance(v, Mapping):
        return tuple(parse_header((str(k), _header_value(x))) for k, x in v.items())
    if isinstance(v, str):
        return tuple(parse_header(line) for line in v.splitlines() if line.strip())
    return tuple(parse_header(x) for x in _items(v))


def parse_resolve(v: object) -> tuple[str, ...]:
    """curl-style ``HOST:PORT:ADDR[,ADDR...]`` entries (``+`` before HOST allowed, HOST
    ``*`` for any, or an IPv6 address in brackets), each ADDR an IP address (IPv6 in
    brackets or not), as libcurl takes."""
    out = []
    for entry in [v] if isinstance(v, str) else _items(v):
        text = _text(entry)
        host, port, addrs = resolve_parts(text)
        bracketed = text.removeprefix("+").startswith("[")
        if (
            not host
            or (bracketed and not _addresses(host))
            or not (port.isascii() and port.isdigit())
            or not 0 < int(port) < 65536
            or not _addresses(addrs)
        ):
            raise ValueError("expected HOST:PORT:ADDRESS[,ADDRESS...] (IP addresses), got "
                             f"{entry!r}")
        if not host.isascii():  # (as the URL's host is asked for: its punycode)
            text = ascii_resolve(text)
        out.append(text)
    return tuple(out)


def parse_resolves(v: object) -> tuple[str, ...]:
    """The ``resolve`` option: a list, or text of one entry per line (a variable's, as a
    header per line in ``OMNIGET_HEADER``)."""
    if isinstance(v, str):
        return parse_resolve([line for line in v.splitlines() if line.strip()])
    return parse_resolve(v)


def _addresses(text: str) -> bool:
    """``ADDR[,ADDR...]``: IP addresses (libcurl refuses a name, or ``127.1``)."""
    import ipaddress

    found = text.removesuffix(",").split(",")
    for addr in found:
        if addr[:1] == "[" and addr[-1:] == "]":
            addr = addr[1:-1]
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return False
    return bool(found)


def parse_user(v: object) -> str:
    text = _text(v)
    if not _is_utf8(text):  # (not shown: a password is in it)
        raise ValueError("not UTF-8 text (USER:PASSWORD are sent as UTF-8)")
    if not text or text.startswith(":"):  # (USER alone: its password is asked for)
        raise ValueError("expected USER[:PASSWORD]")
    return text


def parse_on_exists(v: object) -> str:
    text = _text(v).lower()
    if text not in ON_EXISTS:
        raise ValueError(f"expected one of {', '.join(ON_EXISTS)}, got {_shown(v)}")
    return text


def parse_digest(v: object) -> Digest:
    return v if isinstance(v, Digest) else Digest.parse(_text(v))


def parse_str(v: object, *, lines: bool = False) -> str:
    text = _text(v, lines=lines)
    if not text:
        raise ValueError("expected a value, got an empty string")
    return text


def parse_user_agent(v: object) -> str:
    """A header's value, as a -H one is: no line break (parse_str refuses it: it would end
    the header there and start another), UTF-8 text."""
    text = parse_str(v)
    if not _is_utf8(text):
        raise ValueError("not UTF-8 text")
    return text


def parse_proxy(v: object) -> str:
    """A proxy URL; empty means none, not even from the ``*_proxy`` variables (as in curl).
    Without a scheme it is an HTTP proxy (``host:port``)."""
    text = _text(v)
    if not text.isascii():  # (pycurl takes a str as ASCII only)
        raise ValueError(PROXY_NOT_ASCII)
    problem = proxy_problem(text) if text else None
    if problem is not None:
        raise ValueError(f"{problem}, got {mask_proxy(text)!r}")
    return text


def parse_path(v: object) -> Path:
    return expand_path(parse_str(v, lines=True))


def expand_path(text: str) -> Path:
    """``text`` with a leading ``~`` or ``~user`` expanded; ValueError if it names nobody
    (or there is no home to expand ``~`` to)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # (pathlib's "Could not determine home directory")
        raise ValueError(f"{text.split('/', 1)[0]}: no such user") from None


def parse_file(v: object) -> str:
    """A file's name; ``~`` is the home folder (a config file has no shell to expand it)."""
    text = parse_str(v, lines=True)
    return str(expand_path(text)) if text.startswith("~") else text


def _items(v: object) -> Iterable[object]:
    if isinstance(v, list | tuple):
        return v
    raise ValueError(f"expected a list, got {_shown(v)}")


# --- the option table ---


@plain_dataclass
class Option:
    """One setting reachable from flags, environment and config file."""

    name: str  # the long flag's name: "limit-rate"
    parse: Callable[[object], Any]
    targets: tuple[str, ...]  # "jobs", "network.proxy"; "output" is the CLI's own
    in_file: bool = True  # False: flag only (never config or environment)
    invert: bool = False  # "no-netrc = true" sets netrc False
    #: An empty value means something (proxy: none at all, as curl's --proxy ""), so an
    #: empty variable is that value; for the others it is as if unset.
    empty: bool = False


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("output", parse_path, ("output",)),
        Option("jobs", parse_count, ("jobs",)),
        Option("connections", parse_count, ("connections_per_host",)),
        Option("max-connections", parse_count, ("max_connections",)),
        Option("split", parse_count, ("split",)),
        Option("limit-rate", parse_rate, ("limit_rate",)),
        Option("retries", parse_nonneg, ("retries",)),
        Option("retry-max-time", parse_seconds, ("retry_max_time",)),
        Option("retry-max-wait", parse_seconds, ("retry_max_wait",)),
        Option("timeout", parse_seconds, ("network.connect_timeout", "network.stall_timeout")),
        Option("header", parse_headers, ("network.headers",)),
        Option("cookies", parse_file, ("network.cookies_file",)),
        Option("user", parse_user, ("network.user",)),
        Option("checksum", parse_digest, ("checksum",), in_file=False),
        Option("on-exists", parse_on_exists, ("on_exists",)),
        Option("state-dir", parse_path, ("state_dir",)),
        Option("proxy", parse_proxy, ("network.proxy",), empty=True),
        Option("insecure", parse_bool, ("network.insecure",)),
        Option("no-insecure", parse_bool, ("network.insecure",), invert=True),
        Option("ca-cert", parse_file, ("network.ca_cert",)),
        Option("resolve", parse_resolves, ("network.resolve",)),
        Option("netrc", parse_bool, ("network.netrc",)),
        Option("no-netrc", parse_bool, ("network.netrc",), invert=True),
        Option("netrc-file", parse_file, ("network.netrc_file",)),
        Option("user-agent", parse_user_agent, ("network.user_agent",)),
        Option("max-redirects", parse_nonneg, ("network.max_redirects",)),
    ]
}


#: The short flags and their long names: a config key or variable takes the long one.
SHORT_FLAGS = {"o": "output", "N": "connections", "H": "header", "j": "jobs",
               "i": "input-file", "q": "quiet", "v": "verbose"}

#: What the command line alone gives, without a long flag: why it is no config key or
#: variable (by the name a user would give it there).
COMMAND_LINE_ONLY = {
    "O": "give -O on the command line", "output-file": "give -O on the command line",
    "url": "URLs are given on the command line, or with -i",
    "urls": "URLs are given on the command line, or with -i",
}

#: Long flags that are not options (they shape one command, not every run): in a config
#: file or the environment they are an error, not a source's option or a silent no-op.
FLAG_ONLY = frozenset([
    "input-file", "source", "include", "exclude", "config", "json", "quiet", "verbose",
    "debug", "version", "dry-run", "help",
])
