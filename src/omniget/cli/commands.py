"""The commands: ``get`` (a download into files, ``-O`` one file or stdout, ``--dry-run``)
and ``list``. Each takes the parsed arguments, the config and the masker, and returns the
exit code (its first failure's)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import stat
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.events import Failed, Skipped
from ..errors import Cancelled, OmnigetError, StorageError, UsageError
from ..model import Item
from .config import Config
from .logs import log_to_json, warn
from .options import ArgumentError
from .output import (
    EXISTS_WHY,
    Masker,
    bytes_line,
    counts_line,
    display_path,
    error_line,
    json_line,
    print_error,
    print_list,
    say,
    summary_line,
    summary_record,
    writable_stdout,
)
from .progress import (
    SKIP_LINES,
    Consumer,
    QuietProgress,
    make_progress,
    safe_consumer,
)
from .signals import SaveOnSignal, on_signals
from .stream import to_stream
from .tally import Tally
from .targets import (
    Failure,
    bind_user,
    collect,
    extract_items,
    given_path,
    item_filter,
    once,
    report_failures,
)

if TYPE_CHECKING:
    from ..sources.base import Source

#: The last line of a download stopped by Ctrl+C or SIGTERM: its state is saved.
RESUME = "interrupted; run the same command again to resume"
#: ... and when its journal could not be used (or stopped taking new records).
NO_RESUME = ("interrupted; what the resume journal could not record (see the warning above)"
             " starts over on a rerun")


def _single(items: Iterator[Item], name: str | None) -> Item | None:
    """The one item ``-O`` writes (renamed to ``name``); UsageError if the URL gives more."""
    first = next(items, None)
    if first is not None and next(items, None) is not None:
        raise UsageError("-O needs a URL that gives one file; this one gives several (use -o DIR)")
    if first is None or name is None:
        return first
    return dataclasses.replace(first, path=name, collection_name=None, name_from_server=False)


def run_get(ns: argparse.Namespace, cfg: Config, mask: Masker) -> int:
    targets, again = once(collect(ns))  # (said once the run's warnings have their place)
    cookies = cfg.settings.network.cookies_file
    if cookies:  # (a FIFO's: read before the run's Ctrl+C handling, which stops no open)
        from ..engine.transports.cookies import read_ahead

        read_ahead(str(cookies))
    # --json: a URL no source takes fails as one of the run's URLs (a failed event)
    _check_urls(targets, ns.source, fail_fast=not ns.json)
    if ns.dry_run:
        from . import ask_later  # (its password: asked only if a listing makes requests)

        cfg = ask_later(ns, cfg, mask, targets)
    cfg = bind_user(cfg, targets)
    given = ns.output_file
    fd = _fd_named(given) if given not in (None, "", "-") else None
    if fd == 1:  # (curl's -o /dev/stdout)
        ns.output_file = "-"
    elif fd == 2:
        raise ArgumentError(f"-O {given}: stderr carries omniget's own lines, which would "
                            "go between the file's bytes (use -O - for stdout)")
    if ns.output_file is not None:
        if len(targets) != 1:
            raise ArgumentError("-O takes exactly one URL (use -o DIR for several)")
        if ns.output is not None:
            raise ArgumentError("-O and -o cannot be used together")
        if ns.output_file == "-" and ns.json:
            raise ArgumentError(f"--json cannot be used with -O {given} (stdout carries the "
                                "file)")
        if ns.output_file == "":
            raise ArgumentError("-O needs a file name (or - for stdout)")
        if ns.output_file != "-" and _names_a_folder(ns.output_file):
            raise ArgumentError(f"-O {ns.output_file}: is a directory "
                             f"(use -o {ns.output_file} to save into it)")
        if ns.output_file != "-":
            _name_fits(ns.output_file)
            _name_kept(ns.output_file)
    elif ns.output == "-" and not os.path.isdir("-"):  # (curl's -o -: stdout)
        raise ArgumentError("-o -: -o names a folder (here one named '-'); to write to "
                            "stdout, use -O - (curl's -o -)")
    elif ns.output is not None and len(targets) == 1 and not ns.input_file:
        _curl_o(ns.output, targets[0])
    if cfg.settings.checksum is not None and len(targets) != 1:
        raise ArgumentError("--checksum needs exactly one URL")
    if ns.json or ns.dry_run or ns.output_file == "-":
        writable_stdout()  # (closed: fail before any request)
    from .json_events import JsonEvents  # (imported where used: start-up time)

    consumer = make_progress(mask, quiet=ns.quiet, as_json=ns.json, verbose=ns.verbose)
    if isinstance(consumer, JsonEvents):  # (-O FILE: its folder; -O - has no events)
        out = ns.output_file
        consumer.folder = (given_path(out, "-O").parent if out not in (None, "-") else
                           cfg.output or Path("."))
    # (--json: the run's warnings, the CLI's and the library's, are events too; stderr
    # has them as well)
    warnings = (log_to_json(consumer.line, mask) if isinstance(consumer, JsonEvents)
                else contextlib.nullcontext())
    with warnings:
        if cfg.settings.network.insecure:
            warn("TLS certificates are not verified (--insecure)", even_quiet=True)
        _given_again(again, verbose=ns.verbose)
        return _get(targets, ns, cfg, mask, consumer)


def _given_again(again: Mapping[str, int], *, verbose: bool) -> None:
    """A warning for each URL given more than once: without ``-v`` the first
    :data:`SKIP_LINES` of them, then one line for the rest."""
    for n, (url, times) in enumerate(again.items()):
        if not verbose and n == SKIP_LINES:
            warn(f"{len(again) - n} more URLs are given more than once: each is downloaded "
                 "once (-v lists each)")
            return
        warn(f"{url} is given {times} times: it is downloaded once")


def _get(
    targets: list[Item | str], ns: argparse.Namespace, cfg: Config, mask: Masker,
    consumer: Consumer,
) -> int:
    import omniget

    from .json_events import JsonEvents

    failures: list[Failure] = []  # extraction failures, in order
    filtered: list[Item] = []
    live = not ns.dry_run and ns.output_file != "-"  # events go to the consumer
    tell = live or ns.json  # failures go to the consumer (--dry-run --json too)

    def failed(label: str, item: Item, error: OmnigetError) -> None:
        failures.append((label, error))
        if tell:
            consumer(Failed(item, None, error))

    def skipped(item: Item) -> None:
        filtered.append(item)
        # (-O a device or a FIFO: one line says it, below; --json has its event)
        if live and not (device and not isinstance(consumer, JsonEvents)):
            # (its path under -o, as the other files' events have it; -O: its file)
            from ..engine.names import safe_relpath  # (as a download would write it)

            path = (given_path(ns.output_file, "-O") if ns.output_file else
                    (cfg.output or Path(".")) / safe_relpath(item.output_path))
            consumer(Skipped(item, path, "filtered"))

    # The engine extracts URLs itself (so sources can refresh expiring links); the CLI does
    # it only when it must see the items first: -O, --dry-run.
    own = bool(ns.dry_run or ns.output_file is not None)
    extracted = extract_items(targets, ns, cfg, failed, skipped)  # lazy: runs only when consumed
    items: Iterable[Item | str] = extracted if own else targets
    dest = cfg.output or Path(".")
    device = False  # -O a device or a FIFO: written in order, as -O -
    if ns.output_file is not None:
        out_file = None if ns.output_file == "-" else given_path(ns.output_file, "-O")
        device = out_file is not None and not_a_file(out_file)
        name = out_file and (display_path(out_file) if device else out_file.name)
        one = _single(extracted, name or None)
        if out_file is not None and not device:
            dest = out_file.parent
        elif one is not None:  # -O -, or a device or a FIFO
            events = consumer if isinstance(consumer, JsonEvents) else None
            return to_stream(one, cfg, ns, mask, out_file, events)
        extracted = iter([one] if one is not None else [])
        items = extracted
    if ns.dry_run:
        return _dry_run(extracted, dest, ns, cfg, mask, failures, failed, filtered)
    if ns.output_file == "-" or device:  # nothing to write: extraction failed or filtered out
        report_failures(failures, mask)
        code = failures[0][1].exit_code if failures else 0
        if isinstance(consumer, JsonEvents):
            consumer.line(summary_record(ns, code, skipped=len(filtered), failed=len(failures)))
        elif filtered and not ns.quiet:  # (exit 0, as any run whose files are left out)
            from ..engine.names import safe_relpath  # (as a download would name it)

            where = "stdout" if ns.output_file == "-" else mask(display_path(ns.output_file))
            name = mask(safe_relpath(filtered[0].output_path))
            say(f"nothing written to {where}: its file {name} is left out (--include, "
                "--exclude)\n")
        return code

    only = None if own else item_filter(ns, skipped)  # (extracted above, filtered there)
    cancel = threading.Event()

    def last(then: Callable[[], object]) -> None:  # (a second signal's, on its thread)
        if isinstance(consumer, JsonEvents):  # (no report: the events' own count)
            consumer.quit_with(error_line(RESUME), then,
                               lambda counts: summary_record(ns, 130, **counts))
        else:
            consumer.quit_with(lambda: _last_lines(consumer, ns.quiet), then)

    on_signal = SaveOnSignal(cancel, quiet=ns.quiet, last=last)
    # (the handlers stay to the last line: a signal more as the run ends cuts short neither
    # the bars' erasing nor what is said after, see SaveOnSignal.running)
    with on_signals(on_signal):
        with on_signal, consumer, on_signal.running():
            # (-q: no handler, so the engine builds no per-file events for nobody)
            on_event = (None if isinstance(consumer, QuietProgress)
                        else safe_consumer(consumer))
            report = omniget.download(
                items, dest, settings=cfg.settings, on_event=on_event, cancel=cancel,
                source=ns.source, source_options=cfg.sources, only=only,
            )
        if on_signal.took_over:  # (all is said: in a test, whose exit returns)
            return 130
        for r in report.failures:
            label = display_path(r.path) if r.path else r.item.download_url
            failures.append((label, r.error or OmnigetError("failed")))
        report_failures(failures, mask)
        extra = len(failures) - report.failed
        # (a stop that came once every file had ended, the last one being checked or
        # renamed, cut nothing short: not an interruption)
        interrupted = report.stopped or any(isinstance(e, Cancelled) for _, e in failures)
        code = 130 if interrupted else failures[0][1].exit_code if failures else 0
        if isinstance(consumer, JsonEvents):
            cut = report.interrupted  # not failed: a rerun resumes them
            seen = consumer.tally()  # (the list's files never begun; bytes resumed)
            left = seen["not_started"] if report.stopped else 0
            consumer.line(summary_record(ns, code, ok=report.ok,
                                         skipped=report.skipped + len(filtered),
                                         failed=len(failures) - cut, interrupted=cut,
                                         not_started=left, fetched=report.fetched,
                                         resumed=seen["resumed"],
                                         elapsed=round(report.elapsed, 3)))
            if consumer.error is not None:  # (the files are there; the events are not)
                print_error(mask(f"{consumer.error} (the --json events are incomplete)"))
                # its code: the first failure's, as it came with the first event
                code = code if interrupted else consumer.error.exit_code
        elif not ns.quiet:
            tally = getattr(consumer, "tally", None)
            left = _not_started(tally) if report.stopped else 0
            resumed = tally.resumed if isinstance(tally, Tally) else 0
            lone = report.results[0] if len(report.results) == 1 and not extra else None
            if lone is not None and lone.status == "ok" and lone.path and not ns.verbose:
                say(f"saved {mask(display_path(lone.path))}\n")  # (-v: its done line)
            say(summary_line(report, failed=extra, skipped=len(filtered), left=left,
                             resumed=resumed) + "\n")
        if interrupted:
            print_error(NO_RESUME if report.journal_error is not None else RESUME)
        return code  # the first failure's code


def _last_lines(consumer: Consumer, quiet: bool) -> str:
    """A second signal's last lines: the counts line a run's end has, from what the
    display counted (the bytes as its progress events told them, at most 4 a second a
    file: those since are not counted), then the resume line."""
    tally = getattr(consumer, "tally", None)
    if quiet or not isinstance(tally, Tally):
        return error_line(RESUME)
    going = len(tally.files)  # (cut now)
    left = max(0, _not_started(tally) - going)
    counts = counts_line(tally.ok, tally.skipped, tally.failed, tally.cut + going, left)
    took = bytes_line(tally.fetched, tally.clock() - tally.began, tally.resumed)
    return f"{counts}, {took}\n{error_line(RESUME)}"


def _not_started(tally: object) -> int:
    """Files of a stopped run's list that it never began (the report has only those it
    did), as the display counted them; 0 when the list's length is not known."""
    if not isinstance(tally, Tally) or tally.more:
        return 0
    return max(0, tally.seen - tally.ended)


