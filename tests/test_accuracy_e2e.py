"""The accuracy stage end to end on the bundled example (examples/digits): its CNN trained by
its own `train.py`, evaluated by the deployed path, compared with baselines in a real MLflow
store — SQLite, and a real `mlflow server` process.

The example is trained once per module (`trained_cnn`). Pull requests that change the model
commit it (`pipeline.artifact`): the trained CNN, or the CNN with a bias added to its logits
in the ONNX graph, which moves chosen samples across the decision boundary, so each test knows
what the PR fixes and regresses. The PR whose training preprocessing no longer matches the
deployed metadata is trained for real by the gate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from accuracy_support import checks, fresh_store, run_gate
from conftest import GitRepo
from mlflow_server import MlflowServer
from onnx import helper, numpy_helper

from dlgate.cli import ExitCode, main
from dlgate.inference import Deployed

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Trained:
    onnx: Path
    logits: np.ndarray  # (360, 10): the deployed path's raw outputs on the real-world split
    labels: np.ndarray
    samples: list[str]  # repository-relative paths, in the same order

    def bias_flipping(self, n: int, cls: int, start: np.ndarray | None = None) -> np.ndarray:
        """A logit bias (on top of `start`) that moves exactly the `n` correct samples nearest
        to `cls` there and fixes none; another class is tried when `cls` cannot."""
        base = np.zeros(10) if start is None else start
        z = self.logits + base
        right = z.argmax(1) == self.labels
        for c in [cls, *(c for c in range(10) if c != cls)]:
            gap = z.max(1) - z[:, c]
            order = np.flatnonzero(right & (self.labels != c))
            order = order[np.argsort(gap[order])]
            bias = base.copy()
            bias[c] += gap[order[n - 1]] + 1e-3
            after = (self.logits + bias).argmax(1) == self.labels
            if ((right & ~after).sum(), (~right & after).sum()) == (n, 0):
                return bias
        raise AssertionError(f"no bias regresses exactly {n} samples")

    def with_bias(self, bias: np.ndarray, dst: Path) -> Path:
        """The trained ONNX graph with `bias` added to its logits."""
        model = onnx.load(str(self.onnx))
        out = model.graph.output[0].name
        for node in model.graph.node:
            for i, name in enumerate(node.output):
                if name == out:
                    node.output[i] = "unbiased_logits"
        model.graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), "bias"))
        model.graph.node.append(helper.make_node("Add", ["unbiased_logits", "bias"], [out]))
        dst.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(dst))
        return dst

    def predicted(self, bias: np.ndarray) -> np.ndarray:
        return np.asarray((self.logits + bias).argmax(1))


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The example's CNN, trained by the example's own command."""
    work = tmp_path_factory.mktemp("cnn")
    shutil.copytree(EXAMPLE, work / "digits", ignore=shutil.ignore_patterns("__pycache__", "out"))
    proc = subprocess.run(
        [sys.executable, "train.py", "--out", str(work / "out")],
        cwd=work / "digits", capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "DLGATE_GIT_SHA": "0" * 40},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted((EXAMPLE / "data" / "real_world").glob("*/*.png"))
    deployed = Deployed.load(work / "out" / "model.onnx")
    logits = deployed.outputs(np.stack([deployed.decode(f) for f in files])).astype(np.float64)
    labels = np.array([int(f.parent.name) for f in files])
    assert (logits.argmax(1) == labels).mean() > 0.9
    samples = [f.relative_to(EXAMPLE).as_posix() for f in files]
    return Trained(work / "out" / "model.onnx", logits, labels, samples)


def example_repo(path: Path, pipeline: str, experiment: str, tolerance: float = 0.01) -> GitRepo:
    """The example as a user's repository, gating the accuracy stage only."""
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("__pycache__", "out"))
    repo = GitRepo.init(path)
    config = (EXAMPLE / "dlgate.yml").read_text()
    config = config[: config.index("pipeline:")] + pipeline + config[config.index("\nbaseline:") :]
    replaced = {
        "version: 1\n": "version: 1\nstages: [accuracy]\n",
        "  branch: main\n": f"  branch: main\n  experiment: {experiment}\n",
        "  tolerance: 0.01  ": f"  tolerance: {tolerance}  ",
    }
    for old, new in replaced.items():
        assert old in config, f"the example's dlgate.yml changed: no {old!r}"
        config = config.replace(old, new)
    repo.write("dlgate.yml", config + "  bootstrap: 1000\n  edge_cases: {generated: true}\n")
    return repo


ARTIFACT = "pipeline:\n  artifact: model.onnx\n"


@dataclass
class Flows:
    repo: GitRepo
    base_bias: np.ndarray


@pytest.fixture(scope="module")
def flows(trained_cnn: Trained, tmp_path_factory: pytest.TempPathFactory) -> Flows:
    """main: the CNN with 12 samples pushed to class 8; one branch per pull request."""
    root = tmp_path_factory.mktemp("flows")
    repo = example_repo(root / "repo", ARTIFACT, "digits-e2e", tolerance=0.005)
    base_bias = trained_cnn.bias_flipping(12, 8)
    trained_cnn.with_bias(base_bias, repo.path / "model.onnx")
    repo.commit("the digits pipeline with its deployed model")
    for name, bias in {
        "improve": np.zeros(10),
        "small-drop": trained_cnn.bias_flipping(3, 1, start=base_bias),
        "large-drop": trained_cnn.bias_flipping(25, 3, start=base_bias),
    }.items():
        repo.checkout("main")
        repo.branch(name)
        trained_cnn.with_bias(bias, repo.path / "model.onnx")
        repo.commit(f"model: {name}")
    return Flows(repo, base_bias)


