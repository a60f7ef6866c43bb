"""`export.parity`: the ONNX model gives the framework's outputs on real samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlgate import framework, hooks
from dlgate.checks.loss import training_batch
from dlgate.config import section
from dlgate.context import Context
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@section("export")
@dataclass(frozen=True)
class ExportSettings:
    samples: int = 64  # how many real samples the parity check compares on
    atol: float = 1e-4  # max absolute difference allowed between framework and ONNX outputs


@check("export.parity")
def parity(ctx: Context) -> Finding:
    """onnxruntime vs the framework on a batch of real samples."""
    from dlgate.inference import Deployed

    settings = ctx.config.get(ExportSettings)
    made = product(ctx)
    deployed = Deployed.load(made.onnx)  # fails clearly when the file does not load
    if made.weights is None or not ctx.config.pipeline.model:
        return Finding(
            Outcome.SKIP,
            "no framework weights or `pipeline.model`: nothing to "
            "compare the ONNX model with (it loads in onnxruntime)",
        )
    inputs, _labels = training_batch(ctx)
    inputs = inputs[: settings.samples]
    expected = hooks.call(
        framework.forward,
        ctx.config.pipeline.model,
        str(made.weights),
        inputs,
        cwd=ctx.repo,
        timeout=ctx.config.pipeline.hook_timeout,
        hook="pipeline.model",
    )
    got = deployed.outputs(inputs)
    if got.shape != expected.shape:
        return Finding(
            Outcome.FAIL, f"ONNX output shape {got.shape} != framework's {expected.shape}"
        )
    diff = float(np.max(np.abs(got - expected)))
    agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
    measurements = {"max_abs_diff": diff, "top1_agreement": agree, "samples": len(inputs)}
    if diff > settings.atol:
        return Finding(
            Outcome.FAIL,
            f"ONNX and framework outputs differ by up to {diff:.3g} (allowed {settings.atol:g}); "
            f"top-1 agreement {agree:.1%}",
            measurements,
        )
    return Finding(
        Outcome.PASS,
        f"max |Δ| {diff:.2g} on {len(inputs)} samples, top-1 agreement {agree:.0%}",
        measurements,
    )
