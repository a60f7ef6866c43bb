"""`export.parity`: the deployed graph computes what the framework computes, in every
configuration it may be deployed in.

The matrix: batch sizes 1 and `export.batch` (so the batch axis must be dynamic); precisions
fp32 and, where enabled, fp16 (a converted copy) and int8 (onnxruntime quantization); every
configured execution provider this machine has (CPU always). Each cell runs real samples,
decoded as deployed, and is compared with the framework's own outputs in eval mode, then
judged against its precision's thresholds. The `export` section of dlgate.yml holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from dlgate import framework, runtimes
from dlgate.agreement import Agreement, Thresholds, judge, measure
from dlgate.checks.accuracy import AccuracySettings
from dlgate.checks.loss import TrainingSettings
from dlgate.config import section
from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split
from dlgate.export import ContractError
from dlgate.inference import ModelError
from dlgate.pipeline import framework_call, product, start_framework_child
from dlgate.registry import check, prepare
from dlgate.report import Finding, Outcome, Value
from dlgate.runtimes import CPU, Configuration, Precision
from dlgate.variants import VariantError, to_fp16, to_int8


@dataclass(frozen=True)
class Fp32Settings:
    atol: float = 1e-4  # largest absolute difference of the raw outputs (0: not judged)
    min_top1: float = 1.0  # share of samples whose top-1 class must be the framework's
    min_class_agreement: float = 1.0  # the same share, for the worst class


@dataclass(frozen=True)
class Fp16Settings:
    enabled: bool = True
    atol: float = 0.05
    min_top1: float = 0.99
    min_class_agreement: float = 0.95


@dataclass(frozen=True)
class Int8Settings:
    enabled: bool = True
    mode: Literal["dynamic", "static"] = "dynamic"  # onnxruntime's quantization
    calibration: int = 128  # training samples that calibrate `static` quantization
    atol: float = 0.0  # not judged by default: int8 outputs differ by design
    min_top1: float = 0.97
    min_class_agreement: float = 0.9


@dataclass(frozen=True)
class FactsSettings:
    """`export.facts`: limits on growth against the baseline's facts (0 turns one off)."""

    repeats: int = 30  # timed runs per configuration and batch size; the median counts
    max_size_growth: float = 0.1  # file size: +10%
    max_parameter_growth: float = 0.1
    max_latency_growth: float = 0.5  # per-sample latency: +50%
    min_latency_ms: float = 0.05  # faster than this per sample: timer noise, not compared


@section("export")
@dataclass(frozen=True)
class ExportSettings:
    split: str = ""  # the data split compared on; empty: `accuracy.split`
    samples: int = 256  # how many of its samples
    batch: int = 32  # the batch size N run besides 1
    providers: tuple[str, ...] = ("CUDAExecutionProvider",)  # checked besides CPU, if present
    require: tuple[str, ...] = ()  # providers whose absence fails instead of skipping
    fp32: Fp32Settings = field(default_factory=Fp32Settings)
    fp16: Fp16Settings = field(default_factory=Fp16Settings)
    int8: Int8Settings = field(default_factory=Int8Settings)
    facts: FactsSettings = field(default_factory=FactsSettings)
    atol: float | None = None  # the older spelling of `fp32.atol`

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch < 2:
            raise ValueError("`samples` must be 1 or more and `batch` 2 or more")
        for name in (*self.providers, *self.require):
            if not name.endswith("ExecutionProvider"):
                raise ValueError(
                    f"execution provider {name!r} must be onnxruntime's name for it, "
                    "e.g. CUDAExecutionProvider"
                )
        extra = [p for p in self.require if p != CPU and p not in self.providers]
        if extra:
            raise ValueError(f"`require` names {', '.join(extra)}, which `providers` does not")
        for name in ("fp32", "fp16", "int8"):
            t = getattr(self, name)
            if t.atol < 0 or not (0 <= t.min_top1 <= 1 and 0 <= t.min_class_agreement <= 1):
                raise ValueError(
                    f"`{name}`: `atol` must be 0 or more, `min_top1` and "
                    "`min_class_agreement` between 0 and 1"
                )
        if self.int8.calibration < 1 or self.facts.repeats < 1:
            raise ValueError("`int8.calibration` and `facts.repeats` must be 1 or more")
        if self.atol is not None:
            if self.fp32.atol not in (Fp32Settings.atol, self.atol):
                raise ValueError("set `fp32.atol` only (`atol` is its older spelling)")
            object.__setattr__(self, "fp32", replace(self.fp32, atol=self.atol))

    def precisions(self) -> tuple[Precision, ...]:
        """fp32 always; the variants where enabled."""
        out: list[Precision] = ["fp32"]
        if self.fp16.enabled:
            out.append("fp16")
        if self.int8.enabled:
            out.append("int8")
        return tuple(out)

    def thresholds(self, precision: Precision) -> Thresholds:
        if precision == "fp16":
            return self.fp16
        if precision == "int8":
            return self.int8
        return self.fp32


