"""``--dry-run``: where each item would be written, and what the run would skip. Loaded
for a dry run only (its record, a dataclass, would cost every other start to make)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import OmnigetError
from ..model import Digest, Item
from .output import Masker, flush, format_size, json_text, put

__all__ = ["DryRun", "dry_run", "file_line", "file_record", "refused_in"]


@dataclass
class DryRun:
    """What ``--dry-run`` found: files that would be written, their known bytes, how many
    of them have no known size, and files ``--on-exists skip`` would keep: they exist, or
    (``same_name``) an earlier item has the same path; ``filtered``: left out by
    ``--include``/``--exclude``."""

    files: int = 0
    size: int = 0
    unknown: int = 0
    skipped: int = 0
    same_name: int = 0
    filtered: int = 0

    def summary(self, where: str) -> str:
        """``2 files, 3.0 MiB would be written to DIR; 1 would be skipped (already there)``."""
        if not self.files:
            text = f"nothing would be written to {where}"
        else:
            files = f"{self.files} file" + ("" if self.files == 1 else "s")
            if self.unknown == self.files:
                size = "size unknown" if self.files == 1 else "sizes unknown"
                text = f"{files} ({size}) would be written to {where}"
            elif self.unknown:
                text = (f"{files}, {format_size(self.size)} + {self.unknown} of unknown size "
                        f"would be written to {where}")
            else:
                text = f"{files}, {format_size(self.size)} would be written to {where}"
        if self.skipped:
            text += f"; {self.skipped} would be skipped (already there)"
        if self.same_name:
            text += f"; {self.same_name} would be skipped (the name of an earlier URL)"
        if self.filtered:
            text += f"; {self.filtered} left out (--include, --exclude)"
        return text


def dry_run(
    items: Iterable[Item],
    dest: Path,
    out: IO[str],
    mask: Masker,
    *,
    as_json: bool,
    contain: Callable[[Path, str], Path],
    on_error: Callable[[Item, OmnigetError, Path | None], None],
    on_exists: str = "skip",
    checksum: Digest | None = None,
    state: Path | None = None,
    on_skip: Callable[[Path, str], None] = lambda path, reason: None,
    found: DryRun | None = None,
) -> DryRun:
    """``--dry-run``: where each item would be written. A file that exists already, or
    that an earlier item writes, is skipped as ``on_exists`` says: reported to ``on_skip``
    with the reason, "exists" or "same-name" (JSON: ``"action": "skip"``); with rename, it
    is shown under the name the run would give it. What the download would fail before
    its request fails here too, told to ``on_error`` with its path (None: it has none):
    a path that leaves ``dest``, a folder in the file's place (but with rename), a file
    in the place of one of its folders, what is no file at its part file's name, and a
    file there that ``checksum`` (or the item's size) says is another one, which the
    download would not skip. ``state``: the resume journal's folder, whose files the
    download never replaces (a name of theirs gets a ``_`` there). ``found``: the counts,
    kept up as the lines go out (an interrupt's summary reads them); a new one if None."""
    from ..engine.assemble import PART_SUFFIX, NotAPart, folder_blocked, not_a_file

    found = DryRun() if found is None else found
    state_at = None if state is None else os.path.realpath(state)
    planned = _Paths()  # those the run writes (their text: a Path is 4x the memory)
    clear: set[str] = set()  # folders nothing keeps from being made
    cwd = str(Path.cwd().absolute())
    under = cwd.rstrip("/") + "/"  # (paths under it are shown relative, as display_path does)

    def check_place(target: Path, text: str) -> None:
        """StorageError, as the download's, when something that is no folder is where
        one of ``target``'s folders must be made (each folder looked at once), or
        something that is no file (a folder, a link, a FIFO) at its part file's name."""
        folder = os.path.dirname(text)
        if folder not in clear:
            err = folder_blocked(folder, target.name)
            if err is not None:
                raise err
            clear.add(folder)
        where = f"{text}{PART_SUFFIX}"
        kind = not_a_file(where)
        if kind is not None:
            raise NotAPart(where, kind)

    for item in items:
        try:
            target = contain(dest, item.output_path)
        except OmnigetError as e:
            on_error(item, e, None)
            continue
        if os.path.dirname(target) == state_at and _a_state_name(target.name):
            target = target.with_name(f"{target.name}_")  # (never the journal's own)
        reason = "same-name" if target in planned else "exists"  # (if skipped)
        try:
            there = os.lstat(target)
        except OSError:
            there = None
        action = on_exists if reason == "same-name" or there is not None else "write"
        try:
            if there is not None and reason == "exists":
                _check_there(target, there, item, on_exists, checksum)
            if action == "rename":  # (the name the run would choose: shown, and taken)
                from ..engine.names import unique_path

                target = unique_path(target, planned)
            text = str(target)
            if action != "skip":
                check_place(target, text)
        except OmnigetError as e:
            on_error(item, e, target)
            continue
        if action != "skip":
            planned.add(text)
        shown = mask(text[len(under):] if text.startswith(under) else text)

        def counted(item: Item = item, action: str = action, reason: str = reason) -> None:
            if action == "skip":
                if reason == "same-name":
                    found.same_name += 1
                else:
                    found.skipped += 1
            else:
                found.files += 1
                found.size += item.size_bytes or 0
                found.unknown += item.size_bytes is None

        if as_json:  # (counted as the stream takes its line: see put)
            put(out, json_text(file_record(shown, item, mask, action)) + "\n", counted)
        else:
            counted()
        if action == "skip":
            on_skip(target, reason)
            continue
        if not as_json:
            put(out, file_line(shown, item, mask))
    flush(out)
    return found


def file_record(shown: str, item: Item, mask: Masker, action: str) -> dict[str, object]:
    """A file's ``--dry-run --json`` line (README names its fields): ``shown`` is its
    path as said."""
    return {"path": shown, "url": mask(item.download_url),
            "mirrors": [mask(url) for url in item.mirrors], "size": item.size_bytes,
            "source": item.source, "action": action}


def file_line(shown: str, item: Item, mask: Masker) -> str:
    """A file's ``--dry-run`` line: its path, size, URL and mirrors (as an ``-i`` line
    has them), TAB-separated."""
    urls = "\t".join(mask(url) for url in (item.download_url, *item.mirrors))
    return f"{shown}\t{format_size(item.size_bytes)}\t{urls}\n"


class _Paths:
    """Paths kept as their text (a Path takes 4x the memory): ``unique_path``'s ``taken``."""

    def __init__(self) -> None:
        self.texts: set[str] = set()

    def __contains__(self, path: object) -> bool:
        return str(path) in self.texts

    def add(self, text: str) -> None:
        self.texts.add(text)


def _a_state_name(name: str) -> bool:
    """Whether the download saves a file of this name in the state folder as ``NAME_``
    (the journal's, or one SQLite keeps beside it). (Asked only there: it loads the
    journal's modules.)"""
    from ..engine.existing import a_state_name

    return a_state_name(name)


def _check_there(
    target: Path, there: os.stat_result, item: Item, on_exists: str, checksum: Digest | None
) -> None:
    """What the download says of the file or folder at ``target`` before it skips,
    replaces or renames it: a folder no file can replace; a file skipped as complete only
    if it has the item's size and ``checksum``'s digest (it is read for that)."""
    from ..engine.existing import a_folder_there, not_the_file

    if stat.S_ISDIR(there.st_mode) and on_exists != "rename":
        raise a_folder_there(target)
    wanted = item.size_bytes is not None or checksum is not None
    if on_exists == "skip" and wanted and target.is_file():
        err = not_the_file(target, item.size_bytes, checksum)
        if err is not None:
            raise err


#: Filesystems that make no folder a user asks for, and the error of their mkdir.
_NO_FOLDERS = {"proc": errno.ENOENT, "sysfs": errno.EPERM}


def refused_in(folder: str) -> OSError | None:
    """The error the download would get making a folder in ``folder`` (one that is
    there), as far as it can be told without making one: a read-only mount, no write
    permission for this user, or /proc's and /sys's filesystems; None when none is
    seen."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return OSError(errno.EROFS, os.strerror(errno.EROFS))
    except OSError:
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    code = _NO_FOLDERS.get(_fs_type(folder) or "")
    return None if code is None else OSError(code, os.strerror(code))


def _fs_type(folder: str) -> str | None:
    """The type of the filesystem ``folder`` is on, as /proc/self/mountinfo says (the
    last mount of the longest mount point above it); None where it cannot be read."""
    real = os.path.realpath(folder)
    found, depth = None, -1
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "-" not in fields[6:]:
                    continue
                point = fields[4].replace("\\040", " ")
                above = point == "/" or real == point or real.startswith(point + "/")
                if above and len(point) >= depth:
                    found, depth = fields[fields.index("-", 6) + 1], len(point)
    except (OSError, IndexError):
        return None
    return found
