"""The ``omniget`` command: arguments and config in, API calls, one exit code out.

Every failure is one line on stderr (``omniget: error: ...``) and an exit code from the
error's ``exit_code`` (design.md's table); no traceback unless ``--debug``. With ``--json``
it is also an event on stdout (``failed`` for a URL, ``error`` for the whole run), and every
run ends with a ``summary`` event. Writing stdout is storage like any other: disk full or
closed is exit 7.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from ..engine.events import Failed, Skipped
from ..engine.transports.base import SECRET_HEADERS
from ..errors import Cancelled, OmnigetError, StorageError, UsageError
from ..model import Item, unextracted
from .args import CURL_O, flags_from_args, guess_scheme, parse_args, parse_input
from .config import Config, expand_path, load_config, load_settings
from .logs import log_to_stderr
from .output import (
    EXISTS_WHY,
    JsonEvents,
    Masker,
    display_path,
    dry_run,
    event_to_dict,
    json_line,
    print_error,
    print_list,
    summary_line,
    summary_record,
    writable_stdout,
)
from .progress import (
    SKIP_LINES,
    QuietProgress,
    make_progress,
    safe_consumer,
)
from .signals import SaveOnSignal, on_signals
from .stream import drop_stdout, to_stream
from .tally import Tally

__all__ = ["load_settings", "main", "run"]

Failure = tuple[str, OmnigetError]  # (what failed, shown to the user; the error)


#: The last line of a download stopped by Ctrl+C or SIGTERM: its state is saved.
RESUME = "interrupted; run the same command again to resume"
#: ... and when its journal could not be used (or stopped taking new records).
NO_RESUME = ("interrupted; what the resume journal could not record (see the warning above)"
             " starts over on a rerun")

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
    try:
        ns = parse_args(argv)
        _ask_password(ns)
        config = _path(ns.config, "--config") if ns.config else None
        cfg = load_config(config, flags=flags_from_args(ns))
        mask = Masker([*mask.secrets, *cfg.secrets])
        quiet = bool(getattr(ns, "quiet", False))
        with log_to_stderr(mask, verbose=ns.verbose, debug=ns.debug, quiet=quiet):
            return RUNNERS[ns.command](ns, cfg, mask)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except KeyboardInterrupt:  # (one before the download began, or in list, --dry-run)
        print_error(RESUME if ns is not None and _resumable(ns) else "interrupted")
        _json_error(ns, Cancelled("interrupted"), 130, mask)
        return 130
    except BrokenPipeError:  # `omniget list ... | head`: quietly, as git and ls
        drop_stdout()
        return BROKEN_PIPE
    except OmnigetError as e:
        if debug:
            traceback.print_exc()
        print_error(mask(str(e)))
        _json_error(ns, e, e.exit_code, mask)
        return e.exit_code
    except Exception as e:
        if debug:
            traceback.print_exc()
        print_error(f"internal error: {type(e).__name__}: {mask(str(e))} "
                    "(run with --debug for the traceback)")
        _json_error(ns, e, 1, mask)
        return 1


def _ask_password(ns: argparse.Namespace) -> None:
    """``--user NAME`` without a password: ask for it without echo when stdin is a
    terminal, as curl does; else say how to give it."""
    user = ns.user
    if user is None or ":" in user:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(f"--user {user}: no password, and no terminal to ask for it on "
                         f"(give --user {user}:PASSWORD)")
    import getpass

    try:
        password = getpass.getpass(f"Enter host password for user '{user}': ")
    except EOFError:  # (Ctrl+D)
        raise UsageError(f"--user {user}: no password given") from None
    ns.user = f"{user}:{password}"


def _resumable(ns: argparse.Namespace) -> bool:
    """A download into files keeps its state when stopped; a list, a dry run, ``-O -``
    and ``-O`` a device or a FIFO (neither can be resumed) have none."""
    out = ns.output_file if ns.command == "get" else None
    return (ns.command == "get" and not ns.dry_run and out != "-"
            and not (out and _not_a_file(_path(out, "-O"))))


def _json_error(
    ns: argparse.Namespace | None, error: BaseException, code: int, mask: Masker
) -> None:
    """``--json``: a run that failed as a whole (not one URL of it) ends as every run does
    there: an ``error`` event, then the summary (nothing done). Errors in the arguments
    themselves come before ``--json`` is known: plain stderr only."""
    if ns is None or not getattr(ns, "json", False) or sys.stdout is None:
        return
    record = {"event": "error", "error": mask(str(error)), "error_type": type(error).__name__,
              "exit_code": code}
    try:
        json_line(sys.stdout, record)
        json_line(sys.stdout, summary_record(ns, code))  # (nothing done: every count 0)
    except (OSError, StorageError):  # stdout itself is what failed: said on stderr
        pass


def run() -> None:
    """The console script: :func:`main`, then exit at once. Everything worth closing is
    closed by then (files, the journal, the event loop and its threads); skipping the
    interpreter's teardown of every module saves ~20 ms per command."""
    _tune_gc()
    _hold_closed_fds()
    code = main()
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


