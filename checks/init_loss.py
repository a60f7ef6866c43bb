"""`training.init_loss`: the loss at initialisation is what chance predicts, ln(C) for C
classes, and the final layer's bias starts sane (about 0, or the log class prior)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part, unwrap
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.init_loss")
def init_loss(ctx: Context) -> Finding:
    """Loss at initialisation ≈ ln(C); the final-layer bias sane."""
    settings = ctx.config.get(TrainingSettings).init_loss
    m = part(ctx, "init")
    if isinstance(m, Finding):
        return m
    if "loss_error" in m:
        unwrap({"error": m["loss_error"]}, "initial loss")
    if "loss" not in m:
        return Finding(
            Outcome.SKIP,
            f"the model's output has shape {m['output_shape']}, not (batch, classes): "
            "see `training.outputs`",
        )
    classes = int(m["output_shape"][1])
    expected = settings.expected or math.log(classes)
    loss = float(m["loss"])
    offset = bias_offset(m.get("final_bias"), m["label_counts"])
    measurements: dict[str, Any] = {
        "initial_loss": loss,
        "expected": expected,
        "classes": classes,
        "bias_offset": offset,
    }
    if not math.isfinite(loss):
        return Finding(
            Outcome.FAIL,
            "the loss at initialisation is NaN or infinite",
            measurements,
            details=advice(
                "log of zero in the loss (e.g. `log(softmax(x))`) → use `cross_entropy` or "
                "`log_softmax`",
                "inputs with NaN/Inf or huge values → check normalisation and the data stage",
            ),
        )
    problems, tries = [], []
    deviation = loss / expected - 1
    if abs(deviation) > settings.tolerance:
        problems.append(
            f"initial loss {loss:.3f} is {abs(deviation):.0%} "
            f"{'above' if deviation > 0 else 'below'} "
            f"the expected {expected:.3f} (ln {classes}; allowed ±{settings.tolerance:.0%})"
        )
        if deviation > 0:
            tries += [
                "the model starts confidently wrong: last layer initialised too large → scale "
                "its weights down (e.g. ×0.01) and start its bias at 0 or the log class prior",
                "inputs not normalised (large activations) → normalise to mean 0, std 1",
                "a wrong loss for the outputs (e.g. cross-entropy on probabilities) → see "
                "`training.outputs`",
            ]
        else:
            tries += [
                "a loss below chance before any training: the loss does not match the "
                "outputs (e.g. `nll_loss` on logits, which needs `log_softmax`; MSE on class "
                "indices) → use `cross_entropy` on logits",
                "the labels leak into the inputs → check the batch source",
                "if the loss is not a classification loss, set `training.init_loss.expected`",
            ]
    if offset is not None and offset > settings.max_bias:
        problems.append(
            f"the final layer's bias starts {offset:.2f} nats away from both 0 and the log "
            f"class prior (allowed {settings.max_bias:g})"
        )
        tries.append(
            "a final-layer bias set by hand or loaded from another task → initialise it to 0, "
            "or to log(class frequency) for imbalanced classes"
        )
    if problems:
        return Finding(Outcome.FAIL, "; ".join(problems), measurements, details=advice(*tries))
    return Finding(
        Outcome.PASS,
        f"initial loss {loss:.3f} ≈ ln {classes} = {math.log(classes):.3f}"
        + (f"; final bias within {offset:.2f} nats of sane" if offset is not None else ""),
        measurements,
    )


def bias_offset(bias: list[float] | None, label_counts: list[float]) -> float | None:
    """How far (max over classes, after removing the mean, in nats) the final bias is from
    both 0 and the log prior of the labels; None without a bias of one value per class."""
    if bias is None:
        return None
    b = np.asarray(bias, dtype=np.float64)
    b = b - b.mean()
    from_zero = float(np.abs(b).max())
    counts = np.asarray(label_counts, dtype=np.float64)
    seen = counts > 0
    if not seen.any() or len(counts) != len(b):
        return from_zero
    log_prior = np.log(counts[seen] / counts.sum())
    log_prior -= log_prior.mean()
    centred = b[seen] - b[seen].mean()
    return min(from_zero, float(np.abs(centred - log_prior).max()))
