"""The checkout the gate runs in: a git worktree of the head, kept and reused between runs.

Checking out a data set is slow on some file systems (the example's 1,800 PNGs take about a
second to write here), and a pull request usually changes a few files. So the gate keeps its
worktrees in `<git dir>/dlgate/trees/<slot>` and moves one to the next revision with
`git checkout --force` (which writes only what differs) and `git clean -ffdx` (which removes
whatever the last run's pipeline wrote: outputs, caches, ignored files). The result is the
same clean tree a fresh `git worktree add` gives, for the cost of the difference.

A slot is held with an exclusive `flock` on `<slot>.lock` for the length of a run, so
concurrent runs on one repository (or the baseline a run computes for its merge base) take
different slots; the lock goes with the process, so a killed run frees its slot. A slot
whose worktree git no longer knows (deleted, corrupted, moved) is made afresh. Past `SLOTS`
busy slots a run gets a temporary worktree, removed afterwards, as every run once did.
Delete `<git dir>/dlgate/trees` (then `git worktree prune`) to take the space back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dlgate.errors import GitError
from dlgate.git import git

SLOTS = 4  # kept worktrees per repository; more concurrent runs get temporary ones
# git writes the files with one worker per core (git 2.32+; older ones ignore it): a fresh
# checkout of the example's 1,800 PNGs took 1.3 s with one, 0.6 s with two.
_PARALLEL = ("-c", "checkout.workers=0")


def trees_dir(repo: Path) -> Path:
    """Where a repository's kept worktrees live: inside its git directory, out of every
    listing of the working tree (git status, globs, test collectors)."""
    common = git(repo, "rev-parse", "--git-common-dir").strip()  # relative to `repo`, or not
    return (repo / common).resolve() / "dlgate" / "trees"


@contextlib.contextmanager
def checkout(repo: Path, sha: str) -> Iterator[Path]:
    """A clean, detached checkout of `sha`, for the length of the `with` block."""
    root = trees_dir(repo)
    root.mkdir(parents=True, exist_ok=True)
    for slot in range(SLOTS):
        with _held(root / f"{slot}.lock") as held:
            if held:
                yield _move(repo, root / str(slot), sha)
                return
    with _temporary(repo, sha) as path:
        yield path


@contextlib.contextmanager
def _held(lock: Path) -> Iterator[bool]:
    """True while this process holds `lock`; False at once where another one does."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _move(repo: Path, path: Path, sha: str) -> Path:
    """The slot's worktree at `sha`, clean: reused where git still knows it, else made anew."""
    if _registered(repo, path):
        try:
            git(path, *_PARALLEL, "checkout", "--quiet", "--detach", "--force", sha)
            git(path, "clean", "-ffdxq")
            return path
        except GitError:
            pass  # a half-written index, a lock left by a killed git: start the slot over
    shutil.rmtree(path, ignore_errors=True)
    git(repo, "worktree", "prune")
    git(repo, *_PARALLEL, "worktree", "add", "--detach", "--force", str(path), sha)
    return path


def _registered(repo: Path, path: Path) -> bool:
    if not (path / ".git").is_file():
        return False
    listing = git(repo, "worktree", "list", "--porcelain", check=False).splitlines()
    known = {Path(line.removeprefix("worktree ")).resolve() for line in listing}
    return path.resolve() in known


@contextlib.contextmanager
def _temporary(repo: Path, sha: str) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f"dlgate-{sha[:7]}-"))
    path = tmp / "tree"
    git(repo, *_PARALLEL, "worktree", "add", "--detach", "--force", str(path), sha)
    try:
        yield path
    finally:
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)
