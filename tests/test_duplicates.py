"""`data.duplicates`: the same content twice within a split."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo
from digits import config, context, data_stage, png, write_digits

from dlgate.datascan import scan
from dlgate.report import Outcome


def test_clean_digits_have_no_duplicates(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.duplicates"]
    assert found.outcome is Outcome.PASS
    assert found.measurements["per_split"] == {"train": 0, "real_world": 0}


def test_duplicate_is_named_with_its_original(git_repo: GitRepo, tmp_path: Path) -> None:
    written = write_digits(git_repo)
    original = written["train"][0]
    git_repo.write("data/train/0/copy.png", (git_repo.path / original).read_bytes())
    git_repo.write("data/train/0/copy-2.png", (git_repo.path / original).read_bytes())
    git_repo.commit("two copies")
    found = data_stage(context(git_repo, tmp_path, config()))["data.duplicates"]
    assert found.outcome is Outcome.WARN  # the default level
    notes = {a.path: a.message for a in found.annotations}
    assert set(notes) == {"data/train/0/copy.png", "data/train/0/copy-2.png", original}
    assert notes["data/train/0/copy.png"] == (
        f"exact duplicate: the same content as data/train/0/copy-2.png, {original} (split `train`)"
    )
    assert found.measurements["per_split"] == {"train": 2, "real_world": 0}
    text = config("  duplicates: {allowed: 2}\n")
    assert data_stage(context(git_repo, tmp_path / "2", text))["data.duplicates"].outcome is (
        Outcome.PASS
    )
    text = config("  duplicates: {level: fail}\n")
    assert data_stage(context(git_repo, tmp_path / "3", text))["data.duplicates"].outcome is (
        Outcome.FAIL
    )


def test_the_same_content_in_two_splits_is_no_duplicate(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/real_world/7/seen-in-train.png", png(7))  # digit 7 is in train
    git_repo.commit("leak")
    results = data_stage(context(git_repo, tmp_path, config()))
    assert results["data.duplicates"].outcome is Outcome.PASS
    assert results["data.leakage"].outcome is Outcome.FAIL  # that is leakage's to say


def test_a_copy_changed_by_a_pull_request_is_no_longer_named(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    """Read from the cache's delta: the changed copy's old content is no duplicate any more,
    the two copies left still are."""
    written = write_digits(git_repo)
    original = written["train"][0]
    for name in ("copy.png", "copy-2.png"):
        git_repo.write(f"data/train/0/{name}", (git_repo.path / original).read_bytes())
    git_repo.commit("two copies")
    found = data_stage(context(git_repo, tmp_path / "a", config()))["data.duplicates"]
    assert found.measurements["per_split"] == {"train": 2, "real_world": 0}
    git_repo.write("data/train/0/copy-2.png", png(1790))  # edited in place
    git_repo.commit("one copy redrawn")
    ctx = context(git_repo, tmp_path / "b", config())
    found = data_stage(ctx)["data.duplicates"]
    assert {s.how for s in scan(ctx).splits.values()} == {"delta", "unchanged"}
    assert found.measurements["per_split"] == {"train": 1, "real_world": 0}
    assert {a.path for a in found.annotations} == {"data/train/0/copy.png", original}
