"""Helpers of the accuracy tests: real models on the example's real digits, without torch.

`Linear` is a softmax regression over the 64 pixels of the example's 8x8 digits, trained with
numpy in well under a second and exported as a real ONNX graph carrying the example's inference
contract, so the deployed path evaluates it exactly as it evaluates the example's CNN. Its
logits are known in closed form, so a test can move chosen samples across the decision
boundary (`flip_to`) and know in advance which samples a pull request fixes or regresses.

`digits_repo` makes a scratch git repository holding the example's real-world split (and
optionally its training split) and a `dlgate.yml`; models are committed as `pipeline.artifact`.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from conftest import GitRepo
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dlgate.cli import main
from dlgate.export import InferenceContract
from dlgate.inference import Deployed
from dlgate.report import validate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits"
CLASSES = tuple(str(d) for d in range(10))
CONTRACT = InferenceContract(
    input_name="input",
    input_shape=(None, 1, 8, 8),
    dtype="float32",
    layout="NCHW",
    color_mode="L",
    resize="exact",
    scale=1 / 255,
    mean=(0.3054,),
    std=(0.3760,),
    classes=CLASSES,
    output_name="logits",
    output="logits",
    git_sha="0" * 40,
)


def split(name: str) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(files, normalised inputs (N, 64), labels) of a split of the example."""
    files = sorted((EXAMPLE / "data" / name).glob("*/*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float64) for f in files])
    x = (pixels.reshape(len(files), 64) * CONTRACT.scale - CONTRACT.mean[0]) / CONTRACT.std[0]
    labels = np.array([CLASSES.index(f.parent.name) for f in files])
    return files, x, labels


@dataclass(frozen=True)
class Linear:
    w: np.ndarray  # (64, 10)
    b: np.ndarray  # (10,)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ self.w + self.b)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.logits(x).argmax(axis=1))

    def save(self, path: Path, contract: InferenceContract = CONTRACT) -> Path:
        nodes = [
            helper.make_node("Flatten", [contract.input_name], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["z"]),
            helper.make_node("Add", ["z", "B"], [contract.output_name]),
        ]
        graph = helper.make_graph(
            nodes,
            "softmax_regression",
            [helper.make_tensor_value_info(contract.input_name, TensorProto.FLOAT,
                                           ["batch", 1, 8, 8])],
            [helper.make_tensor_value_info(contract.output_name, TensorProto.FLOAT,
                                           ["batch", 10])],
            [numpy_helper.from_array(self.w.astype(np.float32), "W"),
             numpy_helper.from_array(self.b.astype(np.float32), "B")],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        for key, value in contract.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path

    def flip_to(self, x: np.ndarray, index: list[int], cls: int) -> Linear:
        """A copy whose bias makes class `cls` win for the samples at `index` (and for any
        other sample whose margin is smaller)."""
        z = self.logits(x[index])
        need = float((z.max(axis=1) - z[:, cls]).max()) + 1e-3
        b = self.b.copy()
        b[cls] += need
        return replace(self, b=b)


def train(x: np.ndarray, labels: np.ndarray, epochs: int = 200, seed: int = 0) -> Linear:
    """Full-batch gradient descent on the cross entropy."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.01, (64, 10))
    b = np.zeros(10)
    onehot = np.eye(10)[labels]
    for _ in range(epochs):
        z = x @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) / len(x)
        w -= 0.5 * x.T @ grad
        b -= 0.5 * grad.sum(axis=0)
    return Linear(w, b)


def margins_to(model: Linear, x: np.ndarray, labels: np.ndarray, cls: int) -> list[int]:
    """Correctly predicted samples of other classes, nearest to flipping to `cls` first."""
    z = model.logits(x)
    right = np.flatnonzero((z.argmax(axis=1) == labels) & (labels != cls))
    gap = z[right].max(axis=1) - z[right, cls]
    return [int(i) for i in right[np.argsort(gap)]]


def digits_repo(path: Path, config: str, *, train_split: bool = False) -> GitRepo:
    """A git repository with the example's real-world digits and `config` as dlgate.yml."""
    repo = GitRepo.init(path)
    shutil.copytree(EXAMPLE / "data" / "real_world", repo.path / "data" / "real_world")
    if train_split:
        shutil.copytree(EXAMPLE / "data" / "train", repo.path / "data" / "train")
    repo.write("dlgate.yml", config)
    return repo


CONFIG = """\
version: 1
stages: [accuracy]
pipeline:
  artifact: model.onnx
baseline:
  experiment: {experiment}
data:
  splits: {{real_world: data/real_world}}
accuracy:
  split: real_world
  bootstrap: 500
  edge_cases: {edge_cases}
{extra}"""


def config(experiment: str, extra: str = "", *, edge_cases: str = "{generated: false}") -> str:
    """A dlgate.yml for a digits repository. Edge cases are off unless asked for: they run in
    a child process, seconds that tests of other things need not spend."""
    return CONFIG.format(experiment=experiment, extra=extra, edge_cases=edge_cases)


@functools.cache
def trained() -> tuple[Linear, np.ndarray, np.ndarray, list[Path]]:
    """(a model trained on the example's training split, real-world inputs, labels, files)."""
    _files, x_train, y_train = split("train")
    files, x, labels = split("real_world")
    return train(x_train, y_train), x, labels, files


@functools.cache
def _template(basetemp: Path) -> Path:
    """A migrated, empty MLflow SQLite store (migrating one takes seconds, copying it not)."""
    from mlflow import MlflowClient

    db = basetemp / "accuracy-mlflow-template" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def fresh_store(tmp: Path) -> str:
    """The URI of a new, empty SQLite store in `tmp` (a folder under pytest's base temp)."""
    db = tmp / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(_template(tmp.parent), db)
    return f"sqlite:///{db}"


def run_gate(repo: GitRepo, out: Path, uri: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """`dlgate run` (or another command, if `args` starts with one) in-process: the exit code,
    the JSON report validated against the schema, and the Markdown."""
    command = list(args) if args and not args[0].startswith("-") else ["run", *args]
    code = main([*command, "--repo", str(repo.path), "--tracking-uri", uri, "-q",
                 "--json", str(out / "report.json"), "--markdown", str(out / "report.md"),
                 "--out", str(out / "artifacts")])  # fmt: skip
    if not (out / "report.json").is_file():
        return code, {}, ""
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    validate(document)
    return code, document, (out / "report.md").read_text(encoding="utf-8")


def checks(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for s in document["stages"] for c in s["checks"]}


def deployed_labels(model: Path, files: list[Path]) -> list[str]:
    """What the deployed path predicts: the independent reference for expected flips."""
    return [p.label for p in Deployed.load(model).predict(files)]
