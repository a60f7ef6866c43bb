"""`accuracy.accuracy` through `dlgate run`: real git repositories, a real MLflow store, real
ONNX models evaluated by the deployed path on the example's 360 real-world digits.

The models are softmax regressions trained with numpy (`accuracy_support`), committed as
`pipeline.artifact`; a pull request swaps the model, so every test knows which samples it fixes
or regresses — computed independently through `Deployed.predict`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from accuracy_support import (
    CONTRACT,
    Linear,
    checks,
    config,
    deployed_labels,
    digits_repo,
    fresh_store,
    margins_to,
    run_gate,
    trained,
)
from conftest import GitRepo

from dlgate.baselines import Store
from dlgate.checks.accuracy import AccuracySettings
from dlgate.cli import ExitCode, main
from dlgate.config import load_text
from dlgate.errors import ConfigError


def flips(base: Path, head: Path, files: list[Path]) -> tuple[set[str], set[str]]:
    """(fixed, regressed) sample ids, as the deployed path sees the two models."""
    b, h = deployed_labels(base, files), deployed_labels(head, files)
    labels = [f.parent.name for f in files]
    ids = [f"data/real_world/{f.parent.name}/{f.name}" for f in files]
    fixed = {i for i, x, y, t in zip(ids, b, h, labels, strict=True) if x != t and y == t}
    regressed = {i for i, x, y, t in zip(ids, b, h, labels, strict=True) if x == t and y != t}
    return fixed, regressed


def pr(tmp: Path, base_model: Linear, head_model: Linear, extra: str = "") -> GitRepo:
    """main holds `base_model`; branch `feature` swaps in `head_model` (copies of both are
    kept as tmp/base.onnx and tmp/head.onnx)."""
    repo = digits_repo(tmp / "repo", config("acc", extra))
    shutil.copyfile(base_model.save(tmp / "base.onnx"), repo.path / "model.onnx")
    repo.commit("the deployed model")
    repo.branch("feature")
    shutil.copyfile(head_model.save(tmp / "head.onnx"), repo.path / "model.onnx")
    repo.commit("a new model")
    return repo


def worse(model: Linear, n: int, cls: int = 8, *, exactly: bool = False) -> Linear:
    """`model` with a bias that moves its `n` correct samples nearest to class `cls` there;
    `exactly`: find a class for which that regresses those `n` and fixes none."""
    _m, x, labels, _files = trained()
    for c in [cls, *(c for c in range(10) if c != cls)] if exactly else [cls]:
        changed = model.flip_to(x, margins_to(model, x, labels, c)[:n], c)
        before, after = model.predict(x) == labels, changed.predict(x) == labels
        if not exactly or ((before & ~after).sum(), (~before & after).sum()) == (n, 0):
            return changed
    raise AssertionError(f"no class lets exactly {n} samples regress")


def test_an_improving_pr_passes_and_lists_its_fixed_samples(tmp_path: Path) -> None:
    good, *_ = trained()
    before = worse(good, 12)
    repo = pr(tmp_path, before, good)
    uri = fresh_store(tmp_path)
    code, doc, md = run_gate(repo, tmp_path / "out", uri, "--base", "main", "--head", "feature")
    assert code == ExitCode.PASSED, md
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == "pass"
    _m, _x, _labels, files = trained()
    fixed, regressed = flips(tmp_path / "base.onnx", tmp_path / "head.onnx", files)
    assert len(fixed) >= 10
    m = result["measurements"]
    assert set(m["fixed_samples"]) == fixed
    assert set(m["regressed_samples"]) == regressed
    assert result["message"].startswith("real-world accuracy ")
    assert f"{len(fixed)} fixed, {len(regressed)} regressed" in result["message"]
    assert "95% CI" in result["message"]
    for sample in fixed:
        assert sample in md
    assert m["metrics"]["accuracy"]["delta"] > 0
    assert m["metrics"]["accuracy"]["test"] == "McNemar exact"
    # No baseline was recorded for main: it was computed on the spot, and the report says so.
    assert doc["baseline"]["found"] == "computed"
    assert doc["baseline"]["sha"] == repo.sha("main")
    assert "computed now from the merge base" in result["message"]
    with Store.open(uri, "acc") as store:
        run = store.run_for(repo.sha("main"))
        assert run is not None
        assert run.ref == "main (computed)"
    assert doc["metrics"]["accuracy"] == pytest.approx(m["accuracy"])
    artifacts = tmp_path / "out" / "artifacts"
    for name in result["artifacts"]:
        assert (artifacts / name).stat().st_size > 1000
    assert {Path(a).name for a in result["artifacts"]} == {
        "confusion_matrix.png",
        "per_class_delta.png",
    }


def test_a_small_insignificant_drop_warns_and_says_why(tmp_path: Path) -> None:
    good, *_ = trained()
    # 3 regressed samples of 360: a drop of 0.8 pp, beyond a tolerance of 0.5 pp, but McNemar
    # on 3 discordant pairs gives p = 0.25.
    repo = pr(tmp_path, good, worse(good, 3, exactly=True), "  tolerance: 0.005\n")
    code, doc, md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path),
                             "--base", "main", "--head", "feature")  # fmt: skip
    assert code == ExitCode.PASSED, md  # a warning does not block
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == "warn", result["message"]
    assert "the drop exceeds the tolerance of 0.5 pp but is not significant" in result["message"]
    assert "McNemar exact p = 0.25" in result["message"]
    assert "it may be noise" in result["message"]
    assert result["measurements"]["regressed"] == 3
    assert [a["level"] for a in result["annotations"] if a["title"].startswith("regressed")] == [
        "warning"
    ] * 3


def test_a_large_drop_fails_with_the_p_value_and_the_regressed_files(tmp_path: Path) -> None:
    good, _x, _labels, files = trained()
    bad = worse(good, 25)
    repo = pr(tmp_path, good, bad)
    code, doc, md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path),
                             "--base", "main", "--head", "feature")  # fmt: skip
    assert code == ExitCode.REFUSED
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == "fail"
    assert "the drop exceeds the tolerance of 1.0 pp and is significant" in result["message"]
    assert "McNemar exact p = " in result["message"]
    assert result["measurements"]["metrics"]["accuracy"]["p_value"] < 0.01
    _fixed, regressed = flips(tmp_path / "base.onnx", tmp_path / "head.onnx", files)
    assert len(regressed) >= 25
    annotated = {a["path"] for a in result["annotations"] if a["level"] == "failure"}
    assert annotated == regressed
    for path in regressed:
        assert (repo.path / path).is_file()  # annotations name real files of the repository
        assert f"`{path}`" in md
    assert "regressed (right in the baseline, wrong now)" in md
    assert doc["stages"][0]["conclusion"] == "failure"


def test_preprocessing_that_differs_from_the_deployed_metadata_fails(tmp_path: Path) -> None:
    # The PR's training inverts the digits (white on black) before normalising, and the ONNX
    # metadata records no such step: the model is as good as before on its own inputs, nothing
    # raises anywhere, and the deployed path feeds it the other numbers.
    good, *_ = trained()
    m, sd = CONTRACT.mean[0], CONTRACT.std[0]
    trained_on_inverted = Linear(-good.w, good.b + (1 - 2 * m) / sd * good.w.sum(axis=0))
    repo = pr(tmp_path, good, trained_on_inverted)
    code, doc, _md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path),
                              "--base", "main", "--head", "feature")  # fmt: skip
    assert code == ExitCode.REFUSED
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == "fail"
    assert result["measurements"]["regressed"] > 200
    assert "the drop exceeds the tolerance of 1.0 pp and is significant" in result["message"]


def test_the_recorded_baseline_of_the_merge_base_or_an_ancestor_is_used(tmp_path: Path) -> None:
    good, *_ = trained()
    repo = pr(tmp_path, good, good)
    uri = fresh_store(tmp_path)
    repo.checkout("main")
    assert main(["baseline", "--repo", str(repo.path), "--rev", "main", "--tracking-uri", uri,
                 "-q", "--out", str(tmp_path / "b")]) == ExitCode.PASSED  # fmt: skip
    code, doc, _md = run_gate(repo, tmp_path / "exact", uri, "--base", "main", "--head", "feature")
    assert code == ExitCode.PASSED
    assert doc["baseline"]["found"] == "exact"
    assert "the merge base's own run" in checks(doc)["accuracy.accuracy"]["message"]
    # main moves on without a baseline: the PR's merge base is now one commit past it.
    repo.write("README.md", "docs\n")
    repo.commit("docs")
    repo.checkout("feature")
    repo.merge("main")
    code, doc, _md = run_gate(
        repo, tmp_path / "ancestor", uri, "--base", "main", "--head", "feature"
    )
    assert doc["baseline"]["found"] == "ancestor"
    assert doc["baseline"]["distance"] == 1
    assert "1 commits before the merge base" in checks(doc)["accuracy.accuracy"]["message"]


@pytest.mark.parametrize(("policy", "outcome", "code"), [("warn", "warn", 0), ("fail", "fail", 1)])
def test_a_missing_baseline_warns_or_fails_as_configured(
    tmp_path: Path, policy: str, outcome: str, code: int
) -> None:
    good, *_ = trained()
    repo = digits_repo(tmp_path / "repo", config("acc").replace(
        "baseline:\n", f"baseline:\n  missing: {policy}\n"))  # fmt: skip
    good.save(repo.path / "model.onnx")
    repo.commit("model")
    repo.branch("feature")
    repo.write("notes.txt", "x")
    repo.commit("notes")
    got, doc, _md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path),
                             "--base", "main", "--head", "feature")  # fmt: skip
    assert got == code
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == outcome
    assert f"`baseline.missing` is '{policy}': not compared" in result["message"]
    assert "dlgate baseline --rev" in result["message"]
    assert doc["baseline"]["found"] == "none"


def test_a_baseline_of_another_sample_set_is_compared_on_the_shared_samples(tmp_path: Path) -> None:
    good, *_ = trained()
    repo = pr(tmp_path, good, good)
    uri = fresh_store(tmp_path)
    assert main(["baseline", "--repo", str(repo.path), "--rev", "main", "--tracking-uri", uri,
                 "-q", "--out", str(tmp_path / "b")]) == ExitCode.PASSED  # fmt: skip
    removed = sorted((repo.path / "data/real_world/4").glob("*.png"))[:3]
    for path in removed:
        repo.rm(path.relative_to(repo.path).as_posix())
    for i, src in enumerate(sorted((repo.path / "data/real_world/2").glob("*.png"))[:5]):
        shutil.copyfile(src, repo.path / f"data/real_world/2/added-{i}.png")
    repo.commit("curate the real-world samples")
    code, doc, _md = run_gate(repo, tmp_path / "out", uri, "--base", "main", "--head", "feature")
    result = checks(doc)["accuracy.accuracy"]
    m = result["measurements"]
    assert (m["shared"], m["head_only"], m["base_only"]) == (357, 5, 3)
    assert (
        "compared on 357 shared samples (head 362, baseline 360: 5 new, 3 removed)"
        in (result["message"])
    )
    assert code == ExitCode.PASSED


def test_too_few_samples_warn_instead_of_passing(tmp_path: Path) -> None:
    good, *_ = trained()
    repo = digits_repo(tmp_path / "repo", config("acc", "  min_samples: 500\n"))
    good.save(repo.path / "model.onnx")
    repo.commit("model")
    repo.branch("feature")
    repo.write("notes.txt", "x")
    repo.commit("notes")
    code, doc, _md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path),
                              "--base", "main", "--head", "feature")  # fmt: skip
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == "warn"
    assert "fewer than `accuracy.min_samples` = 500: not conclusive" in result["message"]
    assert code == ExitCode.PASSED


def test_labels_the_model_does_not_know_fail_naming_them(tmp_path: Path) -> None:
    good, *_ = trained()
    repo = digits_repo(tmp_path / "repo", config("acc"))
    good.save(repo.path / "model.onnx")
    (repo.path / "data/real_world/7").rename(repo.path / "data/real_world/seven")
    repo.commit("model")
    code, doc, _md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path), "baseline",
                              "--rev", "main")  # fmt: skip
    result = checks(doc)["accuracy.accuracy"]
    assert code == ExitCode.REFUSED
    assert result["outcome"] == "fail"
    assert (
        "labels 'seven' of the real-world samples are no class of the model" in (result["message"])
    )


def test_configured_metrics_with_relative_tolerances(tmp_path: Path) -> None:
    good, *_ = trained()
    extra = (
        "  metrics:\n"
        "    macro_f1: {tolerance: 0.001}\n"
        "    log_loss: {tolerance: 0.5, relative: true, direction: lower}\n"
        "    recall.8: {tolerance: 0.01}\n"
    )
    repo = pr(tmp_path, good, worse(good, 8, cls=3), extra)
    code, doc, md = run_gate(repo, tmp_path / "out", fresh_store(tmp_path),
                             "--base", "main", "--head", "feature")  # fmt: skip
    m = checks(doc)["accuracy.accuracy"]["measurements"]["metrics"]
    assert set(m) == {"macro_f1", "log_loss", "recall.8"}
    assert m["macro_f1"]["test"] == m["log_loss"]["test"] == "bootstrap"
    assert m["log_loss"]["allowed"] == pytest.approx(0.5 * m["log_loss"]["base"])
    assert m["macro_f1"]["outcome"] in ("warn", "fail")
    assert "| log_loss |" in md
    assert code in (ExitCode.PASSED, ExitCode.REFUSED)


def test_config_errors_name_the_key_and_line() -> None:
    with pytest.raises(
        ConfigError, match=r"dlgate.yml:2: .*unknown metric 'acuracy'; did you mean 'accuracy'"
    ):
        load_text("accuracy:\n  metrics:\n    acuracy: {tolerance: 0.01}\n")
    with pytest.raises(
        ConfigError,
        match=r"`metrics.log_loss.direction` is 'higher', but for log_loss lower is better",
    ):
        load_text("accuracy:\n  metrics:\n    log_loss: {direction: higher}\n")
    with pytest.raises(ConfigError, match=r"`significance` must lie between 0 and 1"):
        load_text("accuracy:\n  significance: 5\n")
    with pytest.raises(
        ConfigError, match=r"dlgate.yml:3: unknown key 'tolerence'.*did you mean 'tolerance'"
    ):
        load_text("accuracy:\n  release:\n    tolerence: 0.1\n")
    with pytest.raises(ConfigError, match="leaves the repository"):
        load_text("accuracy:\n  edge_cases:\n    path: ../elsewhere\n")
    defaults = load_text("accuracy:\n  tolerance: 0.02\n")
    (gate,) = defaults.get(AccuracySettings).gates()
    assert (gate.metric, gate.direction, gate.tolerance, gate.relative) == (
        "accuracy", "higher", 0.02, False)  # fmt: skip
