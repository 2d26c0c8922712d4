"""Consumers that are not progress bars: ``list``, the summary (``--json`` events:
:mod:`omniget.cli.json_events`; ``--dry-run``: :mod:`omniget.cli.dryrun`).

Every string that leaves the process passes through a :class:`Masker`, so passwords, tokens
and secret header values never reach a terminal, a log or a JSON line.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from threading import Lock
from typing import IO, TYPE_CHECKING, Any, TextIO

from ..engine.events import Event
from ..engine.report import Report
from ..engine.transports.base import SECRET_HEADERS
from ..errors import StorageError, write_error
from ..jsonend import SUMMARY_KEYS
from ..masks import MASK, mask_secrets
from ..model import Digest, Item

if TYPE_CHECKING:
    import argparse

__all__ = [
    "MASK",
    "SUMMARY_KEYS",
    "Masker",
    "QuietOnError",
    "bytes_line",
    "display_path",
    "event_path",
    "flush",
    "format_size",
    "item_to_dict",
    "json_line",
    "json_text",
    "name_bytes_out",
    "named",
    "naming",
    "origins",
    "print_error",
    "print_list",
    "put",
    "say",
    "short_urls",
    "stream_name",
    "summary_line",
    "summary_record",
    "to_devnull",
    "visible",
    "whole_writes_out",
    "writable_stdout",
]

#: The error handler of the command's stdout and stderr (see :func:`name_bytes_out`).
NAME_BYTES = "omniget-name-bytes"


def _name_bytes(exc: UnicodeError) -> tuple[str | bytes, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    chunk = exc.object[exc.start : exc.end]
    if all("\udc80" <= c <= "\udcff" for c in chunk):  # (bytes of a name, as Python holds them)
        return bytes(ord(c) - 0xDC00 for c in chunk), exc.end
    return codecs.backslashreplace_errors(exc)


codecs.register_error(NAME_BYTES, _name_bytes)


def name_bytes_out() -> None:
    """The command's stdout and stderr write the bytes of a name that are no UTF-8 (a
    folder from an old latin-1 disk: Python holds them as lone surrogates) as they are, as
    ls writes them; a character the locale's encoding has none for is escaped (``\\u540d``).
    Else a line with either failed the run (stdout is strict in a locale such as
    en_US.UTF-8, stderr writes ``\\udce9``)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors=NAME_BYTES)  # type: ignore[union-attr]


def whole_writes_out() -> None:
    """The command's stdout and stderr get Python's buffer when they have none
    (``PYTHONUNBUFFERED=1``, ``python -u``: many containers set it). Without it a write
    that a signal interrupts (a Ctrl+Z, a Ctrl+C) takes part of its bytes, and Python's
    text layer drops the rest: a bar's frame cut short, which the next frame erased too
    many rows for, or a JSON line cut in two. Each line still goes out as it is
    written (line buffering), as unbuffered."""
    import io

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        raw = getattr(stream, "buffer", None)
        if isinstance(stream, io.TextIOWrapper) and isinstance(raw, io.RawIOBase):
            _UNDER.append(stream)  # (collected, it would close the file under the new one)
            setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(raw), stream.encoding,
                                                stream.errors, line_buffering=True))


_UNDER: list[IO[str]] = []  # the streams whose file :func:`whole_writes_out` took