def not_a_file(path: Path) -> bool:
    """``-O PATH`` that exists and is neither a regular file nor a folder: a device
    (``/dev/null``), a FIFO or a socket. It is written, never replaced or skipped."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _curl_o(folder: str, target: Item | str) -> None:
    """``URL -o NAME.EXT`` with the URL's own extension, NAME.EXT not there yet: curl's
    ``-o FILE``, refused before a folder of that name is made with the file in it."""
    from ..model import name_from_url

    url = target if isinstance(target, str) else target.download_url
    name = name_from_url(url)
    suffix = os.path.splitext(name)[1].lower()
    path = given_path(folder, "-o")
    if (not suffix or path.suffix.lower() != suffix or os.path.lexists(path)
            or folder.endswith(("/", os.sep))):  # (x.iso/: a folder, plainly)
        return
    raise ArgumentError(f"-o {folder}: -o names a folder here (the file would be "
                        f"{folder}/{name}); to save the URL as {folder}, use "
                        f"-O {folder} (curl's -o)")


def _name_fits(given: str) -> None:
    """ArgumentError for an ``-O`` name longer than omniget makes names (MAX_NAME_BYTES):
    its part file, made beside it under a longer name, would not fit the filesystem's
    limit, and cutting the name the user chose would save the file where no one looks."""
    from ..engine.names import MAX_NAME_BYTES

    size = len(os.fsencode(os.path.basename(given)))
    if size > MAX_NAME_BYTES:
        short = given if len(given) <= 60 else f"{given[:40]}...{given[-12:]}"
        raise ArgumentError(f"-O {short}: its name is {size} bytes; omniget takes "
                            f"{MAX_NAME_BYTES} at most (a shorter name, please)")


def _fd_named(given: str) -> int | None:
    """The descriptor of this process that ``-O`` names (``/dev/stdout``, ``/dev/fd/1``,
    ``/proc/self/fd/1``: 1), or None. ``-O`` stdout is written as ``-O -`` (refused with
    ``--json``, an error when stdout is closed: /dev/null stands in its place then). Its
    links are followed one by one, as the last one is the descriptor's own file, not its
    name."""
    try:
        path = os.path.abspath(given_path(given, "-O"))
        for _ in range(16):
            folder = os.path.realpath(os.path.dirname(path))
            if folder == f"/proc/{os.getpid()}/fd":
                name = os.path.basename(path)
                return int(name) if name.isdigit() else None
            path = os.path.join(folder, os.readlink(path))
    except (OSError, ValueError):  # (no link: a file, a device)
        pass
    return None


def _name_kept(given: str) -> None:
    """ArgumentError for an ``-O`` name that the engine would save under another name (it
    makes every name safe: no control or invisible characters, backslashes, trailing dots
    or spaces, nor device names): the file would be where the user does not look for it.
    A device or a FIFO is written as it is."""
    from ..engine.names import safe_relpath

    path = given_path(given, "-O")
    if not_a_file(path):
        return
    safe = safe_relpath(path.name)
    if safe != path.name and safe == unicodedata.normalize("NFC", path.name):
        raise ArgumentError(f"-O {given!r}: that name has its accents apart from their "
                            "letters (NFD, as macOS writes names); omniget saves names with "
                            "them composed (NFC), which look the same but are other bytes: "
                            "give -O the name composed")
    if safe != path.name:
        raise ArgumentError(f"-O {given!r}: that name would be saved as {safe!r} (omniget "
                            "makes names safe: no control or invisible characters, bytes "
                            "that are no UTF-8, backslashes, trailing dots or spaces, nor "
                            "device names); give -O a name that stays as it is")


def _names_a_folder(name: str) -> bool:
    """``-O NAME`` that is a folder, or can only name one (``new/``, ``x/..``): saving
    under it would write some other name than the one given."""
    path = given_path(name, "-O")
    if name.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        return True
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:  # (no such file; a name too long: the download says so)
        return False


def _check_urls(targets: list[Item | str], source: str | None, *, fail_fast: bool) -> None:
    """Fail at once, in one line, when no URL at all has a source or a usable form (a
    typo, usually); without ``fail_fast`` only a local file given as a URL is stopped
    here."""
    from ..sources import find_source

    first: OmnigetError | None = None
    for t in targets:
        if not isinstance(t, str):
            return
        try:
            _check_url(find_source(t, source), t)
            return  # one usable URL is enough: the others fail one by one later
        except OmnigetError as exc:
            first = first or exc
    if first is not None:
        t = targets[0]
        if isinstance(t, str) and "://" not in t and os.path.isfile(t):
            raise ArgumentError(
                f"{t!r} is a local file, not a URL (to read URLs from it: -i {t})")
        if fail_fast:
            raise first


def _check_url(source: type[Source], url: str) -> None:
    """The source's own check of ``url``; its error names the URL, as it would later."""
    try:
        source.check_url(url)
    except UsageError as exc:
        named = url if url.isprintable() else repr(url)  # (a control character escaped)
        if named in str(exc):
            raise
        raise UsageError(f"{named}: {exc}") from None


