"""The ``omniget`` command: arguments and config in, API calls, one exit code out.

Every failure is one line on stderr (``omniget: error: ...``) and an exit code from the
error's ``exit_code`` (the table drawn in ``errors.py``); no traceback unless ``--debug``.
With ``--json`` it is also an event on stdout (``failed`` for a URL, ``error`` for the
whole run), and every run ends with a ``summary`` event. Writing stdout is storage like any
other: disk full or closed is exit 7.

This module is the entry point: :func:`main` and :func:`run`, the dispatch to a command
and the error -> exit-code handling. The commands themselves are in
:mod:`omniget.cli.commands`, the steps they share (URLs in, items out, failure lines) in
:mod:`omniget.cli.targets`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from ..engine.transports.base import SECRET_HEADERS
from ..errors import Cancelled, OmnigetError, StorageError, UsageError
from . import signals
from .args import flags_from_args, parse_args
from .commands import RESUME, not_a_file, run_get, run_list
from .config import STDIN, Config, load_config, load_settings
from .logs import log_to_stderr
from .options import ArgumentError
from .output import (
    Masker,
    display_path,
    json_line,
    name_bytes_out,
    print_error,
    summary_record,
    whole_writes_out,
)
from .stream import drop_stdout
from .targets import given_path

__all__ = ["load_settings", "main", "run"]


#: What the shell shows when stdout's reader went away (``omniget list | head -1``): the
#: command dies of SIGPIPE, as git and ls do; main() returns this code for it.
BROKEN_PIPE = 128 + signal.SIGPIPE


def _argv_secrets(argv: Sequence[str]) -> list[str]:
    """Secrets visible in raw arguments, masked even in usage errors."""
    found: list[str] = []
    for i, flag in enumerate(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        for name in ("--user", "-H", "--header"):
            if flag.startswith(name + "="):
                flag, value = name, flag[len(name) + 1 :]
        if flag == "--user":
            found.append(value.partition(":")[2])
        elif flag in ("-H", "--header"):
            name, _, v = value.partition(":")
            if name.strip().lower() in SECRET_HEADERS:
                found.append(v.strip())
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    mask = Masker(_argv_secrets(argv))
    ns: argparse.Namespace | None = None
    cfg: Config | None = None
    try:
        ns = parse_args(argv)
        cfg = load_config(_configs(ns), flags=flags_from_args(ns))
        # (list, --dry-run: asked only if a URL's listing makes a request, see ask_later)
        cfg = _ask_password(ns, cfg, now=ns.command == "get" and not ns.dry_run)
        mask = Masker([*mask.secrets, *cfg.secrets])
        quiet = bool(getattr(ns, "quiet", False))
        with log_to_stderr(mask, verbose=ns.verbose, debug=ns.debug, quiet=quiet):
            return RUNNERS[ns.command](ns, cfg, mask)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except KeyboardInterrupt:  # (one before the download began, or in list, --dry-run)
        _said_last(saying=True)  # (a signal again, fast: these lines are said whole all
        # the same; run() ends with SIGTERM's default again)
        _end_line(ns)
        print_error(RESUME if ns is not None and _resumable(ns) else "interrupted")
        if ns is None:  # (as the arguments were read: as far as they can be read now)
            _json_stopped(argv)
        _json_error(ns, Cancelled("interrupted"), 130, mask)
        return 130
    except BrokenPipeError:  # `omniget list ... | head`: quietly, as git and ls
        drop_stdout()
        return BROKEN_PIPE
    except OmnigetError as e:
        _said_last(saying=True)  # (the run is over: a signal now cuts none of its lines)
        if debug:
            traceback.print_exc()
        where = cfg.where_set(e) if cfg is not None else ""  # (a config file's line, ...)
        print_error(mask(_shown(e) + where))
        _json_error(ns, e, e.exit_code, mask, where)
        return e.exit_code
    except Exception as e:
        _said_last(saying=True)
        if debug:
            traceback.print_exc()
        print_error(f"internal error: {type(e).__name__}: {mask(str(e))} "
                    "(run with --debug for the traceback)")
        _json_error(ns, e, 1, mask)
        return 1


def _configs(ns: argparse.Namespace) -> list[Path] | None:
    """The ``--config`` files, in the order given (None: none given, the default's or
    OMNIGET_CONFIG's); ``-`` is stdin, which only one of them and ``-i`` may read."""
    if not ns.config:
        return None
    if ns.config.count("-") > 1:
        raise ArgumentError("--config - is given twice (stdin is read once)")
    if "-" in ns.config and "-" in (ns.input_file or ()):
        raise ArgumentError("--config - and -i - both read stdin (give one of them a file)")
    return [STDIN if c == "-" else given_path(c, "--config") for c in ns.config]


def _ask_password(ns: argparse.Namespace, cfg: Config, *, now: bool = True) -> Config:
    """A user without a password (``--user NAME``, or ``user`` in the config file or a
    variable): ask for it without echo when stdin is a terminal, as curl does; else say
    how to give it. ``cfg`` with it (its secrets too). Not ``now``: the user is kept in
    ``ns.ask_user`` for :func:`ask_later`, ``cfg`` has none till then."""
    user = cfg.settings.network.user
    if not user or ":" in user:
        return cfg
    if sys.stdin is None or not sys.stdin.isatty():
        said = (f"--user {user}: no password, and no terminal to ask for it on (give "
                f"--user {user}:PASSWORD)")
        if cfg.set_where("user"):  # (the file's or a variable's: main says which)
            raise UsageError(said, setting="user")
        raise ArgumentError(said)
    if not now:
        ns.ask_user = user
        return _with_user(cfg, None)
    from .prompt import ask_hidden  # (echo back while stopped: see there)

    try:
        password = ask_hidden(f"Enter host password for user '{user}': ")
    except EOFError:  # (Ctrl+D)
        said = f"--user {user}: no password given"
        if cfg.set_where("user"):
            raise UsageError(said, setting="user") from None
        raise ArgumentError(said) from None
    except KeyboardInterrupt:  # (getpass ends the prompt's line for an answer only)
        ns.prompted = True
        raise
    cfg = _with_user(cfg, f"{user}:{password}")
    return dataclasses.replace(cfg, secrets=(*cfg.secrets, password))


def _with_user(cfg: Config, user: str | None) -> Config:
    network = dataclasses.replace(cfg.settings.network, user=user)
    return dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, network=network))


