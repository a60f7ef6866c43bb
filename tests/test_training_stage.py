"""The training stage through the real gate, on the bundled example in a real git
repository: every check passes (or skips, having nothing configured), within its budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import GitRepo

from dlgate import report as report_module
from dlgate.gate import Request, run
from dlgate.report import Outcome

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits"

pytestmark = pytest.mark.slow


def test_the_unmodified_example_passes_every_training_check(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # see test_training_faults.py
    shutil.rmtree(git_repo.path)
    shutil.copytree(EXAMPLE, git_repo.path, ignore=shutil.ignore_patterns("__pycache__", "out"))
    git_repo.git("init", "--quiet", "--initial-branch=main")
    git_repo.commit("the digits pipeline")
    report = run(Request(repo=git_repo.path, head="HEAD", stages=("training",), out=tmp_path))
    stage = report.stage("training")
    assert stage is not None
    outcomes = {c.id: c.outcome for c in stage.checks}
    assert len(outcomes) == 15
    skipped = {i for i, o in outcomes.items() if o is Outcome.SKIP}
    assert skipped == {"training.metrics", "training.tests"}  # nothing configured for them
    assert all(o is Outcome.PASS for i, o in outcomes.items() if i not in skipped), [
        (c.id, c.message) for c in stage.checks
    ]
    report_module.validate(json.loads((tmp_path / "report.json").read_text()))
    assert (tmp_path / "model" / "model.onnx").is_file()  # the product the stage judged