def expected_flips(t: Trained, base: np.ndarray, head: np.ndarray) -> tuple[set[str], set[str]]:
    b, h = t.predicted(base) == t.labels, t.predicted(head) == t.labels
    return ({s for s, x, y in zip(t.samples, b, h, strict=True) if not x and y},
            {s for s, x, y in zip(t.samples, b, h, strict=True) if x and not y})  # fmt: skip


def assert_pr_flows(flows: Flows, t: Trained, uri: str, out: Path) -> None:
    """The three PRs against one store: the first computes main's baseline."""
    code, doc, md = run_gate(
        flows.repo, out / "improve", uri, "--base", "main", "--head", "improve"
    )
    result = checks(doc)["accuracy.accuracy"]
    assert code == ExitCode.PASSED, md
    assert result["outcome"] == "pass"
    fixed, regressed = expected_flips(t, flows.base_bias, np.zeros(10))
    assert set(result["measurements"]["fixed_samples"]) == fixed
    assert set(result["measurements"]["regressed_samples"]) == regressed
    assert len(fixed) >= 12
    assert f"{len(fixed)} fixed, {len(regressed)} regressed" in result["message"]
    assert doc["baseline"]["found"] == "computed"
    assert "baseline computed now from the merge base" in result["message"]
    assert checks(doc)["accuracy.edge_cases"]["outcome"] == "pass"

    code, doc, md = run_gate(
        flows.repo, out / "small", uri, "--base", "main", "--head", "small-drop"
    )
    result = checks(doc)["accuracy.accuracy"]
    assert code == ExitCode.PASSED, md
    assert result["outcome"] == "warn"
    assert (
        "exceeds the tolerance of 0.5 pp but is not significant (McNemar exact p = 0.25"
        in (result["message"])
    )
    assert doc["baseline"]["found"] == "exact"  # recorded by the first PR's run

    code, doc, md = run_gate(
        flows.repo, out / "large", uri, "--base", "main", "--head", "large-drop"
    )
    result = checks(doc)["accuracy.accuracy"]
    assert code == ExitCode.REFUSED
    assert result["outcome"] == "fail"
    assert "and is significant (McNemar exact p = " in result["message"]
    _fixed, regressed = expected_flips(t, flows.base_bias,
                                       t.bias_flipping(25, 3, start=flows.base_bias))  # fmt: skip
    assert len(regressed) == 25
    assert {a["path"] for a in result["annotations"] if a["level"] == "failure"} == regressed
    for sample in regressed:
        assert f"`{sample}`" in md


def test_pull_requests_against_a_sqlite_store(
    flows: Flows, trained_cnn: Trained, tmp_path: Path
) -> None:
    assert_pr_flows(flows, trained_cnn, fresh_store(tmp_path), tmp_path)


def test_the_same_flows_against_a_real_mlflow_server(
    flows: Flows, trained_cnn: Trained, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    assert_pr_flows(flows, trained_cnn, mlflow_server.uri, tmp_path)


def test_training_preprocessing_that_differs_from_the_deployed_metadata_fails(
    trained_cnn: Trained, tmp_path: Path
) -> None:
    """main trains with the example's command; its baseline is recorded from the committed
    model that command makes (training is deterministic). The PR changes how training
    normalises pixels — forgetting the 1/255 scale — while the metadata still records it."""
    repo = example_repo(tmp_path / "repo", "pipeline:\n  train: python train.py --out {out}\n"
                        "  timeout: 900\n", "digits-preprocessing")  # fmt: skip
    shutil.copyfile(trained_cnn.onnx, repo.path / "model.onnx")
    repo.commit("the digits pipeline")
    uri = fresh_store(tmp_path)
    override = tmp_path / "artifact.yml"
    override.write_text((repo.path / "dlgate.yml").read_text().replace(
        "  train: python train.py --out {out}\n", "  artifact: model.onnx\n"))  # fmt: skip
    assert main(["baseline", "--repo", str(repo.path), "--rev", "main", "--config", str(override),
                 "--tracking-uri", uri, "-q", "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    repo.branch("feature")
    train = repo.path / "train.py"
    text = train.read_text()
    old = "    return (pixels * SCALE - MEAN) / STD\n"
    assert old in text, "the example's normalise() changed; update this fault"
    train.write_text(text.replace(old, "    return (pixels - MEAN) / STD  # 'simplified'\n"))
    repo.commit("simplify the normalisation")
    code, doc, md = run_gate(repo, tmp_path / "out", uri, "--base", "main", "--head", "feature")
    assert code == ExitCode.REFUSED, md
    result = checks(doc)["accuracy.accuracy"]
    assert result["outcome"] == "fail"
    assert doc["baseline"]["found"] == "exact"
    assert "the drop exceeds the tolerance of 0.5 pp and is significant" not in result["message"]
    assert "the drop exceeds the tolerance of 1.0 pp and is significant" in result["message"]
    assert result["measurements"]["regressed"] > 50
