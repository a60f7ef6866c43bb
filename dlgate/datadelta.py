"""Moving a split's cached state from its base rows to another tree.

A pull request's changes stay a delta beside the base rows (`set_delta`; `refresh_multi`
then brings the multi status of what the deltas touch up to date): the delta tables are
small, so a change of 1% of the files writes about 1% of the rows. Written into the large
tables, the same changes would touch nearly every page of their indexes, which are ordered
by path, content and hash, where 1% of the rows lands on most pages. When the changes grow
past a tenth of the split, they are folded into the base rows instead (`fold`), and the
base moves forward.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from dlgate.dataanalysis import Counts, Record, contribute_many
from dlgate.datacache import Cache, SampleRow, parts


def fold(cache: Cache, removed: Sequence[tuple[str, str]], added: Sequence[SampleRow]) -> None:
    """Change base rows in place: remove samples (split, id) and add others (their records
    already cached), updating the counters and the multi tables for what they touch. A few
    queries for the whole change, not a few per sample."""
    db = cache.db
    old: list[tuple[str, str, bytes | None, int | None]] = []  # split, label, key, ph
    again = {(row[0], row[1]): row for row in added}  # changed in place: updated
    for split, ids in _by_split(removed).items():
        for part in parts(ids):
            marks = ", ".join("?" * len(part))
            where = f"split = ? AND id IN ({marks})"
            old += db.execute(
                f"SELECT split, label, key, ph FROM samples WHERE {where}", (split, *part)
            ).fetchall()
        deleted = [sid for sid in ids if (split, sid) not in again]
        for part in parts(deleted):
            marks = ", ".join("?" * len(part))
            db.execute(f"DELETE FROM samples WHERE split = ? AND id IN ({marks})", (split, *part))
    updated = {(split, sid) for split, sid in removed} & again.keys()
    # An update rewrites the row where it is; a delete and an insert would touch two places.
    db.executemany(
        'UPDATE samples SET label = ?, file = ?, line = ?, "where" = ?, key = ?, ph = ? '
        "WHERE split = ? AND id = ?",
        [(*again[k][2:], *k) for k in sorted(updated)],
    )
    cache.insert_samples([row for row in added if (row[0], row[1]) not in updated])
    keys = {k for _, _, k, _ in old if k is not None} | {r[6] for r in added if r[6]}
    records = cache.records(sorted(keys))
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
    cache.add_counts(counts)
    phs = {ph for *_, ph in old if ph is not None} | {r[7] for r in added if r[7] is not None}
    _refresh(cache, "multi_key", "key", sorted(keys), "COUNT(*) > 1")
    _refresh(cache, "multi_ph", "ph", sorted(phs), "COUNT(DISTINCT split) > 1")


def _refresh(cache: Cache, table: str, column: str, values: Sequence[object], many: str) -> None:
    """Bring `table` up to date for `values` of `column`: listed iff `many` holds."""
    for part in parts(values):
        marks = ", ".join("?" * len(part))
        cache.db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", part)
        cache.db.execute(
            f"INSERT INTO {table} SELECT {column} FROM samples WHERE {column} IN ({marks}) "
            f"GROUP BY {column} HAVING {many}",
            part,
        )


def set_delta(
    cache: Cache,
    split: str,
    gone: Sequence[tuple[str, str, bytes]],
    rows: Sequence[SampleRow],
    records: Mapping[bytes, Record],
    counts: Counts,
) -> None:
    """Make `rows` (samples added or changed) and `gone` (id, label and content key of
    the base samples removed or changed) the split's changes since its base rows.
    `records` holds the records of the contents `gone` names, `counts` what `rows` add to
    the split's counters (the rows `gone` names take theirs back here). `refresh_multi`
    then brings the multi status up to date."""
    db = cache.db
    cache.clear_delta(split)
    db.executemany(
        "INSERT INTO delta_gone VALUES (?, ?, ?, ?)",
        [(split, sid, key, records[key][12] if key in records else None)
         for sid, _, key in gone],
    )  # fmt: skip
    db.executemany("INSERT INTO delta_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    counts = dict(counts)
    contribute_many(counts, split, [(lb, records[k]) for _, lb, k in gone if k in records], -1)
    db.executemany(
        "INSERT INTO delta_agg VALUES (?, ?, ?, ?)", [(*k, v) for k, v in counts.items() if v]
    )


def refresh_multi(cache: Cache, fresh: Collection[bytes] = ()) -> None:
    """The multi status, where the deltas change it, of the contents and perceptual hashes
    they touch: a content held by two or more samples, a hash seen in two or more splits,
    of base and deltas together (all else keeps its status from the base rows). Counted
    from the base rows' indexes alone, without reading the rows. `fresh`: contents the
    cache had no record of before this scan (so no base row holds them)."""
    db = cache.db
    db.execute("DELETE FROM delta_multi_key")
    db.execute("DELETE FROM delta_multi_ph")
    # (split, key, ph) of the base rows the deltas hide (-1) and of the rows they add (+1)
    changes = [(-1, *r) for r in db.execute("SELECT split, key, ph FROM delta_gone")]
    changes += [(1, *r) for r in db.execute("SELECT split, key, ph FROM delta_samples")]
    held: dict[bytes, int] = {}  # content key → samples holding it (the deltas' share)
    hidden: dict[bytes, int] = {}  # content key → base rows hidden
    seen: dict[tuple[int, str], int] = {}  # (perceptual hash, split) → samples
    where: dict[int, tuple[set[str], set[str]]] = {}  # hash → splits hiding, adding it
    for sign, split, key, ph in changes:
        if key is not None:
            held[key] = held.get(key, 0) + sign
            if sign < 0:
                hidden[key] = hidden.get(key, 0) + 1
        if ph is not None:
            seen[ph, split] = seen.get((ph, split), 0) + sign
            where.setdefault(ph, (set(), set()))[sign > 0].add(split)
    keys = sorted(held)
    multi = _among(cache, "multi_key", "key", keys)
    multi_ph = _among(cache, "multi_ph", "ph", sorted(where))
    # A hash outside the base's multi hashes is in one split of the base rows at most: where
    # a row hiding it is. Added in that split alone, it stays in one split: no need to ask.
    phs = sorted(
        p for p, (gone, new) in where.items() if p in multi_ph or not gone or not new <= gone
    )
    # A content outside the base's multi keys is held by at most one base row: the one
    # hidden, if any, else none where it is fresh; only the others need counting.
    for key, n in hidden.items():
        if key not in multi:
            held[key] += n
    ask = [k for k in keys if k in multi or (k not in hidden and k not in fresh)]
    for part in parts(ask):
        marks = ", ".join("?" * len(part))
        for key, n in db.execute(
            f"SELECT key, COUNT(*) FROM samples WHERE key IN ({marks}) GROUP BY key", part
        ):  # fmt: skip
            held[key] += n
    for part in parts(phs):
        marks = ", ".join("?" * len(part))
        for ph, split, n in db.execute(
            f"SELECT ph, split, COUNT(*) FROM samples WHERE ph IN ({marks}) GROUP BY ph, split",
            part,
        ):  # fmt: skip
            seen[ph, split] = seen.get((ph, split), 0) + n
    splits: dict[int, int] = {}  # perceptual hash → splits holding it
    for (ph, _), n in seen.items():
        splits[ph] = splits.get(ph, 0) + (n > 0)
    # Only a status that differs from the base rows' is written (most stay as they were).
    db.executemany(
        "INSERT INTO delta_multi_key VALUES (?, ?)",
        [(k, many) for k in keys if (many := held[k] > 1) != (k in multi)],
    )
    db.executemany(
        "INSERT INTO delta_multi_ph VALUES (?, ?)",
        [(p, many) for p in phs if (many := splits[p] > 1) != (p in multi_ph)],
    )


def _among(cache: Cache, table: str, column: str, values: Sequence[object]) -> set[object]:
    """Those of `values` that `table` (a base multi table) lists."""
    found: set[object] = set()
    for part in parts(values):
        marks = ", ".join("?" * len(part))
        found.update(v for (v,) in cache.db.execute(
            f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", part
        ))  # fmt: skip
    return found


def _by_split(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for split, sid in pairs:
        out.setdefault(split, []).append(sid)
    return out
