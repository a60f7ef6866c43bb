"""`training.activations`: what forward hooks see in the activation layers, before and after
the short run — dead ReLU units (never active on the batch), saturated sigmoid/tanh outputs
(in the flat tails, where gradients vanish), and affine layers (Linear/Conv) that feed another
affine layer with nothing nonlinear between: a missing activation, which collapses the two
into a single linear map."""

from __future__ import annotations

from typing import Any

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.activations")
def activations(ctx: Context) -> Finding:
    """Dead ReLUs, saturated activations and missing activations between linear layers."""
    settings = ctx.config.get(TrainingSettings).activations
    m = part(ctx, "run")
    if isinstance(m, Finding):
        return m
    before, after = m["activations_before"], m["activations_after"]
    dead = _worst(before["dead"], after["dead"])
    saturated = _worst(before["saturated"], after["saturated"])
    chains = [f"`{a}` → `{b}`" for a, b in before["chains"]]
    measurements: dict[str, Any] = {
        "dead": dead,
        "saturated": saturated,
        "linear_chains": chains,
    }
    fails: list[str] = []
    warns: list[str] = []
    tries: list[str] = []
    if chains and settings.linear_chains != "off":
        text = (
            f"missing activation: {', '.join(chains)} — an affine layer feeds another with "
            "nothing nonlinear between, so the two collapse into one linear map"
        )
        (fails if settings.linear_chains == "fail" else warns).append(text)
        tries.append(
            "an activation dropped from the stack → put a ReLU (or GELU…) between the two "
            "layers; a deliberate linear bottleneck → set `training.activations.linear_chains` "
            "to warn or off"
        )
    too_dead = {k: v for k, v in dead.items() if v > settings.max_dead}
    if too_dead:
        fails.append(
            "dead ReLUs: "
            + ", ".join(f"`{k}` {v:.0%} of units never active" for k, v in too_dead.items())
            + f" (allowed {settings.max_dead:.0%})"
        )
        tries.append(
            "learning rate too high (units pushed negative for good) → lower it; large "
            "negative biases or unnormalised inputs → default init, normalised inputs; "
            "LeakyReLU/GELU do not die"
        )
    too_flat = {k: v for k, v in saturated.items() if v > settings.max_saturated}
    if too_flat:
        fails.append(
            "saturated activations: "
            + ", ".join(f"`{k}` {v:.0%} of outputs in the flat tails" for k, v in too_flat.items())
            + f" (allowed {settings.max_saturated:.0%})"
        )
        tries.append(
            "pre-activations too large → normalise inputs, Xavier init for sigmoid/tanh, "
            "BatchNorm/LayerNorm before the activation, a lower learning rate"
        )
    if fails or warns:
        return Finding(
            Outcome.FAIL if fails else Outcome.WARN,
            "; ".join(fails + warns),
            measurements,
            details=advice(*tries),
        )
    worst_dead = max(dead.values(), default=0.0)
    return Finding(
        Outcome.PASS,
        f"{len(dead)} ReLU and {len(saturated)} sigmoid/tanh layers; at most {worst_dead:.0%} "
        "dead units; no linear layer feeds another directly",
        measurements,
    )


def _worst(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: max(before.get(k, 0.0), after.get(k, 0.0)) for k in {**before, **after}}