@dataclass(frozen=True)
class Samples:
    ids: tuple[str, ...]  # repository-relative sample ids, as the data stage names them
    inputs: np.ndarray  # decoded as deployed, through the model's own contract
    classes: tuple[str, ...]  # output order


def samples(ctx: Context) -> Samples:
    """Real samples of `export.split`, decoded by the deployed path (memoized)."""
    split = ctx.config.get(ExportSettings).split or ctx.config.get(AccuracySettings).split
    count = ctx.config.get(ExportSettings).samples
    return ctx.memo("export.samples", lambda: _decode(ctx, split, count))


def _decode(ctx: Context, split: str, count: int) -> Samples:
    from dlgate.inference import Deployed, InferenceRefusal

    deployed = Deployed.load(product(ctx).onnx)
    listed = load_split(ctx.repo, ctx.config.get(DataSettings), split)
    rng = np.random.default_rng(ctx.config.pipeline.seed)
    picked = [listed[i] for i in sorted(rng.permutation(len(listed))[:count])]
    ids, rows = [], []
    for sample in picked:
        try:
            rows.append(deployed.decode(sample.path))
        except InferenceRefusal:
            continue  # the accuracy stage reports refused samples; parity needs inputs
        ids.append(sample.id)
    shape = (0, *deployed.sample_shape)
    inputs = np.stack(rows) if rows else np.empty(shape, dtype=np.float32)
    return Samples(tuple(ids), inputs, deployed.contract.classes)


def configurations(ctx: Context) -> list[Configuration]:
    """Every configured (precision, provider) cell, with its model file (memoized)."""
    return ctx.memo("export.configurations", lambda: _configurations(ctx))


def _configurations(ctx: Context) -> list[Configuration]:
    settings = ctx.config.get(ExportSettings)
    source = product(ctx).onnx
    folder = ctx.artifact_dir("export")
    made: dict[Precision, tuple[Path | None, str]] = {"fp32": (source, "")}
    for precision in settings.precisions()[1:]:
        target = folder / f"model.{precision}.onnx"
        try:
            if precision == "fp16":
                made[precision] = (to_fp16(source, target), "")
            else:
                calibration = None
                if settings.int8.mode == "static":
                    calibration = _calibration(ctx, settings.int8.calibration)
                made[precision] = (
                    to_int8(source, target, mode=settings.int8.mode, calibration=calibration),
                    "",
                )
        except (VariantError, ContractError, ModelError) as exc:  # the last two: calibration
            made[precision] = (None, str(exc))
    providers = (CPU, *(p for p in settings.providers if p != CPU))
    return [
        Configuration(
            precision,
            provider,
            made[precision][0],
            runtimes.unavailable(provider),
            made[precision][1],
        )
        for precision in settings.precisions()
        for provider in providers
    ]


def _calibration(ctx: Context, count: int) -> np.ndarray:
    """Training samples for static quantization: what is known when the model is made."""
    split = ctx.config.get(TrainingSettings).split
    return _decode(ctx, split, count).inputs


@dataclass(frozen=True)
class Cell:
    """One configuration's result: its outcome, why, and the agreement per batch size."""

    configuration: Configuration
    outcome: Outcome  # PASS, FAIL or SKIP
    reason: str = ""
    agreements: dict[int, Agreement] = field(default_factory=dict)
    outputs: dict[int, np.ndarray] = field(default_factory=dict)


def reference(ctx: Context) -> tuple[np.ndarray, str]:
    """The outputs the cells are compared with, and where they come from (memoized)."""
    return ctx.memo("export.reference", lambda: _reference(ctx))


@prepare("export")
def start_reference(ctx: Context) -> None:
    if ctx.config.pipeline.model:
        start_framework_child(ctx)
        ctx.prefetch("export.reference", lambda: _reference(ctx))
        ctx.prefetch("export.configurations", lambda: _configurations(ctx))


