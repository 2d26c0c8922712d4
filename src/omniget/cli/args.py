"""Argument parsing: the subcommand table, the parsers, input files and flag -> option mapping.

``omniget URL...`` is ``omniget get URL...``: when the first argument that is not an option
(or an option's value) is not a known subcommand, the command is ``get``. Options may come
before the subcommand's name (``omniget -q list URL``). ``omniget help [COMMAND]`` shows
the help, as git and pip do. A source subcommand (``omniget gog
...``) is one more :class:`Command` row here and one runner in ``cli/commands.py``
(with its row in ``cli/__init__.py``'s ``RUNNERS``).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from .. import __version__
from .._frozen import plain_dataclass
from ..errors import UsageError, nearest, write_error
from ..model import Item
from ..settings import NetworkSettings
from . import options as opt
from .options import ArgumentError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = [
    "COMMANDS",
    "CURL_O",
    "ArgumentParser",
    "Command",
    "build_parser",
    "flags_from_args",
    "parse_args",
    "parse_input",
]


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors become one line (a :class:`UsageError`), never the whole usage text.

    Long options are never abbreviated, so a new option cannot change what ``--out`` means.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        # (argparse makes a help formatter for every option added, to check its metavar,
        # and each asks shutil for the terminal's width, importing it and its archive
        # modules at the first: ~5 M instructions of every start; asked once here)
        kind = kwargs.get("formatter_class", argparse.HelpFormatter)
        kwargs["formatter_class"] = functools.partial(kind, width=_help_width())
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{message} (see '{self.prog} --help')")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        """--help and --version: argparse ignored a failed write (a full disk: exit 0,
        nothing said); it is a storage error here, as any write to stdout (exit 7), and
        a reader that went away ends the command quietly (see main)."""
        if not message:
            return
        out = file if file is not None else sys.stderr
        try:
            out.write(message)
            flush = getattr(out, "flush", None)
            if flush is not None:
                flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise write_error(exc, "stdout" if out is sys.stdout else "stderr",
                              what=None) from None


def _help_width() -> int:
    """The width argparse lays help out to: the terminal's less 2, where shutil finds it
    (``COLUMNS``, else the terminal on stdout, else 80 columns)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    out = sys.__stdout__
    if columns <= 0 and out is not None:
        try:
            columns = os.get_terminal_size(out.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


#: What curl's ``-O URL`` is here: ``-O`` names the file, a URL's own name is the default.
CURL_O = "; to keep the URL's own file name, as curl's -O does, leave -O out"


class _Once(argparse.Action):
    """A value that may be given once: a second one is an error, not a silent override."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any,
        option: str | None = None,
    ) -> None:
        first = getattr(ns, self.dest, None)
        if first is not None:
            curl = "://" in f"{first}{value}"  # (curl -O URL1 -O URL2)
            raise argparse.ArgumentError(
                self, f"given more than once (one URL goes to one file{CURL_O if curl else ''})")
        setattr(ns, self.dest, value)


def _checked(parse: Callable[[object], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type=`` from one of config's parsers (ValueError -> a clean message)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name
    return convert


_count = _checked(opt.parse_count, "count")


def _or_empty(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert``, but ``""`` is kept: the option's default again, undoing the config
    file's or a variable's value (see config.EMPTY_UNDOES)."""

    def either(text: str) -> Any:
        return text if text == "" else convert(text)

    either.__name__ = getattr(convert, "__name__", "value")
    return either
_nonneg = _checked(opt.parse_nonneg, "number")
_seconds = _checked(opt.parse_seconds, "seconds")


def _connections(text: str) -> int:
    """``-N N``; a URL in N's place is wget's ``-N URL`` (timestamping) typed here."""
    try:
        return int(opt.parse_count(text))
    except ValueError as e:
        hint = ("; -N is connections per host here: wget's -N (timestamping) has no "
                "counterpart, a file already there is skipped (--on-exists)"
                if "://" in text else "")
        raise argparse.ArgumentTypeError(f"{e}{hint}") from None


def _user(text: str) -> str:
    """``USER:PASSWORD``, or ``USER`` alone (main() asks for the password, as curl does);
    ``""``: no user (undoes the config file's or a variable's)."""
    if ":" in text:
        return str(_checked(opt.parse_user, "user")(text))
    return text


def _file(text: str) -> str:
    """A file name, as given (spaces are part of it); never empty: ``--config "$UNSET"``."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got an empty string")
    return text


def _add_common(p: argparse.ArgumentParser, *, files: bool = True) -> None:
    """Options every item-producing command takes: input, selection, network, output style.
    ``files``: the command downloads into files (``list`` does not: no journal, and its
    items are its output, so -q and -v say what they do there)."""
    p.add_argument("urls", nargs="*", metavar="URL", help="what to get")
    p.add_argument("-i", "--input-file", action="append", metavar="FILE", type=_file,
                   help="read URLs from FILE ('-' = stdin; repeatable); TAB-separated URLs "
                   "are mirrors")
    p.add_argument("--source", metavar="NAME", help="use this source instead of guessing")
    p.add_argument("--include", action="append", metavar="GLOB",
                   help="only items whose output path (or name) matches (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB",
                   help="skip items whose output path (or name) matches (repeatable)")
    p.add_argument("--config", metavar="FILE", type=_file, action="append",
                   help="config file ('-' = stdin; given again, each is read in turn, the "
                   "later winning; default: $XDG_CONFIG_HOME/omniget/config.toml)")
    if files:
        p.add_argument("--state-dir", metavar="DIR",
                       help="folder of the resume journal, \"\" for the default (default: "
                       "$XDG_STATE_HOME/omniget, else ~/.local/state/omniget)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors" if files else
                   "no warnings on stderr (the items and errors are still printed)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="a line per file" if files else
                   "changes nothing here (each item is a line already)")
    p.add_argument("--debug", action="store_true", help="show every request, and tracebacks")
    p.add_argument("--version", action="version", version=f"omniget {__version__}")

    net = p.add_argument_group("network")
    net.add_argument("-N", "--connections", type=_connections, metavar="N",
                     help="connections per host (default 4)")
    net.add_argument("--max-connections", type=_or_empty(_count), metavar="N",
                     help='connections in all, over every host (default 16; "": the default)')
    net.add_argument("--retries", type=_nonneg, metavar="N", help="retries per piece (default 5)")
    net.add_argument("--retry-max-wait", type=_or_empty(_seconds), metavar="SECONDS",
                     help="longest wait before a retry, a server's Retry-After too (default "
                     '120; "": the default)')
    net.add_argument("--retry-max-time", type=_or_empty(_seconds), metavar="SECONDS",
                     help="time one file may spend waiting to retry, in all (default 300; "
                     '"": the default)')
    net.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                     help="connect and stall timeout (default 15 s to connect, 20 s with no data)")
    net.add_argument("--max-redirects", type=_or_empty(_nonneg), metavar="N",
                     help='redirects followed at most (default 10; 0: none; "": the default)')
    net.add_argument("--user-agent", metavar="TEXT",
                     type=_or_empty(_checked(opt.parse_user_agent, "user-agent")),
                     help=f'the User-Agent header (default {NetworkSettings.user_agent}; "": the '
                     'default)')
    net.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'",
                     type=_or_empty(_checked(opt.parse_header, "header")),
                     help="extra header (repeatable; 'NAME:' leaves it out; \"\" drops "
                     "those before it, the config file's too)")
    net.add_argument("--cookies", metavar="FILE", help='Netscape cookies.txt ("": none)')
    net.add_argument("--user", metavar="USER[:PASSWORD]", type=_user,
                     help="credentials for the first URL's server (without a password, "
                     'it is asked for on the terminal; "": none)')
    net.add_argument(
        "--proxy", metavar="URL", type=_checked(opt.parse_proxy, "proxy"),
        help='proxy for every request ("": none, not even from *_proxy)',
    )
    net.add_argument("--insecure", action="store_const", const=True,
                     help="do not verify TLS certificates")
    net.add_argument("--no-insecure", dest="insecure", action="store_const", const=False,
                     help="verify them (the default; undoes insecure from a config file or "
                     "variable)")
    net.add_argument("--ca-cert", metavar="FILE",
                     help='CA bundle to verify TLS with ("": as curl finds one)')
    net.add_argument("--resolve", action="append", metavar="HOST:PORT:ADDR[,ADDR]",
                     type=_or_empty(_checked(lambda v: opt.parse_resolve(v)[0], "resolve")),
                     help="use ADDR for HOST:PORT, the next ADDR if it fails (repeatable; "
                     '"" drops those before it, the config file\'s too)')
    net.add_argument("--no-netrc", action="store_const", const=True, help="ignore ~/.netrc")
    net.add_argument("--netrc", dest="no_netrc", action="store_const", const=False,
                     help="read it (the default; undoes no-netrc from a config file or "
                     "variable)")
    net.add_argument("--netrc-file", metavar="FILE",
                     help='read logins from FILE instead of ~/.netrc ("": ~/.netrc)')


def _add_get(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="DIR", help="output folder (default: .)")
    out.add_argument("-O", dest="output_file", metavar="FILE", action=_Once,
                     help="write the one URL to FILE ('-' = stdout; a device or FIFO is written "
                     "as stdout is)")
    out.add_argument("--on-exists", type=_checked(opt.parse_on_exists, "choice"),
                     metavar="{skip,overwrite,rename}", help="when the file exists (default skip)")
    out.add_argument("--checksum", type=_checked(opt.parse_digest, "checksum"), metavar="ALGO=HEX",
                     help="expected digest of the one file")
    out.add_argument("--dry-run", action="store_true",
                     help="print what would be written where, download nothing")
    speed = p.add_argument_group("speed")
    speed.add_argument("-j", "--jobs", type=_count, metavar="N",
                       help="files transferring at once (default 128)")
    speed.add_argument("--split", type=_or_empty(_count), metavar="N",
                       help='connections per file (default, or "": adaptive; -O - uses one)')
    speed.add_argument("--limit-rate", type=_checked(opt.parse_rate, "rate"), metavar="RATE",
                       help="bytes/s over the run, e.g. 500k, 2M (0: no limit)")


@plain_dataclass
class Command:
    """A subcommand: its name, one-line help and how it adds its options."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("get", "download URLs (the default command)", _add_get),
        Command("list", "print the items URLs give, download nothing (plain links unchecked)",
                lambda p: _add_common(p, files=False)),
    ]
}

