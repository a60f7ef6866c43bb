"""`training.independence`: sample i's output depends only on input i. In eval mode, the
gradient of output i with respect to input j≠i must be zero, and changing the other samples
of the batch must leave output i unchanged: a reshape, view or permute across the batch axis
mixes samples silently (the model still trains, on garbage)."""

from __future__ import annotations

from typing import Any

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.independence")
def independence(ctx: Context) -> Finding:
    """Sample i's output depends only on input i (no mixing across the batch)."""
    settings = ctx.config.get(TrainingSettings).independence
    m = part(ctx, "independence")
    if isinstance(m, Finding):
        return m
    if m["samples"] < 2:
        return Finding(Outcome.SKIP, "fewer than 4 samples in the batch: nothing to compare")
    measurements: dict[str, Any] = {"samples": m["samples"]}
    found = []
    grad = m.get("gradient")
    if grad:
        own = max(grad["own"]) or 1.0
        leak = max(grad["leak"]) / own
        measurements["gradient_leak"] = leak
        if leak > settings.tolerance:
            found.append(
                f"the gradient of one sample's output reaches other samples' inputs "
                f"({leak:.2g} of its own)"
            )
    swap = m["swap"]
    moved = swap["moved"] / swap["scale"]
    measurements["swap_change"] = moved
    if moved > settings.tolerance:
        found.append(
            f"sample 0's output changes by {moved:.2g} (relative) when the other samples of the "
            "batch are replaced"
        )
    if found:
        return Finding(
            Outcome.FAIL,
            "samples are mixed across the batch: " + "; ".join(found),
            measurements,
            details=advice(
                "a view/reshape/permute that moves the batch axis (e.g. `x.transpose(0, 1)` "
                "before a reshape, `x.view(-1, n)` with the wrong n) → flatten per sample with "
                "`x.flatten(1)` or `x.reshape(x.size(0), -1)`",
                "statistics over the batch in eval mode (a custom norm over dim 0, BatchNorm "
                "kept in training mode) → normalise per sample, call `model.eval()`",
                "mixing the batch on purpose (attention across samples) → raise "
                "`training.independence.tolerance` to say so",
            ),
        )
    how = "gradient and swap test" if grad else "swap test (no gradient reaches the input)"
    return Finding(
        Outcome.PASS,
        f"each of {m['samples']} outputs depends only on its own input ({how})",
        measurements,
    )