def _reference(ctx: Context) -> tuple[np.ndarray, str]:
    """The framework's outputs in eval mode; without weights or a model factory, onnxruntime's
    own fp32 outputs on CPU at batch N (then only the variants and batch sizes are compared)."""
    batch, n = samples(ctx), ctx.config.get(ExportSettings).batch
    made = product(ctx)
    spec = ctx.config.pipeline.model
    if made.weights is None or not spec:
        session = runtimes.open_session(made.onnx, CPU)
        return runtimes.run(session, batch.inputs, n), f"onnxruntime fp32 on CPU at batch {n}"
    out = framework_call(
        ctx,
        framework.forward,
        spec,
        str(made.weights),
        batch.inputs,
        timeout=ctx.config.pipeline.hook_timeout,
        hook="pipeline.model",
        quick=True,  # one forward pass: before the smoke battery, if both wait
    )
    return np.asarray(out, dtype=np.float64), "the framework (eval mode)"


def _run_cell(
    conf: Configuration, batch: Samples, reference: np.ndarray, settings: ExportSettings
) -> Cell:
    if conf.broken:
        return Cell(conf, Outcome.FAIL, f"the {conf.precision} model cannot be made: {conf.broken}")
    if conf.skip or conf.model is None:
        return Cell(conf, Outcome.SKIP, conf.skip)
    try:
        session = runtimes.open_session(conf.model, conf.provider)
    except runtimes.Unusable as exc:
        return Cell(conf, Outcome.SKIP if exc.skip else Outcome.FAIL, str(exc))
    fixed = runtimes.fixed_batch(session)
    if fixed is not None:
        return Cell(
            conf,
            Outcome.FAIL,
            f"the model cannot run with a dynamic batch: its input "
            f"{session.get_inputs()[0].name!r} has a fixed batch size of {fixed}; export it "
            "with a dynamic batch axis (dlgate.export.to_onnx does)",
        )
    agreements, outputs, problems = {}, {}, {}
    for n in (1, settings.batch):
        try:
            got = runtimes.run(session, batch.inputs, n)
        except runtimes.BatchFailure as exc:
            return Cell(
                conf,
                Outcome.FAIL,
                f"the model cannot run with a dynamic batch: {exc} (the graph's batch axis is "
                "dynamic, so something inside fixes the batch size: a reshape to a constant "
                "shape?)",
            )
        if got.shape != reference.shape:
            return Cell(
                conf,
                Outcome.FAIL,
                f"onnxruntime's output has shape {got.shape}, the reference's {reference.shape}",
            )
        agreements[n] = measure(reference, got, batch.classes)
        outputs[n] = got
        thresholds = settings.thresholds(conf.precision)
        found = judge(agreements[n], thresholds, f"export.{conf.precision}")
        if found:
            problems[n] = found
    if not problems:
        return Cell(conf, Outcome.PASS, "", agreements, outputs)
    # The batch size that agrees least speaks for both; the other is only mentioned.
    worst = min(problems, key=lambda n: (agreements[n].top1, -agreements[n].max_abs_diff))
    others = [str(n) for n in problems if n != worst]
    also = f" (batch {others[0]} fails too)" if others else ""
    reason = f"at batch {worst}: {'; '.join(problems[worst])}{also}"
    return Cell(conf, Outcome.FAIL, reason, agreements, outputs)


@check("export.parity")
def parity(ctx: Context) -> Finding:
    """onnxruntime vs the framework: batch 1 and N, each precision, each provider."""
    settings = ctx.config.get(ExportSettings)
    try:
        batch = samples(ctx)
    except (ContractError, ModelError) as exc:
        return Finding(
            Outcome.SKIP,
            "samples cannot be decoded without a loadable model and a valid inference "
            f"contract (export.contract says what is wrong): {exc}",
        )
    if not batch.ids:
        return Finding(Outcome.FAIL, "no sample of the split could be decoded to compare on")
    reference_outputs, source = reference(ctx)
    cells = [_run_cell(c, batch, reference_outputs, settings) for c in configurations(ctx)]
    missing = [
        p
        for p in settings.require
        if not any(c.outcome is not Outcome.SKIP for c in cells if c.configuration.provider == p)
    ]
    measurements: dict[str, Value] = {
        "reference": source,
        "samples": len(batch.ids),
        "batch": settings.batch,
        "configurations": {c.configuration.key: _cell_dict(c) for c in cells},
    }
    failed = [c for c in cells if c.outcome is Outcome.FAIL]
    ran = [c for c in cells if c.outcome is not Outcome.SKIP]
    # Nothing compared is not a pass (CPU always runs, so this needs a very broken setup).
    outcome = Outcome.FAIL if failed or missing or not ran else Outcome.PASS
    return Finding(
        outcome,
        summary(cells, missing, len(batch.ids), settings.batch, source),
        measurements,
        details=details(cells, batch, reference_outputs),
        artifacts=sorted(
            {
                str(c.configuration.model.relative_to(ctx.out))
                for c in cells
                if c.configuration.precision != "fp32"  # the variants this check made
                and c.configuration.model is not None
                and c.configuration.model.is_relative_to(ctx.out)
            }
        ),
    )