def ask_later(
    ns: argparse.Namespace, cfg: Config, mask: Masker, targets: Sequence[object]
) -> Config:
    """``list`` and ``--dry-run`` with a user without a password: it is asked for now, if
    a URL of ``targets`` has a source that may make a request to list it (plain links
    make none: nothing would be sent with it). ``cfg`` with it; ``mask`` masks it."""
    user = getattr(ns, "ask_user", None)
    if user is None or not _lists_with_requests(targets, ns.source):
        return cfg
    ns.ask_user = None
    cfg = _ask_password(ns, _with_user(cfg, user))
    password = (cfg.settings.network.user or "").partition(":")[2]
    if len(password) >= 3:  # (as Masker takes secrets)
        mask.secrets = sorted({*mask.secrets, password}, key=len, reverse=True)
    return cfg


def _lists_with_requests(targets: Sequence[object], source: str | None) -> bool:
    """Whether a URL of ``targets`` has a source other than plain links' (which knows its
    items without a request); an item is its own."""
    from ..sources import find_source
    from ..sources.http import SOURCE

    for target in targets:
        if not isinstance(target, str):
            continue
        try:
            if find_source(target, source) is not SOURCE:
                return True
        except OmnigetError:  # (said when it is listed)
            continue
    return False


def _end_line(ns: argparse.Namespace | None) -> None:
    """Before the line an interrupt ends with: a new line after an unanswered password
    prompt, and on a terminal (whose echoed ``^C`` stands where the cursor was)."""
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if getattr(ns, "prompted", False) or sys.stderr.isatty():
            sys.stderr.write("\n")


def _shown(error: OmnigetError) -> str:
    """The error's line, the output folder in it shown as other paths are (relative
    to the current directory under it: see display_path)."""
    text = str(error)
    folder = getattr(error, "folder", None)
    if folder is None:
        return text
    text = text.replace(folder, display_path(folder), 1)
    within = getattr(error, "within", None)  # (named after the folder: the file in its way)
    return text if within is None else text.replace(within, display_path(within))


def _resumable(ns: argparse.Namespace) -> bool:
    """A download into files keeps its state when stopped; a list, a dry run, ``-O -``
    and ``-O`` a device or a FIFO (neither can be resumed) have none. Nor has a run
    stopped before its download began that read its list from stdin (``-i -``), or its
    list or config from a FIFO or a device (waiting for a writer, say): nothing of it
    began, and the same command cannot read that text again."""
    out = ns.output_file if ns.command == "get" else None
    return (ns.command == "get" and not ns.dry_run and out != "-"
            and "-" not in (ns.input_file or ())
            and not (out and _not_a_file(out, "-O"))
            and not any(_not_a_file(f, "-i") for f in ns.input_file or ())
            and not any(c == "-" or _not_a_file(c, "--config") for c in ns.config or ()))


def _not_a_file(text: str, flag: str) -> bool:
    try:
        return not_a_file(given_path(text, flag))
    except ArgumentError:  # (a name that names nothing: no FIFO either)
        return False


