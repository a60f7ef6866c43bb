"""The gate's checkout of the head: a kept git worktree, moved between revisions and cleaned.

Every test uses a real repository; a "run" is a `with checkout(...)` block.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GitRepo

from dlgate import checkout as checkout_module
from dlgate.checkout import checkout, trees_dir

# The trees of the fixture's two commits.
FIRST = {".gitignore": "*.log\n", "train.py": "print('v1')\n", "data/a.txt": "a"}
SECOND = {".gitignore": "*.log\n", "train.py": "print('v2')\n", "data/b.txt": "b"}


@pytest.fixture
def repo(git_repo: GitRepo) -> GitRepo:
    git_repo.write(".gitignore", "*.log\n")
    git_repo.write("train.py", "print('v1')\n")
    git_repo.write("data/a.txt", "a")
    git_repo.commit("first")
    git_repo.write("train.py", "print('v2')\n")
    git_repo.write("data/b.txt", "b")
    git_repo.rm("data/a.txt")
    git_repo.commit("second")
    return git_repo


def files(tree: Path) -> dict[str, str]:
    return {
        p.relative_to(tree).as_posix(): p.read_text()
        for p in tree.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(tree).parts
    }


def test_a_run_gets_exactly_the_tree_of_its_revision(repo: GitRepo) -> None:
    with checkout(repo.path, repo.sha("HEAD~1")) as tree:
        assert files(tree) == FIRST
        assert subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip() == repo.sha("HEAD~1")


def test_the_next_run_reuses_the_checkout_and_nothing_of_the_last_run_survives(
    repo: GitRepo,
) -> None:
    with checkout(repo.path, repo.sha("HEAD~1")) as first:
        # What a pipeline leaves behind: outputs, ignored caches, an edited tracked file,
        # a staged change, a nested repository.
        (first / "out").mkdir()
        (first / "out" / "model.onnx").write_text("weights")
        (first / "train.log").write_text("ignored")
        (first / "train.py").write_text("print('edited')\n")
        subprocess.run(["git", "-C", str(first), "add", "train.py"], check=True)
        subprocess.run(["git", "init", "-q", str(first / "vendor")], check=True)
    with checkout(repo.path, repo.sha("HEAD")) as second:
        assert second == first
        assert files(second) == SECOND
        status = subprocess.run(
            ["git", "-C", str(second), "status", "--porcelain", "--ignored"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert status.stdout == ""
    with checkout(repo.path, repo.sha("HEAD~1")) as third:
        assert files(third)["train.py"] == "print('v1')\n"  # back, not the edit


def test_the_kept_checkouts_live_in_the_git_directory_out_of_the_users_sight(
    repo: GitRepo,
) -> None:
    with checkout(repo.path, repo.sha()) as tree:
        assert tree.parent == trees_dir(repo.path) == repo.path / ".git" / "dlgate" / "trees"
    assert repo.git("status", "--porcelain", "--untracked-files=all") == ""


def test_concurrent_runs_get_different_checkouts(repo: GitRepo) -> None:
    # e.g. the baseline a PR's run computes from its merge base, while the PR's runs
    with (
        checkout(repo.path, repo.sha("HEAD")) as outer,
        checkout(repo.path, repo.sha("HEAD~1")) as inner,
    ):
        assert inner != outer
        assert files(inner)["train.py"] == "print('v1')\n"
        assert files(outer)["train.py"] == "print('v2')\n"


def test_a_killed_run_frees_its_checkout(repo: GitRepo) -> None:
    with checkout(repo.path, repo.sha()):
        pass
    lock = trees_dir(repo.path) / "0.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with checkout(repo.path, repo.sha()) as tree:
            assert tree.name == "1"  # slot 0 is another process's
    finally:
        holder.kill()
        holder.communicate()
    with checkout(repo.path, repo.sha()) as tree:
        assert tree.name == "0"


@pytest.mark.parametrize("damage", ["deleted", "not a worktree", "index locked", "pruned"])
def test_a_damaged_checkout_is_made_afresh(repo: GitRepo, damage: str) -> None:
    with checkout(repo.path, repo.sha("HEAD~1")) as tree:
        pass
    if damage == "deleted":
        subprocess.run(["rm", "-rf", str(tree)], check=True)
    elif damage == "not a worktree":
        (tree / ".git").unlink()
        (tree / ".git").write_text("gitdir: /nowhere\n")
    elif damage == "index locked":  # a git killed while it wrote the index
        git_dir = repo.path / ".git" / "worktrees" / tree.name
        (git_dir / "index.lock").write_text("")
    else:  # `git worktree prune` after the folder went missing for a moment
        tree.rename(tree.with_name("moved"))
        repo.git("worktree", "prune")
        tree.with_name("moved").rename(tree)
    with checkout(repo.path, repo.sha("HEAD")) as again:
        assert again == tree
        assert files(again) == SECOND


def test_past_the_kept_slots_a_run_gets_a_temporary_checkout_removed_afterwards(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkout_module, "SLOTS", 1)
    with checkout(repo.path, repo.sha("HEAD")) as kept:
        with checkout(repo.path, repo.sha("HEAD~1")) as temporary:
            assert temporary.parent != kept.parent
            assert files(temporary)["train.py"] == "print('v1')\n"
        assert not temporary.exists()
    listed = repo.git("worktree", "list", "--porcelain")
    assert str(temporary) not in listed
    assert str(kept) in listed


def test_moving_a_checkout_writes_only_what_changed(repo: GitRepo) -> None:
    for i in range(200):
        repo.write(f"data/many/{i}.txt", str(i))
    repo.commit("many files")
    repo.write("data/many/0.txt", "changed")
    head = repo.commit("one file changed")
    with checkout(repo.path, repo.sha("HEAD~1")) as tree:
        before = {p: p.stat().st_mtime_ns for p in (tree / "data" / "many").iterdir()}
    time.sleep(0.01)
    with checkout(repo.path, head) as tree:
        rewritten = [p for p, t in before.items() if p.stat().st_mtime_ns != t]
    assert rewritten == [tree / "data" / "many" / "0.txt"]