# --- shared steps ---


def _bind_user(cfg: Config, targets: list[str | Item]) -> Config:
    """``--user`` is for the first URL's server only: never sent to the others."""
    net = cfg.settings.network
    if net.user is None or net.user_origin is not None or not targets:
        return cfg
    first = targets[0]
    url = first if isinstance(first, str) else first.download_url
    network = dataclasses.replace(net, user_origin=url)
    return dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, network=network))


def _collect(ns: argparse.Namespace) -> list[str | Item]:
    """URLs from the command line, then from each ``-i`` in turn."""
    targets: list[str | Item] = [guess_scheme(u) for u in ns.urls]
    empty = ""  # why the last list read gave no URL
    for file in ns.input_file or ():
        name = "stdin" if file == "-" else f"input file {file}"
        try:
            if file == "-":
                if sys.stdin is None:
                    raise UsageError("cannot read stdin (-i -): it is closed")
                text = sys.stdin.read()
            else:
                text = _path(file, "-i").read_text(encoding="utf-8")
        except OSError as e:
            why = e.strerror or str(e)
            if "://" in file:  # (-i URL: a URL is no file of URLs)
                why += f" (-i reads URLs from a file; to download {file}, leave out -i)"
            raise UsageError(f"cannot read {name}: {why}") from None
        except UnicodeDecodeError as e:
            why = f"not UTF-8 text ({e.reason} at byte {e.start})"
            raise UsageError(f"cannot read {name}: {why}") from None
        text = text.removeprefix("\ufeff")  # (a BOM: Windows editors write one)
        found = parse_input(text, name)
        if not found:
            why = "it is empty" if not text.strip() else "only blank lines and comments"
            empty = f"no URL in {name}: {why}"
        targets += found
    taken = _url_taken(ns)
    if not targets:
        raise UsageError(empty or f"no URL given{': ' + taken if taken else ''} "
                         "(see 'omniget --help')")
    if taken:  # (-o URL URL2: never a folder named http:)
        raise UsageError(taken)
    return targets


#: Options whose value is never a URL (dest: flag, what it wants): ``-o URL`` is a URL
#: that the option took, its own value left out.
_NOT_URLS = {
    "output": ("-o", "a folder"), "output_file": ("-O", "a file name"),
    "source": ("--source", "a source's name"), "state_dir": ("--state-dir", "a folder"),
    "cookies": ("--cookies", "a file"), "ca_cert": ("--ca-cert", "a file"),
    "config": ("--config", "a file"),
}


def _url_taken(ns: argparse.Namespace) -> str:
    """``-o took 'URL' ...`` when such an option took a URL for its value, else ''."""
    for dest, (flag, what) in _NOT_URLS.items():
        value = getattr(ns, dest, None)
        if isinstance(value, str) and "://" in value:
            return f"{flag} took {value!r} for its value ({flag} wants {what} before the URL" + (
                f"{CURL_O})" if flag == "-O" else ")")
    return ""


