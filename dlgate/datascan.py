"""Scanning the head revision's data into the cache, and what the data checks query.

`scan_data(ctx)` (memoized per run as `data.scan`) brings every split's state in the cache to
the head revision and returns a `DataScan`: the problems of each split's layout, and a
read snapshot of the samples, the per-content records and the counters.

Where the checkout is the head commit as git has it, an image folder is listed from its git
tree (blob ids come for free: nothing is read to know a file is unchanged), and a split whose
tree changed since the last scan is moved forward by the diff of the two trees. Elsewhere
(other formats, a working tree with local changes) the split is listed from the files and
its rows rebuilt; per-content results still come from the cache (by blob id, or by path,
size, mtime and inode for untracked files).
"""

from __future__ import annotations

import functools
import itertools
import os
import posixpath
import sqlite3
import subprocess
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlgate import dataanalysis, git
from dlgate.context import Context
from dlgate.dataanalysis import TRANSIENT, unpack
from dlgate.datacache import Cache, SampleRow, usable
from dlgate.dataset import IMAGE_SUFFIXES, DataSettings, natural
from dlgate.datasources import (
    IMAGE_ENTRY,
    Listing,
    Problem,
    image_label,
    iter_split,
    stray_problem,
)
from dlgate.errors import GitError

_SYMLINK, _GITLINK = "120000", "160000"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree
_BATCH = 4096


@dataclass(frozen=True)
class SplitScan:
    name: str
    location: str
    fatal: Problem | None
    problems: tuple[Problem, ...]
    how: str  # "unchanged" | "delta" | "rebuilt" | "missing"


@dataclass(frozen=True)
class SampleRef:
    """A sample as the checks name it."""

    split: str
    id: str
    label: str
    location: str  # the file an annotation points at
    line: int  # 0: the whole file
    file: str | None  # the content file (repository-relative, or absolute for hook objects)


@dataclass
class DataScan:
    settings: DataSettings
    splits: dict[str, SplitScan]
    db: sqlite3.Connection  # a read snapshot
    analyzed: int = 0  # contents read and measured in this run
    seconds: float = 0.0
    _counters: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def counters(self, split: str) -> dict[str, dict[str, int]]:
        """name → bucket → count for a split: `count` (per label), `size`, `mode`, `format`,
        `file_size` (log2 bins), `brightness`, `pixels.<mode>`, `length`, `chars`, `errors`,
        `bombs`."""
        if not self._counters:
            for s, name, bucket, value in self.db.execute("SELECT * FROM agg"):
                self._counters.setdefault(s, {}).setdefault(name, {})[bucket] = value
        return self._counters.get(split, {})

    def total(self, split: str) -> int:
        return sum(self.counters(split).get("count", {}).values())

    def classes(self) -> tuple[str, ...]:
        """The declared classes, else every label found, in natural order."""
        if self.settings.classes:
            return self.settings.classes
        found = {b for s in self.splits for b in self.counters(s).get("count", {})}
        return tuple(sorted(found, key=natural))

    def refs(
        self, sql: str, params: Sequence[Any] = ()
    ) -> Iterator[tuple[SampleRef, tuple[Any, ...]]]:
        """Samples (alias `s`, joined with their record as `f` where the query does) and the
        extra columns the query selects after `s.*`."""
        for row in self.db.execute(sql, params):
            split, sid, label, file, line, where = row[:6]
            yield SampleRef(split, sid, label, where or file or sid, line, file), tuple(row[8:])

    def with_records(
        self, where: str, params: Sequence[Any] = ()
    ) -> Iterator[tuple[SampleRef, dataanalysis.Record]]:
        """Samples (alias `s`) whose record (alias `f`, see `datacache.files`) matches
        `where`, with the record, ordered by split and id."""
        for ref, (rec,) in self.refs(
            f"SELECT s.*, f.rec FROM samples s JOIN files f ON f.key = s.key WHERE {where} "
            "ORDER BY s.split, s.id", params
        ):  # fmt: skip
            yield ref, unpack(rec)

    def key_groups(self) -> Iterator[list[SampleRef]]:
        """Samples that share one content, two or more per group (unreadable ones left to
        `data.integrity`), ordered by split and id within a group."""
        rows = self.refs(
            "SELECT s.*, s.key FROM multi_key m CROSS JOIN samples s ON s.key = m.key "
            "CROSS JOIN files f ON f.key = s.key WHERE f.flags & 1 = 0 "
            "ORDER BY m.key, s.split, s.id"
        )
        for _key, group in itertools.groupby(rows, key=lambda r: r[1][0]):
            yield [ref for ref, _ in group]

    def near_groups(self) -> Iterator[list[tuple[SampleRef, bytes]]]:
        """Samples of two or more splits that share a perceptual hash (images) or their
        normalized text, with each one's content key."""
        rows = self.refs(
            "SELECT s.*, s.ph, s.key FROM multi_ph m CROSS JOIN samples s ON s.ph = m.ph "
            "ORDER BY m.ph, s.split, s.id"
        )
        for _ph, group in itertools.groupby(rows, key=lambda r: r[1][0]):
            yield [(ref, extra[1]) for ref, extra in group]

    def close(self) -> None:
        self.db.close()


