"""Where a run's files go: each item's output path resolved and claimed
(:func:`register_output`), and the output folder a run made removed again if nothing went
in (:func:`make_folders`, :func:`remove_if_empty`). The run itself is :mod:`.core`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from pathlib import Path

from ..errors import OmnigetError
from ..model import Item
from .context import RunContext
from .names import contain_text

__all__ = ["make_folders", "register_output", "remove_if_empty"]


def register_output(ctx: RunContext, item: Item) -> tuple[
    Path | None, str | None, asyncio.Future[bool] | None, asyncio.Future[bool] | None
]:
    """Resolve the item's output path and announce it, so LocalSlice readers can wait
    for it: (path, it as a string, the earlier writer of the path to wait for, this
    item's future). The path is None when it is refused (the job reports that). Items
    of a run that write the same path go one after the other, each deciding
    --on-exists once the one before is done (two renamed at once would pick the same
    new name)."""
    try:
        path, text = contain_text(ctx.dest, item.output_path)
    except OmnigetError:
        return None, None, None, None
    return path, text, *ctx.register_output(path, text)


def make_folders(path: Path) -> list[Path]:
    """Make the folder ``path`` and its missing parents, as ``mkdir -p``: the folders
    made, innermost first (only those: ``x/../kept``, ``kept`` there already, makes
    ``x`` alone). OSError as mkdir raises it, the folders made by then removed again
    (a file in the way of ``x/../afile``: ``x`` goes)."""
    missing: list[Path] = []  # (as written: x/../y goes through x/.., which x makes)
    while path != path.parent:
        try:
            st = os.stat(path)
        except OSError:  # (missing, or mkdir says why)
            missing.append(path)
            path = path.parent
            continue
        if not missing and not stat.S_ISDIR(st.st_mode):  # (as mkdir -p says it)
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        break
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
            else:
                made.append(folder)
    except OSError:
        made.reverse()
        remove_if_empty(made)
        raise
    made.reverse()
    return made


def remove_if_empty(made: list[Path]) -> None:
    """Remove the folders this run made for its output (``made``, innermost first) that
    stayed empty: a run that failed (a typo in the URL) leaves no folder behind, as
    wget. Each is tried (``x`` of ``x/../y`` does not hold ``y``)."""
    for folder in made:
        with contextlib.suppress(OSError):  # (only ever an empty folder)
            folder.rmdir()
