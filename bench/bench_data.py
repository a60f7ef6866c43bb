"""The data stage on a large image folder, against a plain PIL loop, in one process run.

Data: `--images` small images (default 100,000) made from the example's handwritten digits
(sklearn's `load_digits`) with transformations: a random size of 16 to 32 pixels, rotation,
shift, contrast and noise, one in ten in colour. Digits 0..1499 feed `train` (90%), digits
1500.. feed `real_world`, so the splits share no source digit. The files are committed with
`git fast-import` and checked out into a worktree, as the gate sees a pull request.

Measured, on the same files (commit B = commit A with 1% of the files regenerated):

- reference: a plain single-process loop, `PIL.Image.open(path).load()` over every file;
- full: the whole data stage on B (base A) with an empty cache;
- incremental: the same, with the cache holding A's scan (what a PR costs in CI);

and prints throughput (reference time / full time, target >= 1.5 on 2 cores), incremental
time / full time (target <= 0.05), and the peak RSS of the process tree (this process and
its workers, sampled every 50 ms; target < 1 GiB at a million images). The data stage runs
as the gate runs it (its background work started first, the stage at the gate's priority),
and the reference loop at that same priority.

    .venv/bin/python bench/bench_data.py [--images N] [--million] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
_DIGITS: list[tuple[int, np.ndarray]] = []
T = TypeVar("T")
SIZES = (16, 20, 24, 28, 32)


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, env=_ENV,
                          check=False)  # fmt: skip
    if proc.returncode:
        sys.exit(f"git {' '.join(args[:3])} failed: {proc.stderr.decode()[-500:]}")
    return proc.stdout.decode()


# --- the data set ------------------------------------------------------------------------------


def _load_digits() -> None:
    """The digits, read by a child process: sklearn (150 MB) stays out of the process whose
    memory is measured."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        _DIGITS.extend(pool.apply(_read_digits))


