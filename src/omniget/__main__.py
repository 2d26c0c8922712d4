"""``python -m omniget`` and the ``omniget`` command: :func:`run`."""

import gc
import os
import signal
import sys


def run() -> None:
    """The command. The collector is off while the CLI's modules load (what they make
    lives to the end: its collections there cost ~8 M instructions at every start), then
    :func:`omniget.cli.run` turns it on, set for a long run.

    A SIGTERM or SIGHUP before the run's own handlers are set is a Ctrl+C (exit 130, as
    later; their defaults killed the process, 143 and 129), unless it was ignored when the
    process began (``signal``: the CLI loads it in any case)."""
    gc.disable()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, signal.default_int_handler)
    try:
        _asyncio_without_its_tls()
        from .cli import run as run_cli
    except KeyboardInterrupt:  # (nothing begun: nothing to save)
        _stopped()
        os._exit(130)
    run_cli()


def _stopped() -> None:
    """The lines of a command stopped as it starts: ``interrupted`` on stderr, and with
    ``--json`` its ``error`` event and summary on stdout, as every run ends there. A
    signal more changes nothing now (it raised out of these lines, a traceback)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    from .jsonend import json_kind, stopped_lines

    kind = json_kind(sys.argv[1:])
    for stream, text in ((sys.stderr, "omniget: error: interrupted\n"),
                         (sys.stdout, "" if kind is None else stopped_lines(kind))):
        try:
            if stream is not None and text:
                stream.write(text)
                stream.flush()
        except (OSError, ValueError):  # (closed, full: nothing more to say there)
            pass


def _asyncio_without_its_tls() -> None:
    """Load asyncio with its own TLS support left out: the command's TLS is libcurl's,
    and asyncio's ``import ssl`` (OpenSSL's Python module) costs ~20 M instructions at
    every start. A program that imports omniget as a library keeps its asyncio whole, and
    a plugin source gets it back (see omniget.sources.source_classes)."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # (import ssl: ImportError)
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


if __name__ == "__main__":
    run()