def _dry_run(
    items: Iterator[Item], dest: Path, ns: argparse.Namespace, cfg: Config, mask: Masker,
    failures: list[Failure], failed: Callable[[str, Item, OmnigetError], None],
    filtered: Sequence[Item],
) -> int:
    from ..engine.names import contain
    from .dryrun import DryRun, dry_run

    talk = not (ns.quiet or ns.json)
    out = writable_stdout()
    _check_folder(dest)

    shown = 0  # (as a download's skip lines: the first SKIP_LINES without -v)

    def skipped(path: Path, reason: str) -> None:
        nonlocal shown
        shown += 1
        if talk and (ns.verbose or shown <= SKIP_LINES):
            say(f"would skip {mask(display_path(path))}: {EXISTS_WHY[reason]}\n")
        elif talk and shown == SKIP_LINES + 1:
            say("more files would be skipped: the summary counts them (-v lists each)\n")

    def refused(item: Item, error: OmnigetError, path: Path | None) -> None:
        # (named as the download names it: by its path, or by its URL when it has none)
        failed(item.download_url if path is None else display_path(path), item, error)

    found = DryRun()  # (counted as they go: an interrupt's summary has them too)
    ns.counted_so_far = lambda: {
        "files": found.files, "size": found.size, "unknown": found.unknown,
        "skipped": found.skipped + found.same_name + len(filtered), "failed": len(failures)}
    dry_run(items, dest, out, mask, as_json=ns.json, contain=contain,
            on_error=refused, on_exists=cfg.settings.on_exists,
            checksum=cfg.settings.checksum, state=_state_folder(cfg),
            on_skip=skipped, found=found)
    found.filtered = len(filtered)  # (known once the items are: they are lazy)
    report_failures(failures, mask)
    code = failures[0][1].exit_code if failures else 0
    if ns.json:
        json_line(out, summary_record(ns, code, **ns.counted_so_far()))
    elif talk:
        say(found.summary(display_path(dest.absolute())) + "\n")
    return code