#: Flags that map onto config options (argparse dest -> option name).
_OPTION_DESTS = {
    "output": "output",
    "jobs": "jobs",
    "connections": "connections",
    "split": "split",
    "limit_rate": "limit-rate",
    "retries": "retries",
    "timeout": "timeout",
    "header": "header",
    "cookies": "cookies",
    "user": "user",
    "checksum": "checksum",
    "on_exists": "on-exists",
    "state_dir": "state-dir",
    "proxy": "proxy",
    "insecure": "insecure",
    "ca_cert": "ca-cert",
    "resolve": "resolve",
    "no_netrc": "no-netrc",
    "netrc_file": "netrc-file",
    "max_connections": "max-connections",
    "retry_max_wait": "retry-max-wait",
    "retry_max_time": "retry-max-time",
    "max_redirects": "max-redirects",
    "user_agent": "user-agent",
}


def build_parser(command: str | None = None) -> ArgumentParser:
    """The parser of one command, or (None) the top-level one that only shows help."""
    if command is not None:
        c = COMMANDS[command]
        p = ArgumentParser(prog=f"omniget {c.name}", description=c.help)
        c.add_arguments(p)
        return p
    table = "\n".join(f"  {c.name:<10} {c.help}" for c in COMMANDS.values())
    p = ArgumentParser(
        prog="omniget",
        usage="omniget [COMMAND] [OPTIONS] URL...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Get files from wherever they live: fast, resumable, verified downloads.",
        epilog=f"commands:\n{table}\n\n'omniget URL...' is short for 'omniget get URL...'.\n"
        "Options may come before or after the command name.\n\n"
        "often used (all of them: 'omniget get --help'):\n"
        "  -o DIR        output folder          -O FILE      one URL to one file (- = stdout)\n"
        "  -i FILE       URLs from a file       -j N         files at once\n"
        "  -N N          connections per host   --split N    connections per file\n"
        "  --checksum ALGO=HEX                  --on-exists skip|overwrite|rename\n"
        "  --limit-rate RATE                    -q, -v, --json, --dry-run",
    )
    p.add_argument("--version", action="version", version=f"omniget {__version__}")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` (without the program name); UsageError on bad input.

    ``--help``/``--version`` raise SystemExit(0) after printing, as argparse does.
    """
    args = list(argv)
    if not args:
        raise UsageError("no URL given (see 'omniget --help')")
    if args[0] in ("-h", "--help", "--version"):
        build_parser().parse_args(args[:1])
    after: list[str] = []  # everything after "--" is a URL, even "-o"
    if "--" in args:
        cut = args.index("--")
        args, after = args[:cut], args[cut + 1 :]
    parsers: dict[str, ArgumentParser] = {}
    command, args = _split_command(args, parsers)
    if command == "help":
        _help(args)
    parser = parsers.get(command) or build_parser(command)
    _check_one_dash(parser, args)
    ns, extra = _parse_intermixed(parser, args)
    # (a URL pasted with a space or newline around it: the URL without them, as wget)
    ns.urls = [u.strip() for u in [*(ns.urls or []), *after]]
    if "" in ns.urls:  # (`omniget "$UNSET"`: no source to blame)
        raise UsageError('the URL is empty (an argument is "" or only blanks)')
    for word in ns.urls[: len(ns.urls) - len(after)]:  # (`omniget URL list`: none fetched)
        if len(word) > 1 and word.startswith("-"):  # (-4: argparse keeps it, a number)
            parser.error(f"{word} is not an option of '{parser.prog}'{_suggest(parser, word)}")
        if word in COMMANDS or word == "help":
            usage = f"help {command}" if word == "help" else f"{word} URL..."
            raise UsageError(f"'{word}' is a command, not a URL: it goes first ('omniget "
                             f"{usage}')")
    for arg in extra:
        if arg.startswith("-"):  # e.g. `omniget -o DIR list URL`: never a silent download
            flag = arg.partition("=")[0]
            parser.error(f"{flag} is not an option of '{parser.prog}'{_suggest(parser, flag)}")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _check_first_word(ns.urls[: len(ns.urls) - len(after)], len(ns.urls), ns)
    ns.command = command
    return ns


def _check_first_word(given: list[str], count: int, ns: argparse.Namespace) -> None:
    """``omniget version``, ``omniget download URL``: a word no source could take, where a
    command goes, is said before any request (the URLs after it were downloaded, then
    "no source can handle 'download'"). Alone, it fails as any word that is no URL."""
    first = given[0] if given else ""
    if first == "version":
        raise UsageError("'version' is not a command; the version is --version")
    if (count > 1 and first != "localhost" and re.fullmatch(r"[a-z]+", first)
            and getattr(ns, "source", None) is None and not os.path.exists(first)):
        names = ", ".join([*COMMANDS, "help"])
        raise UsageError(f"'{first}' is not a command (commands: {names}) nor a URL; to "
                         "download, give the URLs alone ('omniget URL...')")


def _parse_intermixed(
    parser: ArgumentParser, args: list[str]
) -> tuple[argparse.Namespace, list[str]]:
    """``parser.parse_known_intermixed_args(args)``. argparse (before 3.13) lays out the
    whole usage first, for error messages that :meth:`ArgumentParser.error` never shows;
    only help shows it, so a run that cannot be asking for help skips that (~2.5 M
    instructions of every start)."""
    asks_help = any(
        a == "--help" or (a.startswith("-") and not a.startswith("--") and "h" in a)
        for a in args
    )
    if parser.usage is not None or asks_help:
        return parser.parse_known_intermixed_args(args)
    parser.usage = argparse.SUPPRESS  # (kept by argparse: no usage is laid out)
    try:
        return parser.parse_known_intermixed_args(args)
    finally:
        parser.usage = None


def _help(args: list[str]) -> NoReturn:
    """``omniget help [COMMAND]``: that command's help (or the general one), exit 0."""
    words = [a for a in args if not a.startswith("-")]
    name = words[0] if words else None
    if name == "help":  # (help on help: the general help, which says what help does)
        name = None
    if name is not None and name not in COMMANDS:
        near = nearest(name, COMMANDS, 0.6)
        hint = f"; did you mean '{near}'?" if near else ""
        raise UsageError(f"'{name}' is not a command (commands: {', '.join(COMMANDS)}){hint}")
    build_parser(name).print_help()
    raise SystemExit(0)


def _check_one_dash(parser: ArgumentParser, args: list[str]) -> None:
    """``-output DIR`` is ``-o utput`` to argparse: a download into ``utput`` with ``DIR`` for
    a URL. A long option's name after one dash is taken for a slip, never for a short one."""
    longs = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    for arg in args:
        flag = arg.partition("=")[0]
        if len(flag) > 2 and flag[0] == "-" and flag[1] != "-" and "-" + flag in longs:
            parser.error(f"{flag} is not an option; did you mean -{flag}? (long options take "
                         "two dashes)")


def _peer_flags() -> dict[str, tuple[str, str]]:
    """curl's, wget's and aria2's flags that have another name here, or need none: flag ->
    (the option the hint names, '' for none; the hint)."""
    out = "the output folder is -o DIR (one URL to one file: -O FILE)"
    timeout = "connect and stall timeouts are --timeout SECONDS"
    rows: list[tuple[tuple[str, ...], str, str]] = [
        (("-x",), "-N", "connections per host are -N N (aria2's -x); a proxy is --proxy URL "
         "(curl's -x)"),
        (("--max-connection-per-server",), "-N", "connections per host are -N N"),
        (("-s",), "--split", "connections per file are --split N (aria2's -s); quiet is -q "
         "(curl's -s)"),
        (("--silent",), "-q", "quiet is -q"),
        (("-d", "--dir", "-P", "--directory-prefix"), "-o", out),
        (("--output-document",), "-O", "one URL to one file is -O FILE"),
        (("-c", "--continue", "-C"), "", "a download resumes by itself: run the same command "
         "again (cookies to send: --cookies FILE)"),
        (("-L", "--location"), "", "redirects are always followed (up to --max-redirects N, "
         "10 by default)"),
        (("--max-redirs", "--max-redirect"), "--max-redirects", "the redirects followed at "
         "most are --max-redirects N"),
        (("-m", "--max-time"), "--timeout", "there is no limit on a whole transfer; "
         + timeout),
        (("--connect-timeout", "-T", "--read-timeout", "--dns-timeout"), "--timeout", timeout),
        (("--retry", "-t", "--tries", "--max-tries"), "--retries", "retries are --retries N"),
        (("--retry-delay", "--retry-wait", "--waitretry"), "--retry-max-wait", "the wait "
         "before a retry grows by itself, up to --retry-max-wait SECONDS"),
        (("-A", "-U"), "--user-agent", "the User-Agent is --user-agent TEXT"),
        (("-b", "--cookie", "--load-cookies"), "--cookies", "cookies to send are --cookies "
         "FILE (a Netscape cookies.txt)"),
        (("-k", "--no-check-certificate"), "--insecure", "not verifying TLS is --insecure"),
        (("--cacert", "--ca-certificate"), "--ca-cert", "a CA bundle is --ca-cert FILE"),
        (("-Z", "--parallel", "--parallel-max", "--max-concurrent-downloads"), "-j",
         "files at once are -j N"),
        (("-nc", "--no-clobber"), "--on-exists", "a file already there is skipped by default "
         "(--on-exists skip)"),
        (("-u", "--http-user", "--http-password"), "--user", "credentials are --user "
         "USER[:PASSWORD]"),
        (("--max-overall-download-limit", "--max-download-limit"), "--limit-rate",
         "a rate limit is --limit-rate RATE"),
        (("-V",), "--version", "the version is --version (-v: a line per file)"),
        (("-f", "--fail"), "", "an HTTP error fails the file by itself (a 404: exit 6)"),
        (("-S", "--show-error"), "", "errors are always shown (with -q too)"),
        (("-J", "--remote-header-name"), "", "the server's file name (Content-Disposition) "
         "is taken by itself"),
        (("--remote-name",), "", "the URL's own file name is the default: leave -O out"),
        (("-4", "-6", "--inet4-only", "--inet6-only"), "", "there is no switch for IPv4 or "
         "IPv6 only: --resolve HOST:PORT:ADDR picks the address"),
        (("-I", "--head", "--spider"), "", "there is no header-only request: --debug shows "
         "each request and answer of a download"),
        (("--timestamping",), "", "a file already there is skipped (--on-exists); nothing "
         "compares dates"),
        (("-nv", "--no-verbose"), "", "the default shows bars on a terminal, else a line "
         "every 2 s; -q: errors only"),
        (("--compressed",), "", "a compressed answer is saved decoded by itself"),
        (("-w", "--wait", "--write-out"), "", "there is no wait between files (wget's -w) "
         "and no --write-out (curl's -w): --json gives each file's numbers"),
    ]
    return {flag: (target, hint) for flags, target, hint in rows for flag in flags}


def _suggest(parser: argparse.ArgumentParser, flag: str) -> str:
    """'; did you mean --x?' for a near miss among the parser's long options, or what a flag
    of curl, wget or aria2 is here; else ''."""
    options = {o for a in parser._actions for o in a.option_strings}
    peers = _peer_flags()
    if flag not in peers and len(flag) > 2 and flag[1] != "-" and flag[1:].isalpha():
        # (curl's -fsSL: each letter's hint, when every letter is a flag of curl's or ours)
        letters = [f"-{c}" for c in dict.fromkeys(flag[1:])]
        if all(f in peers or f in options for f in letters):
            hints = [f"{f}: {peers[f][1]}" for f in letters
                     if f in peers and (not peers[f][0] or peers[f][0] in options)]
            return "".join(f"; {h}" for h in hints)
    peer = peers.get(flag) or (peers.get(flag[:2]) if flag[1:2] != "-" else None)
    if peer is not None and (not peer[0] or peer[0] in options):
        return f"; {peer[1]}"
    near = nearest(flag, sorted(o for o in options if o.startswith("--")), 0.75)
    return f"; did you mean {near}?" if near else ""


def _split_command(
    args: list[str], parsers: dict[str, ArgumentParser]
) -> tuple[str, list[str]]:
    """The command and the other arguments: the first argument that is neither an option nor
    an option's value names the command when it is one (``get`` otherwise). Parsers are
    built only when an option has to be looked up, ``get``'s first; ``parsers`` keeps them."""

    def takes_value(flag: str) -> bool:
        for name in ("get", *COMMANDS):
            if name not in parsers:
                parsers[name] = build_parser(name)
            for action in parsers[name]._actions:
                if flag in action.option_strings:
                    return action.nargs != 0
        return False

    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("-", "--"):
        arg = args[i]
        if takes_value(arg):
            i += 1  # -o DIR: skip the value too
        elif not arg.startswith("--"):  # -qo DIR: a group whose last flag takes the next one
            for j, letter in enumerate(arg[1:], 2):
                if takes_value("-" + letter):
                    if j == len(arg):
                        i += 1
                    break
        i += 1
    if i < len(args) and (args[i] in COMMANDS or args[i] == "help"):
        return args[i], args[:i] + args[i + 1 :]
    if i < len(args) and re.fullmatch(r"[a-z]+", args[i]):  # `omniget lsit URL`: no download
        near = nearest(args[i], [*COMMANDS, "help"], 0.6)
        if near:
            raise UsageError(f"'{args[i]}' is not a command; did you mean '{near}'?")
    return "get", args


def flags_from_args(ns: argparse.Namespace) -> dict[str, object]:
    """The option values given on the command line (unset flags are left out)."""
    if isinstance(getattr(ns, "output", None), str) and not ns.output.strip():
        raise ArgumentError(f"-o {ns.output!r}: names no folder (the current folder: -o . "
                            "or no -o)")
    flags: dict[str, object] = {}
    for dest, name in _OPTION_DESTS.items():
        value = getattr(ns, dest, None)
        if value is not None:
            flags[name] = tuple(value) if isinstance(value, list) else value
    return flags


# (a pattern string: re compiles it when first used; compiled at import, it cost every
# start ~10 M instructions: IGNORECASE with \w)
_HOSTLIKE = (
    r"(?:localhost|[\w-]+(?:\.[\w-]+)*\.[a-z][\w-]*|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\])"
    r"(?::\d{1,5})?(?:[/?#]|$)"
)


def argv_url(url: str) -> str:
    """A URL as an argument gave it. Its bytes that are no UTF-8 (each one a lone surrogate
    in Python's reading: a URL pasted from a latin-1 page) are asked for percent-encoded, as
    a browser asks for them; in a locale of ASCII, where every byte past ASCII is
    one, those of UTF-8 are their characters again."""
    if url.isascii() or re.search("[\udc80-\udcff]", url) is None:
        return url
    try:
        raw = url.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # (another lone surrogate: from no argument)
        return url
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)


#: What a URL never holds as it is: C0 and C1 controls and DEL (TAB and line breaks
#: aside: an -i line's mirrors are TAB-separated, and a browser drops them from a URL).
_CONTROLS = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def controls_encoded(url: str) -> str:
    """``url`` with its control characters percent-encoded, as a browser asks for them:
    an escape sequence in a URL from a list found elsewhere never reaches the terminal
    (in ``list``, ``--dry-run`` and errors) as one."""
    if url.isprintable():
        return url
    return re.sub(_CONTROLS, lambda m: quote(m.group(), safe=""), url)


def guess_scheme(url: str) -> str:
    """``example.com/file`` means ``http://example.com/file``, as in curl and wget: a bare
    host name with a dot (or localhost, or an IP address), an optional port, then a path.
    A name that exists as a local file is left alone."""
    if "://" not in url and re.match(_HOSTLIKE, url, re.IGNORECASE) and not os.path.exists(url):
        return f"http://{url}"
    return url


def parse_input(text: str, name: str = "input file") -> list[str | Item]:
    """An ``-i`` URL list: one per line, blank lines and ``#`` comments skipped.

    Several TAB-separated URLs on one line are mirrors of one file. A space inside a URL is
    a UsageError naming ``name`` and the line: two URLs on one line were meant, most likely;
    so is an indented ``key=value`` line (aria2's options for the URL above it).
    """
    out: list[str | Item] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[:1].isspace() and re.fullmatch(r"[A-Za-z][\w-]*=.*", line):  # (  out=a.bin)
            raise UsageError(f"{name}, line {number}: {line!r} is an option line (aria2's); "
                             "omniget reads URLs only (one per line, mirrors separated by a "
                             "TAB)")
        # (one URL, as most lines: no split, no list)
        urls = (
            [line if "://" in line else guess_scheme(line)]  # (one with a scheme: as it is)
            if "\t" not in line
            else [guess_scheme(u.strip()) for u in line.split("\t") if u.strip()]
        )
        if " " in line and any(" " in u for u in urls):
            if re.search(r"\s#", line):  # (`URL  # why`: no URL has a space)
                raise UsageError(f"{name}, line {number}: a comment after a URL (a comment "
                                 "is a line of its own, starting with #)")
            raise UsageError(
                f"{name}, line {number}: a space inside a URL (separate files go on separate "
                "lines, mirrors of one file are separated by a TAB; a space in a URL is %20)"
            )
        urls = [controls_encoded(u) for u in urls]
        if len(urls) == 1:
            out.append(urls[0])
        else:
            out.append(Item(download_url=urls[0], mirrors=tuple(urls[1:]), name_from_server=True))
    return out
