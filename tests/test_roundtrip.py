"""`data.roundtrip`: the configured normalize → denormalize returns the input."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo
from digits import config, context, data_stage, write_digits

from dlgate.report import CheckResult, Outcome

PREP = """
import numpy as np

MEAN, STD = 0.3054, 0.3760

def normalise(pixels):
    return (pixels.astype(np.float32) / 255 - MEAN) / STD

def denormalise(x):
    return (x * STD + MEAN) * 255

def forgets_the_mean(x):
    return x * STD * 255

def shrinks(x):
    return x[:4]

def raises(x):
    raise RuntimeError("no preprocessing here yet")
"""


def _run(repo: GitRepo, tmp: Path, normalize: str, denormalize: str) -> CheckResult:
    text = config(
        f"  roundtrip: {{normalize: 'prep:{normalize}', denormalize: 'prep:{denormalize}', "
        "samples: 8}\n"
    )
    return data_stage(context(repo, tmp, text))["data.roundtrip"]


def test_roundtrip(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.write("prep.py", PREP)
    git_repo.commit("data and preprocessing")
    found = _run(git_repo, tmp_path / "ok", "normalise", "denormalise")
    assert found.outcome is Outcome.PASS, found
    assert "8 images round-trip within 0.5" in found.message

    found = _run(git_repo, tmp_path / "bad", "normalise", "forgets_the_mean")
    assert found.outcome is Outcome.FAIL
    assert "8 of 8 images do not round-trip through prep:normalise → prep:forgets_the_mean" in (
        found.message
    )
    note = found.annotations[0]
    assert note.path.startswith("data/train/")
    assert "differs from x by up to" in note.message and "tolerance 0.5" in note.message

    found = _run(git_repo, tmp_path / "shape", "normalise", "shrinks")
    assert found.outcome is Outcome.FAIL
    assert found.annotations[0].message == "shape (8, 8) came back as (4, 8)"

    found = _run(git_repo, tmp_path / "raise", "raises", "denormalise")
    assert found.outcome is Outcome.ERROR
    assert "RuntimeError: no preprocessing here yet" in found.message


def test_unconfigured_is_skipped(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 1, 1)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.roundtrip"]
    assert found.outcome is Outcome.SKIP and "`data.roundtrip.normalize`" in found.message