def _read_digits() -> list[tuple[int, np.ndarray]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.rint(d.images * (255 / 16)).astype(np.uint8)
    return [(int(t), p) for t, p in zip(d.target, pixels, strict=True)]


def image(n: int, variant: int = 0) -> tuple[str, bytes]:
    """Image number n (deterministic): its path and PNG bytes; `variant` regenerates it."""
    path, index = _pick(n)
    rng = random.Random(n * 7919 + 1 + variant * 104_729)  # the transformation
    pixels = _DIGITS[index][1]
    size = rng.choice(SIZES)
    im = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR)
    im = im.rotate(rng.uniform(-15, 15), Image.Resampling.BILINEAR,
                   translate=(rng.randint(-2, 2), rng.randint(-2, 2)))  # fmt: skip
    a = np.asarray(im, dtype=np.float32) * rng.uniform(0.7, 1.0)
    a += np.random.default_rng(n + variant * 1_000_003).normal(0, 6, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.1:
        tint = (rng.uniform(0.6, 1), rng.uniform(0.6, 1), rng.uniform(0.6, 1))
        im = Image.merge("RGB", [im.point(lambda v, t=t: int(v * t)) for t in tint])
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return path, buf.getvalue()


def _images(count: int, variant_of: dict[int, int] | None = None) -> Iterator[tuple[str, bytes]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(max(1, (os.cpu_count() or 1))) as pool:
        args = ((n, (variant_of or {}).get(n, 0)) for n in range(count))
        yield from pool.imap(_image_star, args, chunksize=256)


def _image_star(args: tuple[int, int]) -> tuple[str, bytes]:
    return image(*args)


def make_repo(repo: Path, count: int) -> str:
    """A repository whose one commit holds `count` images: blobs written by `git
    fast-import` (one pack, not a million loose objects), trees by `git mktree` (fast-import
    inserts into a tree one entry at a time: quadratic in a folder of 100,000 files)."""
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    marks = repo / ".git" / "bench-marks"
    proc = subprocess.Popen(["git", "fast-import", "--quiet", f"--export-marks={marks}"],
                            cwd=repo, stdin=subprocess.PIPE, env=_ENV)  # fmt: skip
    assert proc.stdin is not None
    out = proc.stdin
    for mark, (_path, data) in enumerate(_images(count), start=1):
        out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
    out.close()
    if proc.wait():
        sys.exit("git fast-import failed")
    oids = {}
    for line in marks.read_text().splitlines():
        mark, oid = line.split()
        oids[int(mark[1:])] = oid
    folders: dict[str, list[str]] = {}
    for n in range(count):
        folder, _, name = image_path(n).rpartition("/")
        folders.setdefault(folder, []).append(f"100644 blob {oids[n + 1]}\t{name}")
    return _commit(repo, folders)


def _commit(repo: Path, folders: dict[str, list[str]]) -> str:
    """Trees bottom-up with `git mktree`, then the commit on `main`."""
    trees: dict[str, str] = {}
    pending = dict(folders)
    while pending:
        deepest = max(pending, key=lambda f: f.count("/") + bool(f))  # "" (the root) last
        entries = pending.pop(deepest)
        oid = git(repo, "mktree", stdin="\n".join(entries).encode() + b"\n").strip()
        trees[deepest] = oid
        if deepest:
            parent, _, name = deepest.rpartition("/")
            pending.setdefault(parent, []).append(f"040000 tree {oid}\t{name}")
    commit = git(repo, "commit-tree", trees[""], "-m", "images").strip()
    git(repo, "update-ref", "refs/heads/main", commit)
    return commit


def image_path(n: int) -> str:
    return _pick(n)[0]


def _pick(n: int) -> tuple[str, int]:
    """Image n's path and source digit: a regenerated variant keeps both."""
    if not _DIGITS:  # a child process: reads them itself (this one's memory is not measured)
        _DIGITS.extend(_read_digits())
    rng = random.Random(n * 7919)
    split = "real_world" if n % 10 == 0 else "train"
    index = rng.randrange(1500, len(_DIGITS)) if split == "real_world" else rng.randrange(1500)
    return f"data/{split}/{_DIGITS[index][0]}/img-{n:07d}.png", index


# --- measuring ---------------------------------------------------------------------------------


class Tree:
    """This process and its descendants, sampled every 50 ms: the largest sum of their RSS,
    and the CPU time of the descendants: what `getrusage` counts of the children this
    process waited for (git), and, sampled, of the others (a fork server and its workers,
    which are not this process's children; a worker that ends between two samples loses
    its last 50 ms)."""

    def __init__(self, *, watch: bool = True) -> None:
        self.watch = watch  # sample while it runs (else only before and after)
        self.peak = 0
        self._first: dict[int, int] = {}  # pid → CPU ticks when first seen
        self._last: dict[int, tuple[int, int]] = {}  # pid → (parent, CPU ticks) last seen
        self._alive: set[int] = set()
        self._waited = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tree:
        self._waited = -_children_cpu()
        self._sample(first=True)
        if self.watch:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.watch:
            self._thread.join()
        self._sample()
        self._waited += _children_cpu()

    def descendants_cpu(self) -> float:
        me = os.getpid()
        ticks = sum(
            t - self._first.get(pid, 0)
            for pid, (parent, t) in self._last.items()
            if parent != me or pid in self._alive  # (not waited for: not in `getrusage`)
        )
        return self._waited + ticks / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        stats = _stats()
        tree, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(p for p, (parent, _, _) in stats.items() if parent == pid)
        self.peak = max(self.peak, sum(stats[p][1] * page for p in tree if p in stats))
        self._alive = set(tree[1:])
        for pid in tree[1:]:
            parent, _, ticks = stats[pid]
            self._last[pid] = (parent, ticks)
            if first:
                self._first[pid] = ticks


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stats() -> dict[int, tuple[int, int, int]]:
    """pid → (parent, RSS pages, CPU ticks) of every process. A process forked a moment ago
    that has not yet run its program (a git command being started) counts no pages: they
    are its parent's, counted there."""
    seen: dict[int, tuple[int, int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                name, fields = f.read().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue
        values = fields.split()
        seen[int(entry)] = (
            int(values[1]),
            int(values[21]),
            int(values[11]) + int(values[12]),
            name,
        )
    out = {}
    for pid, (parent, rss, cpu, name) in seen.items():
        up = seen.get(parent)
        copy = up is not None and up[3] == name and abs(up[1] - rss) <= up[1] // 50
        out[pid] = (parent, 0 if copy else rss, cpu)  # (a copy: about to exec)
    return out


def data_stage(
    repo: Path, tree: Path, head: str, base: str, *, watch: bool = True
) -> tuple[float, int]:
    """The data stage's time and the peak RSS of the process tree; `watch`: sample that
    while it runs (a thread's /proc reads, about 2% of a core)."""
    from dlgate.config import load_text
    from dlgate.context import Context
    from dlgate.gate import baseline_for
    from dlgate.report import Outcome, Revision
    from dlgate.runner import prepare, run_stage

    ctx = Context(
        repo=tree, git_dir=repo, head=Revision(head, head), base=Revision(base, base),
        merge_base=base, out=tree.parent / f"out-{time.time_ns()}",
        config=load_text("baseline: {missing: warn}\n"
                         "data:\n  splits: {train: data/train, real_world: data/real_world}\n"),
        tracking_uri=f"sqlite:///{tree.parent / 'mlflow.db'}",
    )  # fmt: skip
    baseline_for(ctx)  # the MLflow lookup is the gate's, shared with other stages: not timed
    import dlgate.checks  # noqa: F401  (importing every stage's checks is the process's start-up)

    cpu = time.process_time()
    with Tree(watch=watch) as processes:
        start = time.perf_counter()
        prepare(ctx, ("data",))  # as the gate does before its first stage, and
        stage = below_training(lambda: run_stage("data", ctx))  # runs the stage
        elapsed = time.perf_counter() - start
    main_cpu = time.process_time() - cpu
    broken = [c for c in stage.checks if c.outcome is Outcome.ERROR]
    if broken:
        sys.exit(f"{broken[0].id} broke: {broken[0].message}\n{broken[0].details}")
    sources = next(c for c in stage.checks if c.id == "data.sources")
    print(f"    {sources.message}")
    print(f"    {elapsed:.2f} s; CPU: {main_cpu:.2f} s this process, "
          f"{processes.descendants_cpu():.2f} s its children (workers, git); "
          f"peak RSS {processes.peak / 2**20:,.0f} MiB")  # fmt: skip
    return elapsed, processes.peak


def reference(tree: Path) -> float:
    files = [str(p) for p in sorted((tree / "data").rglob("*.png"))]

    def loop() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        for path in files:
            with Image.open(path) as im:
                im.load()
        return time.perf_counter() - start, time.thread_time() - cpu

    elapsed, cpu = below_training(loop)  # the same priority as the data stage's
    print(f"    {elapsed:.2f} s; CPU: {cpu:.2f} s")
    return elapsed


def below_training(work: Callable[[], T]) -> T:
    """`work` in a thread at the priority the gate runs its stages at (`context.BACKGROUND`
    steps below the training command's)."""
    from dlgate.context import BACKGROUND, lower_priority

    result: list[T] = []

    def run() -> None:
        lower_priority(BACKGROUND)
        result.append(work())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if not result:
        sys.exit("the measured work failed (its traceback is above)")
    return result[0]


def change_one_percent(tree: Path, count: int) -> str:
    """Commit B: 1% of the files regenerated (same paths, new pixels); returns its sha."""
    changed = random.Random(1).sample(range(count), count // 100)
    for n in changed:
        path, data = image(n, variant=1)
        (tree / path).write_bytes(data)
    # The index by path (`git add` matches every pathspec against every entry: hours at 1M).
    paths = "\n".join(sorted({image_path(n) for n in changed})) + "\n"
    git(tree, "update-index", "--stdin", stdin=paths.encode())
    git(tree, "commit", "-q", "-m", "1% of the images changed")
    return git(tree, "rev-parse", "HEAD").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 images")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it")
    args = parser.parse_args(argv)
    count = 1_000_000 if args.million else args.images
    work = args.keep or Path(tempfile.mkdtemp(prefix="dlgate-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    repo, tree = work / "repo", work / "tree"
    try:
        _load_digits()
        start = time.perf_counter()
        if not (repo / ".git").exists():
            # In a child process: its million-entry tables would stay in this one's memory.
            child = multiprocessing.get_context("spawn").Process(
                target=make_repo, args=(repo, count)
            )
            child.start()
            child.join()
            if child.exitcode:
                return 1
        base = git(repo, "rev-parse", "main").strip()
        if not tree.exists():
            git(repo, "worktree", "add", "-q", "--detach", str(tree), base)
        git(tree, "checkout", "-q", "--detach", "--force", base)  # a kept run starts over
        print(f"{count} images ready in {time.perf_counter() - start:.0f}s ({work})")

        head = change_one_percent(tree, count)

        cache = repo / ".dlgate" / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        print("scan of commit A (warms the cache):")
        git(tree, "checkout", "-q", "--detach", base)
        _, peak_a = data_stage(repo, tree, base, base)
        git(tree, "checkout", "-q", "--detach", head)
        print("incremental check of B (cache holds A):")
        incremental, _ = data_stage(repo, tree, head, base, watch=False)
        shutil.rmtree(cache)
        print("full check of B (empty cache):")
        full, peak = data_stage(repo, tree, head, base)
        print("reference loop over B's files:")
        loop = reference(tree)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    cores = len(os.sched_getaffinity(0))
    print(f"\nimages: {count}, cores: {cores}")
    print(f"reference PIL open+load loop: {loop:8.2f} s  ({count / loop:,.0f} images/s)")
    print(f"full data check:              {full:8.2f} s  ({count / full:,.0f} images/s)")
    print(f"incremental (1% changed):     {incremental:8.2f} s")
    print(f"throughput ratio (loop / full):       {loop / full:.2f}  (target >= 1.5)")
    print(f"incremental / full:                   {incremental / full:.3f}  (target <= 0.05)")
    peak = max(peak, peak_a)
    print(f"peak RSS of the process tree:         {peak / 2**20:,.0f} MiB  (target < 1024)")
    ok = loop / full >= 1.5 and incremental / full <= 0.05 and peak < 2**30
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
