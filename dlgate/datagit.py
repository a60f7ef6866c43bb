"""What the data stage asks of git about an image folder: the tree of a split at a revision,
the samples of a tree, the changes between two trees, a tree's top level.

Answers a run shares are memoized on its context (the scan and the pull request's diff often
ask the same); `diff` and `prefetch_top` start git in the background, so that its processes
overlap the scan's own work.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from dlgate import git
from dlgate.context import Context
from dlgate.datacache import SampleRow
from dlgate.dataset import DataSettings
from dlgate.datasources import IMAGE_ENTRY
from dlgate.errors import GitError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree
_SYMLINK, _GITLINK = b"120000", b"160000"
T = TypeVar("T")
Change = tuple[str, bytes | None, bytes | None]  # path, old blob or None, new blob or None


def clean_checkout(ctx: Context) -> bool:
    """True where the files under `ctx.repo` are exactly the head commit's tree."""
    try:
        if git.head_sha(ctx.repo) != ctx.head.sha:
            return False
    except GitError:
        return False
    if ctx.repo.resolve() != ctx.git_dir.resolve():
        return True  # the gate's own checkout of head, cleaned (dlgate/checkout.py)
    locations = [str(p) for p in ctx.config.get(DataSettings).splits.values()]
    status = git.git(
        ctx.repo, "status", "--porcelain", "-z", "--untracked-files=all", "--ignored=matching",
        "--", *locations,
    )  # fmt: skip
    return not status.strip("\0")


def tree_id(ctx: Context, sha: str, location: str) -> str | None:
    """The git tree id of the folder `location` at `sha` (head or merge base); None where
    there is no folder."""
    return objects(ctx).get((sha, location), (None, ""))[0]


def objects(ctx: Context) -> dict[tuple[str, str], tuple[str | None, str]]:
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


def top_level(ctx: Context, tree: str) -> list[str]:
    """The `git ls-tree -z` entries of a tree's top level (memoized per run)."""
    return _top(ctx, tree).result(lambda out: out.decode("utf-8", "surrogateescape").split("\0"))


def prefetch_top(ctx: Context, tree: str) -> None:
    _top(ctx, tree)


def _top(ctx: Context, tree: str) -> Background:
    return ctx.memo(f"data.top {tree}", lambda: Background(ctx.git_dir, "ls-tree", "-z", tree))


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


def tree_diff(ctx: Context, old: str, new: str) -> list[Change]:
    """(path, old blob or None, new blob or None) of every changed file between two trees;
    asked once per run (the scan and the pull request's diff often need the same pair)."""
    return diff(ctx, old, new).result(lambda out: _changes(out.split(b"\0")[:-1]))


def diff(ctx: Context, old: str, new: str) -> Background:
    """The diff of two trees, started on first ask."""
    return ctx.memo(
        f"data.diff-tree {old} {new}",
        lambda: Background(ctx.git_dir, "diff-tree", "-r", "-z", "--no-renames", old, new),
    )


class Background:
    """A git command started now, in the background, its output kept in a temporary file:
    no thread waits on it (starting one costs a hand-over of the interpreter lock), and git
    never waits for a reader. `result` waits for it, once, for every asker."""

    def __init__(self, repo: Path, *args: str) -> None:
        self.what = f"git {' '.join(args)} in {repo}"
        # (closed once read, else by the finalizer below)
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                ["git", "-C", str(repo), *args], stdout=self._out, stderr=self._err,
                env={**os.environ, "LC_ALL": "C"},
            )  # fmt: skip
        except FileNotFoundError:
            self._out.close()
            self._err.close()
            raise GitError("git is not installed or not on PATH; install git") from None
        self._lock = threading.Lock()
        self._value: Any = None
        # Asked for or not, the command is waited for and its files closed with the object.
        weakref.finalize(self, _reap, self._proc, self._out, self._err)

    def result(self, parse: Callable[[bytes], T]) -> T:
        """`parse` of the command's output (parsed once; the same `parse` every time)."""
        with self._lock:
            if self._value is None:
                code = self._proc.wait()
                self._out.seek(0)
                self._err.seek(0)
                if code:
                    error = self._err.read().decode("utf-8", "replace").strip()
                    raise GitError(f"{self.what} failed: {error or f'exit status {code}'}")
                self._value = parse(self._out.read())
                self._out.close()
                self._err.close()
            return cast(T, self._value)


def _reap(proc: subprocess.Popen[bytes], *files: IO[bytes]) -> None:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for file in files:
        file.close()


def _changes(fields: list[bytes]) -> list[Change]:
    """(path, old blob or None, new blob or None) of `git diff-tree -r -z` output fields."""
    out = []
    for meta, rel in zip(fields[0::2], fields[1::2], strict=True):
        old_mode, new_mode, old_oid, new_oid, _status = meta[1:].split(b" ")
        old_ok = old_mode not in (b"000000", _SYMLINK, _GITLINK)
        new_ok = new_mode not in (b"000000", _SYMLINK, _GITLINK)
        out.append((
            rel.decode("utf-8", "surrogateescape"),
            bytes.fromhex(old_oid.decode()) if old_ok else None,
            bytes.fromhex(new_oid.decode()) if new_ok else None,
        ))  # fmt: skip
    return out
