"""The library's log records on stderr while the CLI runs (above the bars, secrets masked);
with ``--json``, its warnings and errors as events too. The CLI's own warnings go the same
way (:func:`warn`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from .output import Masker, short_urls, visible

__all__ = ["log_to_json", "log_to_stderr", "warn"]


def warn(message: str, *, even_quiet: bool = False) -> None:
    """One of the CLI's own warnings, logged as the library's are: its ``omniget: warning:``
    line on stderr (none with ``-q``, unless ``even_quiet``) and, with ``--json``, a
    ``warning`` event."""
    logging.getLogger("omniget.cli").warning(message, extra={"even_quiet": even_quiet})


def _even_quiet(record: logging.LogRecord) -> bool:
    return bool(getattr(record, "even_quiet", False))


def _first_line(record: logging.LogRecord) -> str:
    lines = record.getMessage().splitlines()
    return lines[0] if lines else ""


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is at each record (as logging's last resort does):
    while bars are drawn that is rich's proxy, which puts the line above them (the stream
    of when the handler was made wrote through them)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _MaskingFormatter(logging.Formatter):
    def __init__(self, mask: Masker, fmt: str = "omniget: %(levelname)s: %(name)s: %(message)s"):
        super().__init__(fmt)
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        return visible(short_urls(self.mask(super().format(record))))


class _WarningFormatter(_MaskingFormatter):
    """The library's warnings and errors as the CLI's other lines (``omniget: warning:
    ...``) whatever the mode, one line each: a traceback only with ``tracebacks``
    (``--debug``). INFO and DEBUG records (``-v``, ``--debug``) name their logger."""

    def __init__(self, mask: Masker, *, tracebacks: bool = False) -> None:
        super().__init__(mask)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno < logging.WARNING:
            return super().format(record)
        text = f"omniget: {record.levelname.lower()}: {_first_line(record)}"
        if self.tracebacks and record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return visible(short_urls(self.mask(text)))


@contextmanager
def log_to_stderr(
    mask: Masker, *, verbose: bool, debug: bool, quiet: bool = False
) -> Iterator[None]:
    """The library's warnings on stderr (a journal that cannot be used, say; with ``-q``
    only the CLI's that say ``even_quiet``); ``-v``: its INFO logs too; ``--debug``: DEBUG."""
    logger = logging.getLogger("omniget")
    handler: logging.Handler
    if verbose or debug:
        handler = _StderrHandler()
        handler.setFormatter(_WarningFormatter(mask, tracebacks=debug))
        level = logging.DEBUG if debug else logging.INFO
    elif quiet:  # (a handler still, so not Python's last resort)
        handler = _StderrHandler()
        handler.setFormatter(_WarningFormatter(mask))
        handler.addFilter(_even_quiet)
        level = logging.WARNING
    else:
        handler = _StderrHandler()
        handler.setFormatter(_WarningFormatter(mask))
        level = logging.WARNING
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class _JsonHandler(logging.Handler):
    """A warning or error record as a ``warning`` event: its level and its message, the
    line stderr shows without its ``omniget: warning:`` (masked, no traceback)."""

    def __init__(self, line: Callable[[Mapping[str, Any]], None], mask: Masker) -> None:
        super().__init__(logging.WARNING)
        self.line, self.mask = line, mask

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.line({"event": "warning", "level": record.levelname.lower(),
                       "message": self.mask(_first_line(record))})
        except Exception:
            self.handleError(record)


@contextmanager
def log_to_json(line: Callable[[Mapping[str, Any]], None], mask: Masker) -> Iterator[None]:
    """``--json``: the library's warnings and errors (a journal that cannot be used, say)
    and the CLI's (:func:`warn`) as ``warning`` events through ``line``, beside their
    stderr line. They are the run's own: a file's warnings are its ``warned`` events,
    never logged."""
    logger = logging.getLogger("omniget")
    handler = _JsonHandler(line, mask)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
