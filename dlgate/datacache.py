"""The data stage's cache: per-content results, and the last scanned state of every split.

One SQLite database per repository (`<git dir>/.dlgate/cache/data-v<N>.sqlite`):

- `files`: what `dataanalysis` measured of one content, keyed by its content hash (the git
  blob id for a file, a text hash for a text sample). Shared by every revision and split, so
  a file that did not change is never read again.
- `samples`: a split's base rows: its samples at one tree (`state.base`, or a listing), with
  the content key and perceptual hash of each.
- derived tables, kept in step with `samples`: `agg` (counters per split: classes, sizes,
  modes, pixel sums, …), `multi_key` (contents held by two or more samples: duplicates,
  conflicts, exact leakage) and `multi_ph` (perceptual hashes seen in two or more splits).
- `delta_*`: a split's changes since its base rows (the diff of the base tree and the tree
  scanned last): base rows it hides, rows it adds, the counters it changes, and the contents
  and perceptual hashes whose multi status the changes of every split alter.

A split moves from its base rows to another tree through `dlgate.datadelta`: its changes
stay a delta while they are few (a pull request's), else they are folded into the base rows;
anything else rebuilds the split's rows (their indexes built afterwards, sorted). Readers
see base and delta as one: `snapshot` names views after the tables (`samples`, `agg`,
`multi_key`, `multi_ph`). Writers take an exclusive file lock; readers use a WAL snapshot,
so two gate runs on one repository never see each other's half-written state.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dlgate.dataanalysis import VERSION, Counts, Record, Row, pack, unpack

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (key BLOB NOT NULL, ph INTEGER, flags INTEGER, rec BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS files_key ON files(key);
CREATE TABLE IF NOT EXISTS state (split TEXT PRIMARY KEY, fingerprint TEXT, tree TEXT,
    base TEXT);
CREATE TABLE IF NOT EXISTS samples (
    split TEXT, id TEXT, label TEXT, file TEXT, line INTEGER, "where" TEXT, key BLOB,
    ph INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS samples_id ON samples(split, id);
CREATE TABLE IF NOT EXISTS multi_key (key BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS multi_ph (ph INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER,
    ino INTEGER, key BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg (split TEXT, name TEXT, bucket TEXT, value INTEGER,
    PRIMARY KEY (split, name, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_gone (split TEXT, id TEXT, key BLOB, ph INTEGER,
    PRIMARY KEY (split, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_samples (
    split TEXT, id TEXT, label TEXT, file TEXT, line INTEGER, "where" TEXT, key BLOB,
    ph INTEGER);
CREATE INDEX IF NOT EXISTS delta_samples_split ON delta_samples(split);
CREATE INDEX IF NOT EXISTS delta_samples_key ON delta_samples(key);
CREATE INDEX IF NOT EXISTS delta_samples_ph ON delta_samples(ph, split);
CREATE TABLE IF NOT EXISTS delta_agg (split TEXT, name TEXT, bucket TEXT, value INTEGER,
    PRIMARY KEY (split, name, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_multi_key (key BLOB PRIMARY KEY, multi INTEGER)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_multi_ph (ph INTEGER PRIMARY KEY, multi INTEGER);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS samples_key ON samples(key);
CREATE INDEX IF NOT EXISTS samples_ph ON samples(ph, split);
"""
# What a reader queries: a split's base rows with its delta applied.
VIEWS = """
CREATE TEMP VIEW samples AS
    SELECT * FROM main.samples b WHERE NOT EXISTS (
        SELECT 1 FROM main.delta_gone g WHERE g.split = b.split AND g.id = b.id)
    UNION ALL SELECT * FROM main.delta_samples;
CREATE TEMP VIEW agg AS
    SELECT split, name, bucket, SUM(value) AS value
    FROM (SELECT * FROM main.agg UNION ALL SELECT * FROM main.delta_agg)
    GROUP BY split, name, bucket HAVING SUM(value) != 0;
CREATE TEMP VIEW multi_key AS
    SELECT key FROM main.multi_key WHERE key NOT IN (SELECT key FROM main.delta_multi_key)
    UNION ALL SELECT key FROM main.delta_multi_key WHERE multi;
CREATE TEMP VIEW multi_ph AS
    SELECT ph FROM main.multi_ph WHERE ph NOT IN (SELECT ph FROM main.delta_multi_ph)
    UNION ALL SELECT ph FROM main.delta_multi_ph WHERE multi;
"""

