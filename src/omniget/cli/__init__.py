"""The ``omniget`` command: arguments and config in, API calls, one exit code out.

Every failure is one line on stderr (``omniget: error: ...``) and an exit code from the
error's ``exit_code`` (design.md's table); no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from types import FrameType

from ..engine.events import Event, Failed, Skipped
from ..errors import Cancelled, OmnigetError, StorageError, UsageError
from ..model import Item
from .args import flags_from_args, guess_scheme, parse_args, parse_input
from .config import SECRET_HEADERS, Config, load_config, load_settings
from .output import EXISTS_WHY, Masker, display_path, dry_run, format_size, print_list, summary_line
from .progress import PlainProgress, QuietProgress, make_progress

__all__ = ["load_settings", "main", "run"]

Failure = tuple[str, OmnigetError]  # (what failed, shown to the user; the error)


def _error(text: str) -> None:
    sys.stderr.write(f"omniget: error: {text}\n")
    sys.stderr.flush()


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
    try:
        ns = parse_args(argv)
        config = Path(ns.config).expanduser() if ns.config else None
        cfg = load_config(config, flags=flags_from_args(ns))
        mask = Masker([*mask.secrets, *cfg.secrets])
        with _logging(mask, verbose=ns.verbose, debug=ns.debug):
            return RUNNERS[ns.command](ns, cfg, mask)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except KeyboardInterrupt:
        _error("interrupted; run the same command again to resume")
        return 130
    except BrokenPipeError:  # e.g. `omniget list ... | head`: quietly, as other tools
        _drop_stdout()
        return 1
    except OmnigetError as e:
        if debug:
            traceback.print_exc()
        _error(mask(str(e)))
        return e.exit_code
    except Exception as e:
        if debug:
            traceback.print_exc()
        _error(f"internal error: {type(e).__name__}: {mask(str(e))} "
               "(run with --debug for the traceback)")
        return 1


def run() -> None:
    """The console script: :func:`main`, then exit at once. Everything worth closing is
    closed by then (files, the journal, the event loop and its threads); skipping the
    interpreter's teardown of every module saves ~20 ms per command."""
    _tune_gc()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    logging.shutdown()
    os._exit(code)


def _tune_gc() -> None:
    """The process is the command's alone, so set its garbage collector for a long list of
    files: what start-up made lives to the end (frozen: never walked again), and a larger
    young generation lets each file's short-lived objects die between collections instead
    of being walked in every one. 5,000 small files spent ~120 ms in the collector with
    Python's defaults, ~15 ms so. (The library leaves the host program's collector alone.)"""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


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
    """URLs from the command line, then from ``-i``."""
    targets: list[str | Item] = [guess_scheme(u) for u in ns.urls]
    if ns.input_file:
        try:
            if ns.input_file == "-":
                text = sys.stdin.read()
            else:
                text = Path(ns.input_file).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            why = e.strerror or str(e)
            raise UsageError(f"cannot read input file {ns.input_file}: {why}") from None
        except UnicodeDecodeError as e:
            why = f"not UTF-8 text ({e.reason} at byte {e.start})"
            raise UsageError(f"cannot read input file {ns.input_file}: {why}") from None
        name = "stdin" if ns.input_file == "-" else f"input file {ns.input_file}"
        targets += parse_input(text, name)
    if not targets:
        raise UsageError("no URL given (see 'omniget --help')")
    return targets


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
    """Extract every URL lazily; extraction failures are reported and the rest goes on."""
    import omniget

    from ..sources import find_source

    keep = _filter(ns, on_filtered)
    for target in targets:
        try:
            if isinstance(target, Item):
                found: Iterator[Item] = iter([target])
            else:  # the config table of the source that will handle the URL
                opts = cfg.sources.get(find_source(target, ns.source).name, {})
                found = omniget.extract(target, source=ns.source, settings=cfg.settings, **opts)
            for item in found:
                if keep is None or keep(item):
                    yield item
        except OmnigetError as e:
            if isinstance(target, Item):
                on_failure(target.download_url, target, e)
            else:
                on_failure(target, Item(download_url=target), e)


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
        if not isinstance(error, Cancelled):
            _error(f"{mask(label)}: {mask(str(error))}")


