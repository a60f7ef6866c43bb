"""`data.labels`: labels outside the declared classes."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo
from digits import config, context, data_stage, png, write_digits

from dlgate.report import Outcome


def test_undeclared_class_folder_is_named(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/train/seven/a.png", png(1000))
    git_repo.write("data/real_world/seven/b.png", png(1001))
    git_repo.commit("a typo'd class folder")
    found = data_stage(context(git_repo, tmp_path, config()))["data.labels"]
    assert found.outcome is Outcome.FAIL
    assert found.message == "2 samples with labels outside the declared classes: 'seven'"
    assert [a.path for a in found.annotations] == ["data/real_world/seven/b.png",
                                                   "data/train/seven/a.png"]  # fmt: skip
    assert found.measurements["unknown"] == {"train": {"seven": 1}, "real_world": {"seven": 1}}


def test_declared_classes_pass_and_undeclared_skip(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    assert data_stage(context(git_repo, tmp_path, config()))["data.labels"].outcome is (
        Outcome.PASS
    )
    found = data_stage(context(git_repo, tmp_path / "2", config(classes=False)))["data.labels"]
    assert found.outcome is Outcome.SKIP and "`data.classes`" in found.message