# split, id, label, file, line, where, key, perceptual hash: a `samples` row
SampleRow = tuple[str, str, str, str | None, int, str | None, bytes | None, int | None]


def usable(record: Record | None, max_pixels: int) -> bool:
    """A cached record is used unless it was a read failure (not a property of the content)
    or an image left undecoded for a pixel limit that has been raised since."""
    if record is None or record[5]:
        return False
    return not (
        record[1] == 0 and not record[6] and record[4] is None
        and record[9] * record[10] <= max_pixels
    )  # fmt: skip


class Cache:
    """An open cache database. Use `Cache.open(folder)`; writes go through `writing()`."""

    def __init__(self, db: sqlite3.Connection, path: Path, building: Path | None = None) -> None:
        self.db = db
        self.path = path
        self.building = building  # a new cache, written here first (see `open`)
        self.indexed = True  # the content and hash indexes of `samples` are there

    @classmethod
    def open(cls, folder: Path) -> Cache:
        """The cache of a repository. A new one is written to a file of its own, without a
        write-ahead log (no reader can be using it yet: each page is written once, not to
        the log and later again into the database), and renamed into place once committed;
        a run that ends before leaves no half-written cache."""
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder.parent / ".gitignore"
        if folder.parent.name == ".dlgate" and not ignore.exists():
            ignore.write_text("# dlgate's local state\n*\n")
        path = folder / f"data-v{VERSION}.sqlite"
        try:
            if path.exists():
                return cls(_connect(path), path)
        except sqlite3.DatabaseError:  # not a database (a torn copy, a disk error): start over
            for stale in folder.glob(f"{path.name}*"):
                stale.unlink()
        handle, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".new", dir=folder)
        os.close(handle)  # (an empty file: SQLite takes it for an empty database)
        building = Path(name)
        return cls(_connect(building, log=False), path, building)

    def close(self) -> None:
        self.db.close()
        if self.building is not None:  # never committed
            self.building.unlink(missing_ok=True)
            self.building = None

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Exclusive across processes (a file lock), one transaction."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.building is not None and self.path.exists():
                # Another run put a new cache in place meanwhile: that one is used (a file
                # renamed over a cache a reader has open would share its write-ahead log).
                self.close()
                self.db = _connect(self.path)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            if self.building is not None:  # a new cache: into place, with its log from now on
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.close()
                os.replace(self.building, self.path)
                self.building = None
                self.db = _connect(self.path)

    def snapshot(self) -> sqlite3.Connection:
        """A second connection holding a read transaction: what the checks query, unchanged
        by writers that commit later."""
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.executescript(VIEWS)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM state").fetchone()  # starts the read snapshot
        return reader

    # --- state ---------------------------------------------------------------------------

    def state(self, split: str) -> tuple[str, str, str] | None:
        """(fingerprint, tree scanned last, tree of the base rows) of a split."""
        row = self.db.execute(
            "SELECT fingerprint, tree, base FROM state WHERE split = ?", (split,)
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def set_state(self, split: str, fingerprint: str, tree: str, base: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)", (split, fingerprint, tree, base)
        )

    def drop_other_splits(self, keep: Iterable[str]) -> bool:
        """Forget splits no longer configured; True if there were any."""
        keep = set(keep)
        gone = [s for (s,) in self.db.execute("SELECT split FROM state") if s not in keep]
        for split in gone:
            self.clear_split(split)
            self.db.execute("DELETE FROM state WHERE split = ?", (split,))
        return bool(gone)

    def clear_split(self, split: str) -> None:
        self.db.execute("DELETE FROM samples WHERE split = ?", (split,))
        self.db.execute("DELETE FROM agg WHERE split = ?", (split,))
        self.clear_delta(split)

    def base_size(self, split: str) -> int:
        row = self.db.execute(
            "SELECT SUM(value) FROM agg WHERE split = ? AND name = 'count'", (split,)
        ).fetchone()
        return int(row[0] or 0)

    # --- files ---------------------------------------------------------------------------

    def put_rows(self, rows: Sequence[Row]) -> None:
        # Rows are appended (a rowid table); only the small key index takes random inserts,
        # so a million records do not churn the page cache.
        self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)

    def put_records(self, records: Sequence[Record]) -> None:
        self.put_rows([pack(r) for r in records])

    def records(self, keys: Sequence[bytes]) -> dict[bytes, Record]:
        """The cached records of those keys that have one."""
        out: dict[bytes, Record] = {}
        for i in range(0, len(keys), 900):  # SQLite's limit on parameters, with room
            part = keys[i : i + 900]
            marks = ", ".join("?" * len(part))
            for key, rec in self.db.execute(
                f"SELECT key, rec FROM files WHERE key IN ({marks})", part
            ):  # fmt: skip
                out[key] = unpack(rec)
        return out

    def stat_key(self, path: str, size: int, mtime: int, ino: int) -> bytes | None:
        """The content key of an untracked file seen before with the same size, mtime and
        inode (what git's own index trusts), else None."""
        row = self.db.execute(
            "SELECT key FROM stat WHERE path = ? AND size = ? AND mtime = ? AND ino = ?",
            (path, size, mtime, ino),
        ).fetchone()
        return row[0] if row else None

    def put_stat(self, path: str, size: int, mtime: int, ino: int, key: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?)", (path, size, mtime, ino, key)
        )

    # --- samples -------------------------------------------------------------------------

    def insert_samples(self, rows: Sequence[SampleRow]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )  # fmt: skip

    def drop_indexes(self) -> None:
        """Before many samples are inserted: the content and hash indexes are built again
        afterwards (`build_indexes`), sorted, instead of row by row."""
        self.db.execute("DROP INDEX IF EXISTS samples_key")
        self.db.execute("DROP INDEX IF EXISTS samples_ph")
        self.indexed = False

    def build_indexes(self) -> None:
        if not self.indexed:  # (not executescript: it would commit the transaction)
            for statement in INDEXES.strip().split(";")[:-1]:
                self.db.execute(statement)
            self.indexed = True

    # --- derived tables ------------------------------------------------------------------

    def set_counts(self, split: str, counts: Counts) -> None:
        """Replace a split's counters."""
        self.db.execute("DELETE FROM agg WHERE split = ?", (split,))
        self.add_counts(counts)

    def add_counts(self, counts: Counts) -> None:
        self.db.executemany(
            "INSERT INTO agg VALUES (?, ?, ?, ?) ON CONFLICT (split, name, bucket) "
            "DO UPDATE SET value = value + excluded.value",
            [(*k, v) for k, v in counts.items() if v],
        )
        self.db.execute("DELETE FROM agg WHERE value = 0")

    def rebuild_multi(self) -> None:
        """Recompute the contents held twice and the perceptual hashes shared by splits."""
        self.db.execute("DELETE FROM multi_key")
        self.db.execute(
            "INSERT INTO multi_key SELECT key FROM samples WHERE key IS NOT NULL "
            "GROUP BY key HAVING COUNT(*) > 1"
        )
        self.db.execute("DELETE FROM multi_ph")
        self.db.execute(
            "INSERT INTO multi_ph SELECT ph FROM samples WHERE ph IS NOT NULL "
            "GROUP BY ph HAVING COUNT(DISTINCT split) > 1"
        )

    # --- deltas: a split's changes since its base rows --------------------------------------

    def clear_delta(self, split: str) -> None:
        for table in ("delta_gone", "delta_samples", "delta_agg"):
            self.db.execute(f"DELETE FROM {table} WHERE split = ?", (split,))


def parts(values: Sequence[Any], size: int = 900) -> Iterator[Sequence[Any]]:
    """Slices small enough for SQLite's limit on query parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _connect(path: Path, *, log: bool = True) -> sqlite3.Connection:
    """A connection to the cache at `path`; `log`: in WAL mode (else the rollback journal
    is kept in memory, for a new cache no other process sees)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=600)
    try:
        db.execute(f"PRAGMA journal_mode={'WAL' if log else 'MEMORY'}")
        db.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rescan, never a verdict
        db.execute("PRAGMA cache_size=-32768")  # 32 MiB, whatever the data set's size
        db.executescript(SCHEMA + INDEXES)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