def _json_error(
    ns: argparse.Namespace | None, error: BaseException, code: int, mask: Masker,
    where: str = "",
) -> None:
    """``--json``: a run that failed as a whole (not one URL of it) ends as every run does
    there: an ``error`` event, then the summary (nothing done; but what ``list`` and
    ``--dry-run`` printed before it, counted as they went: ``ns.counted_so_far``). Errors
    in the arguments themselves (argparse's, and :class:`ArgumentError` found after it)
    are plain stderr only: stdout stays empty, the run never started."""
    if ns is None or not getattr(ns, "json", False) or sys.stdout is None:
        return
    if isinstance(error, ArgumentError):
        return
    if getattr(ns, "output_file", None) == "-":  # (stdout is the file's: --json is refused)
        return
    said = _shown(error) + where if isinstance(error, OmnigetError) else str(error)  # (stderr's)
    record = {"event": "error", "error": mask(said), "error_type": type(error).__name__,
              "exit_code": code}
    try:
        json_line(sys.stdout, record)
        # (list, --dry-run: what they printed before it, counted as they went)
        so_far = getattr(ns, "counted_so_far", None)
        json_line(sys.stdout, summary_record(ns, code, **(so_far() if so_far else {})))
    except (OSError, StorageError):  # stdout itself is what failed: said on stderr
        pass


def _json_stopped(argv: Sequence[str]) -> None:
    """``--json``, stopped before the arguments were parsed: its ``error`` event and
    summary all the same (see :func:`omniget.jsonend.json_kind`)."""
    from ..jsonend import json_kind, stopped_lines

    kind = json_kind(argv)
    if kind is None or sys.stdout is None:
        return
    with contextlib.suppress(OSError, ValueError):  # (stdout itself failed: stderr said)
        sys.stdout.write(stopped_lines(kind))
        sys.stdout.flush()


def run() -> None:
    """The console script: :func:`main`, then exit at once. Everything worth closing is
    closed by then (files, the journal, the event loop and its threads); skipping the
    interpreter's teardown of every module saves ~20 ms per command."""
    _tune_gc()
    _hold_closed_fds()
    whole_writes_out()
    name_bytes_out()
    code = 130
    signals.last_run = True
    try:
        code = main()
    except KeyboardInterrupt:  # (one that came after main's handlers: its code stands)
        pass
    finally:
        _said_last()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # (None: closed by the caller)
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    logging.shutdown()
    if code == BROKEN_PIPE:  # (Python ignores SIGPIPE: restore its default, then die of it)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(code)


def _said_last(*, saying: bool = False) -> None:
    """The console script has said, or says now, its last lines: a Ctrl+C or SIGHUP from
    now on changes nothing and prints no traceback (before: one typed again as an
    interrupted ``list --json`` wrote its summary lost it, and one more as the streams
    were flushed printed a traceback); a SIGTERM ends the process as its default does, not
    as the Ctrl+C start-up made it. ``saying``: the lines of a run stopped before its
    download began are being said: a SIGTERM is ignored till they are, as a second one
    during the download leaves its summary said (it killed the process between its
    ``--json`` error event and summary). (Library callers and tests keep their
    handlers.)"""
    if not signals.last_run or threading.current_thread() is not threading.main_thread():
        return
    for signum in signals.QUIET_AFTER:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, signal.SIG_IGN)
    term = signal.getsignal(signal.SIGTERM)
    if term is signal.default_int_handler or (term is signal.SIG_IGN and _TERM_HELD):
        signal.signal(signal.SIGTERM, signal.SIG_IGN if saying else signal.SIG_DFL)
        _TERM_HELD[:] = [True] if saying else []


_TERM_HELD: list[bool] = []  # (SIGTERM is ignored by _said_last(saying=True), not the caller)


def _hold_closed_fds() -> None:
    """Standard descriptors the caller closed (``>&-``) get /dev/null: no file the run
    opens (a part file, the journal) may take their number and stray writes with it.
    ``sys.stdout`` stays None, so a command that writes there says it is closed (exit 7);
    a closed stderr is a silent one."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # (the lowest free number: this one)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open to the end of the process)


def _tune_gc() -> None:
    """The process is the command's alone, so set its garbage collector for a long list of
    files: what start-up made lives to the end (frozen: never walked again), and a larger
    young generation lets each file's short-lived objects die between collections instead
    of being walked in every one. 5,000 small files spent ~120 ms in the collector with
    Python's defaults, ~15 ms with 10,000, and with 50,000 40% fewer instructions again
    (the few hundred files set up ahead are alive at every collection: fewer collections
    walk them fewer times). (The library leaves the host program's collector alone.) On:
    the command (``omniget.__main__``) turned it off while this module loaded."""
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)
    gc.enable()



#: Command name -> runner; a source subcommand (``gog``) adds a row here and in args.COMMANDS.
RUNNERS: dict[str, Callable[[argparse.Namespace, Config, Masker], int]] = {
    "get": run_get,
    "list": run_list,
}
