"""Where a run's files go: each item's output path resolved and claimed
(:func:`register_output`), the output folder a run made removed again if nothing went
in (:func:`make_folders`, :func:`remove_if_empty`), and the error of one that cannot be
made, naming the part of its path at fault (:func:`folder_error`). The run itself is
:mod:`.core`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from pathlib import Path

from ..errors import OmnigetError, StorageError
from ..model import Item
from .assemble import in_the_way
from .context import RunContext
from .names import contain_text

__all__ = ["folder_error", "make_folders", "register_output", "remove_if_empty"]


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


def folder_error(folder: str, why: str | OSError) -> StorageError:
    """The output folder ``folder`` (absolute, normalised) cannot be made, for ``why``
    (an OSError of making it: said in words that name the part at fault)."""
    within = None
    if isinstance(why, OSError):
        why, within = _folder_why(folder, why)
    err = StorageError(f"cannot create output folder {folder}: {why}")
    err.folder, err.within = folder, within
    return err


def _folder_why(folder: str, exc: OSError) -> tuple[str, str | None]:
    """Why ``folder`` could not be made (``exc``), and the path named there besides it.
    The kernel's words alone ("No such file or directory" for /proc/x) left the user to
    guess which part of the path was at fault."""
    code = exc.errno
    parent = os.path.dirname(folder)
    while parent != os.path.dirname(parent) and not os.path.isdir(parent):
        parent = os.path.dirname(parent)  # (the nearest folder there: the one refusing)
    if code in (errno.ENOTDIR, errno.EEXIST):  # (something not a folder on the way)
        found = in_the_way(folder)
        if found is not None:
            path, kind = found
            if path == folder:
                return f"{kind} is in the way", None
            return f"{path} is {kind}, not a folder", path
        if not os.path.lexists(folder):  # (the folder as given is a link to it)
            return ("a symbolic link to it is in the way, and it is not there: make it, or "
                    "remove the link"), None
        if os.path.islink(folder):  # (one that leads to itself, on the way or at once)
            return "a loop of symbolic links is in the way: remove it", None
    elif code == errno.ENOENT:  # (its parent is there: made just before, or already)
        return (f"{parent} takes no new folders (a special filesystem): choose another "
                "output folder"), parent
    elif code == errno.EACCES:
        return f"no permission to make folders in {parent}: choose another output folder", parent
    elif code == errno.EPERM:
        return f"{parent} lets no folder be made in it: choose another output folder", parent
    elif code == errno.EROFS:
        return f"{parent} is on a read-only filesystem: choose another output folder", parent
    elif code == errno.ENAMETOOLONG:
        return _too_long(folder, parent), None
    elif code in (errno.ENOSPC, errno.EDQUOT):
        return "disk full" if code == errno.ENOSPC else "disk quota exceeded", None
    return exc.strerror or str(exc), None


def _too_long(folder: str, parent: str) -> str:
    """Which limit ``folder`` goes past: a name's (255 bytes on most filesystems), or the
    whole path's (4096 bytes on Linux)."""
    import os

    def limit(name: str, default: int) -> int:
        try:
            return os.pathconf(parent, name)
        except (OSError, ValueError):
            return default

    most = limit("PC_NAME_MAX", 255)
    for name in folder.split(os.sep):
        size = len(os.fsencode(name))
        if size > most:
            return (f"the name {name[:16]}... is {size} bytes, more than the {most} a name "
                    "may have there")
    return (f"the path is {len(os.fsencode(folder)):,} bytes, more than the "
            f"{limit('PC_PATH_MAX', 4096)} the system takes")