def scan(ctx: Context) -> DataScan:
    """The `data.scan` product of this run (scanned once, shared by the data checks)."""
    return ctx.memo("data.scan", lambda: scan_data(ctx))


def scan_data(ctx: Context) -> DataScan:
    start = time.perf_counter()
    settings = ctx.config.get(DataSettings)
    cache = Cache.open(ctx.git_dir / ".dlgate" / "cache")
    scanner = _Scanner(ctx, settings, cache)
    if scanner.tree_mode:
        _prefetch_diffs(ctx, settings, cache)
    try:
        with cache.writing():
            rebuilt = cache.drop_other_splits(settings.splits)
            for split in settings.splits:
                scanner.split(split)
            if rebuilt or any(s.how in ("rebuilt", "missing") for s in scanner.done.values()):
                cache.rebuild_multi()
        reader = cache.snapshot()
    finally:
        cache.close()
    result = DataScan(settings, scanner.done, reader, scanner.analyzed)
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
        self.tree_mode = settings.format == "image-folder" and _clean_checkout(ctx)
        self.workers = settings.workers or dataanalysis.default_workers()
        self.max_pixels = settings.integrity.max_pixels
        self.done: dict[str, SplitScan] = {}
        self.analyzed = 0
        # A first scan (an empty cache) looks nothing up: there is nothing to find.
        self.cached = cache.db.execute("SELECT EXISTS (SELECT 1 FROM files)").fetchone()[0]

    def split(self, split: str) -> None:
        location = _location(self.settings, split)
        fingerprint = _fingerprint(self.settings, location, self.tree_mode)
        if not self.tree_mode:
            self._rebuild_from_files(split, location, fingerprint)
            return
        tree, kind = _objects(self.ctx).get((self.ctx.head.sha, location), (None, ""))
        old = self.cache.state(split)
        if tree is None:
            self.cache.clear_split(split)
            self.cache.set_state(split, fingerprint, "missing")
            fatal = Problem(
                location,
                "is a file, not a folder; `data.splits` names a folder of class folders here"
                if kind
                else f"does not exist at {self.ctx.head.sha[:7]}; create it or fix `data.splits`",
            )
            self.done[split] = SplitScan(split, location, fatal, (), "missing")
            return
        retry = self.cache.db.execute(
            "SELECT COUNT(*) FROM agg WHERE split = ? AND name = 'transient'", (split,)
        ).fetchone()[0]
        if old == (fingerprint, tree) and not retry:
            self.done[split] = SplitScan(split, location, None, (), "unchanged")
        elif old is not None and old[0] == fingerprint and old[1] != "missing" and not retry:
            self._delta(split, location, old[1], tree)
            self.done[split] = SplitScan(split, location, None, (), "delta")
        else:
            self.cache.clear_split(split)
            listing = tree_samples(self.ctx.git_dir, tree, location, split)
            self._fill(split, listing, files=False)
            self.done[split] = SplitScan(split, location, None, (), "rebuilt")
        self.cache.set_state(split, fingerprint, tree)

    def _rebuild_from_files(self, split: str, location: str, fingerprint: str) -> None:
        self.cache.clear_split(split)
        listing = iter_split(
            self.ctx.repo,
            self.settings,
            split,
            hook_dir=self.ctx.git_dir / ".dlgate" / "cache" / "hook",
            hook_timeout=self.ctx.config.pipeline.hook_timeout,
        )
        self._fill(split, self._entries(split, listing), files=True)
        self.cache.set_state(split, fingerprint, "")
        self.done[split] = SplitScan(
            split, location, listing.fatal, tuple(listing.problems), "rebuilt"
        )

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
                for part in dataanalysis.batched(todo, dataanalysis.CHUNK):
                    paths = [row[3] or "" for row in part]  # (text samples are always known)
                    blobs = [row[6] for row in part]
                    labels = [row[2] for row in part]
                    yield part, dataanalysis.Chunk(split, root, paths, blobs, labels)

        with self.cache.bulk():
            for part, out, chunk_counts in dataanalysis.run(
                chunks(), self.workers, self.max_pixels
            ):
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
        for batch in dataanalysis.batched(listing, _BATCH):
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

    def _delta(self, split: str, location: str, old: str, new: str) -> None:
        removed: list[tuple[str, str]] = []
        added: list[tuple[str, str, bytes]] = []  # id, label, blob
        for rel, old_blob, new_blob in tree_diff(self.ctx, old, new):
            label = image_label(rel)
            if label is None:
                continue
            sid = f"{location}/{rel}"
            if old_blob is not None:
                removed.append((split, sid))
            if new_blob is not None:
                added.append((sid, label, new_blob))
        known = self.cache.records([blob for _, _, blob in added])
        todo = [
            (sid, blob, label)
            for sid, label, blob in added
            if not usable(known.get(blob), self.max_pixels)
        ]  # fmt: skip
        phs: dict[bytes, int | None] = {k: r[12] for k, r in known.items()}
        root = str(self.ctx.repo)
        chunks = (
            (None, dataanalysis.Chunk(split, root, [t[0] for t in part], [t[1] for t in part],
                                      [t[2] for t in part]))
            for part in dataanalysis.batched(todo, dataanalysis.CHUNK)
        )  # fmt: skip
        for _, out, _counts in dataanalysis.run(chunks, self.workers, self.max_pixels):
            self.analyzed += len(out)
            self.cache.put_rows(out)
            phs.update((key, ph) for key, ph, _, _ in out)
        rows: list[SampleRow] = [
            (split, sid, label, sid, 0, None, blob, phs.get(blob)) for sid, label, blob in added
        ]
        self.cache.apply_delta(removed, rows)


