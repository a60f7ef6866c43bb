"""`data.conflicts`: the same content under two labels."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo
from digits import config, context, data_stage, png, write_digits

from dlgate.report import Outcome


def test_relabeled_copy_is_a_conflict(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/train/5/digit-00003-again.png", png(3))  # digit 3 is a '3' in train
    git_repo.commit("the same sample, labelled 5")
    found = data_stage(context(git_repo, tmp_path, config()))["data.conflicts"]
    assert found.outcome is Outcome.FAIL
    assert found.message == "1 content with conflicting labels (2 samples)"
    notes = {a.path: a.message for a in found.annotations}
    assert notes["data/train/5/digit-00003-again.png"] == (
        "labelled '5', but the same content is labelled differently in "
        "data/train/3/digit-00003.png ('3')"
    )
    assert "data/train/3/digit-00003.png" in notes


def test_no_conflicts_in_clean_digits(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.conflicts"]
    assert found.outcome is Outcome.PASS


def test_level_off_skips(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 1, 1)
    git_repo.commit("data")
    text = config("  conflicts: {level: 'off'}\n")
    found = data_stage(context(git_repo, tmp_path, text))["data.conflicts"]
    assert found.outcome is Outcome.SKIP and "data.conflicts.level: off" in found.message
