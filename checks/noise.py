"""`accuracy.noise`: the noise floor — how much the metrics move when only the seed changes.

With `accuracy.noise.runs: N` the head's pipeline is trained N more times, with seeds
`pipeline.seed + 1 … + N` (the training command gets each as `$DLGATE_SEED` and `{seed}`), and
every model is evaluated through the deployed path like the head's own. The spread of each
gated metric across the N + 1 models says how large a tolerance must be for the gate not to
flag seed noise: two trainings differ by about √2·σ, so 95% of them by less than 1.96·√2·σ ≈
2.8σ. The check warns when a configured tolerance is below that.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dlgate import stats
from dlgate.checks.accuracy import AccuracySettings, evaluate, evaluated
from dlgate.checks.compare import amount_text, outcomes, value_text
from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split
from dlgate.pipeline import build
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value

SPREAD_FACTOR = 1.96 * math.sqrt(2)  # 95% of the differences between two seeds


@dataclass(frozen=True)
class Spread:
    seeds: list[int]  # the head's own seed first
    values: dict[str, list[float]]  # metric -> its value per seed
    disagreement: float  # mean share of samples whose prediction differs from the head's

    def std(self, metric: str) -> float:
        v = self.values[metric]
        return statistics.stdev(v) if len(v) > 1 else math.nan

    def suggested(self, metric: str) -> float:
        return SPREAD_FACTOR * self.std(metric)

    def note(self) -> str:
        parts = [
            f"{m} σ = {amount_text(m, self.std(m))} "
            f"({value_text(m, min(v))}–{value_text(m, max(v))})"
            for m, v in self.values.items()
        ]
        return f"Seed noise over {len(self.seeds)} trainings (`accuracy.noise`): " + "; ".join(
            parts
        )


def spread(ctx: Context) -> Spread | None:
    """The noise floor of this run, measured once; None where it is not measured."""
    return ctx.memo("accuracy.noise", lambda: _measure(ctx))


def _skip_reason(ctx: Context) -> str:
    settings = ctx.config.get(AccuracySettings)
    if settings.noise.runs == 0:
        return (
            "off: set `accuracy.noise.runs` to N to train the head N more times with other "
            "seeds and see how far the metrics move by chance"
        )
    if ctx.kind not in ("pr", "merge_group"):
        return "the noise floor is measured on pull requests"
    if ctx.config.pipeline.artifact:
        return "the model is a committed artifact (`pipeline.artifact`): nothing to retrain"
    return ""


def _measure(ctx: Context) -> Spread | None:
    if _skip_reason(ctx):
        return None
    settings = ctx.config.get(AccuracySettings)
    pipeline = ctx.config.pipeline
    head = evaluated(ctx)
    samples = load_split(ctx.repo, ctx.config.get(DataSettings), settings.split)
    names = list(settings.metrics)
    runs = [head.rows]
    seeds = [pipeline.seed]
    for k in range(1, settings.noise.runs + 1):
        seed = pipeline.seed + k
        ctx.progress(f"noise floor: training with seed {seed} ({k}/{settings.noise.runs})")
        made = build(ctx.repo, pipeline, ctx.artifact_dir(f"noise/seed-{seed}"), ctx.head.sha, seed)
        _classes, rows = evaluate(made.onnx, samples)
        runs.append(rows)
        seeds.append(seed)
    values: dict[str, list[float]] = {name: [] for name in names}
    for rows in runs:
        o = outcomes(rows, head.classes)
        for name in names:
            values[name].append(stats.value(o, name))
    differs = [
        sum(a.get("predicted") != b.get("predicted") for a, b in zip(head.rows, rows, strict=True))
        / max(1, len(rows))
        for rows in runs[1:]
    ]
    return Spread(seeds, values, statistics.fmean(differs))


@check("accuracy.noise")
def noise(ctx: Context) -> Finding:
    """The spread of the metrics across training seeds (optional): the evidence for tolerances."""
    why = _skip_reason(ctx)
    if why:
        return Finding(Outcome.SKIP, why)
    found = spread(ctx)
    assert found is not None
    settings = ctx.config.get(AccuracySettings)
    too_tight = []
    lines = []
    measurements: dict[str, Value] = {
        "seeds": found.seeds,
        "disagreement": found.disagreement,
    }
    for gate in settings.gates():
        m = gate.metric
        v = found.values[m]
        sd, need = found.std(m), found.suggested(m)
        mean = statistics.fmean(v)
        allowed = gate.allowed(mean)
        measurements[m] = {"values": v, "mean": mean, "std": sd, "suggested_tolerance": need}
        if math.isfinite(sd):
            ctx.metrics[f"{m}_seed_std"] = sd
        lines.append(
            f"{m}: σ = {amount_text(m, sd)} over {len(v)} seeds "
            f"({value_text(m, min(v))}–{value_text(m, max(v))}); a tolerance of at least "
            f"{amount_text(m, need)} (2.8σ) keeps seed noise from failing the gate"
        )
        if math.isfinite(need) and allowed < need:
            too_tight.append(
                f"the tolerance of {gate.describe()} for {m} is inside the seed noise "
                f"(σ = {amount_text(m, sd)}): consider at least {amount_text(m, need)}"
            )
    details = "\n".join(f"- {line}" for line in lines) + (
        f"\n- predictions differ from the head's on {found.disagreement:.1%} of the samples "
        "on average"
    )
    if too_tight:
        return Finding(Outcome.WARN, "; ".join(too_tight), measurements, details=details)
    return Finding(Outcome.PASS, lines[0], measurements, details=details)