def _wanted(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Globs match the relative output path; a glob without ``/`` also matches the name."""
    name = path.rsplit("/", 1)[-1]

    def hit(glob: str) -> bool:
        return fnmatchcase(path, glob) or ("/" not in glob and fnmatchcase(name, glob))

    if include and not any(hit(g) for g in include):
        return False
    return not any(hit(g) for g in exclude)


def _filter(
    ns: argparse.Namespace, on_filtered: Callable[[Item], None]
) -> Callable[[Item], bool] | None:
    """``--include``/``--exclude`` as a test of an item (which reports those left out);
    None without them."""
    include, exclude = ns.include or [], ns.exclude or []
    if not include and not exclude:
        return None

    def keep(item: Item) -> bool:
        if _wanted(item.output_path, include, exclude):
            return True
        on_filtered(item)
        return False

    return keep


def _items(
    targets: Sequence[str | Item],
    ns: argparse.Namespace,
    cfg: Config,
    on_failure: Callable[[str, Item, OmnigetError], None],
    on_filtered: Callable[[Item], None],
) -> Iterator[Item]:
    """Extract every URL lazily; extraction failures are reported and the rest goes on.
    (One loop and one set of transports serve the whole list: not one per URL.)"""
    from ..listing import extract_each

    keep = _filter(ns, on_filtered)
    found = extract_each(targets, source=ns.source, settings=cfg.settings,
                         source_options=cfg.sources)
    try:
        for target, got in found:
            if isinstance(got, OmnigetError):
                if isinstance(target, Item):
                    on_failure(target.download_url, target, got)
                else:
                    on_failure(target, unextracted(target), got)
            elif keep is None or keep(got):
                yield got
    finally:  # (left mid-way: no request after, as the reader went away)
        found.close()


def _single(items: Iterator[Item], name: str | None) -> Item | None:
    """The one item ``-O`` writes (renamed to ``name``); UsageError if the URL gives more."""
    first = next(items, None)
    if first is not None and next(items, None) is not None:
        raise UsageError("-O needs a URL that gives one file; this one gives several (use -o DIR)")
    if first is None or name is None:
        return first
    return dataclasses.replace(first, path=name, collection_name=None, name_from_server=False)


def _report_failures(failures: Sequence[Failure], mask: Masker) -> None:
    """One line per failure (cancelled items are covered by the "interrupted" line)."""
    for label, error in failures:
        if isinstance(error, Cancelled):
            continue
        said = str(error)  # (one that names its URL already: not twice)
        print_error(mask(said) if label in said else f"{mask(label)}: {mask(said)}")


# --- commands ---


def _run_get(ns: argparse.Namespace, cfg: Config, mask: Masker) -> int:
    import omniget

    targets = _collect(ns)
    # --json: a URL no source takes fails as one of the run's URLs (a failed event)
    _check_urls(targets, ns.source, fail_fast=not ns.json)
    cfg = _bind_user(cfg, targets)
    if ns.output_file is not None:
        if len(targets) != 1:
            raise UsageError("-O takes exactly one URL (use -o DIR for several)")
        if ns.output is not None:
            raise UsageError("-O and -o cannot be used together")
        if ns.output_file == "-" and ns.json:
            raise UsageError("--json cannot be used with -O - (stdout carries the file)")
        if ns.output_file == "":
            raise UsageError("-O needs a file name (or - for stdout)")
        if ns.output_file != "-" and _names_a_folder(ns.output_file):
            raise UsageError(f"-O {ns.output_file}: is a directory "
                             f"(use -o {ns.output_file} to save into it)")
    if cfg.settings.checksum is not None and len(targets) != 1:
        raise UsageError("--checksum needs exactly one URL")
    if ns.json or ns.dry_run or ns.output_file == "-":
        writable_stdout()  # (closed: fail before any request)
    if cfg.settings.network.insecure:
        sys.stderr.write("omniget: warning: TLS certificates are not verified (--insecure)\n")

    failures: list[Failure] = []  # extraction failures, in order
    filtered: list[Item] = []
    consumer = make_progress(mask, quiet=ns.quiet, as_json=ns.json, verbose=ns.verbose)
    live = not ns.dry_run and ns.output_file != "-"  # events go to the consumer
    tell = live or ns.json  # failures go to the consumer (--dry-run --json too)

    def failed(label: str, item: Item, error: OmnigetError) -> None:
        failures.append((label, error))
        if tell:
            consumer(Failed(item, None, error))

    def skipped(item: Item) -> None:
        filtered.append(item)
        if live:  # (its path under -o, as the other files' events have it; -O: its own name)
            path = None if ns.output_file else (cfg.output or Path(".")) / item.output_path
            consumer(Skipped(item, path, "filtered"))

    # The engine extracts URLs itself (so sources can refresh expiring links); the CLI does
    # it only when it must see the items first: -O, --dry-run.
    own = bool(ns.dry_run or ns.output_file is not None)
    extracted = _items(targets, ns, cfg, failed, skipped)  # lazy: runs only when consumed
    items: Iterable[Item | str] = extracted if own else targets
    dest = cfg.output or Path(".")
    device = False  # -O a device or a FIFO: written in order, as -O -
    if ns.output_file is not None:
        out_file = None if ns.output_file == "-" else _path(ns.output_file, "-O")
        device = out_file is not None and _not_a_file(out_file)
        name = out_file and (display_path(out_file) if device else out_file.name)
        one = _single(extracted, name or None)
        if out_file is not None and not device:
            dest = out_file.parent
        elif one is not None:  # -O -, or a device or a FIFO
            return to_stream(one, cfg, ns, mask, out_file)
        extracted = iter([one] if one is not None else [])
        items = extracted
    if ns.dry_run:
        return _dry_run(extracted, dest, ns, cfg, mask, failures, failed, filtered)
    if ns.output_file == "-" or device:  # nothing to write: extraction failed or filtered out
        _report_failures(failures, mask)
        code = failures[0][1].exit_code if failures else 0
        if isinstance(consumer, JsonEvents):
            consumer.line(summary_record(ns, code, skipped=len(filtered), failed=len(failures)))
        return code

    only = None if own else _filter(ns, skipped)  # (extracted above, filtered there)
    cancel = threading.Event()
    on_signal = SaveOnSignal(cancel, quiet=ns.quiet)
    try:
        with consumer, on_signal, on_signals(on_signal):
            # (-q: no handler, so the engine builds no per-file events for nobody)
            on_event = None if isinstance(consumer, QuietProgress) else safe_consumer(consumer)
            report = omniget.download(
                items, dest, settings=cfg.settings, on_event=on_event, cancel=cancel,
                source=ns.source, source_options=cfg.sources, only=only,
            )
    except (KeyboardInterrupt, Exception) as exc:  # a second Ctrl+C: no report, but --json
        # still ends so. (Its KeyboardInterrupt raised in a callback of pycurl's comes out
        # as a SystemError: after that signal, whatever the run raised is the interrupt.)
        if not (isinstance(exc, KeyboardInterrupt) or on_signal.quitting):
            raise
        if isinstance(consumer, JsonEvents):
            consumer.line(summary_record(ns, 130, **consumer.tally()))
        print_error(RESUME)
        return 130
    for r in report.failures:
        label = display_path(r.path) if r.path else r.item.download_url
        failures.append((label, r.error or OmnigetError("failed")))
    _report_failures(failures, mask)
    extra = len(failures) - report.failed
    # (a stop that came once every file had ended, the last one being checked or renamed,
    # cut nothing short: not an interruption)
    interrupted = report.stopped or any(isinstance(e, Cancelled) for _, e in failures)
    code = 130 if interrupted else failures[0][1].exit_code if failures else 0
    if isinstance(consumer, JsonEvents):
        cut = report.interrupted  # not failed: a rerun resumes them
        consumer.line(summary_record(ns, code, ok=report.ok,
                                     skipped=report.skipped + len(filtered),
                                     failed=len(failures) - cut, interrupted=cut,
                                     fetched=report.fetched, elapsed=round(report.elapsed, 3)))
        if consumer.error is not None:  # (the files are there; the events are not)
            print_error(mask(f"{consumer.error} (the --json events are incomplete)"))
            # its code: the first failure's, as it came with the first event
            code = code if interrupted else consumer.error.exit_code
    elif not ns.quiet:
        tally = getattr(consumer, "tally", None)
        left = _not_started(tally) if report.stopped else 0
        resumed = tally.resumed if isinstance(tally, Tally) else 0
        sys.stderr.write(summary_line(report, failed=extra, skipped=len(filtered), left=left,
                                      resumed=resumed) + "\n")
    if interrupted:
        print_error(NO_RESUME if report.journal_error is not None else RESUME)
    return code  # the first failure's code


def _not_started(tally: object) -> int:
    """Files of a stopped run's list that it never began (the report has only those it
    did), as the display counted them; 0 when the list's length is not known."""
    if not isinstance(tally, Tally) or tally.more:
        return 0
    return max(0, tally.seen - tally.ended)


