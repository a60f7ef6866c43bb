"""Toy pipelines for the training checks' own tests: small enough that one smoke battery
(one child process) takes seconds, real enough that every check sees real torch.

`toy.py` holds a healthy model factory on 4 Gaussian blobs in 16 dimensions, one factory per
seeded fault (frozen, detached, batch-mixing…), and hooks that misbehave (raise, return the
wrong type, hang). `train_toy.py` is a training command without torch: it writes a linear
ONNX model over 8x8 images with dlgate's contract, and a history.json, both chosen by flags,
so the checks that judge the pipeline's product (`history`, `fit`) get real files.

    results = stage("faulty")                  # check id → CheckResult, cached per session
    results = stage("healthy", "  loss: toy:nll\\n")   # extra lines under `training:`
    finding = judge(check_fn, altered_smoke)   # a check on measurements made up from real ones
"""

from __future__ import annotations

import atexit
import copy
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlgate.checks.smoke import measured
from dlgate.config import load_text
from dlgate.context import Context
from dlgate.report import CheckResult, Finding, Revision
from dlgate.runner import run_stage

TOY = '''"""A toy classifier for dlgate's tests: 4 Gaussian blobs in 16 dimensions."""

import os
import signal
import time

import numpy as np
import torch
from torch import nn


def batches():
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 2.0, (4, 16))
    y = np.repeat(np.arange(4), 64)
    x = centers[y] + rng.normal(0.0, 1.0, (len(y), 16))
    return x.astype(np.float32), y


def healthy():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(inplace=True), nn.Linear(32, 4))


class Detach(nn.Module):
    def forward(self, x):
        return x.detach()


class BatchMean(nn.Module):
    def forward(self, x):
        return x - x.mean(0, keepdim=True)  # statistics over the batch, in eval mode too


class Zeros(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


class Infinite(nn.Module):
    def forward(self, x):
        return x * float("inf")


def faulty():
    """Five faults, one per check: a frozen layer (gradients), statistics over the batch
    (independence), two linear layers in a row (activations), a softmax (outputs) and a seed
    from the clock (determinism)."""
    torch.manual_seed(time.time_ns() % 2**32)
    first = nn.Linear(16, 32).requires_grad_(False)
    return nn.Sequential(
        first, BatchMean(), nn.ReLU(), nn.Linear(32, 32), nn.Dropout(0.0), nn.Linear(32, 4),
        nn.Softmax(dim=1),
    )


def detached():
    """A detach() (gradients), dead ReLUs from a bias of -50 (activations) and a final bias
    far from 0 and from the prior (init_loss)."""
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), Detach(), nn.Linear(32, 4))
    with torch.no_grad():
        model[0].bias.fill_(-50.0)
        model[3].bias.copy_(torch.tensor([6.0, 0.0, 0.0, -6.0]))
    return model


def ignores_input():
    return nn.Sequential(Zeros(), healthy())


def saturated():
    """A deep stack of sigmoids (gradients vanish), the first with weights 8x too large
    (saturated)."""
    layers = []
    for width in (16, 32, 32, 32, 32, 32, 32):
        layers += [nn.Linear(width, 32), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(32, 4))
    with torch.no_grad():
        model[0].weight.mul_(8.0)
    return model


def wrong_width():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


def not_finite():
    return nn.Sequential(Infinite(), healthy())


def tiny_lr(model):
    return torch.optim.SGD(model.parameters(), lr=1e-9)


def huge_lr(model):
    return torch.optim.SGD(model.parameters(), lr=1e4)


def zeroed_step(model, optimizer, loss_fn, inputs, labels):
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    optimizer.zero_grad()  # the fault: between backward() and step()
    optimizer.step()
    return loss


def nll(outputs, labels):
    return torch.nn.functional.nll_loss(outputs, labels)  # on logits: the wrong loss


# --- hooks that misbehave --------------------------------------------------------------------


def raises():
    raise RuntimeError("the factory broke: no such layer")


def not_a_module():
    return "a model"


def loss_float(outputs, labels):
    return 1.0


def batches_dict():
    return {"inputs": 1}


def batches_strings():
    x, y = batches()
    return x, y.astype(str)


def optimizer_list(model):
    return [p for p in model.parameters()]


def step_sleeps(model, optimizer, loss_fn, inputs, labels):
    time.sleep(3600)


def step_none(model, optimizer, loss_fn, inputs, labels):
    return None


def sleeps():
    time.sleep(3600)


def deaf_sleeps():
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # only the parent's hard timeout is left
    time.sleep(3600)


def dies():
    os._exit(3)


# --- metric functions ------------------------------------------------------------------------


def accuracy(y_true, y_pred):
    return float(np.mean(y_true == y_pred))


def accuracy_percent(y_true, y_pred):
    return 100.0 * float(np.mean(y_true == y_pred))


def macro_f1_sklearn(y_true, y_pred):
    from sklearn.metrics import f1_score

    return f1_score(y_true, y_pred, average="macro", zero_division=0)


def macro_f1_nanmean(y_true, y_pred):
    f1 = []
    for c in np.unique(y_true):
        tp = np.sum((y_pred == c) & (y_true == c))
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / np.sum(y_pred == c)
            recall = tp / np.sum(y_true == c)
            f1.append(2 * precision * recall / (precision + recall))
    return float(np.nanmean(f1))


def recall_per_class(y_true, y_pred):
    return [float(np.mean(y_pred[y_true == c] == c)) for c in range(4)]


def accuracy_scores(y_true, scores):
    return float(np.mean(scores.argmax(1) == y_true))


def accuracy_ties(y_true, scores):
    return float(np.mean(scores[np.arange(len(y_true)), y_true] == scores.max(1)))


def metric_raises(y_true, y_pred):
    raise ValueError("no metric today")


def metric_text(y_true, y_pred):
    return "0.5"
'''

