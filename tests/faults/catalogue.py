"""The faults, how each is seeded into a copy of the example, and the runs that judge them.

Each fault is a few exact text edits of `model.py` or `train.py` (an edit whose text is not
found exactly once fails loudly, so the catalogue cannot silently stop applying to the
example). A run builds a `Context` on the copy and runs the real training stage on it.

What is reused, and why that is sound:
- a fault in `train.py` changes only the product (the ONNX model the training command
  writes); the smoke measurements never import `train.py`, so the unmodified example's
  measurements are reused and the product is trained for real. The run asserts that the
  fault's ONNX contract equals the unmodified one, so the batch the smoke checks would decode
  is the same.
- a fault in `model.py` is caught by the smoke measurements, which are taken for real on the
  faulty model; the unmodified product (and the batch decoded with its contract) is reused
  instead of retraining. A retrained product could only add catches (`history`, `fit`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlgate.checks.loss import training_batch
from dlgate.checks.smoke import measured
from dlgate.config import load_text
from dlgate.context import Context
from dlgate.export import read_contract
from dlgate.pipeline import product
from dlgate.report import CheckResult, Outcome, Revision
from dlgate.runner import run_stage

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"
SHA = "fa17" * 10

_HELPERS = """

class Detach(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


class MixedFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).reshape(x.shape[0], -1)  # moves the batch axis first


def scaled(layer: nn.Linear, k: float) -> nn.Linear:
    with torch.no_grad():
        layer.weight.mul_(k)
        layer.bias.mul_(k)
    return layer
