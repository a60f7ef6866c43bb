"""`training.gradients`: every trainable parameter gets a finite, non-zero gradient from the
loss and changes after one optimizer step; frozen and detached parameters are named."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome

_LISTED = 20  # parameter names quoted per problem

# Symptom → likely causes → fixes, in the order the problems are reported.
_TRIES = {
    "frozen": "frozen (requires_grad=False): a layer left frozen after fine-tuning, or a "
    "freezing loop that caught too much → unfreeze it, or list it in "
    "`training.gradients.frozen` if it is meant to be frozen",
    "no gradient": "no gradient reaches it: a `.detach()`, `.data`, `.item()`/numpy round "
    "trip or `torch.no_grad()` in forward, or a layer built but never used → remove the "
    "detach or use the layer (list it in `training.gradients.frozen` if intended)",
    "non-finite gradient": "NaN/Inf gradient: overflow in forward or the loss (log or "
    "division of 0, exp of large values) → use `cross_entropy`/`log_softmax`, add an "
    "epsilon, normalise inputs, lower the learning rate",
    "zero gradient": "an all-zero gradient: a dead path (ReLUs never active, a multiplication "
    "by 0, an output the loss never uses) → see `training.activations`, check the forward",
    "unchanged after a step": "not updated by the optimizer step: the optimizer was built "
    "without these parameters (before a layer was replaced, a missing param group), its "
    "learning rate is 0 or so small that the update vanishes in float32, or gradients are "
    "zeroed between backward() and step() → build the "
    "optimizer from model.parameters() after the model is complete; call zero_grad() before "
    "backward(), never between backward() and step()",
}


@check("training.gradients")
def gradients(ctx: Context) -> Finding:
    """Every trainable parameter gets a finite non-zero gradient and changes after a step."""
    allowed = ctx.config.get(TrainingSettings).gradients.frozen
    m = part(ctx, "gradients")
    if isinstance(m, Finding):
        return m
    problems = classify(m["params"], allowed)
    measurements: dict[str, Any] = {
        "parameters": len(m["params"]),
        **{key.replace(" ", "_"): names[:_LISTED] for key, names in problems.items()},
    }
    found = {key: names for key, names in problems.items() if names}
    if not found:
        return Finding(
            Outcome.PASS,
            f"all {len(m['params'])} parameter tensors get a finite, non-zero gradient and "
            "change after a step",
            measurements,
        )
    text = "; ".join(f"{key}: {_names(names)}" for key, names in found.items())
    return Finding(Outcome.FAIL, text, measurements, details=advice(*(_TRIES[k] for k in found)))


def classify(params: dict[str, dict[str, Any]], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """Parameter names per problem; names matching an `allowed` glob are exempt."""
    problems: dict[str, list[str]] = {key: [] for key in _TRIES}
    for name, p in params.items():
        if any(fnmatchcase(name, pattern) for pattern in allowed):
            continue
        if not p["trainable"]:
            problems["frozen"].append(name)
            continue
        if "finite" not in p:
            problems["no gradient"].append(name)
        elif not p["finite"]:
            problems["non-finite gradient"].append(name)
        elif p["grad_abs_max"] == 0:
            problems["zero gradient"].append(name)
        if not p.get("changed", True) and "finite" in p and p["grad_abs_max"] != 0:
            # Without a gradient it cannot change; say so once, under the cause.
            problems["unchanged after a step"].append(name)
    return problems


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
