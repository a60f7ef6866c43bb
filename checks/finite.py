"""`training.finite`: no NaN or Inf in the model's outputs, the gradients, the loss of the
short run or the parameters after it."""

from __future__ import annotations

import math

from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.finite")
def finite(ctx: Context) -> Finding:
    """No NaN/Inf in outputs, gradients, loss or parameters."""
    init = part(ctx, "init")
    if isinstance(init, Finding):
        return init
    grads = part(ctx, "gradients")
    if isinstance(grads, Finding):
        return grads
    run = part(ctx, "run")
    if isinstance(run, Finding):
        return run
    where = []
    if init["finite"] < 1:
        where.append(f"{1 - init['finite']:.1%} of the outputs at initialisation")
    if not math.isfinite(init.get("loss", 0.0)):
        where.append("the loss at initialisation")
    bad = [n for n, p in grads["params"].items() if p.get("finite") is False]
    if bad:
        where.append(f"the gradients of {', '.join(f'`{n}`' for n in bad[:10])}")
    losses = run["losses"]
    if losses and not math.isfinite(losses[-1]):
        where.append(f"the loss at step {len(losses)} of the short run")
    if not run["params_finite"]:
        where.append("the parameters after the short run")
    if run["outputs_after"]["finite"] < 1:
        where.append("the outputs after the short run")
    measurements = {"places": len(where), "steps": len(losses)}
    if where:
        return Finding(
            Outcome.FAIL,
            "NaN or Inf in " + "; ".join(where),
            measurements,
            details=advice(
                "learning rate too high (the run diverges) → lower it (÷10), clip gradients",
                "log/division of 0 or exp overflow (e.g. `log(softmax(x))`, a custom loss) → "
                "`log_softmax`/`cross_entropy`, add an epsilon",
                "NaN/Inf or huge values in the inputs → check the data and its normalisation",
                "fp16 overflow → train in fp32 or use a gradient scaler",
            ),
        )
    return Finding(
        Outcome.PASS,
        f"outputs, gradients, {len(losses)} losses and the parameters are all finite",
        measurements,
    )
