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
        sys.stderr.write("omniget: error: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    run_cli()


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
