"""`dlgate release --tag`: release runs, the comparison with the previous release, the table and
plot across releases, and the MLflow model registry — on a scratch repository with real tags,
a real SQLite MLflow store and real ONNX models evaluated by the deployed path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from accuracy_support import (
    Linear,
    checks,
    config,
    digits_repo,
    fresh_store,
    margins_to,
    run_gate,
    split,
    trained,
)
from accuracy_support import train as train_linear
from conftest import GitRepo
from mlflow import MlflowClient
from PIL import Image

from dlgate.baselines import Store
from dlgate.cli import ExitCode, main

MODEL = "digits-classifier"


@dataclass
class History:
    repo: GitRepo
    uri: str
    tmp: Path
    results: dict[str, tuple[int, dict[str, Any], str]]

    def release(self, tag: str) -> None:
        self.results[tag] = run_gate(self.repo, self.tmp / tag, self.uri, "release", "--tag", tag)


def commit_model(repo: GitRepo, model: Linear, message: str, tag: str | None = None) -> str:
    model.save(repo.path / "model.onnx")
    sha = repo.commit(message)
    if tag:
        repo.git("tag", tag)
    return sha


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """v0.1.0 (a short training), then main's baseline and v0.2.0 (the full training), v0.3.0
    (one sample worse), v0.4.0 (a regression), v0.4.1 (the fix)."""
    tmp = tmp_path_factory.mktemp("release")
    good, x, labels, _files = trained()
    _f, x_train, y_train = split("train")
    early = train_linear(x_train, y_train, epochs=5)
    one_worse = good.flip_to(x, margins_to(good, x, labels, 1)[:1], 1)
    regressed = good.flip_to(x, margins_to(good, x, labels, 8)[:30], 8)
    repo = digits_repo(tmp / "repo", config("releases", f"  release: {{model: {MODEL}}}\n"))
    uri = fresh_store(tmp)
    h = History(repo, uri, tmp, {})
    commit_model(repo, early, "first model", "v0.1.0")
    h.release("v0.1.0")
    commit_model(repo, good, "train longer")
    assert main(["baseline", "--repo", str(repo.path), "--rev", "main", "--tracking-uri", uri,
                 "-q", "--out", str(tmp / "baseline")]) == ExitCode.PASSED  # fmt: skip
    repo.git("tag", "v0.2.0")
    h.release("v0.2.0")
    commit_model(repo, one_worse, "retrain", "v0.3.0")
    h.release("v0.3.0")
    commit_model(repo, regressed, "a bad retrain", "v0.4.0")
    h.release("v0.4.0")
    commit_model(repo, good, "revert the bad retrain", "v0.4.1")
    h.release("v0.4.1")
    return h


def release_check(h: History, tag: str) -> dict[str, Any]:
    return checks(h.results[tag][1])["accuracy.release"]


def test_the_first_release_is_recorded_and_passes(history: History) -> None:
    code, doc, _md = history.results["v0.1.0"]
    assert code == ExitCode.PASSED
    result = release_check(history, "v0.1.0")
    assert result["outcome"] == "pass"
    assert result["message"] == "release v0.1.0: the first release recorded"
    assert doc["kind"] == "release"
    assert doc["ref"] == "v0.1.0"


def test_three_releases_make_a_table_and_a_plot(history: History) -> None:
    code, _doc, md = history.results["v0.3.0"]
    assert code == ExitCode.PASSED
    result = release_check(history, "v0.3.0")
    assert result["outcome"] == "pass"
    assert result["message"].startswith("release v0.3.0: against v0.2.0 @ ")
    assert "1 regressed" in result["message"]
    table = (history.tmp / "v0.3.0" / "artifacts" / "accuracy" / "releases.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("| release | commit | recorded | accuracy | balanced_accuracy |")
    releases = [line.split("|")[1].strip() for line in lines[2:]]
    assert releases == ["v0.1.0", "v0.2.0", "**v0.3.0**"]
    assert lines[2] in md
    with Image.open(history.tmp / "v0.3.0" / "artifacts" / "accuracy" / "releases.png") as plot:
        assert plot.format == "PNG"
        assert plot.width >= 600
        assert plot.height >= 300
    assert {Path(a).name for a in result["artifacts"]} == {"releases.png", "releases.md"}


def test_a_release_of_a_commit_with_a_baseline_reuses_and_tags_that_run(history: History) -> None:
    _code, doc, _md = history.results["v0.2.0"]
    assert [s["name"] for s in doc["stages"]] == ["accuracy"]  # no training: reused
    assert release_check(history, "v0.2.0")["outcome"] == "pass"
    with Store.open(history.uri, "releases") as store:
        baseline = store.run_for(history.repo.sha("v0.2.0"))
        assert baseline is not None
        tags = MlflowClient(history.uri).get_run(baseline.run_id).data.tags
        assert tags["dlgate.release"] == "v0.2.0"
        release = store.run_for(history.repo.sha("v0.2.0"), kinds=("release",))
        assert release is not None
        assert release.tag == "v0.2.0"
        assert release.metrics["accuracy"] == pytest.approx(baseline.metrics["accuracy"])


def test_a_regressing_release_fails_and_the_next_compares_with_the_last_good_one(
    history: History,
) -> None:
    code, _doc, md = history.results["v0.4.0"]
    assert code == ExitCode.REFUSED
    result = release_check(history, "v0.4.0")
    assert result["outcome"] == "fail"
    assert result["message"].startswith("release v0.4.0: against v0.3.0 @ ")
    assert "the drop exceeds the tolerance of 1.0 pp (McNemar exact p = " in result["message"]
    assert "| **v0.4.0** |" in md
    code, _doc, md = history.results["v0.4.1"]
    assert code == ExitCode.PASSED
    fixed = release_check(history, "v0.4.1")
    assert fixed["message"].startswith("release v0.4.1: against v0.3.0 @ ")  # not v0.4.0
    rows = [line for line in md.splitlines() if line.startswith("| v0.4.0 |")]
    assert rows
    assert rows[0].rstrip().endswith("| refused |")
    order = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert order.index("v0.4.0") < order.index("**v0.4.1**")  # in version order


def test_passing_releases_are_versions_of_the_registered_model(history: History) -> None:
    client = MlflowClient(history.uri)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    released = sorted(v.tags["dlgate.release"] for v in versions if "dlgate.release" in v.tags)
    assert released == ["v0.1.0", "v0.2.0", "v0.3.0", "v0.4.1"]  # v0.4.0 was refused
    for v in versions:
        if "dlgate.release" in v.tags:
            assert v.tags["dlgate.kind"] == "release"
            assert str(v.source).endswith("/dlgate/model.onnx")
    main_model = client.get_model_version_by_alias(MODEL, "main")
    assert main_model.tags["dlgate.kind"] == "baseline"
    assert main_model.tags["dlgate.sha"] == history.repo.sha("v0.2.0")


def test_the_table_is_printed_and_a_missing_tag_is_a_usage_error(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    again = history.tmp / "again"
    assert main(["release", "--repo", str(history.repo.path), "--tag", "v0.3.0", "-q",
                 "--tracking-uri", history.uri, "--out", str(again)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "accuracy per release:" in out
    assert "| v0.1.0 |" in out
    assert f"plot: {again / 'accuracy' / 'releases.png'}" in out
    assert main(["release", "--repo", str(history.repo.path), "--tag", "v9.9.9", "-q",
                 "--tracking-uri", history.uri]) == ExitCode.USAGE  # fmt: skip
    assert "has no tag 'v9.9.9'; tag the release commit first" in capsys.readouterr().err
