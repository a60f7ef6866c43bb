"""`training.loss`: a short training run from scratch, whose loss must decrease."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlgate import framework, hooks
from dlgate.config import section
from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@section("training")
@dataclass(frozen=True)
class TrainingSettings:
    split: str = "train"  # the data split the smoke checks draw batches from
    samples: int = 512  # how many samples of it
    steps: int = 60  # optimizer steps of the smoke run
    lr: float = 1e-3
    min_decrease: float = 0.2  # the final loss must be below (1 - this) × the initial loss


@check("training.loss")
def loss(ctx: Context) -> Finding:
    """A short seeded training run: the loss must go down."""
    settings = ctx.config.get(TrainingSettings)
    spec = ctx.config.pipeline.model
    if not spec:
        return Finding(Outcome.SKIP, "`pipeline.model` is not set: no model factory to train")
    inputs, labels = training_batch(ctx)
    result = hooks.call(
        framework.smoke_train,
        spec,
        inputs,
        labels,
        settings.steps,
        settings.lr,
        ctx.config.pipeline.seed,
        cwd=ctx.repo,
        timeout=ctx.config.pipeline.hook_timeout,
        hook="pipeline.model",
    )
    losses = [float(v) for v in result["losses"]]
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    measurements = {"initial_loss": first, "final_loss": last, "steps": len(losses)}
    if not all(math.isfinite(v) for v in losses):
        return Finding(
            Outcome.FAIL, "the loss became NaN or infinite during training", measurements
        )
    if last > first * (1 - settings.min_decrease):
        return Finding(
            Outcome.FAIL,
            f"the loss did not decrease: {first:.3f} → {last:.3f} over {len(losses)} steps "
            f"(needs a drop of {settings.min_decrease:.0%}); check the learning rate, the labels "
            "and that every layer is trainable",
            measurements,
        )
    return Finding(
        Outcome.PASS, f"loss {first:.3f} → {last:.3f} over {len(losses)} steps", measurements
    )


def training_batch(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the training split, decoded as deployed (the model's ONNX contract)."""

    def load() -> tuple[np.ndarray, np.ndarray]:
        from dlgate.inference import Deployed

        settings = ctx.config.get(TrainingSettings)
        data = ctx.config.get(DataSettings)
        deployed = Deployed.load(product(ctx).onnx)
        samples = load_split(ctx.repo, data, settings.split)
        rng = np.random.default_rng(ctx.config.pipeline.seed)
        picked = rng.permutation(len(samples))[: settings.samples]
        chosen = [samples[i] for i in sorted(picked)]
        names = list(deployed.contract.classes)
        inputs = np.stack([deployed.decode(s.path) for s in chosen])
        labels = np.array([names.index(s.label) for s in chosen], dtype=np.int64)
        return inputs, labels

    return ctx.memo("training.batch", load)
