"""`accuracy.accuracy`: end-to-end metrics on the real-world samples, through the deployed
inference path, compared with the main-branch baseline sample by sample.

The head's model is evaluated on the real-world split (`accuracy.split`) by `dlgate.inference`
— preprocessing from the ONNX metadata only — and measured (accuracy, balanced accuracy,
macro-F1, log loss, per-class precision and recall, the confusion matrix). On a pull request it
is paired with the baseline's predictions (`checks/compare.py`): per gated metric the delta, its
confidence interval and p-value, a verdict in words, and the samples that flipped, the regressed
ones as file annotations. Fewer samples than `min_samples` → warn, never a pass.

This module also holds the `accuracy` config section (the settings of every accuracy check) and
`predictions(ctx)`: the per-sample rows the other accuracy checks, the recorded baseline
(`predictions.json`) and the releases share. A row is
`{"sample": id, "label": …, "predicted": …, "confidence": …, "p_true": …}`, or
`{"sample": id, "label": …, "refused": reason}` for a sample the deployed path refused.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dlgate import plots, stats
from dlgate.checks.compare import Gate, compare, details, measurements, outcomes, value_text
from dlgate.config import path_field, section
from dlgate.context import Context
from dlgate.dataset import DataSettings, Sample, load_split, natural
from dlgate.errors import BaselineError
from dlgate.git import short
from dlgate.pipeline import product
from dlgate.registry import check, prepare
from dlgate.report import Annotation, BaselineInfo, Finding, Level, Outcome, Value

if TYPE_CHECKING:
    from dlgate.baselines import RunRecord

PREDICTIONS = "predictions.json"
MODEL = "model.onnx"
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


@dataclass(frozen=True)
class MetricSettings:
    """How one metric is gated against the baseline."""

    tolerance: float | None = None  # the largest worsening allowed; default `accuracy.tolerance`
    relative: bool = False  # the tolerance is a fraction of the baseline's value
    direction: Literal["", "higher", "lower"] = ""  # which way is better; "" = the metric's own

    def __post_init__(self) -> None:
        if self.tolerance is not None and self.tolerance < 0:
            raise ValueError("`tolerance` must be 0 or more")


def _default_metrics() -> Mapping[str, MetricSettings]:
    return types.MappingProxyType({"accuracy": MetricSettings()})


@dataclass(frozen=True)
class NoiseSettings:
    # Train the head this many more times, with seeds pipeline.seed + 1, + 2, …, and report the
    # spread of the metrics across seeds. 0: off.
    runs: int = 0

    def __post_init__(self) -> None:
        if self.runs < 0:
            raise ValueError("`runs` must be 0 or more")


@dataclass(frozen=True)
class EdgeCaseSettings:
    path: str = path_field("")  # a folder of edge-case files with a manifest; "" = none
    manifest: str = "manifest.yml"  # inside `path`: file name → expectation
    generated: bool = True  # also the built-in cases (blank, noise, truncated, huge, …)
    timeout: float = 120.0  # seconds for all cases together

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("`timeout` must be a positive number of seconds")


@dataclass(frozen=True)
class ReleaseSettings:
    # The largest worsening of a gated metric against the previous release; default: each
    # metric's own tolerance (with its `relative`).
    tolerance: float | None = None
    model: str = ""  # the registered model's name in MLflow; default: `baseline.experiment`
    alias: str = "main"  # the alias of the main branch's latest baseline model; "" = none

    def __post_init__(self) -> None:
        if self.tolerance is not None and self.tolerance < 0:
            raise ValueError("`tolerance` must be 0 or more")


@section("accuracy")
@dataclass(frozen=True)
class AccuracySettings:
    split: str = "real_world"  # the data split of hand-picked real-world samples
    # The metrics gated against the baseline: accuracy, balanced_accuracy, macro_f1,
    # error_rate, log_loss, precision.<class>, recall.<class>.
    metrics: Mapping[str, MetricSettings] = field(default_factory=_default_metrics)
    tolerance: float = 0.01  # the default largest worsening (absolute) of a gated metric
    significance: float = 0.05  # a worsening beyond tolerance fails only when p < this
    confidence: float = 0.95  # of the bootstrap intervals of the deltas
    bootstrap: int = 2000  # resamples; 0 = no intervals
    min_samples: int = 30  # fewer samples → warn, never a pass
    max_listed: int = 50  # flipped or refused samples listed and annotated; the rest counted
    plots: bool = True  # the confusion matrix and per-class delta PNGs
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    edge_cases: EdgeCaseSettings = field(default_factory=EdgeCaseSettings)
    release: ReleaseSettings = field(default_factory=ReleaseSettings)

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("`metrics` must name at least one metric")
        for name, gate in self.metrics.items():
            stats.check_metric_name(name)
            natural_direction = stats.direction(name)
            if gate.direction and gate.direction != natural_direction:
                raise ValueError(
                    f"`metrics.{name}.direction` is {gate.direction!r}, but for {name} "
                    f"{natural_direction} is better; remove the key"
                )
        if self.tolerance < 0:
            raise ValueError("`tolerance` must be 0 or more")
        for key in ("significance", "confidence"):
            if not 0 < getattr(self, key) < 1:
                raise ValueError(f"`{key}` must lie between 0 and 1")
        if self.bootstrap < 0 or self.min_samples < 0 or self.max_listed < 0:
            raise ValueError("`bootstrap`, `min_samples` and `max_listed` must be 0 or more")

    def gates(self) -> list[Gate]:
        return [
            Gate(
                name,
                stats.direction(name),
                self.tolerance if g.tolerance is None else g.tolerance,
                g.relative,
            )
            for name, g in self.metrics.items()
        ]


@dataclass(frozen=True)
class Evaluated:
    """The model under test and its per-sample rows."""

    model: Path
    classes: tuple[str, ...]
    rows: list[dict[str, Any]]
    reused_from: RunRecord | None = None  # the run whose results a release run reuses


def evaluated(ctx: Context) -> Evaluated:
    """The head's model evaluated on the real-world split, once per run."""
    return ctx.memo("accuracy.evaluated", lambda: _evaluate(ctx))


