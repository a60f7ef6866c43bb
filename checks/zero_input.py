"""`training.zero_input`: a baseline run on zeroed inputs must train worse than the run on
the real inputs; otherwise the model does not use its input (or the labels are not about it)."""

from __future__ import annotations

import math

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part, tail_mean
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.zero_input")
def zero_input(ctx: Context) -> Finding:
    """A zeroed-input baseline trains worse than the real input."""
    settings = ctx.config.get(TrainingSettings).zero_input
    m = part(ctx, "zero_input")
    if isinstance(m, Finding):
        return m
    real, zero = tail_mean(m["real_losses"]), tail_mean(m["losses"])
    measurements = {"real_final_loss": real, "zero_final_loss": zero, "steps": len(m["losses"])}
    if not (math.isfinite(real) and math.isfinite(zero)):
        return Finding(
            Outcome.SKIP,
            "a run diverged (NaN/Inf loss), so the two cannot be compared: see `training.finite`",
            measurements,
        )
    if real <= zero - settings.margin * abs(zero):
        return Finding(
            Outcome.PASS,
            f"real inputs train to loss {real:.3f}, zeroed inputs to {zero:.3f}",
            measurements,
        )
    return Finding(
        Outcome.FAIL,
        f"the model trains as well on zeroed inputs as on the real ones (final loss "
        f"{real:.3f} vs {zero:.3f}; needs {settings.margin:.0%} lower): it does not use its input",
        measurements,
        details=advice(
            "the input is overwritten or ignored in forward (a wrong variable, `x * 0`, an "
            "early return) → trace the input through forward",
            "labels that do not belong to the inputs (shuffled, misaligned) → check the batch "
            "source",
            "inputs that are (nearly) constant after preprocessing → check normalisation "
            "(e.g. divided by 255 twice)",
            "a learning rate too low to learn anything in the short run → see `training.loss`",
        ),
    )
