"""Scanning the head revision's data into the cache, and what the data checks query.

`scan_data(ctx)` (memoized per run as `data.scan`) brings every split's state in the cache to
the head revision and returns a `DataScan`: the problems of each split's layout, and a
read snapshot of the samples, the per-content records and the counters.

Where the checkout is the head commit as git has it, an image folder is listed from its git
tree (blob ids come for free: nothing is read to know a file is unchanged), and a split whose
tree differs from its cached base rows' takes the diff of the two trees as its delta (see
`dlgate.datacache`): only the changed files are read. Elsewhere (other formats, a working
tree with local changes) the split is listed from the files and its rows rebuilt;
per-content results still come from the cache (by blob id, or by path, size, mtime and
inode for untracked files). Image files are analyzed by `dlgate.dataworkers`.
"""

from __future__ import annotations

import posixpath
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from dlgate import dataanalysis, datadelta, datagit, dataworkers
from dlgate.context import Context
from dlgate.dataanalysis import TRANSIENT
from dlgate.datacache import Cache, SampleRow, usable
from dlgate.dataset import IMAGE_SUFFIXES, DataSettings
from dlgate.datasources import (
    Listing,
    Problem,
    image_label,
    iter_split,
    stray_problem,
)
from dlgate.dataview import DataScan, SplitScan

_BATCH = 4096
_DELTA_MIN = 64  # a split's delta is kept up to a tenth of its samples, or this many


def scan(ctx: Context) -> DataScan:
    """The `data.scan` product of this run (scanned once, shared by the data checks)."""
    return ctx.memo("data.scan", lambda: scan_data(ctx))


def scan_data(ctx: Context) -> DataScan:
    start = time.perf_counter()
    settings = ctx.config.get(DataSettings)
    cache = Cache.open(ctx.git_dir / ".dlgate" / "cache")
    scanner = _Scanner(ctx, settings, cache)
    if scanner.tree_mode:
        _prefetch_git(ctx, settings, cache)
    try:
        with cache.writing(), scanner.workers:
            dropped = cache.drop_other_splits(settings.splits)
            # Smaller splits first: their diffs are ready first, and their work overlaps the
            # time git still takes over a larger split's.
            for split in sorted(settings.splits, key=cache.base_size):
                scanner.split(split)
            hows = {s.how for s in scanner.done.values()}
            cache.build_indexes()
            if dropped or hows & {"rebuilt", "missing"}:
                cache.rebuild_multi()
            if dropped or hows - {"unchanged"}:
                # (rows added to a base in this scan may hold the "fresh" contents)
                fresh = () if hows & {"rebuilt"} or scanner.folded else scanner.fresh
                datadelta.refresh_multi(cache, fresh)
        reader = cache.snapshot()
    finally:
        cache.close()
    done = {split: scanner.done[split] for split in settings.splits}  # (the configured order)
    result = DataScan(settings, done, reader, scanner.analyzed)
    for name, s in list(result.splits.items()):
        result.splits[name] = _with_layout_problems(ctx, result, s, scanner.tree_mode)
    result.seconds = time.perf_counter() - start
    weakref.finalize(result, reader.close)
    return result