def _location(settings: DataSettings, split: str) -> str:
    return posixpath.normpath(settings.splits[split].replace("\\", "/"))


def _fingerprint(settings: DataSettings, location: str, tree_mode: bool) -> str:
    """What a split's cached state was scanned with: another value rebuilds it."""
    s, how = settings, "tree" if tree_mode else "files"
    return (
        f"v{dataanalysis.VERSION}|{s.format}|{how}|{location}|{s.manifest}|{s.integrity.max_pixels}"
    )


def _prefetch_diffs(ctx: Context, settings: DataSettings, cache: Cache) -> None:
    """Start every tree diff this run asks for, side by side in the background: each split's
    from its cached state (the scan's delta) and from the merge base (the pull request's
    changes). Each is a git process reading two large trees; together they take the time
    of one."""
    for split in settings.splits:
        location = _location(settings, split)
        new = tree_id(ctx, ctx.head.sha, location)
        if new is None:
            continue
        olds = set()
        state = cache.state(split)
        if state is not None and state[0] == _fingerprint(settings, location, True):
            olds.add(state[1])
        if ctx.merge_base is not None:
            olds.add(tree_id(ctx, ctx.merge_base, location) or EMPTY_TREE)
        for old in olds - {new, "missing"}:
            diff = functools.partial(_tree_diff, ctx.git_dir, old, new)
            ctx.prefetch(f"data.diff-tree {old} {new}", diff, nice=0)


def _clean_checkout(ctx: Context) -> bool:
    """True where the files under `ctx.repo` are exactly the head commit's tree."""
    try:
        if git.head_sha(ctx.repo) != ctx.head.sha:
            return False
    except GitError:
        return False
    if ctx.repo.resolve() != ctx.git_dir.resolve():
        return True  # the gate's own fresh worktree of head
    locations = [str(p) for p in ctx.config.get(DataSettings).splits.values()]
    status = git.git(
        ctx.repo, "status", "--porcelain", "-z", "--untracked-files=all", "--ignored=matching",
        "--", *locations,
    )  # fmt: skip
    return not status.strip("\0")


