"""`export.facts`: measured on real exports of the bundled example's CNN, recorded in a real
MLflow store by a baseline run of the gate, and compared on a pull request."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import GitRepo
from digits_export import EXAMPLE, SHA, Trained, example_module, export_context

from dlgate import gate
from dlgate.checks.facts import ARTIFACT, facts, model_facts
from dlgate.checks.parity import ExportSettings, FactsSettings, Fp16Settings
from dlgate.export import Preprocessing, to_onnx
from dlgate.report import BaselineInfo, Outcome

torch = pytest.importorskip("torch")

CLASSES = tuple(str(d) for d in range(10))
PRE = Preprocessing(color_mode="L", mean=(0.3054,), std=(0.376,))
DIGITS_PARAMETERS = (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)


def export(model: Any, folder: Path, sha: str = SHA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    sample = torch.zeros(2, 1, 8, 8)
    path = folder / "model.onnx"
    return to_onnx(model, sample, path, classes=CLASSES, preprocessing=PRE, git_sha=sha)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("facts")
    repo = root / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "out"))
    torch.manual_seed(0)
    onnx_file = export(example_module().build_model(), root / "model")
    return Trained(repo, onnx_file, root / "model" / "model.pt")


def test_model_facts_of_the_example(example: Trained) -> None:
    found = model_facts(example.onnx)
    assert found == {
        "opset": found["opset"],
        "size_bytes": example.onnx.stat().st_size,
        "parameters": DIGITS_PARAMETERS,
    }
    assert found["opset"] >= 17


def test_facts_are_measured_per_configuration_and_recorded(
    example: Trained, tmp_path: Path
) -> None:
    settings = ExportSettings(batch=8, facts=FactsSettings(repeats=3))
    ctx = export_context(example, tmp_path / "out", export=settings)
    finding = facts(ctx)
    assert finding.outcome is Outcome.PASS, finding.message
    recorded = ctx.record_json[ARTIFACT]
    assert recorded == dict(finding.measurements)
    assert recorded["parameters"] == DIGITS_PARAMETERS
    assert set(recorded["variants"]) == {"fp16", "int8"}
    assert recorded["variants"]["int8"]["size_bytes"] < recorded["size_bytes"]
    latency = recorded["latency_ms"]
    # CPU always; CUDA only where this onnxruntime has it.
    assert {"fp32/CPUExecutionProvider", "fp16/CPUExecutionProvider"} <= set(latency)
    for times in latency.values():
        assert set(times) == {"batch_1", "batch_8"}
        assert all(0 < ms < 1000 for ms in times.values())
    assert finding.message.startswith(f"opset {recorded['opset']}, ")
    assert f"{DIGITS_PARAMETERS:,} parameters; fp32 · CPU: " in finding.message
    assert finding.message.endswith("; not compared: there is no baseline")


def baseline_with(facts_json: dict[str, Any]) -> gate.Baseline:
    info = BaselineInfo("exact", "b" * 40, 0, "run-1", "sqlite:///unused.db")
    return gate.Baseline(
        info=info, metrics={}, load_json=lambda name: facts_json if name == ARTIFACT else {}
    )


def test_growth_beyond_the_limits_warns(example: Trained, tmp_path: Path) -> None:
    settings = ExportSettings(
        batch=8,
        fp16=Fp16Settings(enabled=False),
        facts=FactsSettings(repeats=3, min_latency_ms=0.0),
    )
    ctx = export_context(example, tmp_path / "out", export=settings)
    head = model_facts(example.onnx)
    # The baseline's model was smaller and (absurdly) faster.
    base = {
        "opset": head["opset"] - 1,
        "size_bytes": head["size_bytes"] // 2,
        "parameters": DIGITS_PARAMETERS - 1000,
        "latency_ms": {"fp32/CPUExecutionProvider": {"batch_1": 1e-6, "batch_8": 1e9}},
    }
    ctx.memo("gate.baseline", lambda: baseline_with(base))
    finding = facts(ctx)
    assert finding.outcome is Outcome.WARN
    assert "exceeds +10% (export.facts.max_size_growth)" in finding.message
    growth = DIGITS_PARAMETERS / (DIGITS_PARAMETERS - 1000) - 1  # within the +10% allowed
    assert (
        f"- parameters {DIGITS_PARAMETERS - 1000:,} → {DIGITS_PARAMETERS:,} ({growth:+.1%} vs "
        "baseline bbbbbbb)\n" in finding.details
    )
    assert "max_parameter_growth" not in finding.message
    assert "fp32 · CPU latency at batch 1: 1e-06 → " in finding.message
    assert "exceeds +50% (export.facts.max_latency_growth)" in finding.message
    assert "fp32 · CPU latency at batch 8: 1e+09 → " in finding.details  # faster: fine
    assert f"opset {head['opset'] - 1} → {head['opset']}" in finding.details


def test_a_baseline_without_export_facts_is_reported(example: Trained, tmp_path: Path) -> None:
    from dlgate.errors import BaselineError

    def missing(name: str) -> Any:
        raise BaselineError(f"run run-1 has no artifact dlgate/{name}")

    info = BaselineInfo("computed", "c" * 40, 0, "run-1", "sqlite:///unused.db")
    settings = ExportSettings(batch=8, facts=FactsSettings(repeats=2))
    ctx = export_context(example, tmp_path / "out", export=settings)
    ctx.memo("gate.baseline", lambda: gate.Baseline(info=info, metrics={}, load_json=missing))
    finding = facts(ctx)
    assert finding.outcome is Outcome.PASS
    assert finding.message.endswith(
        "; not compared: the baseline ccccccc recorded no export facts (run run-1 has no "
        "artifact dlgate/export_facts.json)"
    )


CONFIG = """\
version: 1
pipeline:
  train: cp models/model.onnx models/model.pt {out}
  model: model:build_model