class _Scanner:
    def __init__(self, ctx: Context, settings: DataSettings, cache: Cache) -> None:
        self.ctx = ctx
        self.settings = settings
        self.cache = cache
        self.tree_mode = settings.format == "image-folder" and datagit.clean_checkout(ctx)
        count = settings.workers or dataworkers.default_workers()
        self.workers = dataworkers.Workers(count, settings.integrity.max_pixels)
        self.max_pixels = settings.integrity.max_pixels
        self.done: dict[str, SplitScan] = {}
        self.analyzed = 0
        self.fresh: set[bytes] = set()  # contents of deltas the cache had no record of
        self.folded = False  # a split's base rows moved forward
        # A first scan (an empty cache) looks nothing up: there is nothing to find.
        self.cached = cache.db.execute("SELECT EXISTS (SELECT 1 FROM files)").fetchone()[0]

    def split(self, split: str) -> None:
        location = _location(self.settings, split)
        fingerprint = _fingerprint(self.settings, location, self.tree_mode)
        if not self.tree_mode:
            self._rebuild_from_files(split, location, fingerprint)
            return
        tree, kind = datagit.objects(self.ctx).get((self.ctx.head.sha, location), (None, ""))
        old = self.cache.state(split)
        if tree is None:
            self.cache.clear_split(split)
            self.cache.set_state(split, fingerprint, "missing", "missing")
            fatal = Problem(
                location,
                "is a file, not a folder; `data.splits` names a folder of class folders here"
                if kind
                else f"does not exist at {self.ctx.head.sha[:7]}; create it or fix `data.splits`",
            )
            self.done[split] = SplitScan(split, location, fatal, (), "missing")
            return
        # Files that could not be read, in the base rows or the delta, are read again.
        retry = self.cache.db.execute(
            "SELECT SUM(value) > 0 FROM (SELECT value FROM agg WHERE split = ?1 AND name = "
            "'transient' UNION ALL SELECT value FROM delta_agg WHERE split = ?1 AND name = "
            "'transient')",
            (split,),
        ).fetchone()[0]
        base = old[2] if old is not None and old[0] == fingerprint and not retry else "missing"
        if base != "missing" and old is not None and old[1] == tree:
            self.done[split] = SplitScan(split, location, None, (), "unchanged")
        elif base != "missing":
            base = self._delta(split, location, base, tree)
            self.done[split] = SplitScan(split, location, None, (), "delta")
        else:
            self._clear(split)
            listing = datagit.tree_samples(self.ctx.git_dir, tree, location, split)
            self._fill(split, listing, files=False)
            self.done[split] = SplitScan(split, location, None, (), "rebuilt")
            base = tree
        self.cache.set_state(split, fingerprint, tree, base)

    def _rebuild_from_files(self, split: str, location: str, fingerprint: str) -> None:
        self._clear(split)
        listing = iter_split(
            self.ctx.repo,
            self.settings,
            split,
            hook_dir=self.ctx.git_dir / ".dlgate" / "cache" / "hook",
            hook_timeout=self.ctx.config.pipeline.hook_timeout,
        )
        self._fill(split, self._entries(split, listing), files=True)
        self.cache.set_state(split, fingerprint, "", "missing")
        self.done[split] = SplitScan(
            split, location, listing.fatal, tuple(listing.problems), "rebuilt"
        )

    def _clear(self, split: str) -> None:
        """Before a split's rows are built again: its indexes go first (deleting and then
        inserting rows one by one into them costs more than building them again, sorted),
        and come back before they are used (`_delta`, the end of the scan)."""
        self.cache.drop_indexes()
        self.cache.clear_split(split)

    def _fill(self, split: str, batches: Iterator[list[SampleRow]], *, files: bool) -> None:
        """Insert the split's samples and measure them in one pass: samples whose content
        the cache holds are inserted and counted here, the others analyzed (and counted) by
        the workers and inserted as their results come back. A row's key is None where the
        content is not known yet: `files` (listed from the files), it may be known by stat."""
        counts: dataanalysis.Counts = {}
        root = str(self.ctx.repo)

        def chunks() -> Iterator[tuple[list[SampleRow], dataanalysis.Chunk]]:
            for rows in batches:
                todo = rows
                if self.cached:
                    todo = self._known(split, rows, counts, files=files)
                for part in dataworkers.batched(todo, dataworkers.CHUNK):
                    paths = [row[3] or "" for row in part]  # (text samples are always known)
                    blobs = [row[6] for row in part]
                    labels = [row[2] for row in part]
                    yield part, dataanalysis.Chunk(split, root, paths, blobs, labels)

        for part, out, chunk_counts in self.workers.map(chunks()):
            self.cache.put_rows(out)
            for k, v in chunk_counts.items():
                counts[k] = counts.get(k, 0) + v
            self.cache.insert_samples(
                [(*row[:6], key, ph) for row, (key, ph, _, _) in zip(part, out, strict=True)]
            )
            if files:
                for row, (key, _, flags, _) in zip(part, out, strict=True):
                    if row[6] is None and not flags & TRANSIENT:
                        self._remember_stat(self.ctx.repo / (row[3] or ""), key)
            self.analyzed += len(out)
        self.cache.set_counts(split, counts)

    def _known(
        self, split: str, rows: list[SampleRow], counts: dataanalysis.Counts, *, files: bool
    ) -> list[SampleRow]:
        """Insert and count the samples whose content the cache holds; the others, to read."""
        if files:
            for i, row in enumerate(rows):
                if row[6] is None and row[3] is not None:
                    rows[i] = (*row[:6], self._stat_key(self.ctx.repo / row[3]), None)
        known = self.cache.records([row[6] for row in rows if row[6] is not None])
        hits: list[tuple[str, dataanalysis.Record]] = []
        ready: list[SampleRow] = []
        todo: list[SampleRow] = []
        for row in rows:
            record = known.get(row[6]) if row[6] is not None else None
            if usable(record, self.max_pixels):
                assert record is not None
                hits.append((row[2], record))
                ready.append((*row[:7], record[12]))
            else:
                todo.append(row)
        self.cache.insert_samples(ready)
        dataanalysis.contribute_many(counts, split, hits, 1)
        return todo

    def _entries(self, split: str, listing: Listing) -> Iterator[list[SampleRow]]:
        """Sample rows of a listing, in batches; text samples are measured here and their
        records cached, so that they are known."""
        for batch in dataworkers.batched(listing, _BATCH):
            texts = [dataanalysis.analyze_text(e.value or "") for e in batch if e.file is None]
            if texts:
                self.cache.put_records(texts)
                self.cached = True
            text = iter(texts)
            yield [
                (split, e.id, e.label, e.file, e.line, e.where or None,
                 next(text)[0] if e.file is None else e.blob, None)
                for e in batch
            ]  # fmt: skip

    def _stat_key(self, path: Path) -> bytes | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return self.cache.stat_key(str(path), st.st_size, st.st_mtime_ns, st.st_ino)

    def _remember_stat(self, path: Path, key: bytes) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        self.cache.put_stat(str(path), st.st_size, st.st_mtime_ns, st.st_ino, key)

    def _delta(self, split: str, location: str, base: str, tree: str) -> str:
        """Bring the split from its base rows (at tree `base`) to `tree`: its changes become
        its delta, or, where they are many, move the base rows to `tree` (then also its
        base). Returns the split's base tree now."""
        self.cache.build_indexes()
        gone: list[tuple[str, str, bytes]] = []  # id, label, blob of base samples changed
        added: list[tuple[str, str, bytes]] = []  # id, label, blob
        for rel, old_blob, new_blob in datagit.tree_diff(self.ctx, base, tree):
            label = image_label(rel)
            if label is None:
                continue
            sid = f"{location}/{rel}"
            if old_blob is not None:
                gone.append((sid, label, old_blob))  # (a base row is its tree's entry)
            if new_blob is not None:
                added.append((sid, label, new_blob))
        records = self.cache.records(sorted({b for *_, b in gone} | {b for *_, b in added}))
        fresh = {blob for *_, blob in added if blob not in records}
        known = [(label, records[blob]) for _, label, blob in added
                 if usable(records.get(blob), self.max_pixels)]  # fmt: skip
        todo = [
            (sid, blob, label)
            for sid, label, blob in added
            if not usable(records.get(blob), self.max_pixels)
        ]  # fmt: skip
        counts: dataanalysis.Counts = {}  # what the rows added add to the split's counters
        dataanalysis.contribute_many(counts, split, known, 1)
        phs = {blob: record[12] for blob, record in records.items()}
        root = str(self.ctx.repo)
        chunks = (
            (None, _chunk(split, root, part))
            for part in dataworkers.batched(todo, dataworkers.CHUNK)
        )  # fmt: skip
        for _, out, chunk_counts in self.workers.map(chunks):
            self.analyzed += len(out)
            self.cache.put_rows(out)
            phs.update((key, ph) for key, ph, _, _ in out)
            for k, v in chunk_counts.items():
                counts[k] = counts.get(k, 0) + v
        rows: list[SampleRow] = [
            (split, sid, label, sid, 0, None, blob, phs.get(blob)) for sid, label, blob in added
        ]
        if len(gone) + len(rows) <= max(_DELTA_MIN, self.cache.base_size(split) // 10):
            datadelta.set_delta(self.cache, split, gone, rows, records, counts)
            self.fresh |= fresh
            return base
        self.folded = True
        self.cache.clear_delta(split)
        datadelta.fold(self.cache, [(split, sid) for sid, _, _ in gone], rows)
        return tree


def _chunk(split: str, root: str, todo: list[tuple[str, bytes, str]]) -> dataanalysis.Chunk:
    return dataanalysis.Chunk(
        split, root, [t[0] for t in todo], [t[1] for t in todo], [t[2] for t in todo]
    )


def _location(settings: DataSettings, split: str) -> str:
    return posixpath.normpath(settings.splits[split].replace("\\", "/"))


def _fingerprint(settings: DataSettings, location: str, tree_mode: bool) -> str:
    """What a split's cached state was scanned with: another value rebuilds it."""
    s, how = settings, "tree" if tree_mode else "files"
    return (
        f"v{dataanalysis.VERSION}|{s.format}|{how}|{location}|{s.manifest}|{s.integrity.max_pixels}"
    )


def _prefetch_git(ctx: Context, settings: DataSettings, cache: Cache) -> None:
    """Start what this run asks of git beside the scan, side by side in the background:
    every split's top level (for its layout problems), and every tree diff: each split's
    from its cached state (the scan's delta) and from the merge base (the pull request's
    changes). A diff is a git process reading two large trees; together they take the time
    of one, and they overlap the scan's own work."""
    for split in settings.splits:
        location = _location(settings, split)
        new = datagit.tree_id(ctx, ctx.head.sha, location)
        if new is None:
            continue
        datagit.prefetch_top(ctx, new)
        olds = set()
        state = cache.state(split)
        if state is not None and state[0] == _fingerprint(settings, location, True):
            olds.add(state[2])
        if ctx.merge_base is not None:
            olds.add(datagit.tree_id(ctx, ctx.merge_base, location) or datagit.EMPTY_TREE)
        for old in olds - {new, "missing"}:
            datagit.diff(ctx, old, new)


def _with_layout_problems(
    ctx: Context, result: DataScan, s: SplitScan, tree_mode: bool
) -> SplitScan:
    """An image folder listed from git: stray files and empty class folders, from its top
    level and the counters (a walk of the files finds these as it goes)."""
    if not tree_mode or s.fatal is not None:
        return s
    counts = result.counters(s.name).get("count", {})
    problems: list[Problem] = []
    top = datagit.top_level(ctx, datagit.tree_id(ctx, ctx.head.sha, s.location) or "")
    classes = 0
    for entry in top:
        if not entry:
            continue
        meta, name = entry.split("\t", 1)
        kind = meta.split(" ")[1]
        if name.startswith("."):
            continue
        if kind == "tree":
            classes += 1
            if not counts.get(name):
                problems.append(
                    Problem(f"{s.location}/{name}", "class folder holds no image files")
                )
        elif posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES:
            problems.append(stray_problem(s.location, name))
    if classes == 0:
        problems.append(
            Problem(s.location, "empty split: no class folders (<split>/<class>/<file>)")
        )
    return SplitScan(s.name, s.location, s.fatal, tuple(problems), s.how)
