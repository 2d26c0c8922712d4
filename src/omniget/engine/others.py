"""Items with nothing to fetch: folders and symbolic links (an FTP or file-host tree's).

A link is made as the link itself, never through one: its folder is contained as any
file's, its own name is not followed (a link already there from an earlier run points
elsewhere; following it replaced the file it pointed at). Its target must stay in the
output folder, read now and whatever links are made later: relative, and ``..`` only at
its start (``q/..`` leaves the folder once ``q`` becomes a link to the folder itself).
What is already at its name is handled as ``--on-exists`` handles a file: the same link is
skipped; anything else fails and stays with ``skip``, is replaced with ``overwrite`` (never
a folder), and is kept beside with ``rename``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IntegrityError, OmnigetError, Refused
from .assemble import storage_error
from .events import Finished
from .names import contain, safe_relpath, unique_path
from .report import FileResult

if TYPE_CHECKING:
    from .job import FileJob

__all__ = ["make_other"]


def make_other(job: FileJob) -> FileResult:
    """Make a folder or link item (see the module's docstring)."""
    item = job.item
    if item.kind == "dir":
        final = job.final = job.resolve_final(item.output_path)
        try:
            final.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, final, "creating", kept=False) from exc
    else:
        final = job.final = _link_path(job, item.output_path)
        target = item.link_target or ""
        _check_target(job, final, target)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            there = _there(final)
            if there is not None:
                if stat.S_ISLNK(there.st_mode) and os.readlink(final) == target:
                    return job._skipped(final, "exists")
                final = job.final = _make_room(job, final, there)
            final.symlink_to(target)
        except OSError as exc:
            raise storage_error(exc, final, "creating", kept=False) from exc
    job.ctx.event(Finished(item, final, 0, None, 0))
    return FileResult(item, final, "ok")


def _link_path(job: FileJob, rel: str) -> Path:
    """Where the link goes: its folder contained (links in it followed, as for a file),
    its own name as given."""
    head, _, name = safe_relpath(rel).rpartition("/")
    return (contain(job.ctx.dest, head) if head else job.ctx.dest.resolve()) / name


def _check_target(job: FileJob, final: Path, target: str) -> None:
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = next((n for n, p in enumerate(parts) if p != ".."), len(parts))
    outside = not target or os.path.isabs(target) or ".." in parts[ups:]
    if not outside:
        try:
            resolved = (final.parent / target).resolve()
            outside = not resolved.is_relative_to(job.ctx.dest.resolve())
        except (OSError, RuntimeError):  # (a loop on the way: 3.11 and 3.12 raise)
            outside = True
    if outside:
        raise Refused(f"link {final.name} -> {target} points outside the output folder")


def _there(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _make_room(job: FileJob, final: Path, there: os.stat_result) -> Path:
    """``--on-exists`` for a link whose name is taken by something else; where it goes."""
    mode = job.ctx.settings.on_exists
    if mode == "rename":
        return unique_path(final, job.ctx.busy_paths())
    what = "a folder" if stat.S_ISDIR(there.st_mode) else "something else"
    if mode == "skip" or stat.S_ISDIR(there.st_mode):
        error: OmnigetError = IntegrityError(
            f"{what} is there, not this link (--on-exists overwrite replaces a file or"
            " link, rename keeps both)"
        )
        raise error
    final.unlink()
    return final
