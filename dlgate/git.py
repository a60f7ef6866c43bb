"""The git repository being gated: real `git` commands, translated errors."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dlgate.errors import GitError, ShallowCloneError


def git(repo: Path, *args: str, check: bool = True) -> str:
    return _git(repo, *args, check=check).stdout.decode("utf-8", errors="surrogateescape")


def git_bytes(repo: Path, *args: str) -> bytes:
    return _git(repo, *args).stdout


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; install git") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"git {' '.join(args)} failed in {repo}: {err}")
    return proc


def toplevel(path: Path) -> Path:
    if not path.exists():
        raise GitError(f"{path} does not exist; pass --repo with a git repository")
    proc = _git(path, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise GitError(f"{path} is not a git repository; pass --repo with one")
    return Path(proc.stdout.decode().strip())


def resolve(repo: Path, rev: str) -> str:
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if proc.returncode != 0:
        hint = " (a shallow clone may lack it: fetch more history)" if is_shallow(repo) else ""
        raise GitError(f"unknown revision {rev!r} in {repo}{hint}")
    return proc.stdout.decode().strip()


def is_shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository").strip() == "true"


def merge_base(repo: Path, base: str, head: str) -> str:
    proc = _git(repo, "merge-base", base, head, check=False)
    if proc.returncode == 0:
        return proc.stdout.decode().strip()
    if is_shallow(repo):
        raise ShallowCloneError(
            f"the merge base of {base[:12]} and {head[:12]} is not in this shallow clone; "
            "fetch more history (actions/checkout with `fetch-depth: 0`, or "
            "`git fetch --unshallow`)"
        )
    raise GitError(f"{base[:12]} and {head[:12]} have no common ancestor")


def first_parents(repo: Path, sha: str, limit: int) -> list[str]:
    """`sha` and its first-parent ancestors, nearest first, at most `limit + 1` commits."""
    out = git(repo, "rev-list", "--first-parent", f"--max-count={limit + 1}", sha)
    return out.split()


def show(repo: Path, rev: str, path: str) -> bytes | None:
    """A file's content at a revision, or None where the file does not exist there."""
    proc = _git(repo, "show", f"{rev}:{path}", check=False)
    return proc.stdout if proc.returncode == 0 else None


def short(sha: str | None) -> str:
    return sha[:7] if sha else "-"


@dataclass(frozen=True)
class FileChange:
    """One changed path. `status` is git's letter: A, M, D, R (renamed), C, T."""

    status: str
    path: str
    old_path: str | None = None  # for renames and copies
    binary: bool = False


def changed_files(repo: Path, base: str, head: str) -> list[FileChange]:
    raw = git_bytes(repo, "diff", "--name-status", "-z", "-M", "--no-ext-diff", base, head)
    numstat = git_bytes(repo, "diff", "--numstat", "-z", "-M", "--no-ext-diff", base, head)
    binary = _binary_paths(numstat)
    parts = raw.decode("utf-8", errors="surrogateescape").split("\0")
    changes: list[FileChange] = []
    i = 0
    while i < len(parts) and parts[i]:
        status = parts[i][0]
        if status in "RC":
            old, new = parts[i + 1], parts[i + 2]
            changes.append(FileChange(status, new, old, new in binary))
            i += 3
        else:
            path = parts[i + 1]
            changes.append(FileChange(status, path, None, path in binary))
            i += 2
    return changes


def _binary_paths(numstat: bytes) -> set[str]:
    # -z numstat: "added\tdeleted\tpath\0" or, for renames, "added\tdeleted\t\0old\0new\0".
    out: set[str] = set()
    parts = numstat.decode("utf-8", errors="surrogateescape").split("\0")
    i = 0
    while i < len(parts) and parts[i]:
        added, deleted, path = parts[i].split("\t", 2)
        if not path:
            path = parts[i + 2]
            i += 3
        else:
            i += 1
        if added == "-" and deleted == "-":
            out.add(path)
    return out


def blob_ids(repo: Path, rev: str, prefix: str = "") -> dict[str, str]:
    """path → git blob id for every file under `prefix` at `rev` (for content-keyed caches)."""
    args = ["ls-tree", "-r", "-z", "--full-tree", rev]
    if prefix:
        args += ["--", prefix]
    out: dict[str, str] = {}
    for entry in git(repo, *args).split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        _mode, kind, oid = meta.split()
        if kind == "blob":
            out[path] = oid
    return out


def head_sha(repo: Path) -> str:
    return resolve(repo, "HEAD")


def is_dirty(repo: Path) -> bool:
    return bool(git(repo, "status", "--porcelain", "--untracked-files=no").strip())
