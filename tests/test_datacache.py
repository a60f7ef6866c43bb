"""The data stage's cache: incremental scans equal full ones, and read only what changed."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
from conftest import GitRepo
from digits import config, context, data_stage, digits, png, write_digits
from PIL import Image

from dlgate.context import Context
from dlgate.datascan import scan_data

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