def _cell_dict(cell: Cell) -> dict[str, Value]:
    out: dict[str, Value] = {"outcome": cell.outcome.value}
    if cell.reason:
        out["reason"] = cell.reason
    for n, a in cell.agreements.items():
        out[f"batch_{n}"] = a.to_dict()
    return out


def summary(cells: list[Cell], missing: list[str], samples: int, batch: int, source: str) -> str:
    skipped: dict[str, list[str]] = {}
    for c in cells:
        if c.outcome is Outcome.SKIP:
            skipped.setdefault(c.reason, []).append(c.configuration.label)
    skips = "; ".join(f"skipped {', '.join(labels)}: {why}" for why, labels in skipped.items())
    failed = [c for c in cells if c.outcome is Outcome.FAIL]
    ran = [c for c in cells if c.outcome is not Outcome.SKIP]
    parts = []
    if missing:
        parts.append(f"required provider(s) {', '.join(missing)} did not run (export.require)")
    if failed:
        first, *rest = failed
        more = f" (so does {', '.join(c.configuration.label for c in rest)})" if rest else ""
        parts.append(f"{first.configuration.label} vs {source}: {first.reason}{more}")
    if not parts and not ran:
        parts.append("no configuration could run on this machine")
    elif not parts:
        cell, worst = min(
            ((c, a) for c in ran for a in c.agreements.values()),
            key=lambda ca: (ca[1].top1, -ca[1].max_abs_diff),
        )
        parts.append(
            f"{', '.join(c.configuration.label for c in ran)} agree with {source} on "
            f"{samples} samples at batch 1 and {batch} (worst: {cell.configuration.label}, "
            f"top-1 agreement {worst.top1:.1%}, max |Δ| {worst.max_abs_diff:.2g})"
        )
    return "; ".join([*parts, skips] if skips else parts)


def details(cells: list[Cell], batch: Samples, reference: np.ndarray) -> str:
    rows = [
        "| configuration | batch | max \\|Δ\\| | top-1 agreement | worst class | result |",
        "|---|---|---|---|---|---|",
    ]
    notes: dict[tuple[str, str], list[str]] = {}  # (outcome, reason) → configurations
    for cell in cells:
        label = cell.configuration.label
        if not cell.agreements:
            notes.setdefault((cell.outcome.value, cell.reason), []).append(label)
            continue
        for size, a in cell.agreements.items():
            worst = a.worst_class()
            klass = (
                f"`{worst[0]}` {worst[1] / worst[2]:.1%} ({worst[1]}/{worst[2]})" if worst else ""
            )
            rows.append(
                f"| {label} | {size} | {a.max_abs_diff:.3g} | {a.top1:.1%} | {klass} | "
                f"{cell.outcome.value} |"
            )
    out = ["\n".join(rows)]
    if notes:
        out.append(
            "\n".join(
                f"- {', '.join(labels)}: **{o}**: {why}" for (o, why), labels in notes.items()
            )
        )
    for cell in cells:
        if cell.outcome is Outcome.FAIL and cell.agreements:
            out.append(_differences(cell, batch, reference))
    return "\n\n".join(out)


def _differences(cell: Cell, batch: Samples, reference: np.ndarray) -> str:
    """The most different samples of a failing configuration, outputs side by side."""
    size, a = min(cell.agreements.items(), key=lambda kv: (kv[1].top1, -kv[1].max_abs_diff))
    got = cell.outputs[size]
    lines = [
        f"**{cell.configuration.label}**: {cell.reason}",
        "",
        f"Most different samples at batch {size} (outputs as the graph gives them):",
        "",
        "| sample | reference | onnxruntime | max \\|Δ\\| |",
        "|---|---|---|---|",
    ]
    for i in a.worst:
        diff = float(np.max(np.abs(got[i] - reference[i])))
        lines.append(
            f"| `{batch.ids[i]}` | {_scores(reference[i], batch.classes)} | "
            f"{_scores(got[i], batch.classes)} | {diff:.3g} |"
        )
    return "\n".join(lines)


def _scores(row: np.ndarray, classes: tuple[str, ...]) -> str:
    """`3` [0.12, -1.5, …]: the top-1 class and the output vector (its top 5 when long)."""
    top = int(np.argmax(row))
    if len(row) <= 10:
        values = ", ".join(f"{v:.3g}" for v in row)
    else:
        best = np.argsort(-row)[:5]
        values = ", ".join(f"{classes[i]}: {row[i]:.3g}" for i in best) + ", …"
    return f"`{classes[top]}` [{values}]"