@contextmanager
def _on_signals(cancel: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``cancel`` once (the engine saves state); a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        sys.stderr.write("omniget: stopping and saving state (Ctrl+C again to quit now)\n")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _MaskingFormatter(logging.Formatter):
    def __init__(self, mask: Masker) -> None:
        super().__init__("omniget: %(levelname)s: %(name)s: %(message)s")
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))


@contextmanager
def _logging(mask: Masker, *, verbose: bool, debug: bool) -> Iterator[None]:
    """``-v``: INFO logs of the library on stderr; ``--debug``: DEBUG."""
    if not (verbose or debug):
        yield
        return
    logger = logging.getLogger("omniget")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter(mask))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# --- commands ---


def _run_get(ns: argparse.Namespace, cfg: Config, mask: Masker) -> int:
    import omniget

    targets = _collect(ns)
    _check_urls(targets, ns.source)
    cfg = _bind_user(cfg, targets)
    if ns.output_file is not None:
        if len(targets) != 1:
            raise UsageError("-O takes exactly one URL (use -o DIR for several)")
        if ns.output is not None:
            raise UsageError("-O and -o cannot be used together")
        if ns.output_file == "-" and ns.json:
            raise UsageError("--json cannot be used with -O - (stdout carries the file)")
        if ns.output_file != "-" and Path(ns.output_file).expanduser().is_dir():
            raise UsageError(f"-O {ns.output_file}: is a directory "
                             f"(use -o {ns.output_file} to save into it)")
    if cfg.settings.checksum is not None and len(targets) != 1:
        raise UsageError("--checksum needs exactly one URL")
    if cfg.settings.network.insecure:
        sys.stderr.write("omniget: warning: TLS certificates are not verified (--insecure)\n")

    failures: list[Failure] = []  # extraction failures, in order
    filtered: list[Item] = []
    consumer = make_progress(mask, quiet=ns.quiet, as_json=ns.json, verbose=ns.verbose)
    live = not ns.dry_run and ns.output_file != "-"  # events go to the consumer

    def failed(label: str, item: Item, error: OmnigetError) -> None:
        failures.append((label, error))
        if live:
            consumer(Failed(item, None, error))

    def skipped(item: Item) -> None:
        filtered.append(item)
        if live:
            consumer(Skipped(item, None, "filtered"))

    # The engine extracts URLs itself (so sources can refresh expiring links); the CLI does
    # it only when it must see the items first: -O, --dry-run.
    own = bool(ns.dry_run or ns.output_file is not None)
    extracted = _items(targets, ns, cfg, failed, skipped)  # lazy: runs only when consumed
    items: Iterable[Item | str] = extracted if own else targets
    dest = cfg.output or Path(".")
    if ns.output_file is not None:
        out_file = None if ns.output_file == "-" else Path(ns.output_file).expanduser()
        one = _single(extracted, out_file.name if out_file else None)
        if out_file is not None:
            dest = out_file.parent
        elif one is not None:  # -O -
            return _to_stdout(one, cfg, ns, mask)
        extracted = iter([one] if one is not None else [])
        items = extracted
    if ns.dry_run:
        return _dry_run(extracted, dest, ns, cfg, mask, failures)
    if ns.output_file == "-":  # nothing to write: extraction failed or filtered out
        _report_failures(failures, mask)
        return failures[0][1].exit_code if failures else 0

    only = None if own else _filter(ns, skipped)  # (extracted above, filtered there)
    cancel = threading.Event()
    with consumer, _on_signals(cancel):
        report = omniget.download(
            items, dest, settings=cfg.settings, on_event=_safe(consumer), cancel=cancel,
            source=ns.source, source_options=cfg.sources, only=only,
        )
    for r in report.failures:
        label = display_path(r.path) if r.path else r.item.download_url
        failures.append((label, r.error or OmnigetError("failed")))
    _report_failures(failures, mask)
    extra = len(failures) - report.failed
    if ns.json:
        cut = report.interrupted  # not failed: a rerun resumes them
        totals = {"event": "summary", "ok": report.ok, "skipped": report.skipped + len(filtered),
                  "failed": len(failures) - cut, "interrupted": cut, "fetched": report.fetched,
                  "elapsed": round(report.elapsed, 3)}
        import json  # (imported where used: start-up time)
        sys.stdout.write(json.dumps(totals) + "\n")
    elif not ns.quiet:
        sys.stderr.write(summary_line(report, failed=extra, skipped=len(filtered)) + "\n")
    if cancel.is_set() or any(isinstance(e, Cancelled) for _, e in failures):
        _error("interrupted; run the same command again to resume")
        return 130
    return failures[0][1].exit_code if failures else 0  # the first failure's code


