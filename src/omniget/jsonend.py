"""``--json``'s last lines for a command stopped before its arguments were read (a Ctrl+C,
SIGTERM or SIGHUP as it starts): an ``error`` event and the ``summary``, as a run stopped
a moment later ends. Light: :mod:`omniget.__main__` writes them before the CLI's modules
are loaded (it is their loading that was stopped)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SUMMARY_KEYS", "json_kind", "stopped_lines"]

#: The counts a ``--json`` summary carries, per kind of run.
SUMMARY_KEYS = {
    "list": ("items", "skipped", "failed"),
    "dry-run": ("files", "size", "unknown", "skipped", "failed"),
    "get": ("ok", "skipped", "failed", "interrupted", "not_started", "fetched", "resumed",
            "elapsed"),
}

# (-O's values that are stdout: --json is refused with them, stdout is the file's)
_STDOUT = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def json_kind(argv: Sequence[str]) -> str | None:
    """The kind of run (a key of :data:`SUMMARY_KEYS`) of a command line that asks for
    ``--json``, read as far as can be without its parser; None when it does not (or
    with ``-O -``, which refuses it)."""
    words = list(argv[: list(argv).index("--")] if "--" in argv else argv)
    if "--json" not in words:
        return None
    for i, word in enumerate(words):
        if word == "-O" and i + 1 < len(words) and words[i + 1] in _STDOUT:
            return None
        if word.startswith("-O") and word[2:] in _STDOUT:
            return None
    first = next((w for w in words if not w.startswith("-")), None)
    return "list" if first == "list" else "dry-run" if "--dry-run" in words else "get"


def stopped_lines(kind: str) -> str:
    """The two lines (an ``error`` event, the summary) of a ``kind`` run stopped before
    it began: nothing done, exit 130."""
    import json  # (imported where used: start-up time)

    error = {"event": "error", "error": "interrupted", "error_type": "Cancelled",
             "exit_code": 130}
    summary = {"event": "summary", **dict.fromkeys(SUMMARY_KEYS[kind], 0), "exit_code": 130}
    return f"{json.dumps(error)}\n{json.dumps(summary)}\n"
