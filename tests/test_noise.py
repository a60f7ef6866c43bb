"""`accuracy.noise`: the head trained again with other seeds; the spread of its metrics.

The repository's training command is a real (small) one: minibatch softmax regression on the
example's 1,437 training digits, seeded from `{seed}` (and checking `$DLGATE_SEED` agrees),
exporting ONNX with the inference contract — about a second per training.
"""

from __future__ import annotations

import json
from pathlib import Path

from accuracy_support import checks, digits_repo, fresh_store, run_gate
from conftest import GitRepo

from dlgate.cli import ExitCode

TRAIN = '''\
"""Minibatch softmax regression on data/train, seeded."""
import argparse, json, os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dlgate.export import InferenceContract

p = argparse.ArgumentParser()
p.add_argument("--out", type=Path, required=True)
p.add_argument("--seed", type=int, required=True)
args = p.parse_args()
assert os.environ["DLGATE_SEED"] == str(args.seed), "the two ways of passing the seed disagree"
files = sorted(Path("data/train").glob("*/*.png"))
x = np.stack([np.asarray(Image.open(f), dtype=np.float64).reshape(64) for f in files])
x = (x / 255 - 0.3054) / 0.376
y = np.array([int(f.parent.name) for f in files])
rng = np.random.default_rng(args.seed)
w, b = rng.normal(0, 0.1, (64, 10)), np.zeros(10)
for epoch in range(3):
    for batch in np.array_split(rng.permutation(len(y)), 40):
        z = x[batch] @ w + b
        q = np.exp(z - z.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        g = (q - np.eye(10)[y[batch]]) / len(batch)
        w -= 0.3 * x[batch].T @ g
        b -= 0.3 * g.sum(0)
contract = InferenceContract("input", (None, 1, 8, 8), "float32", "NCHW", "L", "exact", 1 / 255,
                             (0.3054,), (0.376,), tuple(str(d) for d in range(10)), "logits",
                             "logits")
graph = helper.make_graph(
    [helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["z"]),
     helper.make_node("Add", ["z", "B"], ["logits"])], "g",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
    [numpy_helper.from_array(w.astype(np.float32), "W"),
     numpy_helper.from_array(b.astype(np.float32), "B")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
for k, v in contract.to_metadata().items():
    model.metadata_props.add(key=k, value=v)
args.out.mkdir(parents=True, exist_ok=True)
onnx.save(model, str(args.out / "model.onnx"))
(args.out / "history.json").write_text(json.dumps({"seed": args.seed}))
'''

CONFIG = """\
version: 1
stages: [accuracy]
pipeline:
  train: python train.py --out {{out}} --seed {{seed}}
  seed: 10
  timeout: 120
baseline: {{experiment: noise}}
data:
  splits: {{train: data/train, real_world: data/real_world}}
accuracy:
  bootstrap: 200
  tolerance: {tolerance}
  edge_cases: {{generated: false}}
  noise: {{runs: {runs}}}
"""


def pr(tmp: Path, tolerance: float, runs: int) -> GitRepo:
    repo = digits_repo(tmp / "repo", CONFIG.format(tolerance=tolerance, runs=runs),
                       train_split=True)  # fmt: skip
    repo.write("train.py", TRAIN)
    repo.commit("a seeded pipeline")
    repo.branch("feature")
    repo.write("notes.md", "a PR that changes nothing the model sees\n")
    repo.commit("notes")
    return repo


def test_the_spread_across_seeds_is_measured_and_a_tight_tolerance_warned(tmp_path: Path) -> None:
    repo = pr(tmp_path, tolerance=0.0001, runs=2)
    out = tmp_path / "out"
    code, doc, md = run_gate(
        repo, out, fresh_store(tmp_path), "--base", "main", "--head", "feature"
    )
    result = checks(doc)["accuracy.noise"]
    m = result["measurements"]
    assert m["seeds"] == [10, 11, 12]
    values = m["accuracy"]["values"]
    assert len(values) == 3
    assert len(set(values)) > 1  # other seeds, other models
    assert all(0.85 < v < 1 for v in values)
    assert m["accuracy"]["std"] > 0
    assert m["accuracy"]["suggested_tolerance"] > 0.0001
    assert 0 < m["disagreement"] < 0.2
    for seed in (11, 12):
        history = out / "artifacts" / "noise" / f"seed-{seed}" / "history.json"
        assert json.loads(history.read_text()) == {"seed": seed}
    assert result["outcome"] == "warn"
    assert "the tolerance of 0.0 pp for accuracy is inside the seed noise" in result["message"]
    assert "consider at least" in result["message"]
    assert doc["metrics"]["accuracy_seed_std"] == m["accuracy"]["std"]
    # The comparison with the baseline reports the seed noise next to its verdict.
    assert "Seed noise over 3 trainings" in checks(doc)["accuracy.accuracy"]["details"]
    assert "| `accuracy.noise` | ⚠️ warn |" in md
    assert code == ExitCode.PASSED


def test_a_tolerance_above_the_seed_noise_passes_and_no_runs_skip(tmp_path: Path) -> None:
    repo = pr(tmp_path / "a", tolerance=0.2, runs=1)
    _code, doc, _md = run_gate(repo, tmp_path / "a" / "out", fresh_store(tmp_path / "a"),
                               "--base", "main", "--head", "feature")  # fmt: skip
    result = checks(doc)["accuracy.noise"]
    assert result["outcome"] == "pass"
    assert result["message"].startswith("accuracy: σ = ")
    assert "keeps seed noise from failing the gate" in result["message"]
    repo = pr(tmp_path / "b", tolerance=0.2, runs=0)
    _code, doc, _md = run_gate(repo, tmp_path / "b" / "out", fresh_store(tmp_path / "b"),
                               "--base", "main", "--head", "feature")  # fmt: skip
    result = checks(doc)["accuracy.noise"]
    assert result["outcome"] == "skip"
    assert "set `accuracy.noise.runs` to N" in result["message"]
