"""What the engine needs from a resume journal (:class:`JournalStore`, so a shared
database can stand in), a file's record in it (:class:`FileRecord`), and the error of a
record gone away under a run (:class:`RecordGone`). The SQLite journal is :mod:`.journal`."""

from __future__ import annotations

from typing import Protocol

from ..._frozen import compared_dataclass
from ...errors import StorageError
from ..spans import Interval

__all__ = [
    "FileRecord", "JournalStore", "Owner", "Print", "RecordGone", "RecordTaken", "missing",
    "taken",
]

#: A span's fingerprint: how many bytes were read at each of its ends (up to a few KiB),
#: and the CRC-32 of its first and of its last that many. A rerun reads them back to
#: tell its part file still holds the span.
Print = tuple[int, int, int]

#: The output path and part file (its inode number; None: not known) a running download
#: made or took its record for. A write given one changes the record only while it still
#: names them: another run writing the same download to another name at the same time
#: (the record key is the download's, not the name's) may have taken it since.
Owner = tuple[str, int | None]


@compared_dataclass
class FileRecord:
    """One file's row in the journal: where it goes, its validators, and whether it is done.
    ``digest`` (``algo:hex``): while not done, what the server said the whole file hashes
    to (a rerun that finds every byte in place still checks them against it). ``part``:
    the part file's inode number, when known."""

    key: str
    path: str
    url: str
    size: int | None
    etag: str | None
    last_modified: str | None
    done: bool
    digest: str | None
    updated: float
    part: int | None = None


class JournalStore(Protocol):
    """What the engine needs from a journal (so a shared database can stand in)."""

    def get(self, key: str) -> FileRecord | None: ...

    def keys(self, prefix: str) -> set[str]: ...

    def start(
        self,
        key: str,
        *,
        path: str,
        url: str,
        size: int | None,
        etag: str | None,
        last_modified: str | None,
        digest: str | None = None,
        part: int | None = None,
    ) -> None: ...

    def unfinished(self, limit: int = -1) -> list[tuple[str, int]]: ...

    def unfinished_in(self, prefix: str) -> list[tuple[str, int]]: ...

    def unfinished_after(self, rest: str) -> list[tuple[str, int]]: ...

    def move(self, key: str, to: str, *, path: str) -> None: ...

    def revalidate(
        self,
        key: str,
        *,
        size: int | None,
        etag: str | None,
        last_modified: str | None,
        digest: str | None,
        own: Owner | None = None,
    ) -> None: ...

    def reset(self, key: str, *, own: Owner | None = None) -> None: ...

    def spans(self, key: str) -> list[Interval]: ...

    def spans_with_prints(self, key: str) -> tuple[list[Interval], list[Print] | None]: ...

    def save_spans(
        self, key: str, spans: list[Interval], prints: list[Print] | None = None, *,
        own: Owner | None = None,
    ) -> None: ...

    def save_synced(
        self, key: str, spans: list[Interval], pieces: list[int],
        prints: list[Print] | None = None, *, own: Owner | None = None,
    ) -> None: ...

    def keep_synced(self, key: str, *, own: Owner | None = None) -> None: ...

    def pieces(self, key: str) -> dict[int, int]: ...

    def pieces_with_prints(self, key: str) -> dict[int, tuple[int, Print | None]]: ...

    def piece_done(
        self, key: str, index: int, size: int, fingerprint: Print | None = None, *,
        own: Owner | None = None,
    ) -> None: ...

    def drop_pieces(self, key: str, indexes: list[int], *, own: Owner | None = None) -> None: ...

    def finish(
        self, key: str, *, size: int, digest: str | None, path: str | None = None,
        own: Owner | None = None,
    ) -> None: ...

    def forget(self, key: str, *, own: Owner | None = None) -> None: ...

    def close(self) -> None: ...


class RecordGone(StorageError, KeyError):
    """A file's record went away under it: another omniget run finished or reset that
    file (the same folder, at the same time); or :meth:`Journal.start` was not called."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RecordTaken(RecordGone):
    """A file's record names another output path or part file than the writer's
    :data:`Owner`: another omniget run writing the same download to another name took
    it (its bytes are not this run's)."""


def missing(key: str) -> RecordGone:
    name = key.rpartition("\0")[2] or key
    return RecordGone(
        f"the resume record of {name} went away: another omniget run on the same folder"
        " may have finished it; run again"
    )


def taken(key: str) -> RecordTaken:
    name = key.rpartition("\0")[2] or key
    return RecordTaken(
        f"the resume record of {name} was taken by another omniget run on the same folder"
        " writing the same download to another name"
    )
