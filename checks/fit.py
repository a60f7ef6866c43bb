"""`training.fit`: the model the pipeline ships fits its own training samples as deployed —
decoded by the ONNX contract, run by onnxruntime, compared with the labels from the data.
Shuffled labels, training on inputs the contract does not describe (normalisation skipped or
applied twice) and training that never converged all end here, whatever the loss said."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlgate.checks.loss import TrainingSettings, training_batch
from dlgate.checks.smoke import advice
from dlgate.context import Context
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome


def predictions(ctx: Context) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(true labels, predicted labels, class names) of the shipped model on the training
    batch, through the deployed path. A row that is not a valid probability vector is -1."""

    def compute() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        from dlgate.inference import Deployed

        deployed = Deployed.load(product(ctx).onnx)
        inputs, labels = training_batch(ctx)
        probs = deployed.probabilities(inputs)
        predicted = np.where(np.isfinite(probs).all(1), np.nan_to_num(probs).argmax(1), -1)
        return labels, predicted, deployed.contract.classes

    return ctx.memo("training.fit.predictions", compute)


@check("training.fit")
def fit(ctx: Context) -> Finding:
    """The shipped model gets its own training samples right, through the deployed path."""
    from dlgate.checks.metrics import per_class_recall

    settings = ctx.config.get(TrainingSettings).fit
    pipeline = ctx.config.pipeline
    if not (pipeline.train or pipeline.artifact):
        return Finding(Outcome.SKIP, "the pipeline makes no model (`pipeline.train`/`artifact`)")
    labels, predicted, classes = predictions(ctx)
    accuracy = float(np.mean(labels == predicted))
    recall = per_class_recall(labels, predicted, len(classes))
    present = np.bincount(labels, minlength=len(classes)) > 0
    worst = int(np.argmin(np.where(present, recall, np.inf)))
    measurements: dict[str, Any] = {
        "accuracy": accuracy,
        "samples": len(labels),
        "worst_class": classes[worst],
        "worst_recall": float(recall[worst]),
    }
    if accuracy >= settings.min_accuracy:
        return Finding(
            Outcome.PASS,
            f"the shipped model gets {accuracy:.1%} of {len(labels)} training samples right as "
            f"deployed (worst class {classes[worst]!r}: {recall[worst]:.0%})",
            measurements,
        )
    final = _final_training_loss(ctx)
    converged = final is not None and 0 <= final < 0.3 * math.log(max(2, len(classes)))
    if final is not None:
        measurements["final_training_loss"] = final
    if converged:
        text = (
            f"the training converged (final loss {final:.3f}), yet as deployed the model gets "
            f"only {accuracy:.1%} of its own training samples right (needs "
            f"{settings.min_accuracy:.0%}): it was trained on other inputs or labels"
        )
        tries: tuple[str, ...] = (
            "training preprocesses differently from the ONNX contract (normalisation skipped "
            "or done twice, another scale, channel order or resize) → apply exactly the "
            "contract's preprocessing in training, from one shared definition",
            "the training code pairs samples with other labels than the data folders (labels "
            "shuffled, a sorted list zipped with an unsorted one) → derive each label from its "
            "sample",
        )
    else:
        text = (
            f"as deployed, the model gets only {accuracy:.1%} of its own training samples right "
            f"(needs {settings.min_accuracy:.0%}): it did not learn its training data"
        )
        tries = (
            "labels shuffled or misaligned with the inputs → check how training pairs them",
            "the training did not converge (learning rate ×1000 or ÷1000, gradients zeroed "
            "before the step) → see `training.history`",
            "training and deployment preprocess differently → compare the training code's "
            "normalisation with the ONNX contract",
        )
    return Finding(Outcome.FAIL, text, measurements, details=advice(*tries))


def _final_training_loss(ctx: Context) -> float | None:
    losses = product(ctx).history.get("loss") if ctx.config.pipeline.train else None
    if isinstance(losses, list) and losses and isinstance(losses[-1], (int, float)):
        return float(losses[-1])
    return None
