"""Where a run's files go: each item's output path resolved and claimed
(:func:`register_output`), and the output folder a run made removed again if nothing went
in (:func:`missing_top`, :func:`remove_if_empty`). The run itself is :mod:`.core`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..errors import OmnigetError
from ..model import Item
from .context import RunContext
from .names import contain_text

__all__ = ["missing_top", "register_output", "remove_if_empty"]


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


def missing_top(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet."""
    top = None
    while not path.exists() and path != path.parent:
        top, path = path, path.parent
    return top


def remove_if_empty(path: Path, top: Path) -> None:
    """Remove the folders this run made for its output (``path`` up to ``top``) if they
    stayed empty: a run that failed (a typo in the URL) leaves no folder behind, as wget."""
    while True:
        try:
            path.rmdir()  # (only ever an empty folder)
        except OSError:
            return
        if path == top:
            return
        path = path.parent