@prepare("accuracy")
def start_evaluation(ctx: Context) -> None:
    if ctx.kind != "release":  # a release may reuse its commit's run instead
        ctx.prefetch("accuracy.evaluated", lambda: _evaluate(ctx))
    if ctx.config.get(AccuracySettings).plots:
        ctx.prefetch("accuracy.plotting", plots.load)


def predictions(ctx: Context) -> list[dict[str, Any]]:
    """Head predictions on the real-world split through the deployed inference path."""
    return evaluated(ctx).rows


def _evaluate(ctx: Context) -> Evaluated:
    result = _reuse(ctx) if ctx.kind == "release" else None
    if result is None:
        settings = ctx.config.get(AccuracySettings)
        samples = load_split(ctx.repo, ctx.config.get(DataSettings), settings.split)
        model = product(ctx).onnx
        classes, rows = evaluate(model, samples)
        result = Evaluated(model, classes, rows)
    ctx.record_json[PREDICTIONS] = result.rows
    ctx.record_files[MODEL] = result.model
    return result


def evaluate(model: Path, samples: list[Sample]) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """A model's classes and its rows on `samples`, through the deployed inference path."""
    from dlgate.inference import Deployed, Refusal

    deployed = Deployed.load(model)
    classes = deployed.contract.classes
    rows = []
    for sample, r in zip(samples, deployed.predict_many([s.path for s in samples]), strict=True):
        row: dict[str, Any] = {"sample": sample.id, "label": sample.label}
        if isinstance(r, Refusal):
            row["refused"] = r.reason
        else:
            known = sample.label in classes
            p_true = r.probabilities[classes.index(sample.label)] if known else None
            row.update(predicted=r.label, confidence=r.confidence, p_true=p_true)
        rows.append(row)
    return classes, rows


def _reuse(ctx: Context) -> Evaluated | None:
    """A release of a commit that already has a run (its baseline, usually) takes that run's
    predictions and model instead of training again."""
    from dlgate.baselines import Store

    with Store.open(ctx.tracking_uri, ctx.config.baseline.experiment) as store:
        run = store.run_for(ctx.head.sha, kinds=("baseline", "merge_group", "release"))
        if run is None:
            return None
        try:
            rows = store.load_json(run, PREDICTIONS)
            model = store.download(run, MODEL, ctx.artifact_dir("model"))
        except BaselineError as exc:
            ctx.progress(f"the run {run.run_id} of {ctx.head.sha[:7]} cannot be reused: {exc}")
            return None
    from dlgate.export import read_contract

    ctx.progress(f"reusing the predictions and model of run {run.run_id} ({run.label})")
    return Evaluated(model, read_contract(model).classes, rows, run)


