"""`training.outputs`: the model's output has the shape (batch, classes) and the range its
declared kind implies — logits are unconstrained, probabilities lie in [0, 1] and sum to 1,
log-probabilities are ≤ 0 with logsumexp 0 — and logits do not already look normalised (a
softmax in the model that cross-entropy and the deployed path apply again)."""

from __future__ import annotations

from typing import Any

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.dataset import DataSettings
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.outputs")
def outputs(ctx: Context) -> Finding:
    """Output shape (batch, classes) and range as declared (logits, probabilities…)."""
    settings = ctx.config.get(TrainingSettings).outputs
    m = part(ctx, "init")
    if isinstance(m, Finding):
        return m
    declared, classes, source = _declared(ctx, settings.kind)
    shape = list(m["output_shape"])
    measurements: dict[str, Any] = {"shape": shape, "declared": declared}
    wanted = [m["batch"], len(classes) if classes else shape[-1] if shape else 0]
    if shape != wanted:
        return Finding(
            Outcome.FAIL,
            f"the output for a batch of {m['batch']} has shape {shape}, expected {wanted}"
            + (f" ({len(classes)} classes, from {source})" if classes else ""),
            measurements,
            details=advice(
                "wrong width of the last layer → make it output one value per class",
                "a flatten/reshape that merges the batch axis (`view(-1)`) → `flatten(1)`",
                "a squeeze that drops the class axis, or extra outputs (a tuple) → return "
                "one (batch, classes) tensor",
            ),
        )
    if m["finite"] < 1:
        return Finding(
            Outcome.FAIL, "the outputs hold NaN or Inf: see `training.finite`", measurements
        )
    seen = observed(m, settings.tolerance)
    measurements.update(
        observed=seen,
        min=m["min"],
        max=m["max"],
        row_sum_error=m["row_sum_error"],
        logsumexp_error=m["logsumexp_error"],
    )
    if seen == declared:
        return Finding(
            Outcome.PASS,
            f"outputs ({shape[0]}, {shape[1]}) are {declared} as declared ({source})",
            measurements,
        )
    if declared == "logits":
        text = {
            "probabilities": "are already probabilities (in [0, 1], rows sum to 1): a softmax "
            "in the model, applied again by cross-entropy and by the deployed path",
            "log_probabilities": "are log-probabilities (logsumexp 0): a log_softmax in the "
            "model fed to cross-entropy, which applies log-softmax again",
        }[seen]
        return Finding(
            Outcome.FAIL,
            f"declared logits ({source}), but the outputs {text}",
            measurements,
            details=advice(
                "softmax applied twice → drop the final Softmax/LogSoftmax from the model and "
                "let `cross_entropy` (training) and the deployed path (inference) normalise",
                "or keep it and declare the kind: export with output='probabilities' / "
                "'log_probabilities' and train with `nll_loss` on log-probabilities",
            ),
        )
    return Finding(
        Outcome.FAIL,
        f"declared {declared} ({source}), but the outputs are not: range "
        f"[{m['min']:.3g}, {m['max']:.3g}], rows sum to 1 ± {m['row_sum_error']:.3g}, "
        f"logsumexp 0 ± {m['logsumexp_error']:.3g}",
        measurements,
        details=advice(
            "the final softmax/log_softmax is missing or over the wrong axis → apply it over "
            "the class axis (dim=1)",
            "the declared kind is wrong → declare what the model outputs (`logits` when it has "
            "no final softmax)",
        ),
    )


def observed(m: dict[str, Any], tolerance: float) -> str:
    """What the output values look like: probabilities, log_probabilities or logits."""
    if m["min"] >= -tolerance and m["max"] <= 1 + tolerance and m["row_sum_error"] <= tolerance:
        return "probabilities"
    if m["max"] <= tolerance and m["logsumexp_error"] <= tolerance:
        return "log_probabilities"
    return "logits"


def _declared(ctx: Context, kind: str) -> tuple[str, tuple[str, ...], str]:
    """(output kind, class names, where they come from): the contract of the model the
    pipeline makes where it makes one, else the config."""
    classes = ctx.config.get(DataSettings).classes
    pipeline = ctx.config.pipeline
    if pipeline.train or pipeline.artifact:
        from dlgate.export import read_contract

        contract = read_contract(product(ctx).onnx)
        if kind:
            return kind, contract.classes, "training.outputs.kind"
        return contract.output, contract.classes, "the ONNX contract"
    return kind or "logits", classes, "training.outputs.kind" if kind else "the default"
