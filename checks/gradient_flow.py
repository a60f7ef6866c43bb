"""`training.gradient_flow`: no vanishing gradients (the weakest layer's mean |gradient| a
tiny fraction of the strongest's, at initialisation) and no exploding ones (the global
gradient norm beyond a bound during the short run)."""

from __future__ import annotations

import math
from typing import Any

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.gradient_flow")
def gradient_flow(ctx: Context) -> Finding:
    """Vanishing or exploding gradients: layer-to-layer ratio at init, norm in the run."""
    settings = ctx.config.get(TrainingSettings).gradient_flow
    grads = part(ctx, "gradients")
    if isinstance(grads, Finding):
        return grads
    run = part(ctx, "run")
    if isinstance(run, Finding):
        return run
    # Weight tensors only (biases are small by nature); exact zeros are `training.gradients`'.
    layers = {
        name: p["grad_abs_mean"]
        for name, p in grads["params"].items()
        if p["trainable"] and len(p["shape"]) >= 2 and p.get("finite") and p["grad_abs_mean"] > 0
    }
    norms = [n for n in run["grad_norms"] if n is not None and math.isfinite(n)]
    measurements: dict[str, Any] = {"layer_grad_mean": layers}
    problems, tries = [], []
    if len(layers) >= 2:
        weakest = min(layers, key=layers.__getitem__)
        strongest = max(layers, key=layers.__getitem__)
        ratio = layers[weakest] / layers[strongest]
        measurements.update(ratio=ratio, weakest=weakest, strongest=strongest)
        if ratio < settings.min_ratio:
            problems.append(
                f"vanishing gradients: `{weakest}` gets {ratio:.1e} of the mean |gradient| of "
                f"`{strongest}` (allowed down to {settings.min_ratio:g})"
            )
            tries += [
                "saturating activations (sigmoid/tanh) in a deep stack → ReLU/GELU, or "
                "normalisation layers (BatchNorm/LayerNorm) between them",
                "initialisation too small for the depth → He (kaiming) init for ReLU, Xavier "
                "for tanh; residual connections for deep models",
            ]
    if norms:
        peak = max(norms)
        measurements["max_grad_norm"] = peak
        if peak > settings.max_norm:
            problems.append(
                f"exploding gradients: the global gradient norm reached {peak:.3g} in the short "
                f"run (allowed {settings.max_norm:g})"
            )
            tries += [
                "learning rate too high → lower it (÷10), or add warm-up",
                "no gradient clipping on a recurrent or deep model → "
                "`torch.nn.utils.clip_grad_norm_`",
                "unnormalised inputs or targets → normalise to mean 0, std 1",
            ]
    if problems:
        return Finding(Outcome.FAIL, "; ".join(problems), measurements, details=advice(*tries))
    summary = f"layer gradient ratio {measurements['ratio']:.1e}" if "ratio" in measurements else ""
    if norms:
        summary += f"{'; ' if summary else ''}peak gradient norm {max(norms):.3g}"
    return Finding(Outcome.PASS, summary or "nothing to compare", measurements)
