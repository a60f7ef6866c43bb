"""`training.determinism`: two runs from the same seed agree — the same losses and the same
parameters after the first steps. Otherwise no result of the gate (or of training) can be
reproduced, and a baseline comparison measures noise."""

from __future__ import annotations

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, part
from dlgate.context import Context
from dlgate.registry import check
from dlgate.report import Finding, Outcome


@check("training.determinism")
def determinism(ctx: Context) -> Finding:
    """Two seeded runs agree (losses and parameters)."""
    settings = ctx.config.get(TrainingSettings).determinism
    m = part(ctx, "determinism")
    if isinstance(m, Finding):
        return m
    if not m["steps"]:
        return Finding(
            Outcome.SKIP, "the short run stopped before the first steps: see `training.finite`"
        )
    diff = max(m["loss_diff"], m["param_diff"])
    measurements = {"steps": m["steps"], "loss_diff": m["loss_diff"], "param_diff": m["param_diff"]}
    if diff <= settings.atol:
        return Finding(
            Outcome.PASS, f"two seeded runs of {m['steps']} steps agree (max |Δ| {diff:.2g})",
            measurements,
        )  # fmt: skip
    return Finding(
        Outcome.FAIL,
        f"two runs from the same seed differ after {m['steps']} steps: losses by up to "
        f"{m['loss_diff']:.3g}, parameters by up to {m['param_diff']:.3g} (allowed "
        f"{settings.atol:g})",
        measurements,
        details=advice(
            "randomness the seed does not reach: a seed from the clock or os.urandom, a "
            "private `np.random.default_rng()` or `random.Random()` without a seed in the "
            "model factory or step → derive every generator from the seed",
            "non-deterministic kernels (scatter_add, index_add, some GPU convolutions) → "
            "`torch.use_deterministic_algorithms(True)`",
            "state kept between calls (a global counter, a cached tensor) → build everything "
            "inside the factory",
        ),
    )
