"""`data.sources`: bad data locations are clear outcomes naming the path, never tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GitRepo
from digits import config, context, data_stage, gate, write_digits

from dlgate.report import Outcome


def _no_tracebacks(results: dict[str, object]) -> None:
    for check in results.values():
        assert "Traceback" not in getattr(check, "details", ""), check
        assert getattr(check, "outcome", None) is not Outcome.ERROR, check


def test_clean_digits_pass(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    report = gate(git_repo, tmp_path, config())
    found = report.check("data.sources")
    assert found is not None and found.outcome is Outcome.PASS, found
    assert found.measurements["splits"]["train"]["samples"] == 120  # type: ignore[index]
    assert "160 samples in 2 splits" in found.message


def test_missing_split_folder_names_the_path(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    git_repo.rm("data/real_world")
    git_repo.commit("no real-world samples")
    report = gate(git_repo, tmp_path, config())
    found = report.check("data.sources")
    assert found is not None and found.outcome is Outcome.FAIL
    assert "`data/real_world` does not exist" in found.message
    # The other checks still report on what is there, without breaking.
    _no_tracebacks({c.id: c for c in report.stages[0].checks})
    counts = report.check("data.counts")
    assert counts is not None and counts.outcome is Outcome.FAIL  # 0 per class in real_world


def test_split_path_that_is_a_file(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/holdout", "not a folder")
    git_repo.commit("data")
    text = config().replace("real_world: data/real_world", "real_world: data/holdout")
    found = gate(git_repo, tmp_path, text).check("data.sources")
    assert found is not None and found.outcome is Outcome.FAIL
    assert "`data/holdout` is a file, not a folder" in found.message


def test_empty_split_and_empty_class_folder(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/holdout/README.md", "samples will come")
    git_repo.write("data/train/ten/.gitkeep")  # git keeps no empty folders: a marker file
    git_repo.write("data/train/stray.png", b"\x89PNG")
    git_repo.commit("data")
    text = config(classes=False).replace(
        "real_world: data/real_world", "real_world: data/real_world, holdout: data/holdout"
    )
    found = gate(git_repo, tmp_path, text).check("data.sources")
    assert found is not None and found.outcome is Outcome.FAIL
    assert "`data/holdout`: empty split: no class folders" in found.details
    assert "`data/train/ten`: class folder holds no image files" in found.details
    assert "`data/train/stray.png`: image file directly in the split folder" in found.details
    assert [a.path for a in found.annotations] == ["data/train/stray.png"]


def test_untracked_files_are_listed_from_the_folder(git_repo: GitRepo, tmp_path: Path) -> None:
    """A working tree with local changes is scanned from its files, not from git."""
    write_digits(git_repo)
    git_repo.commit("data")
    git_repo.write("data/train/empty/notes.txt", "untracked, and no image")
    ctx = context(git_repo, tmp_path, config(classes=False))
    results = data_stage(ctx)
    assert results["data.sources"].outcome is Outcome.FAIL
    assert (
        "`data/train/empty`: class folder holds no image files" in results["data.sources"].details
    )
    shutil.rmtree(git_repo.path / "data/real_world")
    results = data_stage(context(git_repo, tmp_path / "2", config()))
    assert "`data/real_world` does not exist" in results["data.sources"].message
    _no_tracebacks(dict(results))


_PROBE = """
import json, sys
from pathlib import Path
from dlgate.config import load_text
from dlgate.context import Context
from dlgate.report import Revision
from dlgate.runner import run_stage
repo, state, text = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ctx = Context(repo=repo, git_dir=state, head=Revision("HEAD", "0" * 40), base=None,
              merge_base=None, config=load_text(text), out=state / "out")
stage = run_stage("data", ctx)
print(json.dumps([c.to_dict() for c in stage.checks]))
"""


def _as_plain_user() -> list[str]:
    """A command prefix under which file permissions apply. Root ignores them (it holds
    CAP_DAC_OVERRIDE): it runs the probe with those capabilities dropped."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop privileges")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _probe(repo: Path, state: Path) -> dict[str, dict[str, object]]:
    proc = subprocess.run(
        [*_as_plain_user(), sys.executable, "-c", _PROBE, str(repo), str(state),
         config(classes=False)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)}


def test_unreadable_folders_are_named(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "data-repo")  # plain files, no git: listed from the folders
    write_digits(repo, 3, 2)
    locked = [repo.path / "data/train/4", repo.path / "data/real_world"]
    locked[0].chmod(0o000)
    try:
        checks = _probe(repo.path, tmp_path / "state")
        sources = checks["data.sources"]
        assert sources["outcome"] == "fail"
        assert "`data/train/4`: cannot be read (Permission denied); fix its permissions" in str(
            sources["details"]
        )
        assert all(c["outcome"] != "error" for c in checks.values()), checks
        locked[1].chmod(0o000)
        sources = _probe(repo.path, tmp_path / "state")["data.sources"]
        assert "`data/real_world` cannot be read (permission denied)" in str(sources["message"])
    finally:
        for path in locked:
            path.chmod(0o755)
