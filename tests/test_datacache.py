"""The data stage's cache: incremental scans equal full ones, and read only what changed."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GitRepo
from digits import config, context, data_stage, digits, png, write_digits
from PIL import Image

from dlgate.context import Context
from dlgate.dataanalysis import VERSION
from dlgate.datacache import Cache
from dlgate.datascan import scan_data
from dlgate.report import Outcome

TABLES = {
    "samples": "SELECT split, id, label, key FROM samples ORDER BY split, id",
    "agg": "SELECT * FROM agg ORDER BY split, name, bucket",
    "multi_key": "SELECT key FROM multi_key ORDER BY key",
    "multi_ph": "SELECT ph FROM multi_ph ORDER BY ph",
}


def state(ctx: Context) -> dict[str, list[tuple[object, ...]]]:
    data = scan_data(ctx)
    try:
        return {name: data.db.execute(sql).fetchall() for name, sql in TABLES.items()}
    finally:
        data.close()


def cache_file(repo: GitRepo) -> Path:
    [path] = (repo.path / ".dlgate" / "cache").glob("data-v*.sqlite")
    return path


def test_incremental_scan_equals_full_scan(git_repo: GitRepo, tmp_path: Path) -> None:
    written = write_digits(git_repo, 30, 10)
    git_repo.commit("data")
    first = scan_data(context(git_repo, tmp_path / "a", config()))
    assert first.analyzed == 400
    assert {s.how for s in first.splits.values()} == {"rebuilt"}
    first.close()

    git_repo.write("data/train/0/new.png", png(1600))  # added
    git_repo.write(written["train"][1], png(1601))  # changed in place
    git_repo.rm(written["train"][2])  # removed
    git_repo.mv(written["train"][3], "data/train/9/relabeled.png")  # relabeled
    git_repo.write("data/real_world/4/leak.png", png(0))  # a copy of a training digit
    git_repo.write("data/train/5/dup.png", png(5))  # a duplicate within train
    git_repo.write("data/train/6/zero.png", b"")  # a defect
    git_repo.commit("changes")
    ctx = context(git_repo, tmp_path / "b", config())
    data = scan_data(ctx)
    assert {s.how for s in data.splits.values()} == {"delta"}
    assert data.analyzed == 3  # new.png, the changed file, zero.png: copies are known content
    data.close()
    incremental = state(ctx)

    cache_file(git_repo).unlink()
    full = state(context(git_repo, tmp_path / "c", config()))
    assert incremental == full
    assert len(full["multi_key"]) == 2  # the leak and the duplicate

    # Scanning again reads nothing; so does going back to the first commit and forth.
    again = scan_data(context(git_repo, tmp_path / "d", config()))
    assert again.analyzed == 0 and {s.how for s in again.splits.values()} == {"unchanged"}
    again.close()


def delta_rows(repo: GitRepo) -> dict[str, tuple[int, int]]:
    """Per split, the rows its delta adds and the base rows it hides."""
    db = sqlite3.connect(cache_file(repo))
    try:
        added = dict(db.execute("SELECT split, COUNT(*) FROM delta_samples GROUP BY split"))
        hidden = dict(db.execute("SELECT split, COUNT(*) FROM delta_gone GROUP BY split"))
    finally:
        db.close()
    return {split: (added.get(split, 0), hidden.get(split, 0)) for split in ("train", "real_world")}


def test_deltas_and_folds_equal_full_scans(git_repo: GitRepo, tmp_path: Path) -> None:
    """A split's changes since its base rows stay a delta while they are few, whatever
    commit the scan comes from, and move the base forward once they are many; every state
    reads as a full scan of its commit would."""
    written = write_digits(git_repo, 30, 10)
    base = git_repo.commit("data")
    state(context(git_repo, tmp_path / "a", config()))
    git_repo.write("data/train/0/new.png", png(1600))
    git_repo.write("data/real_world/4/leak.png", png(0))  # exact leakage, through a delta
    git_repo.mv(written["train"][3], "data/train/9/relabeled.png")
    git_repo.mv(written["train"][4], "data/real_world/3/moved.png")  # across splits
    for split in ("train", "real_world"):  # a new content, leaked within the pull request
        git_repo.write(f"data/{split}/5/both.png", png(1601))
    small = git_repo.commit("a few changes")
    for i in range(80):  # more than a tenth of train: the base moves forward
        git_repo.write(written["train"][10 + i], png(1610 + i))
    many = git_repo.commit("many changes")
    views = {}
    # (commit, train's delta, real_world's): (rows added, base rows hidden); none on a fold
    steps = [
        # train: new, relabeled (moved from a hidden row), both; moved away (hidden)
        # real_world: the leak, moved (from train), both
        (small, (3, 2), (3, 0)),
        (base, (0, 0), (0, 0)),
        (small, (3, 2), (3, 0)),
        (many, (0, 0), (3, 0)),  # train folded into its base rows
        (small, (0, 0), (3, 0)),  # (back from `many`: 80 changes again)
    ]
    for n, (sha, train, real_world) in enumerate(steps):
        git_repo.checkout(sha)
        views[n] = state(context(git_repo, tmp_path / f"delta-{n}", config()))
        assert delta_rows(git_repo) == {"train": train, "real_world": real_world}, sha
        path = cache_file(git_repo)
        path.rename(tmp_path / "kept.sqlite")  # a full scan of the commit, in a new cache
        full = state(context(git_repo, tmp_path / f"full-{n}", config()))
        assert views[n] == full, sha
        (tmp_path / "kept.sqlite").replace(path)
    assert len(views[0]["multi_key"]) == 2 and views[0] == views[2] == views[4]


def test_large_scan_uses_worker_processes(git_repo: GitRepo, tmp_path: Path) -> None:
    """Over 2,048 files go to worker processes; their records equal in-process ones."""
    write_digits(git_repo, 150, 50)
    for i in range(300):
        pixels = np.clip(digits()[i][1].astype(int) + 9, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, "L").convert("RGB").save(buf, "PNG")
        git_repo.write(f"data/train/{digits()[i][0]}/brighter-{i}.png", buf.getvalue())
    git_repo.commit("data")
    pooled = state(context(git_repo, tmp_path / "a", config("  workers: 2\n")))
    cache_file(git_repo).unlink()
    inline = state(context(git_repo, tmp_path / "b", config("  workers: 1\n")))
    assert pooled == inline
    counts = {(s, n, b): v for s, n, b, v in pooled["agg"]}
    assert counts[("train", "mode", "RGB")] == 300
    assert counts[("train", "pixels.RGB", "n")] == 300


def test_working_tree_changes_use_the_stat_cache(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 3, 1)
    git_repo.commit("data")
    git_repo.write("data/train/1/untracked.png", png(1500))
    first = scan_data(context(git_repo, tmp_path / "a", config()))
    assert first.analyzed == 41 and {s.how for s in first.splits.values()} == {"rebuilt"}
    first.close()
    second = scan_data(context(git_repo, tmp_path / "b", config()))
    assert second.analyzed == 0  # path, size, mtime and inode unchanged: nothing read
    second.close()


def test_a_broken_cache_is_rebuilt(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    scan_data(context(git_repo, tmp_path / "a", config())).close()
    cache_file(git_repo).write_bytes(b"not a database" * 100)
    results = data_stage(context(git_repo, tmp_path / "b", config()), "data.sources")
    assert "30 samples in 2 splits" in results["data.sources"].message
    sqlite3.connect(cache_file(git_repo)).execute("SELECT COUNT(*) FROM files").fetchone()


def test_a_scan_that_fails_leaves_no_cache(git_repo: GitRepo, tmp_path: Path) -> None:
    """A new cache is written aside and put in place once committed: a scan that breaks
    (here: git cannot read a class folder) leaves neither a cache nor its draft."""
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    folder = git_repo.git("rev-parse", "HEAD:data/train/3").strip()
    (git_repo.path / ".git" / "objects" / folder[:2] / folder[2:]).unlink()  # loose: commit
    results = data_stage(context(git_repo, tmp_path, config()), "data.sources")
    assert results["data.sources"].outcome is Outcome.ERROR
    assert "ls-tree" in results["data.sources"].message
    assert sorted(p.name for p in (git_repo.path / ".dlgate" / "cache").iterdir()) == [
        f"data-v{VERSION}.lock"
    ]


_PROBE = """
import json, sys
from pathlib import Path
from dlgate.config import load_text
from dlgate.context import Context
from dlgate.report import Revision
from dlgate.runner import run_check
from dlgate.registry import checks_for
tree, repo, sha, text, out = sys.argv[1:]
ctx = Context(repo=Path(tree), git_dir=Path(repo), head=Revision(sha, sha), base=None,
              merge_base=None, config=load_text(text), out=Path(out))
