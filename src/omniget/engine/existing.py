"""The file already at a file's output path: --on-exists (skip, rename, overwrite), a file
there that may have lost its bytes in a power loss, or did in a failed write (see
durable.py), a name the server chose, and the check of a file skipped as complete.
Functions of a :class:`~.job.FileJob` (its methods ``exists_policy`` and
``take_server_name``)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IntegrityError, StorageError
from .context import output_key
from .durable import clear_mark, written_out
from .events import Warned
from .journal import FILENAME
from .names import unique_path
from .verify import file_digest

if TYPE_CHECKING:
    from ..model import Digest
    from .job import FileJob

#: A file there may have lost its bytes (see durable.py) ...
UNSYNCED_WHY = (
    "it was finished on an earlier boot before its bytes were known to be on the disk"
)
#: ... or did: the disk reported an error writing it after it was put in place (its
#: mark is a LOST one, see checkpoints._lost_in_place)
LOST_WHY = "the disk reported an error writing it after an earlier run put it in place"
#: ... or may have, on this boot: the disk had not confirmed writing it when the run that
#: put it in place ended (a sync that did not come back: see durable.Durability.settle)
UNCONFIRMED_WHY = ("the disk had not confirmed writing it when an earlier run ended (on this"
                   " boot its bytes read back from memory, whatever the disk has)")
#: ``os.access`` can tell, as ``lstat`` does, whether a name is there (not on Windows).
_ACCESS_TELLS = os.access in os.supports_follow_symlinks and os.access in os.supports_effective_ids


class SkipFile(Exception):
    """The file turned out to exist already (a server-chosen name): stop and skip it;
    ``reason`` as in :class:`~.events.Skipped` ("exists", or "same-name": another file of
    this run writes that name)."""

    def __init__(self, reason: str = "exists") -> None:
        super().__init__(reason)
        self.reason = reason


#: What follows the journal's name in the other files of omniget's state folder: those
#: SQLite keeps beside it, and damaged ones moved aside (see journal.repair)
_BESIDE = ("", "-wal", "-shm", "-journal")


def off_state(job: FileJob, final: Path) -> Path:
    """``final``, or ``NAME_`` beside it when it names the run's resume journal or a
    file SQLite keeps beside it (the output folder is the state folder): a name the
    server or a source chose never replaces omniget's own state, whatever --on-exists
    says (as a name ending like a part file's gets a ``_``). Said in a warning."""
    journal = job.ctx.journal
    if journal is None or not a_state_name(final.name):
        return final
    try:
        if not os.path.samefile(final.parent, journal.path.parent):
            return final
    except OSError:  # (no such folder yet: not the journal's, which exists)
        return final
    moved = final.with_name(f"{final.name}_")
    job.ctx.event(Warned(job.item, moved, f"{final.name} is the name of omniget's resume "
                         f"journal in {final.parent} (the state folder): saved as "
                         f"{moved.name}"))
    return moved


def a_state_name(name: str) -> bool:
    """Whether ``name`` is the resume journal's, its -wal's, -shm's or a damaged copy's,
    in any case (some file systems ignore it): one :func:`off_state` moves aside in the
    state folder (``--dry-run`` too)."""
    name = name.lower()
    if not name.startswith(FILENAME):
        return False
    rest = name[len(FILENAME):]
    return rest in _BESIDE or rest.startswith(".corrupt-")


def exists_policy(job: FileJob, final: Path) -> Path | None:
    """Apply --on-exists to ``final``; None means skip."""
    if _ACCESS_TELLS and not os.access(
        job.place(final)[1], os.F_OK, follow_symlinks=False, effective_ids=True
    ):
        return final  # (as lstat's failure below, without its exception: ~4x the cost)
    try:
        st = os.lstat(final)
    except OSError:
        return final  # missing (or unreadable: the open reports that)
    mode = job.ctx.settings.on_exists
    if stat.S_ISDIR(st.st_mode) and mode != "rename":  # (no file can take its place)
        job.final = final
        raise a_folder_there(final)
    if mode == "skip":
        if stat.S_ISREG(st.st_mode):
            job.found = st.st_size
            durability = job.ctx.durability
            if durability is not None:
                where = job.place(final)[1]
                job.suspect = durability.check(where, st)
                if job.suspect is not None and (  # (nothing to check it by)
                    job.suspect.lost or durability.unconfirmed(job.suspect)
                ):
                    return replace(job, final, "downloading it again")
                if job.suspect is not None and not _checkable(job, st):
                    if not written_out(where, job.suspect.size):
                        return replace(job, final, "downloading it again")
                    clear_mark(where)  # (its bytes are all the disk's)
                    job.suspect = None
        return None
    if mode == "rename":
        return unique_path(final, job.ctx.busy_paths())
    return final


def a_folder_there(final: Path) -> StorageError:
    """The failure of a file whose place a folder takes (unless renamed: --dry-run too)."""
    return StorageError(f"{final} is a folder (--on-exists rename saves beside it)")


def _checkable(job: FileJob, st: os.stat_result) -> bool:
    """Whether the suspect file there (``st``) can be checked by a digest."""
    mark = job.suspect
    assert mark is not None
    return st.st_size == mark.size and (mark.digest or job.item.digest) is not None


def replace(job: FileJob, final: Path, doing: str) -> Path:
    """Fetch the suspect file at ``final`` again, into its place."""
    job.found = 0
    job.replacing = True
    suspect, durability = job.suspect, job.ctx.durability
    why = UNSYNCED_WHY
    if suspect is not None and suspect.lost:
        why = LOST_WHY
    elif suspect is not None and durability is not None and durability.unconfirmed(suspect):
        why = UNCONFIRMED_WHY
    job.ctx.event(Warned(job.item, final, f"{why}; {doing}"))
    return final


async def intact(job: FileJob, final: Path) -> bool:
    """Whether the suspect file at ``final`` has the bytes its digest says (read now,
    on a later boot, they are the disk's: its mark goes)."""
    mark = job.suspect
    assert mark is not None
    want = job.item.digest or mark.digest
    assert want is not None
    got = await asyncio.to_thread(file_digest, final, want.algo)
    if got != want.hex:
        return False
    clear_mark(job.place(final)[1])
    job.suspect = None
    return True


def take_server_name(job: FileJob, path: Path) -> Path:
    """The path to write for a name the server chose: --on-exists as for any name,
    counting files of this run that are writing it now (which would share its part
    file: another name for this one, or a skip). Raises :class:`SkipFile`."""
    path = off_state(job, path)
    busy = job.ctx.writing(path, job.released)
    if not busy:
        chosen = exists_policy(job, path)
        if chosen is None and job.suspect is not None:  # (no digest check here)
            chosen = replace(job, path, "downloading it again")
    elif job.ctx.settings.on_exists == "skip":
        chosen = None
    else:  # rename, and overwrite too: the other file is not done yet
        chosen = unique_path(path, job.ctx.busy_paths())
    if chosen is None:
        job.final = path
        ours = busy or job.ctx.wrote(path, job.released)  # (not there before the run)
        raise SkipFile("same-name" if ours else "exists")
    if job.released is not None:
        job.ctx.outputs[output_key(chosen)] = job.released  # later writers wait for this
    return chosen


async def check_existing(job: FileJob, final: Path) -> None:
    """A file already at ``final`` is skipped as complete only if it has the size the
    item gives, and the hash ``--checksum`` gives (IntegrityError otherwise): it may be
    another file of that name, or a cut copy from another tool."""
    size, want = job.item.size_bytes, job.ctx.settings.checksum
    if (size is None and want is None) or not final.is_file():
        return
    job.final = final  # (the failure names it)
    if want is None:  # (no bytes to read: not worth a thread)
        err = not_the_file(final, size, None)
    else:
        err = await asyncio.to_thread(not_the_file, final, size, want)
    if err is not None:
        raise err


def not_the_file(final: Path, size: int | None, want: Digest | None) -> IntegrityError | None:
    """Why the file at ``final`` is not the one wanted: another size than ``size``, or
    (read whole) another digest than ``want``; None when it may be skipped as complete.
    (``--dry-run`` asks it too: it fails such a file as the download does.)"""
    advice = "--on-exists overwrite replaces it, rename keeps both"
    have = final.stat().st_size
    if size is not None and have != size:
        return IntegrityError(f"it already exists with {have} bytes, not {size} ({advice})")
    if want is not None and file_digest(final, want.algo) != want.hex:
        return IntegrityError(f"it already exists and its {want.algo} does not match ({advice})")
    return None


def there(path: str | Path) -> bool:
    """Whether a file (or anything) is at ``path`` (``os.access`` where it tells, as in
    :meth:`FileJob.exists_policy`: no exception per missing file)."""
    if _ACCESS_TELLS:
        return os.access(path, os.F_OK, follow_symlinks=False, effective_ids=True)
    return os.path.lexists(path)