def tree_id(ctx: Context, sha: str, location: str) -> str | None:
    """The git tree id of the folder `location` at `sha` (head or merge base); None where
    there is no folder."""
    return _objects(ctx).get((sha, location), (None, ""))[0]


def _objects(ctx: Context) -> dict[tuple[str, str], tuple[str | None, str]]:
    """(tree id or None, what is there) of every split's location at the head and the merge
    base, asked of git in one call (a pull request's scan needs them all)."""

    def ask() -> dict[tuple[str, str], tuple[str | None, str]]:
        settings = ctx.config.get(DataSettings)
        locations = [posixpath.normpath(p.replace("\\", "/")) for p in settings.splits.values()]
        shas = [ctx.head.sha] + ([ctx.merge_base] if ctx.merge_base else [])
        specs = [(sha, loc) for sha in shas for loc in locations]
        try:
            proc = subprocess.run(
                ["git", "-C", str(ctx.git_dir), "cat-file", "--batch-check"],
                input="".join(f"{sha}:{loc}\n" for sha, loc in specs).encode(),
                capture_output=True, check=False, env={**os.environ, "LC_ALL": "C"},
            )  # fmt: skip
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH; install git") from None
        found: dict[tuple[str, str], tuple[str | None, str]] = {}
        lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
        for spec, line in zip(specs, lines, strict=False):
            oid, _, rest = line.partition(" ")
            kind = rest.split(" ", 1)[0] if not line.endswith((" missing", " ambiguous")) else ""
            found[spec] = (oid if kind == "tree" else None, kind)
        return found

    return ctx.memo("data.trees", ask)


def tree_samples(repo: Path, tree: str, location: str, split: str) -> Iterator[list[SampleRow]]:
    """The image-folder samples of a git tree, as sample rows in batches: what
    `datasources.image_label` takes for a sample, matched by one regular expression over
    `git ls-tree`, read as a stream (a million entries stay out of memory)."""
    try:
        proc = subprocess.Popen(
            ["git", "-C", str(repo), "ls-tree", "-r", "-z", tree],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; install git") from None
    assert proc.stdout is not None and proc.stderr is not None
    prefix = f"{location}/"
    rest = b""
    with proc:
        while block := proc.stdout.read(1 << 18):
            rest += block
            cut = rest.rfind(b"\0") + 1
            text = rest[:cut].decode("utf-8", "surrogateescape")
            rest = rest[cut:]
            yield [
                (split, path, label, path, 0, None, bytes.fromhex(oid), None)
                for oid, rel, label in IMAGE_ENTRY.findall(text)
                for path in (prefix + rel,)
            ]
        error = proc.stderr.read().decode("utf-8", "replace").strip()
    if proc.returncode:
        raise GitError(f"git ls-tree {tree} failed in {repo}: {error}")


def tree_diff(ctx: Context, old: str, new: str) -> list[tuple[str, bytes | None, bytes | None]]:
    """(path, old blob or None, new blob or None) of every changed file between two trees;
    asked once per run (the scan and the pull request's diff often need the same pair)."""
    return ctx.memo(f"data.diff-tree {old} {new}", lambda: _tree_diff(ctx.git_dir, old, new))


def _tree_diff(repo: Path, old: str, new: str) -> list[tuple[str, bytes | None, bytes | None]]:
    parts = git.git(repo, "diff-tree", "-r", "-z", "--no-renames", old, new).split("\0")
    out = []
    for meta, rel in zip(parts[0::2], parts[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, old_oid, new_oid, _status = meta[1:].split(" ")
        old_ok = old_mode not in ("000000", _SYMLINK, _GITLINK)
        new_ok = new_mode not in ("000000", _SYMLINK, _GITLINK)
        out.append((
            rel,
            bytes.fromhex(old_oid) if old_ok else None,
            bytes.fromhex(new_oid) if new_ok else None,
        ))  # fmt: skip
    return out


def _with_layout_problems(
    ctx: Context, result: DataScan, s: SplitScan, tree_mode: bool
) -> SplitScan:
    """An image folder listed from git: stray files and empty class folders, from its top
    level and the counters (a walk of the files finds these as it goes)."""
    if not tree_mode or s.fatal is not None:
        return s
    counts = result.counters(s.name).get("count", {})
    problems: list[Problem] = []
    top = git.git(ctx.git_dir, "ls-tree", "-z", f"{ctx.head.sha}:{s.location}").split("\0")
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
