"""The lines a log gets with time, not with what happens: stderr not a terminal, the run's
line every 2 s (``[0:00:02] 0/1 files, 0% of 10.0 KiB, ?``) and, with -v, a file's
progress every 2 s (``  out/a.bin: 40% of 1.0 MiB, 512.0 KiB/s``). A loaded machine's run
may take that long: a test that compares what the CLI says, or counts its lines, or looks
for the first or the last, takes them out first (a test about them keeps them)."""

from __future__ import annotations

import re

__all__ = ["TIMED", "timed_lines_removed"]

#: one timed line, its newline with it (the run's line; a file's progress with -v)
TIMED = re.compile(r"^(?:\[\d+:\d\d:\d\d\] \d+/\d+\+? files, .*"
                   r"|  .+: (?:\d+% of )?[\d.]+ \w*B, [\d.]+ \w*B/s)\n", re.M)


def timed_lines_removed(text: str) -> str:
    """``text`` (what the CLI wrote on stderr) without its timed lines."""
    return TIMED.sub("", text)

