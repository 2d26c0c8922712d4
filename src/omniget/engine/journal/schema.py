"""The resume journal's SQLite schema: its tables, the upgrades from older versions, the
set-up of a connection (WAL mode, the wait for another run's lock), and the copy of every
record from one journal file to another (when a removed one is made again). The journal
itself is :mod:`.journal`."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["BUSY_WAIT", "OPEN_WAIT", "SCHEMA_VERSION", "Damaged", "Newer", "copy_records", "setup"]

SCHEMA_VERSION = 4


class Damaged(sqlite3.DatabaseError):
    """A journal whose schema version no omniget ever wrote: damage, as SQLite's own
    "malformed" is (the file is moved aside). Versions are whole numbers from 1 up, so one
    that is not an integer, or is below 1, is damage; an integer above ours is not (see
    :class:`Newer`), nor is one from 1 to ours (it is upgraded)."""


class Newer(sqlite3.DatabaseError):
    """A journal a newer omniget wrote (its schema version is above ours)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER,
    etag TEXT,
    last_modified TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    digest TEXT,
    updated REAL NOT NULL,
    spans BLOB,
    boot TEXT,
    synced BLOB,
    part INTEGER,
    prints BLOB,
    synced_prints BLOB
);
CREATE TABLE IF NOT EXISTS pieces (
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    size INTEGER NOT NULL,
    boot TEXT,
    print BLOB,
    PRIMARY KEY (key, idx)
) WITHOUT ROWID;
"""

#: Made once the tables are upgraded (it needs the part column).
_INDEX = """
CREATE INDEX IF NOT EXISTS unfinished_by_rest
    ON files (substr(CAST(key AS BLOB), instr(CAST(key AS BLOB), x'00') + 1))
    WHERE done = 0 AND part IS NOT NULL
"""

#: What follows the output folder in a key, as UTF-8 bytes (SQLite's text functions stop
#: at a NUL). See _INDEX: a part file that moved with its folder is looked up by
#: it, without reading every unfinished record (an older omniget leaves it be).
REST = "substr(CAST(key AS BLOB), instr(CAST(key AS BLOB), x'00') + 1)"

# Upgrades from version N to N + 1, run in order when an older journal is opened.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # boot and synced: what a run after a power loss may trust (NULL boot: as before)
    1: (
        "ALTER TABLE files ADD COLUMN boot TEXT",
        "ALTER TABLE files ADD COLUMN synced BLOB",
        "ALTER TABLE pieces ADD COLUMN boot TEXT",
    ),
    # part: the part file's inode number (NULL: not known, trusted as before)
    2: ("ALTER TABLE files ADD COLUMN part INTEGER",),
    # prints, synced_prints: what the bytes at both ends of each span of spans and
    # synced hash to; a piece's print: what its bytes in the part file hash to, at both
    # ends (NULL: not known, the spans or the piece trusted as before)
    3: (
        "ALTER TABLE files ADD COLUMN prints BLOB",
        "ALTER TABLE files ADD COLUMN synced_prints BLOB",
        "ALTER TABLE pieces ADD COLUMN print BLOB",
    ),
}

#: Seconds to wait for another process's lock on the journal (another omniget run).
BUSY_WAIT = 10.0
#: Seconds the open waits for the lock (its one write: the schema's): another omniget
#: run holds it a few ms at a time, 1-2 s at its longest (a prune of 5,000 records under
#: load; a journal remade mid-run); a lock held longer is another program's (an sqlite3
#: shell left in a transaction), said then rather than after BUSY_WAIT of silence
#: before the run's first line (the run then goes on without resume state).
OPEN_WAIT = 4.0


def setup(db: sqlite3.Connection) -> None:
    """Set ``db`` up: WAL mode, its tables made or upgraded to :data:`SCHEMA_VERSION`."""
    db.execute(f"PRAGMA busy_timeout = {round(OPEN_WAIT * 1000)}")
    mode = _to_wal(db)
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("BEGIN IMMEDIATE")
    try:
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = SCHEMA_VERSION if row is None else row[0]
        if not isinstance(version, int) or version < min(_MIGRATIONS):
            raise Damaged(f"malformed schema version {version!r}")
        if row is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        else:  # a write now: a journal that takes none (read-only) fails here, not
            # at a file's first checkpoint, with bytes fetched that nothing records
            db.execute("UPDATE schema_version SET version = version")
        if version > SCHEMA_VERSION:
            raise Newer(
                f"schema version {version} is newer than this omniget knows "
                f"({SCHEMA_VERSION}); upgrade omniget"
            )
        while version < SCHEMA_VERSION:
            for stmt in _MIGRATIONS[version]:
                db.execute(stmt)
            version += 1
            db.execute("UPDATE schema_version SET version = ?", (version,))
        db.execute(_INDEX)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


_COLUMNS = {
    "files": "key, path, url, size, etag, last_modified, done, digest, updated, spans, boot,"
             " synced, part, prints, synced_prints",
    "pieces": "key, idx, size, boot, print",
}


def copy_records(source: sqlite3.Connection, to: sqlite3.Connection) -> None:
    """Every record of ``source`` into ``to``, in one transaction; not those of keys ``to``
    has a record of (another run made it and wrote them since: they are newer)."""
    to.execute("BEGIN IMMEDIATE")
    try:
        have = {key for (key,) in to.execute("SELECT key FROM files")}
        for table, columns in _COLUMNS.items():  # (both tables' first column is the key)
            marks = ", ".join("?" * (columns.count(",") + 1))
            rows = source.execute(f"SELECT {columns} FROM {table}")
            to.executemany(
                f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})",
                (row for row in rows if row[0] not in have),
            )
    except BaseException:
        to.execute("ROLLBACK")
        raise
    to.execute("COMMIT")


def _to_wal(db: sqlite3.Connection) -> str:
    """Switch ``db`` to WAL mode; its mode then. A new journal that another process
    switches at the same moment is "locked" at once, without SQLite's wait for a lock
    (two runs started together on a new state folder): waited for here."""
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.005)