def _not_a_file(path: Path) -> bool:
    """``-O PATH`` that exists and is neither a regular file nor a folder: a device
    (``/dev/null``), a FIFO or a socket. It is written, never replaced or skipped."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _path(text: str, flag: str) -> Path:
    """A path the user gave, ``~`` expanded: UsageError if it names nobody."""
    try:
        return expand_path(text)
    except ValueError as e:
        raise UsageError(f"{flag} {text}: {e}") from None


def _names_a_folder(name: str) -> bool:
    """``-O NAME`` that is a folder, or can only name one (``new/``, ``x/..``): saving
    under it would write some other name than the one given."""
    path = _path(name, "-O")
    return name.endswith(("/", os.sep)) or path.name in ("", ".", "..") or path.is_dir()


def _check_urls(targets: list[Item | str], source: str | None, *, fail_fast: bool) -> None:
    """Fail at once, in one line, when no URL at all has a source (a typo, usually);
    without ``fail_fast`` only a local file given as a URL is stopped here."""
    from ..sources import find_source

    first: OmnigetError | None = None
    for t in targets:
        if not isinstance(t, str):
            return
        try:
            find_source(t, source)
            return  # one usable URL is enough: the others fail one by one later
        except OmnigetError as exc:
            first = first or exc
    if first is not None:
        t = targets[0]
        if isinstance(t, str) and "://" not in t and os.path.isfile(t):
            raise UsageError(f"{t!r} is a local file, not a URL (to read URLs from it: -i {t})")
        if fail_fast:
            raise first


def _dry_run(
    items: Iterator[Item], dest: Path, ns: argparse.Namespace, cfg: Config, mask: Masker,
    failures: list[Failure], failed: Callable[[str, Item, OmnigetError], None],
    filtered: Sequence[Item],
) -> int:
    from ..engine.names import contain

    talk = not (ns.quiet or ns.json)
    out = writable_stdout()
    _check_folder(dest)

    shown = 0  # (as a download's skip lines: the first SKIP_LINES without -v)

    def skipped(path: Path, reason: str) -> None:
        nonlocal shown
        shown += 1
        if talk and (ns.verbose or shown <= SKIP_LINES):
            sys.stderr.write(f"would skip {mask(display_path(path))}: {EXISTS_WHY[reason]}\n")
        elif talk and shown == SKIP_LINES + 1:
            sys.stderr.write("more files would be skipped: the summary counts them (-v lists"
                             " each)\n")

    found = dry_run(items, dest, out, mask, as_json=ns.json, contain=contain,
                    on_error=lambda item, e: failed(item.output_path, item, e),
                    on_exists=cfg.settings.on_exists, on_skip=skipped)
    found.filtered = len(filtered)  # (known once the items are: they are lazy)
    _report_failures(failures, mask)
    code = failures[0][1].exit_code if failures else 0
    if ns.json:
        json_line(out, summary_record(ns, code, files=found.files, size=found.size,
                                      unknown=found.unknown,
                                      skipped=found.skipped + found.same_name + found.filtered,
                                      failed=len(failures)))
    elif talk:
        sys.stderr.write(found.summary(display_path(dest.absolute())) + "\n")
    return code


def _check_folder(dest: Path) -> None:
    """``--dry-run``: an output folder the download could not make fails as it would there
    (exit 7), not each file as an unsafe path."""
    folder = dest.absolute()
    for path in (folder, *folder.parents):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:  # (a file above it: "Not a directory")
            raise StorageError(f"cannot create output folder {folder}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            return
        raise StorageError(f"cannot create output folder {folder}: a file is in the way")


def _run_list(ns: argparse.Namespace, cfg: Config, mask: Masker) -> int:
    failures: list[Failure] = []
    targets = _collect(ns)
    cfg = _bind_user(cfg, targets)
    out = writable_stdout()

    def failed(label: str, item: Item, error: OmnigetError) -> None:
        failures.append((label, error))
        if ns.json:  # (in order with the items' lines)
            json_line(out, event_to_dict(Failed(item, None, error), mask))

    items = _items(targets, ns, cfg, failed, lambda _: None)
    table = out.isatty() and os.environ.get("TERM") != "dumb"
    count = print_list(items, out, mask, as_json=ns.json, table=table)
    _report_failures(failures, mask)
    code = failures[0][1].exit_code if failures else 0
    if ns.json:
        json_line(out, summary_record(ns, code, items=count, failed=len(failures)))
    return code


#: Command name -> runner; a source subcommand (``gog``) adds a row here and in args.COMMANDS.
RUNNERS: dict[str, Callable[[argparse.Namespace, Config, Masker], int]] = {
    "get": _run_get,
    "list": _run_list,
}