"""
_IMPORTS = (
    "from torch import nn\n",
    "import time\n\nimport torch\nfrom torch import nn\n" + _HELPERS,
)
_LAST = "nn.Linear(64, 10),  # logits; the deployed path applies the softmax"


@dataclass(frozen=True)
class Fault:
    name: str
    file: str  # model.py or train.py, in examples/digits
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text)
    expected: tuple[str, ...]  # the named checks meant to catch it (one failing suffices)

    def apply(self, repo: Path) -> None:
        path = repo / self.file
        text = path.read_text(encoding="utf-8")
        for old, new in self.edits:
            if text.count(old) != 1:
                raise AssertionError(f"{self.name}: {old!r} is not in {self.file} exactly once")
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")


def _model(name: str, old: str, new: str, *expected: str) -> Fault:
    return Fault(name, "model.py", (_IMPORTS, (old, new)), expected)


def _train(name: str, old: str, new: str, *expected: str) -> Fault:
    return Fault(name, "train.py", ((old, new),), expected)


FAULTS: tuple[Fault, ...] = (
    _train("learning rate ×1000", "LEARNING_RATE = 1e-3\n", "LEARNING_RATE = 1e-3 * 1000\n",
           "training.history", "training.fit"),
    _train("learning rate ÷1000", "LEARNING_RATE = 1e-3\n", "LEARNING_RATE = 1e-3 / 1000\n",
           "training.history", "training.fit"),
    _model("a frozen layer", "nn.Conv2d(1, 16, kernel_size=3, padding=1),",
           "nn.Conv2d(1, 16, kernel_size=3, padding=1).requires_grad_(False),",
           "training.gradients"),
    _model("detach() in the forward pass", "nn.MaxPool2d(2),  # 32 x 4 x 4",
           "nn.MaxPool2d(2),\n        Detach(),", "training.gradients"),
    _model("a batch-mixing reshape", "nn.Flatten(),", "MixedFlatten(),",
           "training.independence"),
    _train("labels shuffled", "labels = np.array([label for _, label in samples])",
           "labels = np.random.permutation([label for _, label in samples])", "training.fit",
           "training.history"),
    _model("a missing activation", "nn.Linear(32 * 4 * 4, 64),\n        nn.ReLU(),\n",
           "nn.Linear(32 * 4 * 4, 64),\n", "training.activations"),
    _model("softmax applied twice", _LAST, "nn.Linear(64, 10),\n        nn.Softmax(dim=1),",
           "training.outputs"),
    _model("log-softmax fed to cross-entropy", _LAST,
           "nn.Linear(64, 10),\n        nn.LogSoftmax(dim=1),", "training.outputs"),
    _train("the wrong loss for the task (NLL on logits)", "loss_fn = nn.CrossEntropyLoss()",
           "loss_fn = nn.NLLLoss()", "training.history"),
    _train("inputs not normalised", "images = normalise(pixels.astype(np.float32))",
           "images = pixels.astype(np.float32)", "training.fit"),
    _train("gradients zeroed between backward and step",
           "            loss.backward()\n            optimizer.step()",
           "            loss.backward()\n            optimizer.zero_grad()\n"
           "            optimizer.step()", "training.history", "training.fit"),
    # Beyond the list: one per smoke check the list above does not reach.
    _model("input dropout p=1.0 (a typo for 0.1)", "return nn.Sequential(\n",
           "return nn.Sequential(\n        nn.Dropout(p=1.0),\n", "training.zero_input"),
    _model("last layer initialised 50× too large", _LAST, "scaled(nn.Linear(64, 10), 50.0),",
           "training.init_loss"),
    _model("initialisation seeded from the clock", "def build_model() -> nn.Module:\n",
           "def build_model() -> nn.Module:\n    torch.manual_seed(time.time_ns() % 2**32)\n",
           "training.determinism"),
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    fault: Fault
    results: dict[str, CheckResult]

    @property
    def failed(self) -> list[str]:
        return [i for i, r in self.results.items() if r.outcome is Outcome.FAIL]

    @property
    def errors(self) -> list[str]:
        return [i for i, r in self.results.items() if r.outcome is Outcome.ERROR]

    @property
    def caught_by(self) -> list[str]:
        return [i for i in self.fault.expected if i in self.failed]


class Suite:
    """Runs the training stage on copies of the example under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._healthy: tuple[Context, dict[str, CheckResult]] | None = None

    def context(self, name: str) -> Context:
        repo = self.root / name / "repo"
        shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "out"))
        config = load_text((repo / "dlgate.yml").read_text(encoding="utf-8"), "dlgate.yml")
        return Context(
            repo=repo, git_dir=repo, head=Revision("HEAD", SHA), base=None, merge_base=None,
            config=config, out=self.root / name / "out",
        )  # fmt: skip

    def healthy(self) -> dict[str, CheckResult]:
        """The unmodified example's training stage (run once)."""
        if self._healthy is None:
            ctx = self.context("healthy")
            self._healthy = (ctx, _stage(ctx))
        return self._healthy[1]

    def run(self, fault: Fault) -> Row:
        self.healthy()
        assert self._healthy is not None
        base = self._healthy[0]
        ctx = self.context(fault.name.replace(" ", "-").replace("/", "-"))
        fault.apply(ctx.repo)
        if fault.file == "model.py":
            _reuse(ctx, "pipeline.product", lambda: product(base))
            _reuse(ctx, "training.batch", lambda: training_batch(base))
        else:
            _reuse(ctx, "training.smoke", lambda: measured(base))
        results = _stage(ctx)
        if fault.file == "train.py" and ctx.config.pipeline.train:
            got, want = read_contract(product(ctx).onnx), read_contract(product(base).onnx)
            assert got == want, f"{fault.name}: the contract changed, reuse is unsound"
        return Row(fault, results)


def _reuse(ctx: Context, key: str, value: Callable[[], Any]) -> None:
    ctx.memo(key, value)


def _stage(ctx: Context) -> dict[str, CheckResult]:
    return {c.id: c for c in run_stage("training", ctx).checks}


def table(rows: list[Row], healthy: dict[str, CheckResult]) -> str:
    """The catch table: each fault, the check meant to catch it, every check that failed."""
    head = ("fault", "file", "caught by", "all failing checks")
    body = [
        (
            row.fault.name,
            row.fault.file,
            ", ".join(row.caught_by) or "MISSED",
            ", ".join(i.removeprefix("training.") for i in row.failed + row.errors) or "-",
        )
        for row in rows
    ]
    widths = [max(len(r[k]) for r in [head, *body]) for k in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in [head, tuple("-" * len(c) for c in head), *body]
    ]
    caught_n = sum(bool(r.caught_by) for r in rows)
    alarms = [i for i, r in healthy.items() if r.outcome not in (Outcome.PASS, Outcome.SKIP)]
    lines += [
        "",
        f"catch rate: {caught_n}/{len(rows)} ({caught_n / max(1, len(rows)):.0%}); "
        f"false alarms on the unmodified example: {len(alarms)} of {len(healthy)} checks"
        + (f" ({', '.join(alarms)})" if alarms else ""),
    ]
    return "\n".join(lines)