def _check_urls(targets: list[Item | str], source: str | None) -> None:
    """Fail at once, in one line, when no URL at all has a source (a typo, usually)."""
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
        raise first


def _to_stdout(item: Item, cfg: Config, ns: argparse.Namespace, mask: Masker) -> int:
    """``-O -``: the one file's bytes to stdout, retries reported on stderr."""
    if ns.dry_run:
        sys.stdout.write(f"-\t{format_size(item.size_bytes)}\t{mask(item.download_url)}\n")
        return 0
    # Only retries and warnings happen here; lines on stderr, as in a normal run.
    consumer = QuietProgress() if ns.quiet else PlainProgress(sys.stderr, mask)
    import omniget

    with consumer:
        try:
            written = omniget.stream(
                item, sys.stdout.buffer, settings=cfg.settings, on_event=_safe(consumer)
            )
        except BrokenPipeError:  # (as curl and wget: say so, the file is not whole)
            _drop_stdout()
            raise StorageError("stdout closed before the whole file was written") from None
    if ns.verbose:
        sys.stderr.write(f"wrote {format_size(written)} to stdout\n")
    return 0


def _drop_stdout() -> None:
    """Point stdout at /dev/null: its reader went away, and the interpreter's last flush
    would complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _safe(consumer: Callable[[Event], None]) -> Callable[[Event], None]:
    """A display problem must never stop a download: swallow the consumer's errors."""

    def on_event(event: Event) -> None:
        try:
            consumer(event)
        except BrokenPipeError:
            raise
        except Exception:
            logging.getLogger("omniget.cli").debug("progress display failed", exc_info=True)

    return on_event


def _dry_run(
    items: Iterator[Item], dest: Path, ns: argparse.Namespace, cfg: Config, mask: Masker,
    failures: list[Failure],
) -> int:
    from ..engine.names import contain

    talk = not (ns.quiet or ns.json)

    def skipped(path: Path, reason: str) -> None:
        if talk:
            sys.stderr.write(f"would skip {mask(display_path(path))}: {EXISTS_WHY[reason]}\n")

    found = dry_run(items, dest, sys.stdout, mask, as_json=ns.json, contain=contain,
                    on_error=lambda item, e: failures.append((item.output_path, e)),
                    on_exists=cfg.settings.on_exists, on_skip=skipped)
    _report_failures(failures, mask)
    if talk:
        sys.stderr.write(found.summary(display_path(dest.absolute())) + "\n")
    return failures[0][1].exit_code if failures else 0


def _run_list(ns: argparse.Namespace, cfg: Config, mask: Masker) -> int:
    failures: list[Failure] = []
    targets = _collect(ns)
    cfg = _bind_user(cfg, targets)
    items = _items(
        targets, ns, cfg, lambda label, _, e: failures.append((label, e)), lambda _: None
    )
    table = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    print_list(items, sys.stdout, mask, as_json=ns.json, table=table)
    _report_failures(failures, mask)
    return failures[0][1].exit_code if failures else 0


#: Command name -> runner; a source subcommand (``gog``) adds a row here and in args.COMMANDS.
RUNNERS: dict[str, Callable[[argparse.Namespace, Config, Masker], int]] = {
    "get": _run_get,
    "list": _run_list,
}