spec = next(s for s in checks_for("data") if s.id == "data.integrity")
print(json.dumps(run_check(spec, ctx).to_dict()))
"""


def test_a_file_that_could_not_be_read_is_read_again(git_repo: GitRepo, tmp_path: Path) -> None:
    """A pull request's file that could not be read (its permissions) is in the split's
    delta as a read failure, not a property of its content: the next scan of the same
    commit reads it again."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop privileges")
    plain_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] * (os.geteuid() == 0)
    write_digits(git_repo, 3, 1)
    git_repo.commit("data")
    tree = tmp_path / "tree"  # a worktree of its own, as the gate checks a pull request out
    git_repo.git("worktree", "add", "--quiet", "--detach", str(tree), "HEAD")

    def integrity(n: int, *prefix: str) -> dict[str, object]:
        sha = git_repo.git("-C", str(tree), "rev-parse", "HEAD").strip()
        args = [str(tree), str(git_repo.path), sha, config(), str(tmp_path / f"out-{n}")]
        proc = subprocess.run([*prefix, sys.executable, "-c", _PROBE, *args],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    assert integrity(0)["outcome"] == "pass"  # the cache's base rows
    changed = tree / "data/train/2/redrawn.png"
    changed.write_bytes(png(1780))
    git_repo.git("-C", str(tree), "add", "--all")
    git_repo.git("-C", str(tree), "commit", "--quiet", "-m", "a new file")
    changed.chmod(0o000)
    try:
        found = integrity(1, *plain_user)
    finally:
        changed.chmod(0o644)
    assert found["outcome"] == "fail"
    assert "`data/train/2/redrawn.png`: cannot be read (Permission denied)" in str(found["details"])
    assert integrity(2)["outcome"] == "pass"


def test_a_new_cache_put_in_place_meanwhile_is_used(tmp_path: Path) -> None:
    """Two runs that both find no cache each draft one; the second to write takes the one
    the first put in place, never renames its own over it (a reader may have it open)."""
    first, second = Cache.open(tmp_path), Cache.open(tmp_path)
    with first.writing():
        first.set_state("train", "fingerprint", "tree", "tree")
    reader = first.snapshot()
    with second.writing():
        assert second.state("train") == ("fingerprint", "tree", "tree")
        second.set_state("real_world", "fingerprint", "other", "other")
    assert reader.execute("SELECT COUNT(*) FROM state").fetchone() == (1,)  # its snapshot
    for cache in (first, second):
        cache.close()
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"data-v{VERSION}.lock",
        f"data-v{VERSION}.sqlite",
    ]
