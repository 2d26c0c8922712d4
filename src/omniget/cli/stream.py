"""``-O -`` and ``-O DEVICE``: the one file's bytes written in order to stdout, a device or
a FIFO, with no part file and no resume (what went out is out)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..engine.events import Event, Failed, Retrying, Warned
from ..errors import Cancelled, OmnigetError, StorageError, write_error
from ..model import Item
from .config import Config
from .logs import warn
from .output import (
    Masker,
    display_path,
    flush,
    format_size,
    json_line,
    print_error,
    put,
    say,
    summary_record,
    to_devnull,
    writable_stdout,
)
from .progress import (
    Consumer,
    PlainProgress,
    QuietProgress,
    make_progress,
    maybe_terminal,
    safe_consumer,
)
from .signals import on_signals, stop_at_once

if TYPE_CHECKING:
    from .json_events import JsonEvents

__all__ = ["drop_stdout", "to_stream"]


def to_stream(
    item: Item, cfg: Config, ns: argparse.Namespace, mask: Masker, target: Path | None,
    events: JsonEvents | None,
) -> int:
    """``-O -`` (``target`` None): the one file's bytes to stdout, in order. ``-O`` a
    device or a FIFO (``/dev/null``): written there the same way, as curl and wget do (no
    part file beside it, nothing renamed). Stopped, neither can be resumed: what went out
    is out, a rerun starts over. ``events``: the run's ``--json`` writer."""
    where = "stdout" if target is None else mask(display_path(target))
    if ns.dry_run:
        return _stream_dry_run(item, ns, mask, where)
    import omniget

    from .json_events import JsonEvents

    split = cfg.settings.split
    if ns.split is not None and split is not None and split > 1:
        warn(f"--split {split} is not used with -O {'-' if target is None else where}: "
             "a stream is written in order, over one connection")
    if target is None:
        out = writable_stdout().buffer
    else:
        with on_signals(stop_at_once):  # (a FIFO's open waits for its reader)
            out = _open_output(target, where)
    try:
        consumer, on_event = _stream_progress(ns, mask, out.isatty(), events,
                                              stdout=target is None)
        with consumer, on_signals(stop_at_once):
            try:
                written = omniget.stream(item, out, settings=cfg.settings, on_event=on_event)
                if target is not None:
                    out.close()
            except StorageError as exc:  # a write that failed (engine.stream)
                if not isinstance(exc.__cause__, OSError):
                    return _stream_failed(consumer, item, exc, ns, mask)
                return _stream_failed(consumer, item, _write_error(exc.__cause__, target,
                                                                   where), ns, mask)
            except OSError as exc:  # the last flush
                return _stream_failed(consumer, item, _write_error(exc, target, where), ns,
                                      mask)
            except OmnigetError as exc:
                return _stream_failed(consumer, item, exc, ns, mask)
            except KeyboardInterrupt:
                on = "on stdout" if target is None else f"written to {where}"
                said = (f"interrupted; the file {on} is incomplete "
                        f"({where} cannot be resumed: run the command again to start over)")
                print_error(said)
                if isinstance(consumer, JsonEvents):  # (its file ends, as a download's)
                    consumer(Failed(item, None, Cancelled(said)))
                    consumer.line(summary_record(ns, 130, **consumer.tally()))
                return 130
    finally:
        if target is not None:
            with contextlib.suppress(OSError):
                out.close()
    if isinstance(consumer, JsonEvents):
        consumer.line(summary_record(ns, 0, **consumer.tally()))
    if ns.verbose and not (ns.json or ns.quiet):
        say(f"wrote {format_size(written)} to {where}\n")
    return 0


def _open_output(target: Path, where: str) -> BinaryIO:
    """The device or FIFO ``-O`` names, opened for writing (a FIFO waits for its reader)."""
    try:
        return open(target, "wb")  # (closed by the caller)
    except OSError as exc:
        raise StorageError(f"cannot write to {where}: {exc.strerror or exc}") from None


def _stream_progress(
    ns: argparse.Namespace, mask: Masker, out_is_terminal: bool, events: JsonEvents | None,
    *, stdout: bool,
) -> tuple[Consumer, Callable[[Event], None]]:
    """What ``-O -`` or ``-O DEVICE`` shows: a device, what a download shows (bars on a
    terminal, lines in a log); stdout, the bars when stderr is a terminal, as curl shows
    its meter. Nothing but retries and warnings when the output is itself a terminal (bars
    would go between its bytes), or for stdout with stderr a log. ``--json`` (a device
    only): the events, to ``events``, ``-q`` or not (as a download's)."""
    if events is not None:
        return events, safe_consumer(events)
    if ns.quiet:
        return QuietProgress(), safe_consumer(QuietProgress())
    if not out_is_terminal and (not stdout or maybe_terminal(sys.stderr)):
        consumer = make_progress(mask, verbose=ns.verbose)
        return consumer, safe_consumer(consumer)
    plain = PlainProgress(sys.stderr, mask)
    notes = safe_consumer(plain)

    def on_event(event: Event) -> None:
        if isinstance(event, Retrying | Warned):
            notes(event)

    return plain, on_event


def _stream_failed(
    consumer: Consumer, item: Item, error: OmnigetError, ns: argparse.Namespace, mask: Masker
) -> int:
    """The one file of ``-O -`` or ``-O DEVICE`` failed: with ``--json`` a failed event and
    the summary (as a download's failure), then the error; without, main() says it."""
    from .json_events import JsonEvents

    if not isinstance(consumer, JsonEvents):
        raise error
    code = error.exit_code
    consumer(Failed(item, None, error))
    consumer.line(summary_record(ns, code, **consumer.tally()))
    print_error(mask(str(error)))
    return code


def _stream_dry_run(item: Item, ns: argparse.Namespace, mask: Masker, where: str) -> int:
    """``--dry-run`` of ``-O -`` or ``-O DEVICE``: where the one file would be written."""
    from .dryrun import file_line, file_record

    out = writable_stdout()
    size = item.size_bytes
    if ns.json:  # (a device: as a --dry-run --json line, then its summary)
        json_line(out, file_record(where, item, mask, "write"))
        json_line(out, summary_record(ns, 0, files=1, size=size or 0, unknown=int(size is None)))
        return 0
    put(out, file_line("-" if where == "stdout" else where, item, mask))
    flush(out)
    return 0


def _write_error(exc: OSError, target: Path | None, where: str) -> StorageError:
    """``-O -`` or ``-O DEVICE`` could not be written (as curl and wget: say so, the file
    there is not whole)."""
    if target is None:
        drop_stdout()
    return write_error(exc, where)


def drop_stdout() -> None:
    """Point stdout at /dev/null: its reader went away (or its disk is full), and the
    interpreter's last flush would complain."""
    if sys.stdout is not None:
        to_devnull(sys.stdout)
