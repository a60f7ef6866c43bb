"""`data.counts`: samples per class (minimum) and class imbalance."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo
from digits import config, context, data_stage, write_digits

from dlgate.report import Outcome


def test_clean_digits(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.counts"]
    assert found.outcome is Outcome.PASS
    assert found.measurements["per_class"]["train"] == dict.fromkeys(  # type: ignore[index]
        [str(d) for d in range(10)], 12
    )
    assert found.measurements["imbalance"] == {"train": 1.0, "real_world": 1.0}


def test_too_few_samples_of_a_class(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    for name in sorted((git_repo.path / "data/real_world/6").iterdir())[:3]:
        git_repo.rm(f"data/real_world/6/{name.name}")
    git_repo.commit("fewer sixes")
    found = data_stage(context(git_repo, tmp_path, config("  counts: {min_per_class: 3}\n")))[
        "data.counts"
    ]
    assert found.outcome is Outcome.FAIL
    assert "`real_world` class `6`: 1 samples (minimum 3" in found.message


def test_missing_declared_class_fails(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    git_repo.rm("data/train/9")
    git_repo.commit("no nines")
    found = data_stage(context(git_repo, tmp_path, config()))["data.counts"]
    assert found.outcome is Outcome.FAIL and "`train` class `9`: 0 samples" in found.message


def test_imbalance_warns_then_fails(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 12, 4)
    git_repo.commit("data")
    for name in sorted((git_repo.path / "data/train/1").iterdir())[:11]:
        git_repo.rm(f"data/train/1/{name.name}")
    git_repo.commit("one single 1")
    found = data_stage(context(git_repo, tmp_path, config()))["data.counts"]
    assert found.outcome is Outcome.WARN
    assert "class imbalance: `train`: class `0` has 12.0x the samples of class `1`" in (
        found.message
    )
    text = config("  counts: {max_imbalance: 20}\n")
    assert data_stage(context(git_repo, tmp_path / "2", text))["data.counts"].outcome is (
        Outcome.PASS
    )
    text = config("  counts: {imbalance_level: fail}\n")
    assert data_stage(context(git_repo, tmp_path / "3", text))["data.counts"].outcome is (
        Outcome.FAIL
    )