@check("accuracy.accuracy")
def accuracy(ctx: Context) -> Finding:
    """Metrics on the real-world samples through the deployed path, against the baseline."""
    from dlgate.gate import baseline_for

    settings = ctx.config.get(AccuracySettings)
    ev = evaluated(ctx)
    rows = ev.rows
    if not rows:
        return Finding(
            Outcome.FAIL,
            f"the split `{settings.split}` has no samples: nothing to measure; add hand-picked "
            "real-world samples (`accuracy.split`, `data.splits`)",
        )
    head = _Head.measure(ctx, ev, settings)
    if head.unknown:
        return head.finding(
            Outcome.FAIL,
            f"labels {', '.join(map(repr, head.unknown))} of the real-world samples are no "
            f"class of the model (its classes: {', '.join(ev.classes)}); rename the class "
            "folders or export the model with these class names",
        )
    if ctx.merge_base is None:  # a baseline or release run: nothing to compare with here
        if head.samples < settings.min_samples:
            return head.finding(Outcome.WARN, head.text + _few_text(head.samples, "", settings))
        return head.finding(Outcome.PASS, head.text)
    try:
        baseline = baseline_for(ctx)
        base_rows = baseline.predictions if baseline is not None else None
    except BaselineError as exc:
        return head.finding(Outcome.ERROR, f"{head.text}; the baseline cannot be used: {exc}")
    if baseline is None or base_rows is None:
        missing = ctx.config.baseline.missing
        return head.finding(
            Outcome.FAIL if missing == "fail" else Outcome.WARN,
            f"{head.text}; no baseline recorded for the merge base {short(ctx.merge_base)} or "
            f"its {ctx.config.baseline.max_distance} first-parent ancestors and "
            f"`baseline.missing` is {missing!r}: not compared; record one with `dlgate "
            f"baseline --rev {short(ctx.merge_base)}` or set `baseline.missing: compute`",
        )
    where = baseline_words(baseline.info, ctx.config.baseline.branch)
    cmp = compare(
        rows,
        base_rows,
        ev.classes,
        settings.gates(),
        significance=settings.significance,
        confidence=settings.confidence,
        bootstrap=settings.bootstrap,
    )
    worst = cmp.worst
    text = f"real-world {worst.line(settings.confidence)}"
    if cmp.outcome is not Outcome.PASS:
        text += f": {worst.verdict}"
    text += f"; {len(cmp.fixed)} fixed, {len(cmp.regressed)} regressed"
    if cmp.head_only or cmp.base_only:
        text += f"; compared on {cmp.sample_note()}"
    few = cmp.shared < settings.min_samples
    if few:
        text += _few_text(cmp.shared, " shared with the baseline", settings)
    text += f"; {where}"
    for m in cmp.metrics:
        if math.isfinite(m.delta):
            ctx.metrics[f"{m.gate.metric}_delta"] = m.delta
    if settings.plots and cmp.shared:
        path = ctx.artifact_dir("accuracy") / "per_class_delta.png"
        plots.per_class_delta(cmp.classes, cmp.base_recall, cmp.head_recall, path,
                              "recall per class: head − baseline")  # fmt: skip
        head.add_artifact(ctx, path)
    # The minimum-sample rule: too few samples make a pass a warning. (A significant drop
    # beyond the tolerance still fails: the test accounts for the number of samples.)
    outcome = Outcome.WARN if few and cmp.outcome is Outcome.PASS else cmp.outcome
    level = Level.FAILURE if outcome is Outcome.FAIL else Level.WARNING
    head.annotations[:0] = [
        Annotation(f.sample, f"regressed: label {f.label}; the baseline predicted {f.base}, "
                   f"the head predicts {f.head}", level, title="regressed real-world sample")
        for f in cmp.regressed[: settings.max_listed]
    ]  # fmt: skip
    head.measurements.update(measurements(cmp), baseline=baseline.info.to_dict())
    head.sections.insert(0, details(cmp, settings.confidence, settings.max_listed, where))
    noise = _noise_note(ctx)
    if noise:
        head.sections.append(noise)
    return head.finding(outcome, text)


def _few_text(n: int, what: str, settings: AccuracySettings) -> str:
    return (
        f"; only {n} samples{what}, fewer than `accuracy.min_samples` = "
        f"{settings.min_samples}: not conclusive, add real-world samples"
    )