class Masker:
    """Replaces known secret values, URL passwords (or a user name given alone) and query
    parameters whose names say secret with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, MASK)
        return mask_secrets(text)

    def headers(self, headers: Mapping[str, str], secret: Iterable[str] = ()) -> dict[str, str]:
        names = {n.lower() for n in secret} | SECRET_HEADERS
        return {k: MASK if k.lower() in names else self(v) for k, v in headers.items()}


#: A URL in a message longer than this is shortened (a 100 KB URL was repeated whole on
#: every retry line); ``--json`` events keep it whole.
URL_SHOWN = 200
#: How much of the end of a shortened URL's path is kept (its file's name, mostly).
_URL_TAIL = 40
# (a pattern string: re compiles it when first used, not at every start)
_URL_RE = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"


def _short_url(m: re.Match[str]) -> str:
    url = m[0].rstrip(".,;:)")  # (what ends a sentence or a parenthesis is no part of it)
    after = m[0][len(url):]
    if len(url) <= URL_SHOWN:
        return m[0]
    scheme, _, rest = url.partition("://")
    netloc = re.match(r"[^/?#]*", rest)[0]  # type: ignore[index]
    path = re.match(r"[^?#]*", rest[len(netloc):])[0]  # type: ignore[index]
    head, tail = f"{scheme}://{netloc}/", path[-_URL_TAIL:].lstrip("/")
    cut = len(url) - len(head) - len(tail)
    return f"{head}...({cut} characters left out)...{tail}{after}"


def origins(text: str) -> str:
    """``text`` with each URL in it as its origin (``http://host:port``)."""
    def origin(m: re.Match[str]) -> str:
        url = m[0].rstrip(".,;:)")  # (what ends a sentence or a parenthesis: kept)
        scheme, _, rest = url.partition("://")
        host = re.match(r"[^/?#]*", rest)[0]  # type: ignore[index]
        return f"{scheme}://{host}{m[0][len(url):]}"

    return re.sub(_URL_RE, origin, text)


def short_urls(text: str) -> str:
    """``text`` with each URL longer than :data:`URL_SHOWN` characters as its scheme, its
    host and the end of its path, saying how much was left out (mask it first: a
    secret's name may be in the part left out)."""
    if len(text) <= URL_SHOWN or "://" not in text:
        return text
    return re.sub(_URL_RE, _short_url, text)


def _whole(text: str, name: str) -> list[re.Match[str]]:
    """Where ``text`` has ``name`` whole (not a piece of a word or of a longer name), in
    none of its URLs."""
    urls = [m.span() for m in re.finditer(_URL_RE, text)]
    found = re.finditer(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text)
    return [m for m in found if not any(a < m.end() and m.start() < b for a, b in urls)]


def named(label: str, text: str) -> str | None:
    """``text`` when it names the file ``label`` is (outside its URLs), with the file's
    name in it once as ``label`` (``out/s``) when ``label`` is a path (not a URL) that
    ``text`` names by its last part only (``sha256 mismatch for s``); None when it does
    not (or has that last part more than once: which one is the file's?)."""
    if _whole(text, label):
        return text
    name = label.rsplit("/", 1)[-1]
    if name == label or re.fullmatch(_URL_RE, label):
        return None
    hits = _whole(text, name)
    if len(hits) != 1:
        return None
    return f"{text[:hits[0].start()]}{label}{text[hits[0].end():]}"


def naming(label: str, text: str) -> str:
    """``label: text``, or ``text`` alone, naming the file once, when it names it (see
    :func:`named`): ``s: sha256 mismatch for s`` said its name twice."""
    said = named(label, text)
    return f"{label}: {text}" if said is None else said


def format_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def display_path(path: Path | str, cwd: Path | None = None) -> str:
    """``path`` relative to the current directory when it is under it."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    base = (cwd or Path.cwd()).absolute()
    return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)


def stream_name(out: IO[str]) -> str:
    name = getattr(out, "name", None)
    return "stdout" if name in ("<stdout>", 1) else name if isinstance(name, str) else "the output"


def put(out: IO[str], text: str, taken: Callable[[], object] | None = None) -> None:
    """``out.write(text)``; an OS error (disk full) is a StorageError naming the stream
    (exit 7). A reader gone away (BrokenPipeError) is left to the caller: ``omniget list |
    head`` ends quietly. ``taken()`` once ``out`` has the text: a Ctrl+C as the write waits
    (its reader slow, the pipe full) raises out of it with the text in the stream's
    buffer all the same, out at its next flush (a summary counted the lines written that
    way one short of those on stdout)."""
    try:
        try:
            out.write(text)
        finally:
            if taken is not None:
                taken()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise write_error(exc, stream_name(out), what=None) from exc


def flush(out: IO[str]) -> None:
    """``out.flush()``, errors as :func:`put`'s (buffered bytes fail here, mostly)."""
    try:
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise write_error(exc, stream_name(out), what=None) from exc


def json_line(out: IO[str], record: Mapping[str, Any]) -> None:
    """One JSON line, flushed (a reader sees each as it happens); errors as :func:`put`'s."""
    put(out, json_text(record) + "\n")
    flush(out)


# (a name's bytes that are no UTF-8, as Python holds them: lone surrogates)
_NO_TEXT = r"[\ud800-\udfff]"


def json_text(record: Mapping[str, Any]) -> str:
    """``record`` as one line of strict JSON (RFC 8259), ASCII, every control character
    escaped. A name's bytes that are no UTF-8 (a folder from an old latin-1 disk, a
    ``-O`` FIFO's name) are each U+FFFD: Python holds them as lone surrogates, which
    ``json.dumps`` wrote as ``\\udce9``, an escape serde_json refuses and jq and Go
    replace all the same. A number that is not finite is null (``NaN`` is no JSON)."""
    import json  # (imported where used: start-up time)

    try:  # (as it is, mostly: the walk below took 6 times as long as json.dumps)
        text = json.dumps(record, allow_nan=False)
    except ValueError:  # (a number that is not finite)
        return json.dumps(_strict(record))
    if "\\ud" in text and re.search(r"\\ud[89a-f]", text):  # (maybe a lone surrogate)
        return json.dumps(_strict(record))
    return text


def _strict(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(_NO_TEXT, "\ufffd", value) if re.search(_NO_TEXT, value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_strict(str(k)): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _plain(value: Any, mask: Masker) -> Any:
    """A JSON-safe copy of ``value``, strings masked."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Digest | Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, mask) for v in value]
    return mask(str(value))


def item_to_dict(item: Item, mask: Masker) -> dict[str, Any]:
    """Every Item field; digests as ``algo=hex``, pieces counted, secrets masked."""
    out: dict[str, Any] = {}
    for f in fields(item):
        value = getattr(item, f.name)
        if f.name == "headers":
            out[f.name] = mask.headers(value, item.secret_headers)
        elif f.name == "pieces":
            out[f.name] = len(value)
        elif f.name == "origin":  # (its URL: its options may be secrets)
            out[f.name] = None if value is None else mask(value.url)
        else:
            out[f.name] = _plain(value, mask)
    out["output_path"] = mask(item.output_path)
    return out


def event_path(event: Event, mask: Masker, folder: Path | None = None) -> str | None:
    """The file an event is about: its output path, or the item's own before that is
    known, as a download would write it (under ``folder``, the run's output folder, when
    given); None for a URL no source took (it names no file)."""
    if event.path:
        return mask(display_path(event.path))
    if not event.item.source:
        return None
    from ..engine.names import safe_relpath  # (no control character: a terminal's own)

    path = event.item.output_path
    if not os.path.isabs(path):  # (one is -O DEVICE's, as given)
        path = safe_relpath(path)
    return mask(path if folder is None else display_path(folder / path))


def _shown_columns(item: Item, size: str) -> tuple[str, ...]:
    """A listed item's path (as a download would write it: no control character, which
    the terminal would take for its own), size, source, URL and mirrors (as an ``-i``
    line has them; their controls percent-encoded: a source's URLs are the server's)."""
    from ..engine.names import safe_relpath
    from .args import controls_encoded

    return (safe_relpath(item.output_path), size, item.source,
            *(controls_encoded(url) for url in (item.download_url, *item.mirrors)))


def print_list(
    items: Iterable[Item], out: IO[str], mask: Masker, *, as_json: bool, table: bool,
    said: Callable[[], object] | None = None,
) -> int:
    """``omniget list``: JSON lines, a rich table (terminal) or TAB-separated lines;
    ``said()`` as ``out`` takes each line (see :func:`put`; a table's: none, it is drawn
    whole)."""
    count = 0
    if as_json or not table:
        for item in items:
            if as_json:
                line = json_text(item_to_dict(item, mask))
            else:
                size = "" if item.size_bytes is None else str(item.size_bytes)
                cols = _shown_columns(item, size)
                line = "\t".join(mask(c) for c in cols)
            put(out, line + "\n", said)
            count += 1
        flush(out)
        return count
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .progress import sizes_known

    t = Table("path", "size", "source", box=None, header_style="bold")
    for item in items:
        path = _shown_columns(item, "")[0]
        # (Text: as it is, a name's [bold] no markup, its :cd: no emoji)
        t.add_row(Text(mask(path)), format_size(item.size_bytes), Text(item.source))
        count += 1
    Console(file=out, _environ=sizes_known(os.environ)).print(t)
    return count


#: Why a file that is there already was skipped (the Skipped reason), and what would help.
EXISTS_WHY = {
    "exists": "it already exists (--on-exists overwrite replaces it)",
    "same-name": "an earlier URL of this run has the same file name "
    "(--on-exists rename keeps both)",
}


def summary_line(
    report: Report, *, failed: int = 0, skipped: int = 0, left: int = 0, resumed: int = 0
) -> str:
    """``N files ok, N skipped, N failed, SIZE in Ts (RATE/s)`` ("1 file ok"; no RATE when
    nothing was fetched); extra counts are added. Files cut off by an interrupt are
    counted apart (``N interrupted``): they did not fail, a rerun resumes them; so are
    the ``left`` ones a stopped run never began (``N not started``). SIZE and RATE are
    the bytes fetched; ``resumed`` ones, there from an earlier run, are said beside them
    (``SIZE (+SIZE resumed)``)."""
    cut = report.interrupted
    counts = counts_line(report.ok, report.skipped + skipped, report.failed - cut + failed,
                         cut, left)
    return f"{counts}, {bytes_line(report.fetched, report.elapsed, resumed)}"


def bytes_line(fetched: int, secs: float, resumed: int = 0) -> str:
    """``SIZE (+SIZE resumed) in Ts (RATE/s)``: the bytes of a run's counts line."""
    rate = int(fetched / secs) if secs > 0 else 0
    took = f"{secs:.2f}s" if secs < 1 else f"{secs:.1f}s"
    kept = f" (+{format_size(resumed)} resumed)" if resumed else ""
    speed = f" ({format_size(rate)}/s)" if fetched else ""  # (none: no "0 B/s")
    return f"{format_size(fetched)}{kept} in {took}{speed}"


def counts_line(ok: int, skipped: int, failed: int, interrupted: int = 0, left: int = 0) -> str:
    """``N files ok, N skipped, N failed`` (``, N interrupted, N not started`` when there
    are): the files of a run's counts line."""
    files = "file" if ok == 1 else "files"
    cut = f", {interrupted} interrupted" if interrupted else ""
    not_started = f", {left} not started" if left else ""
    return f"{ok} {files} ok, {skipped} skipped, {failed} failed{cut}{not_started}"


def print_error(text: str) -> None:
    """One ``omniget: error: ...`` line on stderr."""
    say(error_line(text))


def error_line(text: str) -> str:
    """An error's line (mask ``text`` first), its long URLs shortened."""
    return f"omniget: error: {short_urls(text)}\n"


def last_words(
    text: str | Callable[[], str],
    then: Callable[[], object],
    lock: Lock | None = None,
    before: Callable[[], object] | None = None,
) -> None:
    """``before()``, ``text`` on stderr (``text()``: made with ``lock`` held, from counts
    it guards), then ``then`` (it ends the process), with ``lock`` held: the writes of
    other threads wait. (Waited for 0.5 s at most: its holder may be stuck on a full
    pipe.)"""
    got = lock is not None and lock.acquire(timeout=0.5)
    try:
        if before is not None:
            before()
        say(text if isinstance(text, str) else text())
        then()
    finally:
        if got and lock is not None:
            lock.release()


# A control character but a line's end and a tab: C0, DEL, C1 (ESC [ and CSI begin a
# terminal's commands; BEL rings it)
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"


def visible(text: str) -> str:
    """``text`` with each control character but ``\\n`` and ``\\t`` as ``\\x1b``: a
    server's words in a message (a certificate's name libcurl quotes) never become the
    terminal's commands (colours, its title, its clipboard)."""
    if not re.search(_CONTROL, text):
        return text
    return re.sub(_CONTROL, lambda m: f"\\x{ord(m[0]):02x}", text)


def say(text: str, out: IO[str] | None = None) -> None:
    """``text`` on stderr (or ``out``) now, its control characters shown
    (:func:`visible`). A reader of it that went away (``omniget -v URL 2>&1 | head -1``),
    or a disk it fills (``2>/dev/full``), leaves it silent from then on, as a closed
    stderr is: the run goes on and ends with its own exit code (it died of SIGPIPE at
    its summary line; a full disk made it an internal error, exit 1)."""
    out = sys.stderr if out is None else out
    try:
        out.write(visible(text))
        out.flush()
    except OSError:
        to_devnull(out)


class QuietOnError:
    """``stream`` for rich's console: a write or flush that fails (the terminal hung up,
    EIO; a reader gone; a full disk) leaves it silent from then on, as :func:`say` does.
    rich keeps what a write could not take and writes it all again with the next one,
    raising each time: a buffer that grew for the rest of the run, and the bars' last
    write raised out of it (an internal error, exit 1, for a run that went well)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError:
            to_devnull(self.stream)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError:
            to_devnull(self.stream)

    def __getattr__(self, name: str) -> Any:  # (isatty, fileno, encoding: the stream's)
        return getattr(self.stream, name)


def to_devnull(out: IO[str]) -> None:
    """Point ``out`` at /dev/null (what it still holds goes there at its next flush)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def summary_record(ns: argparse.Namespace, code: int, **counts: float) -> dict[str, Any]:
    """The last ``--json`` line of a run: its counts (those not given are 0) and exit code."""
    keys = SUMMARY_KEYS["list" if ns.command == "list" else "dry-run" if ns.dry_run else "get"]
    assert counts.keys() <= set(keys), counts
    return {"event": "summary", **{k: counts.get(k, 0) for k in keys}, "exit_code": code}


def writable_stdout() -> TextIO:
    """stdout, for a command that writes there (``list``, ``--json``, ``--dry-run``,
    ``-O -``); a closed one (``>&-``) is a storage error before anything is done."""
    if sys.stdout is None:
        raise StorageError("cannot write to stdout: it is closed")
    return sys.stdout