TRAIN = '''"""A toy training command without torch: a linear ONNX model over 8x8 images and a
history.json, both chosen by flags (--weights right|wrong|unnormalised, --history JSON)."""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlgate.export import InferenceContract

parser = argparse.ArgumentParser()
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--weights", default="right")
parser.add_argument("--history", default="[1.2, 0.5, 0.05]")
args = parser.parse_args()

contract = InferenceContract(
    input_name="input", input_shape=(None, 1, 8, 8), dtype="float32", layout="NCHW",
    color_mode="L", resize="exact", scale=1 / 255, mean=(0.5,), std=(0.5,),
    classes=("bright", "dark"), output_name="logits", output="logits", git_sha="0" * 40,
)
w = np.zeros((64, 2), np.float32)
w[:, 0], w[:, 1] = 1.0, -1.0  # bright pixels (positive after normalisation) -> class 0
if args.weights == "wrong":
    w = w[:, ::-1].copy()  # as if trained on swapped labels
b = np.zeros(2, np.float32)
if args.weights == "unnormalised":
    b[0] = 100.0  # as if trained on raw 0..255 pixels: on normalised ones class 0 always wins
graph = helper.make_graph(
    [helper.make_node("Flatten", ["input"], ["flat"]),
     helper.make_node("MatMul", ["flat", "W"], ["z"]),
     helper.make_node("Add", ["z", "b"], ["logits"])],
    "toy",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
    [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
for key, value in contract.to_metadata().items():
    model.metadata_props.add(key=key, value=value)
args.out.mkdir(parents=True, exist_ok=True)
onnx.save(model, str(args.out / "model.onnx"))
(args.out / "history.json").write_text(json.dumps({"loss": json.loads(args.history)}))
'''

CONFIG = """\
pipeline:
  model: toy:{model}
  seed: 0
  hook_timeout: {hook_timeout}
data:
  splits: {{train: data/train}}
  classes: [a, b, c, d]
training:
"""