@dataclass
class _Head:
    """What the check reports about the head alone, gathered while it measures."""

    samples: int
    text: str
    unknown: list[str]
    measurements: dict[str, Value]
    annotations: list[Annotation]
    sections: list[str]
    artifacts: list[str]

    @classmethod
    def measure(cls, ctx: Context, ev: Evaluated, settings: AccuracySettings) -> _Head:
        o = outcomes(ev.rows, ev.classes)
        names = [*HEADLINE, *(m for m in settings.metrics if m not in HEADLINE)]
        measured = {name: stats.value(o, name) for name in names}
        for name, v in measured.items():
            if math.isfinite(v):
                ctx.metrics[name] = v
        refused = [r for r in ev.rows if "refused" in r]
        n = len(ev.rows)
        text = (
            f"accuracy {value_text('accuracy', measured['accuracy'])}, balanced "
            f"{value_text('', measured['balanced_accuracy'])}, macro-F1 "
            f"{value_text('', measured['macro_f1'])} on {n} real-world samples"
            + (f" ({len(refused)} refused by the deployed path)" if refused else "")
        )
        per_class = stats.per_class(o)
        head = cls(
            samples=n,
            text=text,
            unknown=sorted({r["label"] for r in ev.rows} - set(ev.classes), key=natural),
            measurements={
                **{k: v for k, v in measured.items() if math.isfinite(v)},
                "samples": n,
                "refused": len(refused),
                "classes": list(o.classes),
                "per_class": {
                    p.cls: {
                        "support": p.support,
                        "precision": _num(p.precision),
                        "recall": _num(p.recall),
                    }
                    for p in per_class
                },
                "confusion": stats.confusion(o).tolist(),
            },
            annotations=[
                Annotation(
                    r["sample"],
                    f"the deployed inference path refused this sample: {r['refused']}",
                    Level.WARNING,
                    title="refused real-world sample",
                )
                for r in refused[: settings.max_listed]
            ],
            sections=[_per_class_table(per_class, refused, settings.max_listed)],
            artifacts=[],
        )
        if settings.plots:
            path = ctx.artifact_dir("accuracy") / "confusion_matrix.png"
            plots.confusion_matrix(stats.confusion(o), o.classes, path,
                                   f"{settings.split}: {n} samples")  # fmt: skip
            head.add_artifact(ctx, path)
        return head

    def add_artifact(self, ctx: Context, path: Path) -> None:
        self.artifacts.append(path.relative_to(ctx.out).as_posix())
        ctx.record_files[path.name] = path

    def finding(self, outcome: Outcome, message: str) -> Finding:
        sections = list(self.sections)
        if self.artifacts:
            sections.append("Plots: " + ", ".join(f"[`{a}`]({a})" for a in self.artifacts))
        return Finding(outcome, message, self.measurements, self.annotations,
                       "\n\n".join(sections), self.artifacts)  # fmt: skip


def baseline_words(info: BaselineInfo, branch: str) -> str:
    if info.found == "exact":
        return f"baseline {branch} @ {short(info.sha)} (the merge base's own run)"
    if info.found == "ancestor":
        return (
            f"baseline {branch} @ {short(info.sha)}, {info.distance} commits before the merge "
            "base (the nearest one recorded)"
        )
    if info.found == "computed":
        return (
            f"baseline computed now from the merge base {short(info.sha)} (none was "
            "recorded) and recorded for the next pull requests"
        )
    return "no baseline"


def _noise_note(ctx: Context) -> str:
    from dlgate.checks.noise import spread

    try:
        found = spread(ctx)
    except Exception:  # accuracy.noise reports its own failure; here it is only a note
        return ""
    return found.note() if found is not None else ""


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _per_class_table(per_class: list[stats.PerClass], refused: list[dict[str, Any]],
                     max_listed: int) -> str:  # fmt: skip
    lines = ["| class | samples | precision | recall |", "|---|---|---|---|"]
    for p in per_class:
        if p.support or math.isfinite(p.precision):
            lines.append(f"| {p.cls} | {p.support} | {_cell(p.precision)} | {_cell(p.recall)} |")
    if refused:
        lines += ["", f"**{len(refused)} refused** by the deployed path (counted as wrong):"]
        lines += [f"- `{r['sample']}`: {r['refused']}" for r in refused[:max_listed]]
        if len(refused) > max_listed:
            lines.append(f"- … and {len(refused) - max_listed} more")
    return "\n".join(lines)


def _cell(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else "–"