def _state_folder(cfg: Config) -> Path | None:
    """The folder the download would keep its journal in (None: it would keep none)."""
    from ..settings import default_state_dir

    try:
        return Path(cfg.settings.state_dir or default_state_dir())
    except StorageError:  # (no home, no folder given)
        return None


def _check_folder(dest: Path) -> None:
    """``--dry-run``: an output folder the download could not make fails as it would there
    (exit 7), not each file as an unsafe path: something that is no folder on its way, or
    a folder to make it in that takes none (see :func:`.dryrun.refused_in`)."""
    from ..engine.outputs import folder_error

    folder = Path(os.path.realpath(dest))  # (as the download makes it: see Engine.run)
    for path in (folder, *folder.parents):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:  # (a file above it: "Not a directory")
            raise folder_error(str(folder), exc) from None
        if stat.S_ISDIR(mode):
            from .dryrun import refused_in

            refused = None if path == folder else refused_in(str(path))
            if refused is not None:  # (one folder to make there, at least)
                raise folder_error(str(folder), refused)
            return
        raise folder_error(str(folder), NotADirectoryError(errno.ENOTDIR, "not a folder"))


def run_list(ns: argparse.Namespace, cfg: Config, mask: Masker) -> int:
    from .json_events import event_to_dict  # (imported where used: start-up time)

    failures: list[Failure] = []
    targets = collect(ns)
    from . import ask_later  # (its password: asked only if a listing makes requests)

    cfg = bind_user(ask_later(ns, cfg, mask, targets), targets)
    out = writable_stdout()

    def failed(label: str, item: Item, error: OmnigetError) -> None:
        failures.append((label, error))
        if ns.json:  # (in order with the items' lines)
            json_line(out, event_to_dict(Failed(item, None, error), mask))

    def line(record: Mapping[str, Any]) -> None:
        with contextlib.suppress(StorageError, BrokenPipeError):  # (the next item's says it)
            json_line(out, record)

    # (--json: its warnings, the CLI's and the library's, are events too, in order with
    # the items; stderr has them as well, but with -q)
    with log_to_json(line, mask) if ns.json else contextlib.nullcontext():
        if cfg.settings.network.insecure:  # (a source's requests go unverified)
            warn("TLS certificates are not verified (--insecure)")
        left: list[Item] = []  # (--include, --exclude: said as --dry-run says them)
        listed = 0  # (counted as they go: an interrupt's summary has them too)

        def said() -> None:
            nonlocal listed
            listed += 1  # (its line is out, or in the stream's hands: out at its flush)

        ns.counted_so_far = lambda: {"items": listed, "skipped": len(left),
                                     "failed": len(failures)}
        items = extract_items(targets, ns, cfg, failed, left.append)
        table = out.isatty() and os.environ.get("TERM") != "dumb"
        print_list(items, out, mask, as_json=ns.json, table=table, said=said)
    report_failures(failures, mask)
    code = failures[0][1].exit_code if failures else 0
    if ns.json:
        json_line(out, summary_record(ns, code, **ns.counted_so_far()))
    elif left and not ns.quiet:
        say(f"{len(left)} left out (--include, --exclude)\n")
    return code
