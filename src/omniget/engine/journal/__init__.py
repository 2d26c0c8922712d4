"""The resume journal: one SQLite file in the state dir.

For every output file (by a key the engine computes) it keeps the validators seen
(size, ETag, Last-Modified), the byte spans already written (for a file fetched in
ranged spans) and the pieces already verified (for multi-piece files). A finished file's
record is deleted (the file itself is what a rerun skips), except for a file whose name the
server chose: it keeps one ``done`` row with that name, so a rerun knows it without asking.
There is no other completed archive.

Every call is one transaction, and the database runs in WAL mode with
``synchronous=NORMAL``: a SIGKILL at any moment loses nothing committed, a power loss at
most the last commits, and the file is never left inconsistent. A commit costs tens of
microseconds, so the engine can checkpoint every couple of MiB.

Spans and pieces are recorded as written (in the page cache, which a crash of the process
keeps) with the machine's boot id, and again as synced once the engine has fdatasync'ed
the part file after writing them. A run on another boot (after a power loss or a reboot)
trusts only the synced ones: the others may be recorded while their bytes never reached
the disk.

A record also keeps its part file's identity (its inode number): its spans and pieces are
of that file only (another run with another state folder may have started the same name
over since), and a part file that moved with its folder is found again by it. With each
set of spans (written, and synced) it may keep their fingerprints (:data:`Print`: the
CRC-32 of the first and of the last few KiB of each span, as the part file held them
when they were recorded): the inode number of a file overwritten in place, or of a new
file that got a freed one, says nothing of its bytes, and a rerun reads those bytes back.
A verified piece whose bytes are in the part file keeps one print of them the same way:
one, as its bytes do not change once it is recorded, and the sync that marks it synced
makes those very bytes durable.

A record is a download's (its key: the output folder, the URL or source id, the output
path), not a name's: two runs writing one download to two names at once (--on-exists
rename in one of them) share it, and the one that started it last has it. A running
download's writes give the path and part file it made or took its record for (an
:data:`Owner`): a record another run took since is left alone, and said to be taken
(:class:`.records.RecordTaken`); one gone is said to be gone (:class:`.records.RecordGone`).

Records not written for :data:`PRUNE_AGE` whose files are gone are dropped at the end of
a run (:meth:`Journal.prune`): the journal does not grow for ever.

A journal file removed while a run has it open (its state folder deleted) is made again,
with the run's records, at the run's next write (it is looked for at most once a second,
and at the close). One that another run replaced meanwhile (it found it damaged and moved
it aside) gets the run's records the same way, but for those it has already (newer). So
does one whose -wal or -shm was removed (by hand): it is removed first, as the new -wal
or -shm another run may have made beside it (see :func:`.opening.follow`).
That copy is made by the call that found the file gone, on the caller's thread (the
engine's event loop), once, and takes time in proportion to the records (every one is
copied): it reads the old file through the connection the engine's other calls use, so
it is not moved to a thread of its own.

A damaged journal file (SQLite's "not a database" or "malformed", or a schema version no
omniget wrote: not an integer, or below 1) is moved aside at the open, with its -wal and
-shm, to ``journal.sqlite.corrupt-<UTC time>`` beside it (the newest three such are
kept), and a new one is made; a warning names it (:mod:`.repair`). One found damaged by a
later call (overwritten or cut short while a run had it open) is moved aside by
:meth:`Journal.set_aside`, which the engine calls, and which closes the journal: that run
goes on without resume state, and the next one makes a new journal. One that cannot be
moved aside (another user's, in a read-only folder, or its folder kept locked by another
run, which is moving it aside as a rule) is left there, and the warning says what is left
to do (:func:`.opening.unmoved`): each run tries again. A newer omniget's
journal is not damage: it is left as it is and the open fails (the run goes without resume
state), as does one that cannot be read or written (permissions, a read-only folder,
another user's file) or stays locked.

The engine talks to :class:`JournalStore`; :class:`Journal` is the SQLite one: its reads
and writes are here, its open file is its base class (:class:`.handle.Handle`). Calls are
thread-safe; the engine makes them on its event loop (each is one short transaction, with
no sync of its own, and never waits for another program's lock: see :mod:`.handle`), but
for :meth:`Journal.prune`, which runs on a worker thread.

Its parts: :mod:`.handle` (the open file: its connection, locked, and transactions, a file
removed or replaced during a run followed, one found damaged set aside; this boot's id),
:mod:`.records` (:class:`FileRecord`, :class:`JournalStore`, the error of a
record gone away), :mod:`.schema` (the tables, their migrations, a connection's set-up and
the copy of records into a file made again), :mod:`.opening` (opening the file, following
one removed or replaced during a run, and the error messages when that or any call
fails), :mod:`.rows` (how spans and their fingerprints are packed; a running download's
writes' condition) and :mod:`.repair` (a damaged file moved aside).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..spans import Interval, merge
from .handle import Handle
from .handle import boot_id as boot_id  # (for durable.py)
from .records import FileRecord, JournalStore, Owner, Print, missing
from .rows import (
    lost,
    owned,
    pack,
    pack_print,
    pack_prints,
    unpack,
    unpack_print,
    unpack_prints,
)
from .schema import REST, SCHEMA_VERSION
from .texts import Texts, stored

__all__ = [
    "FILENAME",
    "SCHEMA_VERSION",
    "FileRecord",
    "Journal",
    "JournalStore",
    "Owner",
    "Print",
]

FILENAME = "journal.sqlite"

#: A record not written for this long is dropped if its file is gone (see Journal.prune).
PRUNE_AGE = 90 * 86400.0
PRUNE_LIMIT = 5000  # records looked at per prune (~60 ms at most)
#: A record written this far ahead of the clock was written while it was wrong (see prune).
AHEAD = 86400.0


class Journal(Handle):
    """The SQLite journal at ``path`` (created with its folder, mode 0700, if missing;
    the umask's mode if not ``private``: the folder is the output folder too).
    ``boot``: this boot's id (tests give one to play a reboot)."""

    @classmethod
    def in_dir(cls, state_dir: str | os.PathLike[str], *, private: bool = True,
               state_from: str = "--state-dir") -> Journal:
        """The journal in ``state_dir``, set ``state_from`` (as ``Settings.state_dir_from``:
        an error making that folder says where it was set)."""
        return cls(Path(state_dir) / FILENAME, private=private, state_from=state_from)

    # --- reads ---

    def get(self, key: str) -> FileRecord | None:
        row = self._read("read", lambda db: db.execute(
            "SELECT key, path, url, size, etag, last_modified, done, digest, updated, part"
            " FROM files WHERE key = ?",
            (key,),
        ).fetchone(), key)
        if row is None:
            return None
        return FileRecord(
            key=row[0],
            path=row[1],
            url=row[2],
            size=row[3],
            etag=row[4],
            last_modified=row[5],
            done=bool(row[6]),
            digest=row[7],
            updated=row[8],
            part=row[9],
        )

    def keys(self, prefix: str) -> set[str]:
        """Every key starting with ``prefix`` (one query instead of one per file)."""
        args: tuple[str, ...] = ()
        if not prefix:
            query = "SELECT key FROM files"
        else:  # a range on the primary key: UTF-8 sorts as code points do
            bound = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            query, args = "SELECT key FROM files WHERE key >= ? AND key < ?", (prefix, bound)
        rows = self._read("read", lambda db: db.execute(query, args).fetchall())
        return {r[0] for r in rows if r[0].startswith(prefix)}

    def unfinished(self, limit: int = -1) -> list[tuple[str, int]]:
        """(key, part file inode) of every unfinished record whose part file is known
        (``limit`` of them at most, if not negative)."""
        rows = self._read("read", lambda db: db.execute(
            "SELECT key, part FROM files WHERE done = 0 AND part IS NOT NULL LIMIT ?",
            (limit,)
        ).fetchall())
        return [(str(k), int(p)) for k, p in rows]

    def unfinished_in(self, prefix: str) -> list[tuple[str, int]]:
        """:meth:`unfinished`, of the keys that start with ``prefix`` (not empty)."""
        bound = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._read("read", lambda db: db.execute(
            "SELECT key, part FROM files WHERE key >= ? AND key < ? AND done = 0"
            " AND part IS NOT NULL", (prefix, bound)
        ).fetchall())
        return [(str(k), int(p)) for k, p in rows if k.startswith(prefix)]

    def unfinished_after(self, rest: str) -> list[tuple[str, int]]:
        """:meth:`unfinished`, of the keys whose part after the output folder (after
        their first NUL) is ``rest``: by an index, not a look at every record."""
        rows = self._read("read", lambda db: db.execute(
            f"SELECT key, part FROM files WHERE {REST} = ? AND done = 0"
            " AND part IS NOT NULL", (stored(rest).encode(),)
        ).fetchall())
        return [(str(k), int(p)) for k, p in rows]

    def spans(self, key: str) -> list[Interval]:
        """The finished byte spans of ``key`` (normal: sorted, coalesced): those written
        on this boot, else only those synced to the disk."""
        return self.spans_with_prints(key)[0]

    def spans_with_prints(self, key: str) -> tuple[list[Interval], list[Print] | None]:
        """:meth:`spans`, and the fingerprint of each (None: not known)."""
        row = self._read("read", lambda db: db.execute(
            "SELECT spans, boot, synced, prints, synced_prints FROM files WHERE key = ?",
            (key,),
        ).fetchone(), key)
        if row is None:
            return [], None
        blob, prints = (row[0], row[3]) if row[1] in (None, self._boot) else (row[2], row[4])
        spans = unpack(blob)
        return spans, unpack_prints(prints, len(spans))

    def pieces(self, key: str) -> dict[int, int]:
        """Verified pieces of ``key``: index -> output size (those done on another boot
        only if synced to the disk)."""
        return {i: size for i, (size, _) in self.pieces_with_prints(key).items()}

    def pieces_with_prints(self, key: str) -> dict[int, tuple[int, Print | None]]:
        """:meth:`pieces`, each with the fingerprint of its bytes in the part file (None:
        not known). One print serves both boots: it is of the bytes written before the
        piece was recorded, which the sync that marks it synced makes durable."""
        rows = self._read("read", lambda db: db.execute(
            "SELECT idx, size, print FROM pieces WHERE key = ?"
            " AND (boot IS NULL OR boot = ?) ORDER BY idx",
            (key, self._boot),
        ).fetchall(), key, [])
        return {int(i): (int(s), unpack_print(p)) for i, s, p in rows}

    # --- writes (each one transaction; see Handle._write) ---

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
    ) -> None:
        """Create or update ``key``'s record, not done; its spans and pieces are kept,
        unless they were of another part file than ``part`` (its inode number, if known).
        ``digest`` (``algo:hex``): what the whole file must hash to, if the server said."""
        now = self._now()

        def write(db: Texts) -> None:
            if part is not None:
                row = db.execute("SELECT part FROM files WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] != part:
                    db.execute(
                        "UPDATE files SET spans = NULL, synced = NULL, prints = NULL,"
                        " synced_prints = NULL WHERE key = ?",
                        (key,),
                    )
                    db.execute("DELETE FROM pieces WHERE key = ?", (key,))
            db.execute(
                "INSERT INTO files"
                " (key, path, url, size, etag, last_modified, done, digest, updated, part)"
                " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET path = excluded.path, url = excluded.url,"
                " size = excluded.size, etag = excluded.etag,"
                " last_modified = excluded.last_modified, done = 0, digest = excluded.digest,"
                " updated = excluded.updated, part = COALESCE(excluded.part, files.part)",
                (key, path, url, size, etag, last_modified, digest, now, part),
            )

        self._write("start", write, key)

    def move(self, key: str, to: str, *, path: str) -> None:
        """Give ``key``'s record (spans and pieces with it) to ``to``, for ``path``: its part
        file moved there. A record ``to`` had is replaced."""
        now = self._now()

        def write(db: Texts) -> None:
            db.execute("DELETE FROM pieces WHERE key = ?", (to,))
            db.execute("DELETE FROM files WHERE key = ?", (to,))
            cur = db.execute(
                "UPDATE files SET key = ?, path = ?, updated = ? WHERE key = ?",
                (to, path, now, key),
            )
            if cur.rowcount == 0:
                raise missing(key)
            db.execute("UPDATE pieces SET key = ? WHERE key = ?", (to, key))

        self._write("move", write, key, to)

    def revalidate(
        self,
        key: str,
        *,
        size: int | None,
        etag: str | None,
        last_modified: str | None,
        digest: str | None,
        own: Owner | None = None,
    ) -> None:
        """Give ``key``'s record another size, validators and digest (the file it is of
        restarted as another version, or its size came at its body's end); its spans are
        kept. Given ``own``, only while the record is still the caller's (else a no-op,
        as when there is none: the caller's next write finds out)."""
        where, args = owned(own)
        values = (size, etag, last_modified, digest, self._now(), key, *args)

        def write(db: Texts) -> None:
            db.execute("UPDATE files SET size = ?, etag = ?, last_modified = ?, digest = ?,"
                       " updated = ? WHERE key = ?" + where, values)

        self._write("revalidate", write, key)

    def reset(self, key: str, *, own: Owner | None = None) -> None:
        """Drop ``key``'s spans and pieces (the remote file changed, or a restart); given
        ``own``, only while the record is still the caller's (else a no-op)."""
        where, args = owned(own)
        now = self._now()

        def write(db: Texts) -> None:
            cur = db.execute(
                "UPDATE files SET spans = NULL, synced = NULL, prints = NULL,"
                " synced_prints = NULL, updated = ? WHERE key = ?" + where,
                (now, key, *args),
            )
            if cur.rowcount or own is None:
                db.execute("DELETE FROM pieces WHERE key = ?", (key,))

        self._write("reset", write, key)

    def save_spans(
        self, key: str, spans: list[Interval], prints: list[Print] | None = None, *,
        own: Owner | None = None,
    ) -> None:
        """Replace ``key``'s finished spans (written, maybe not yet on the disk), and
        their fingerprints: one per span, if ``spans`` is normal.
        :class:`.records.RecordGone` if there is no record (:meth:`start` was not called,
        or another run dropped it); given ``own``, :class:`.records.RecordTaken` if the
        record is not the caller's any more."""
        normal = merge(spans)
        marks = pack_prints(normal, prints) if normal == spans else None
        blob = pack(normal)
        where, args = owned(own)
        values = (blob, marks, self._boot, self._now(), key, *args)

        def write(db: Texts) -> None:
            cur = db.execute(
                "UPDATE files SET spans = ?, prints = ?, boot = ?, updated = ? WHERE key = ?"
                + where, values)
            if cur.rowcount == 0:
                raise lost(db, key)

        self._write("checkpoint", write, key, replaces=True)

    def save_synced(
        self, key: str, spans: list[Interval], pieces: list[int],
        prints: list[Print] | None = None, *, own: Owner | None = None,
    ) -> None:
        """Record ``spans`` (with their fingerprints, as for :meth:`save_spans`) and
        ``pieces`` of ``key`` as synced to the disk (a no-op for a file done or gone
        meanwhile, or given ``own``, not the caller's any more)."""
        normal = merge(spans)
        marks = pack_prints(normal, prints) if normal == spans else None
        blob = pack(normal)
        where, args = owned(own)

        def write(db: Texts) -> None:
            cur = db.execute(
                "UPDATE files SET synced = ?, synced_prints = ? WHERE key = ? AND done = 0"
                + where,
                (blob, marks, key, *args),
            )
            if cur.rowcount == 0:
                return
            db.executemany(
                "UPDATE pieces SET boot = NULL WHERE key = ? AND idx = ?",
                [(key, i) for i in pieces],
            )

        self._write("checkpoint", write, key)

    def keep_synced(self, key: str, *, own: Owner | None = None) -> None:
        """Cut ``key``'s written spans (and their fingerprints) back to those synced, and
        drop its pieces not synced: the disk failed to take what was written since (a
        no-op for a file done or gone meanwhile, or given ``own``, not the caller's)."""
        where, args = owned(own)
        now = self._now()

        def write(db: Texts) -> None:
            cur = db.execute(
                "UPDATE files SET spans = synced, prints = synced_prints, updated = ?"
                " WHERE key = ? AND done = 0" + where,
                (now, key, *args),
            )
            if cur.rowcount:
                db.execute("DELETE FROM pieces WHERE key = ? AND boot IS NOT NULL", (key,))

        self._write("checkpoint", write, key)

    def piece_done(
        self, key: str, index: int, size: int, fingerprint: Print | None = None, *,
        own: Owner | None = None,
    ) -> None:
        """Record piece ``index`` of ``key`` as verified, ``size`` output bytes, and the
        ``fingerprint`` of its bytes in the part file (errors as for :meth:`save_spans`)."""
        where, args = owned(own)
        now = self._now()

        def write(db: Texts) -> None:
            query = "SELECT 1 FROM files WHERE key = ?" + where
            if db.execute(query, (key, *args)).fetchone() is None:
                raise lost(db, key)
            db.execute(
                "INSERT OR REPLACE INTO pieces (key, idx, size, boot, print)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, index, size, self._boot, pack_print(fingerprint)),
            )
            db.execute("UPDATE files SET updated = ? WHERE key = ?", (now, key))

        self._write("checkpoint", write, key)

    def drop_pieces(self, key: str, indexes: list[int], *, own: Owner | None = None) -> None:
        """Forget pieces ``indexes`` of ``key`` (their bytes are not in the part file any
        more: they are fetched again); given ``own``, only while the record is the
        caller's (else a no-op)."""
        if not indexes:
            return
        where, args = owned(own)
        gone = [(key, i) for i in indexes]

        def write(db: Texts) -> None:
            query = "SELECT 1 FROM files WHERE key = ?" + where
            if db.execute(query, (key, *args)).fetchone() is None:
                return
            db.executemany("DELETE FROM pieces WHERE key = ? AND idx = ?", gone)

        self._write("checkpoint", write, key)

    def finish(
        self, key: str, *, size: int, digest: str | None, path: str | None = None,
        own: Owner | None = None,
    ) -> None:
        """Mark ``key`` done (the completed archive); its spans and pieces are dropped.
        ``path``: remember this path for it instead of the one it was started with.
        Errors as for :meth:`save_spans`."""
        where, args = owned(own)
        now = self._now()

        def write(db: Texts) -> None:
            cur = db.execute(
                "UPDATE files SET done = 1, size = ?, digest = ?, spans = NULL, synced = NULL,"
                " prints = NULL, synced_prints = NULL, updated = ?,"
                " path = COALESCE(?, path) WHERE key = ?" + where,
                (size, digest, now, path, key, *args),
            )
            if cur.rowcount == 0:
                raise lost(db, key)
            db.execute("DELETE FROM pieces WHERE key = ?", (key,))

        self._write("finish", write, key)

    def forget(self, key: str, *, own: Owner | None = None) -> None:
        """Remove every trace of ``key`` (given ``own``: if its record is the caller's)."""
        where, args = owned(own)

        def write(db: Texts) -> None:
            cur = db.execute("DELETE FROM files WHERE key = ?" + where, (key, *args))
            if cur.rowcount or own is None:
                db.execute("DELETE FROM pieces WHERE key = ?", (key,))

        self._write("forget", write, key)

    def prune(
        self,
        gone: Callable[[str, bool], bool],
        *,
        age: float = PRUNE_AGE,
        limit: int = PRUNE_LIMIT,
    ) -> int:
        """Drop records not written for ``age`` seconds whose file is gone:
        ``gone(path, done)`` says (a finished file's record remembers its name, an
        unfinished one's resumes its part file). At most ``limit`` are looked at; those
        kept count as written now, so each is looked at again only ``age`` later. So do
        those written more than :data:`AHEAD` from now (the clock was set ahead, then
        back): of an age not known, never old enough else. The number dropped (those
        whose drop waits for another program's lock count as dropped)."""
        now = self._now()
        rows = self._read("prune", lambda db: db.execute(
            "SELECT key, path, done, updated FROM files WHERE updated < ? OR updated > ?"
            " LIMIT ?", (now - age, now + AHEAD, limit)
        ).fetchall())
        if not rows:  # (the common case: no write transaction)
            return 0
        dropped = {key for key, path, done, updated in rows
                   if updated < now - age and gone(path, bool(done))}
        kept = [(now, key) for key, *_ in rows if key not in dropped]
        count = [0]

        def write(db: Texts) -> None:
            for key in dropped:  # (unless a run wrote it meanwhile)
                cur = db.execute("DELETE FROM files WHERE key = ? AND updated < ?",
                                 (key, now - age))
                if cur.rowcount:
                    db.execute("DELETE FROM pieces WHERE key = ?", (key,))
                    count[0] += 1
            db.executemany("UPDATE files SET updated = ? WHERE key = ?", kept)

        self._write("prune", write)
        return count[0]

    def reopened(self) -> Journal:
        """A new journal at this one's path (a new file, once this one's was found damaged
        and moved aside), with its clock and boot."""
        return Journal(self.path, now=self._now, boot=self._boot, state_from=self._state_from)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"
