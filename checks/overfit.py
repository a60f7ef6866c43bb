"""`training.overfit`: the model, loss and optimizer can drive a tiny batch to near-zero loss.
A model that cannot memorise a handful of samples cannot learn the data set either."""

from __future__ import annotations

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.overfit")
def overfit(ctx: Context) -> Finding:
    """A tiny batch can be overfitted to near-zero loss."""
    settings = ctx.config.get(TrainingSettings).overfit
    m = part(ctx, "overfit")
    if isinstance(m, Finding):
        return m
    final, n, steps = m["final_loss"], m["samples"], m["steps"]
    measurements = {
        "final_loss": final,
        "samples": n,
        "steps": steps,
        "correct": m["correct"],
        "curve": m["losses"],
    }
    if final <= settings.max_loss:
        return Finding(
            Outcome.PASS,
            f"{n} samples overfitted to loss {final:.2g} in {steps} steps ({m['correct']}/{n} "
            "right)",
            measurements,
        )
    return Finding(
        Outcome.FAIL,
        f"could not overfit {n} samples in {steps} steps: loss {final:.3g} (needs ≤ "
        f"{settings.max_loss:g}), {m['correct']}/{n} right",
        measurements,
        details=advice(
            "a softmax before cross-entropy (the loss cannot go below about 1.46 for 10 "
            "classes) → see `training.outputs`",
            "learning rate far too low or too high → try ×10 / ÷10 (your optimizer hook, or "
            "`training.lr`)",
            "frozen or detached layers, gradients zeroed before the step → see "
            "`training.gradients`",
            "regularisation strong enough to stop memorising (dropout, weight decay, label "
            "smoothing) → expected only then: raise `training.overfit.max_loss`",
            "a model too small or with a bottleneck (missing activation) → see "
            "`training.activations`",
        ),
    )