def write_repo(repo: Path) -> Path:
    """The toy repository: toy.py, train_toy.py and 8x8 PNGs, 8 bright and 8 dark."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "toy.py").write_text(TOY, encoding="utf-8")
    (repo / "train_toy.py").write_text(TRAIN, encoding="utf-8")
    rng = np.random.default_rng(0)
    for label, low in (("bright", 180), ("dark", 0)):
        folder = repo / "data" / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(8):
            pixels = rng.integers(low, low + 76, (8, 8)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{label}-{i}.png")
    return repo


def context(repo: Path, out: Path, config: str) -> Context:
    return Context(
        repo=repo,
        git_dir=repo,
        head=Revision("HEAD", "0" * 40),
        base=None,
        merge_base=None,
        config=load_text(config, "dlgate.yml"),
        out=out,
    )


GOOD_METRICS = """\
  metrics:
    accuracy: toy:accuracy
    macro_f1: toy:macro_f1_sklearn
    per_class_recall: toy:recall_per_class
"""


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="dlgate-toys-"))
    atexit.register(shutil.rmtree, root, True)
    write_repo(root / "repo")
    return root


def config(model: str = "healthy", extra: str = "", hook_timeout: float = 60) -> str:
    """The toy's dlgate.yml; `extra` lines are appended under `training:` (indent them)."""
    batches = "" if "batches:" in extra else "  batches: toy:batches\n"
    return CONFIG.format(model=model, hook_timeout=hook_timeout) + batches + extra


def fresh(model: str = "healthy", extra: str = "", hook_timeout: float = 60) -> Context:
    """A new Context on the shared toy repository, with its own output folder."""
    root = _root()
    out = Path(tempfile.mkdtemp(prefix="out-", dir=root))
    return context(root / "repo", out, config(model, extra, hook_timeout))


@functools.cache
def run(
    model: str = "healthy", extra: str = "", hook_timeout: float = 60
) -> tuple[Context, dict[str, CheckResult]]:
    """The training stage on the toy with `pipeline.model: toy:<model>`, once per session."""
    ctx = fresh(model, extra, hook_timeout)
    return ctx, {c.id: c for c in run_stage("training", ctx).checks}


def stage(
    model: str = "healthy", extra: str = "", hook_timeout: float = 60
) -> dict[str, CheckResult]:
    return run(model, extra, hook_timeout)[1]


def num(result: CheckResult, key: str) -> float:
    """A numeric measurement of a check result."""
    value = result.measurements[key]
    assert isinstance(value, (int, float)), (key, value)
    return float(value)


def healthy_smoke() -> dict[str, Any]:
    """A deep copy of the healthy toy's real smoke measurements, to alter for one judgement."""
    ctx, _ = run("healthy", GOOD_METRICS)
    return copy.deepcopy(measured(ctx))


def trained(weights: str = "right", history: str = "[1.2, 0.5, 0.05]", extra: str = "") -> Context:
    """A Context whose pipeline trains with `train_toy.py` (a real command, no torch):
    `weights` right, wrong (swapped labels) or unnormalised; `history` the losses it writes;
    `extra` lines under `training:`."""
    root = _root()
    out = Path(tempfile.mkdtemp(prefix="out-", dir=root))
    text = (
        "pipeline:\n"
        f"  train: python train_toy.py --out {{out}} --weights {weights} --history '{history}'\n"
        "  model: toy:healthy\n"
        "data:\n  splits: {train: data/train}\n"
        "training:\n" + extra
    )
    return context(root / "repo", out, text)


def judge(check: Callable[[Context], Finding], smoke: dict[str, Any], extra: str = "") -> Finding:
    """What `check` says about the measurements `smoke` (taken as this run's) under the
    toy's config with `extra`."""
    ctx = fresh("healthy", extra)
    ctx.memo("training.smoke", lambda: smoke)
    return check(ctx)