data:
  splits: {train: data/train, real_world: data/real_world}
export:
  samples: 64
  batch: 8
  providers: []
  fp16: {enabled: false}
  int8: {enabled: false}
  facts: {repeats: 3}
"""

WIDER = """\
from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
"""


@pytest.mark.slow
def test_a_pull_request_is_compared_with_the_facts_its_baseline_recorded(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLE / "data", git_repo.path / "data")
    shutil.copy(EXAMPLE / "model.py", git_repo.path / "model.py")
    git_repo.write("dlgate.yml", CONFIG)
    torch.manual_seed(0)
    export(example_module().build_model(), git_repo.path / "models")
    git_repo.commit("the digits pipeline")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recorded = gate.run(
        gate.Request(
            git_repo.path,
            "main",
            kind="baseline",
            stages=("export",),
            tracking_uri=uri,
            out=tmp_path / "baseline",
        )
    )
    assert recorded.stages[0].checks[-1].id == "export.facts"

    git_repo.branch("wider")
    git_repo.write("model.py", WIDER)
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(WIDER), "wider.py", "exec"), namespace)
    export(namespace["build_model"](), git_repo.path / "models")
    git_repo.commit("a wider hidden layer")
    report = gate.run(
        gate.Request(
            git_repo.path,
            "wider",
            base="main",
            stages=("export",),
            tracking_uri=uri,
            out=tmp_path / "pr",
        )
    )
    found = {c.id: c for c in report.stages[0].checks}
    assert found["export.parity"].outcome is Outcome.PASS, found["export.parity"].message
    result = found["export.facts"]
    assert result.outcome is Outcome.WARN, result.message
    main = git_repo.sha("main")[:7]
    assert f"parameters {DIGITS_PARAMETERS:,} → " in result.message
    assert f"vs baseline {main}) exceeds +10% (export.facts.max_parameter_growth)" in result.message
    assert "exceeds +10% (export.facts.max_size_growth)" in result.message
