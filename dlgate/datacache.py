"""The data stage's cache: per-content results, and the last scanned state of every split.

One SQLite database per repository (`<git dir>/.dlgate/cache/data-v<N>.sqlite`):

- `files`: what `dataanalysis` measured of one content, keyed by its content hash (the git
  blob id for a file, a text hash for a text sample). Shared by every revision and split, so
  a file that did not change is never read again.
- `samples`: the samples of the last scanned state of each split (`state` says which tree or
  listing), with the content key and perceptual hash of each.
- derived tables, kept in step with `samples`: `agg` (counters per split: classes, sizes,
  modes, pixel sums, …), `multi_key` (contents held by two or more samples: duplicates,
  conflicts, exact leakage) and `multi_ph` (perceptual hashes seen in two or more splits).

A split whose git tree changed since its state is moved forward by the diff of the two trees
(`apply_delta`): only the changed samples are touched, and the derived tables are updated for
the contents they touch, so a commit that changes 1% of the files costs about 1% of a full
scan. Anything else rebuilds the split's rows (their indexes built afterwards, sorted) and
recomputes the multi tables in SQL. Writers take an exclusive file lock; readers use a WAL
snapshot, so two gate runs on one repository never see each other's half-written state.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dlgate.dataanalysis import VERSION, Counts, Record, Row, contribute_many, pack, unpack

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (key BLOB NOT NULL, ph INTEGER, flags INTEGER, rec BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS files_key ON files(key);
CREATE TABLE IF NOT EXISTS state (split TEXT PRIMARY KEY, fingerprint TEXT, tree TEXT);
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
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS samples_key ON samples(key);
CREATE INDEX IF NOT EXISTS samples_ph ON samples(ph);
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

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, folder: Path) -> Cache:
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder.parent / ".gitignore"
        if folder.parent.name == ".dlgate" and not ignore.exists():
            ignore.write_text("# dlgate's local state\n*\n")
        path = folder / f"data-v{VERSION}.sqlite"
        try:
            return cls(_connect(path), path)
        except sqlite3.DatabaseError:  # not a database (a torn copy, a disk error): start over
            for stale in folder.glob(f"{path.name}*"):
                stale.unlink()
            return cls(_connect(path), path)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Exclusive across processes (a file lock), one transaction."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def snapshot(self) -> sqlite3.Connection:
        """A second connection holding a read transaction: what the checks query, unchanged
        by writers that commit later."""
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM state").fetchone()  # starts the read snapshot
        return reader

    # --- state ---------------------------------------------------------------------------

    def state(self, split: str) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT fingerprint, tree FROM state WHERE split = ?", (split,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def set_state(self, split: str, fingerprint: str, tree: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", (split, fingerprint, tree))

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

    def record(self, key: bytes) -> Record | None:
        row = self.db.execute("SELECT rec FROM files WHERE key = ?", (key,)).fetchone()
        return unpack(row[0]) if row else None

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

    def sample(self, split: str, sid: str) -> tuple[str, bytes | None, int | None] | None:
        """(label, key, perceptual hash) of a sample of the current state."""
        row = self.db.execute(
            "SELECT label, key, ph FROM samples WHERE split = ? AND id = ?", (split, sid)
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Many samples inserted at once: their indexes are built afterwards, sorted,
        instead of row by row."""
        self.db.execute("DROP INDEX IF EXISTS samples_key")
        self.db.execute("DROP INDEX IF EXISTS samples_ph")
        try:
            yield
        finally:  # (not executescript: it would commit the transaction)
            for statement in INDEXES.strip().split(";")[:-1]:
                self.db.execute(statement)

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

    def apply_delta(self, removed: Sequence[tuple[str, str]], added: Sequence[SampleRow]) -> None:
        """Remove samples (split, id) and add others (their records already cached),
        updating the counters and the multi tables for what they touch. A few queries for
        the whole change, not a few per sample."""
        db = self.db
        old: list[tuple[str, str, bytes | None, int | None]] = []  # split, label, key, ph
        again = {(row[0], row[1]): row for row in added}  # changed in place: updated
        for split, ids in _by_split(removed).items():
            for part in _parts(ids):
                marks = ", ".join("?" * len(part))
                where = f"split = ? AND id IN ({marks})"
                old += db.execute(
                    f"SELECT split, label, key, ph FROM samples WHERE {where}", (split, *part)
                ).fetchall()
            deleted = [sid for sid in ids if (split, sid) not in again]
            for part in _parts(deleted):
                marks = ", ".join("?" * len(part))
                db.execute(
                    f"DELETE FROM samples WHERE split = ? AND id IN ({marks})", (split, *part)
                )
        updated = {(split, sid) for split, sid in removed} & again.keys()
        # An update rewrites the row where it is; a delete and an insert would touch two places.
        db.executemany(
            'UPDATE samples SET label = ?, file = ?, line = ?, "where" = ?, key = ?, ph = ? '
            "WHERE split = ? AND id = ?",
            [(*again[k][2:], *k) for k in sorted(updated)],
        )
        self.insert_samples([row for row in added if (row[0], row[1]) not in updated])
        keys = {k for _, _, k, _ in old if k is not None} | {r[6] for r in added if r[6]}
        records = self.records(sorted(keys))
        counts: Counts = {}
        gone: dict[str, list[tuple[str, Record]]] = {}
        new: dict[str, list[tuple[str, Record]]] = {}
        for split, label, key, _ph in old:
            if key in records:
                gone.setdefault(split, []).append((label, records[key]))
        for row in added:
            if row[6] in records:
                new.setdefault(row[0], []).append((row[2], records[row[6]]))
        for sign, per_split in ((-1, gone), (1, new)):
            for split, items in per_split.items():
                contribute_many(counts, split, items, sign)
        self.add_counts(counts)
        phs = {ph for *_, ph in old if ph is not None} | {r[7] for r in added if r[7] is not None}
        self._refresh("multi_key", "key", sorted(keys), "COUNT(*) > 1")
        self._refresh("multi_ph", "ph", sorted(phs), "COUNT(DISTINCT split) > 1")

    def _refresh(self, table: str, column: str, values: Sequence[object], many: str) -> None:
        """Bring `table` up to date for `values` of `column`: listed iff `many` holds."""
        for part in _parts(values):
            marks = ", ".join("?" * len(part))
            self.db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", part)
            self.db.execute(
                f"INSERT INTO {table} SELECT {column} FROM samples WHERE {column} IN ({marks}) "
                f"GROUP BY {column} HAVING {many}",
                part,
            )


def _by_split(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for split, sid in pairs:
        out.setdefault(split, []).append(sid)
    return out


def _parts(values: Sequence[Any], size: int = 900) -> Iterator[Sequence[Any]]:
    """Slices small enough for SQLite's limit on query parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=600)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rescan, never a verdict
        db.execute("PRAGMA cache_size=-32768")  # 32 MiB, whatever the data set's size
        db.executescript(SCHEMA + INDEXES)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
