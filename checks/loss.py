"""The `training` section, the batch the smoke checks train on, and `training.loss`: a short
seeded training run from scratch, whose loss must decrease."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from dlgate.checks.smoke import advice, measured, part
from dlgate.config import section
from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome

Level = Literal["fail", "warn", "off"]
# The metrics dlgate has a reference implementation of (checks/metrics.py).
METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "per_class_recall")


@dataclass(frozen=True)
class InitLossSettings:
    tolerance: float = 0.25  # |initial loss / expected - 1| above this → fail
    expected: float = 0.0  # the expected initial loss; 0: ln(number of classes)
    max_bias: float = 1.0  # largest offset (nats) of a final-layer bias from 0 and the log prior


@dataclass(frozen=True)
class GradientsSettings:
    # Parameter names (fnmatch globs, e.g. "backbone.*") that may be frozen or get no gradient.
    frozen: tuple[str, ...] = ()


@dataclass(frozen=True)
class GradientFlowSettings:
    # Mean |gradient| (non-zero entries) of the weakest weight tensor / the strongest, at init.
    min_ratio: float = 1e-4
    max_norm: float = 1e3  # largest global gradient norm in the short run


@dataclass(frozen=True)
class OutputsSettings:
    # What the model's output is; "": the ONNX contract's `output.kind`, else logits.
    kind: Literal["", "logits", "probabilities", "log_probabilities"] = ""
    tolerance: float = 1e-3  # how far probabilities may sum from 1 (log: logsumexp from 0)


@dataclass(frozen=True)
class OverfitSettings:
    samples: int = 16  # the tiny batch
    steps: int = 150
    max_loss: float = 0.05  # its loss (eval mode) after the steps


@dataclass(frozen=True)
class IndependenceSettings:
    samples: int = 8
    tolerance: float = 1e-5  # largest cross-sample effect, relative to a sample's own


@dataclass(frozen=True)
class ZeroInputSettings:
    margin: float = 0.2  # real-input final loss must be ≤ zeroed-input's - margin × |that|


@dataclass(frozen=True)
class ActivationsSettings:
    max_dead: float = 0.7  # fraction of a ReLU layer's units never active on the batch
    max_saturated: float = 0.5  # fraction of a sigmoid/tanh layer's outputs in its flat tails
    linear_chains: Level = "fail"  # affine layers feeding affine layers with no activation


@dataclass(frozen=True)
class DeterminismSettings:
    steps: int = 5  # steps rerun from the same seed
    atol: float = 1e-6  # largest difference allowed in losses and parameters


@dataclass(frozen=True)
class HistorySettings:
    min_decrease: float = 0.5  # last epoch's loss must be ≤ (1 - this) × the first epoch's
    max_final: float = 0.5  # last epoch's loss must be ≤ this × ln(C) (chance is ln C)
    allow_negative: bool = False  # a classification loss below 0 is a wrong loss


@dataclass(frozen=True)
class FitSettings:
    min_accuracy: float = 0.8  # of the shipped model on its training samples, as deployed


def _no_metrics() -> Mapping[str, str]:
    return types.MappingProxyType({})


@section("training")
@dataclass(frozen=True)
class TrainingSettings:
    split: str = "train"  # the data split the smoke checks draw batches from
    samples: int = 512  # how many samples of it
    steps: int = 60  # optimizer steps of the smoke run
    lr: float = 1e-3  # the default optimizer's (Adam) learning rate
    min_decrease: float = 0.2  # the final loss must be below (1 - this) × the initial loss
    batch_size: int = 64
    budget: float = 60.0  # seconds for every smoke measurement together (one child process)
    # Hooks, module:function in the repository; empty: dlgate's default.
    batches: str = ""  # () → (inputs, labels); default: `split` decoded as deployed
    loss: str = ""  # (outputs, labels) → scalar tensor; default: cross-entropy
    optimizer: str = ""  # (model) → torch.optim.Optimizer; default: Adam(lr)
    step: str = ""  # (model, optimizer, loss_fn, inputs, labels) → the step's loss
    # The user's own metric functions, checked against dlgate's on crafted cases:
    # {accuracy|macro_f1|macro_precision|macro_recall|per_class_recall: module:function}.
    metrics: Mapping[str, str] = field(default_factory=_no_metrics)
    metric_inputs: Literal["labels", "scores"] = "labels"  # f(y_true, y_pred | scores)
    metric_tolerance: float = 1e-6
    # The repository's own tests, e.g. "python -m pytest -q tests" (gets --junitxml).
    tests: str = ""
    tests_timeout: float = 600.0
    init_loss: InitLossSettings = field(default_factory=InitLossSettings)
    gradients: GradientsSettings = field(default_factory=GradientsSettings)
    gradient_flow: GradientFlowSettings = field(default_factory=GradientFlowSettings)
    outputs: OutputsSettings = field(default_factory=OutputsSettings)
    overfit: OverfitSettings = field(default_factory=OverfitSettings)
    independence: IndependenceSettings = field(default_factory=IndependenceSettings)
    zero_input: ZeroInputSettings = field(default_factory=ZeroInputSettings)
    activations: ActivationsSettings = field(default_factory=ActivationsSettings)
    determinism: DeterminismSettings = field(default_factory=DeterminismSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        unknown = [name for name in self.metrics if name not in METRICS]
        if unknown:
            raise ValueError(
                f"`metrics` names {', '.join(map(repr, unknown))}: dlgate checks "
                f"{', '.join(METRICS)}; key each function by the metric it computes"
            )
        for name in ("samples", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be 1 or more")
        for name in ("budget", "tests_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive number of seconds")


@check("training.loss")
def loss(ctx: Context) -> Finding:
    """A short seeded training run: the loss must go down."""
    settings = ctx.config.get(TrainingSettings)
    run = part(ctx, "run")
    if isinstance(run, Finding):
        return run
    losses = [float(v) for v in run["losses"]]
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    measurements = {
        "initial_loss": first,
        "final_loss": last,
        "steps": len(losses),
        "smoke_seconds": round(float(measured(ctx)["seconds"]), 2),  # the whole battery's
    }
    if not all(math.isfinite(v) for v in losses):
        return Finding(
            Outcome.FAIL,
            f"the loss became NaN or infinite at step {len(losses)} of the smoke run",
            measurements,
            details=advice(
                "learning rate too high → lower it (÷10) or clip gradients",
                "a log/division of zero in the loss or model → add an epsilon, use "
                "`log_softmax`/`cross_entropy` instead of `log(softmax(x))`",
                "inputs with NaN/Inf → check the data stage and normalisation",
            ),
        )
    if last > first * (1 - settings.min_decrease):
        return Finding(
            Outcome.FAIL,
            f"the loss did not decrease: {first:.3f} → {last:.3f} over {len(losses)} steps "
            f"(needs a drop of {settings.min_decrease:.0%})",
            measurements,
            details=advice(
                "learning rate too low or too high → try ×10 and ÷10 of it",
                "gradients zeroed, detached or never applied → see `training.gradients`",
                "labels that do not match the inputs (shuffled, misaligned) → check the loader",
                "the model ignores its input → see `training.zero_input`",
            ),
        )
    return Finding(
        Outcome.PASS, f"loss {first:.3f} → {last:.3f} over {len(losses)} steps", measurements
    )


def training_batch(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the training split, decoded as deployed (the head model's ONNX contract)."""
    return ctx.memo("training.batch", lambda: decoded_batch(ctx, product(ctx).onnx))


def decoded_batch(ctx: Context, onnx: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training split's seeded choice of samples, decoded by the contract in the ONNX
    metadata of `onnx`, and their labels as indices of its classes."""
    from dlgate.inference import Deployed

    settings = ctx.config.get(TrainingSettings)
    data = ctx.config.get(DataSettings)
    deployed = Deployed.load(onnx)
    samples = load_split(ctx.repo, data, settings.split)
    rng = np.random.default_rng(ctx.config.pipeline.seed)
    picked = rng.permutation(len(samples))[: settings.samples]
    chosen = [samples[i] for i in sorted(picked)]
    names = list(deployed.contract.classes)
    unknown = sorted({s.label for s in chosen} - set(names))
    if unknown:
        raise ValueError(
            f"split {settings.split!r} has labels {unknown} that the model's classes "
            f"({names}, from its ONNX metadata) do not include"
        )
    inputs = np.stack([deployed.decode(s.path) for s in chosen])
    labels = np.array([names.index(s.label) for s in chosen], dtype=np.int64)
    return inputs, labels
