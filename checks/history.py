"""`training.history`: the pipeline's own training, as its `history.json` tells it — the
per-epoch loss must be finite, not negative (for a classification loss), end well below
chance (ln C) and fall by a margin from the first epoch to the last. Faults in the training
code (a learning rate ×1000 or ÷1000, gradients zeroed before the step, a wrong loss) show
here, in the real training."""

from __future__ import annotations

import math
from typing import Any

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice
from dlgate.context import Context
from dlgate.export import read_contract
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.history")
def history(ctx: Context) -> Finding:
    """The pipeline's own loss curve (history.json): finite, non-negative, decreasing."""
    settings = ctx.config.get(TrainingSettings).history
    if not ctx.config.pipeline.train:
        return Finding(Outcome.SKIP, "no `pipeline.train` command: no training history to read")
    made = product(ctx)
    losses = made.history.get("loss")
    if not isinstance(losses, list) or not losses:
        return Finding(
            Outcome.SKIP,
            "the training wrote no history.json with a `loss` list into {out}; write the mean "
            "loss of each epoch there to have the real training checked",
        )
    try:
        curve = [float(v) if v is not None else math.nan for v in losses]
    except (TypeError, ValueError):
        return Finding(Outcome.FAIL, "history.json: `loss` must be a list of numbers")
    first, last = curve[0], curve[-1]
    measurements: dict[str, Any] = {"epochs": len(curve), "first": first, "last": last}
    bad = next((i for i, v in enumerate(curve) if not math.isfinite(v)), None)
    if bad is not None:
        return Finding(
            Outcome.FAIL,
            f"the training loss became NaN or infinite at epoch {bad + 1} of {len(curve)}",
            measurements,
            details=advice(
                "learning rate too high → lower it (÷10), add warm-up or gradient clipping",
                "log/division of 0 in the loss → `cross_entropy`/`log_softmax`, an epsilon",
            ),
        )
    if not settings.allow_negative and min(curve) < 0:
        return Finding(
            Outcome.FAIL,
            f"the training loss went negative ({min(curve):.3g}): not a classification loss "
            "on these outputs",
            measurements,
            details=advice(
                "`nll_loss` fed logits (it expects log-probabilities, and falls without bound "
                "on logits) → use `cross_entropy` on logits, or `log_softmax` first",
                "a loss for another task (regression, a log-likelihood of densities) → "
                "cross-entropy for classification; set `training.history.allow_negative` if "
                "negative values are right for your loss",
            ),
        )
    classes = len(read_contract(made.onnx).classes)
    chance = math.log(max(2, classes))
    if last > settings.max_final * chance:
        return Finding(
            Outcome.FAIL,
            f"the training ended at loss {last:.3f}, near chance (ln {classes} = {chance:.3f}; "
            f"needs ≤ {settings.max_final:g} × that) over {len(curve)} epochs",
            measurements,
            details=advice(
                "learning rate far too high (a first epoch that explodes, then stuck at "
                "chance) → lower it (÷10 or ÷100), add warm-up or gradient clipping",
                "learning rate far too low, or gradients zeroed between backward() and "
                "step() → try ×10; zero_grad() before backward()",
                "labels shuffled or misaligned with the inputs → check how the training code "
                "pairs samples with labels",
            ),
        )
    if last > (1 - settings.min_decrease) * first:
        return Finding(
            Outcome.FAIL,
            f"the training loss did not fall: {first:.3f} → {last:.3f} over {len(curve)} epochs "
            f"(needs a drop of {settings.min_decrease:.0%})",
            measurements,
            details=advice(
                "learning rate far too low (nothing moves) or too high (stuck at chance, "
                "oscillating) → try ×10 / ÷10",
                "gradients zeroed between backward() and step(), or the optimizer built "
                "without the model's parameters → zero_grad() before backward()",
                "labels shuffled or misaligned with the inputs (the loss stays near ln C) → "
                "check how the training code pairs samples with labels",
            ),
        )
    return Finding(
        Outcome.PASS,
        f"training loss {first:.3f} → {last:.3f} over {len(curve)} epochs",
        measurements,
    )
