"""Shared test fixtures.

`git_repo` gives a real, empty git repository (branch `main`) in a temporary folder, driven
through `GitRepo`; tests build histories with it instead of faking diffs:

    def test_x(git_repo: GitRepo) -> None:
        git_repo.write("data/a.txt", "1")
        base = git_repo.commit("add data")
        git_repo.branch("feature")
        git_repo.write("model.py", b"\\x00binary")
        head = git_repo.commit("change code")
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ghemu
import pytest

# Torch and onnxruntime in the processes the tests start (training commands, hook children)
# use one thread: on a 2-core CI machine, OpenMP threads spin-waiting against each other made
# the example's training 3x slower (docs/training.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Fixtures of other test helper modules: a real `mlflow server` process (session-scoped).
pytest_plugins = ["mlflow_server"]

# Isolated from the user's and the system's git configuration (hooks, signing, templates),
# with fixed identities so commits never prompt.
_GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "LC_ALL": "C",
}

LFS_SPEC = "https://git-lfs.github.com/spec/v1"


def run_git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; a failure fails the test with git's own message."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=_GIT_ENV, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"git {' '.join(args)} failed in {cwd}:\n{proc.stderr}")
    return proc.stdout


class GitRepo:
    """A real scratch git repository. Paths are repository-relative, POSIX style."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def init(cls, path: Path, branch: str = "main") -> GitRepo:
        path.mkdir(parents=True, exist_ok=True)
        run_git(path, "init", "--quiet", f"--initial-branch={branch}")
        return cls(path)

    @classmethod
    def clone(cls, source: GitRepo | str, path: Path, *args: str) -> GitRepo:
        """`git clone [args] source path`; e.g. `("--depth", "1", "--no-single-branch")`
        with `source` as a `file://` URL for a real shallow clone."""
        url = source if isinstance(source, str) else str(source.path)
        run_git(path.parent, "clone", "--quiet", *args, url, str(path))
        return cls(path)

    def git(self, *args: str) -> str:
        return run_git(self.path, *args)

    def sh(self, command: str) -> str:
        """Run a shell command line in the repository (e.g. commands dlgate tells users to
        run) with the same isolated git setup; a failure fails the test."""
        proc = subprocess.run(
            command,
            shell=True,
            cwd=self.path,
            env=_GIT_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"`{command}` failed in {self.path}:\n{proc.stderr}")
        return proc.stdout

    def write(self, path: str, content: str | bytes = "") -> Path:
        """Create or overwrite a file (parents made as needed); str is written as UTF-8."""
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        return target

    def write_lfs_pointer(self, path: str, content: bytes = b"large file") -> str:
        """Write the Git LFS pointer file that `git lfs` would commit for `content` (git-lfs
        itself is not needed); returns the pointer text."""
        oid = hashlib.sha256(content).hexdigest()
        pointer = f"version {LFS_SPEC}\noid sha256:{oid}\nsize {len(content)}\n"
        self.write(path, pointer)
        return pointer

    def rm(self, path: str) -> None:
        self.git("rm", "--quiet", "-r", "--", path)

    def mv(self, src: str, dst: str) -> None:
        (self.path / dst).parent.mkdir(parents=True, exist_ok=True)
        self.git("mv", "--", src, dst)

    def commit(self, message: str = "change") -> str:
        """Stage everything (additions, edits, deletions) and commit; returns the sha."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message)
        return self.sha("HEAD")

    def branch(self, name: str, start: str = "HEAD") -> None:
        """Create branch `name` at `start` and switch to it."""
        self.git("switch", "--quiet", "-c", name, start)

    def checkout(self, rev: str) -> None:
        """Switch to a branch, or detach at any other revision."""
        self.git("checkout", "--quiet", rev)

    def merge(self, rev: str, message: str = "merge") -> str:
        """Merge `rev` into the current branch with a merge commit; returns its sha."""
        self.git("merge", "--quiet", "--no-ff", "--no-edit", "-m", message, rev)
        return self.sha("HEAD")

    def sha(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    """An empty real git repository on branch `main`."""
    return GitRepo.init(tmp_path / "repo")


@pytest.fixture
def github() -> Iterator[ghemu.GitHubEmulator]:
    """A local GitHub REST emulator validated against GitHub's OpenAPI description."""
    yield from ghemu.running()
