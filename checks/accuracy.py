"""`accuracy.accuracy`: end-to-end accuracy on the real-world samples, against the baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlgate.config import section
from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split
from dlgate.git import short
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Annotation, Finding, Level, Outcome


@section("accuracy")
@dataclass(frozen=True)
class AccuracySettings:
    split: str = "real_world"  # the data split of hand-picked real-world samples
    tolerance: float = 0.01  # largest accuracy drop (absolute) allowed against the baseline
    min_samples: int = 30  # fewer samples → warn, never a pass


def predictions(ctx: Context) -> list[dict[str, Any]]:
    """Head predictions on the real-world split through the deployed inference path."""

    def compute() -> list[dict[str, Any]]:
        from dlgate.inference import Deployed, Refusal

        settings = ctx.config.get(AccuracySettings)
        samples = load_split(ctx.repo, ctx.config.get(DataSettings), settings.split)
        deployed = Deployed.load(product(ctx).onnx)
        results = deployed.predict_many([s.path for s in samples])
        rows = []
        for sample, result in zip(samples, results, strict=True):
            row: dict[str, Any] = {"sample": sample.id, "label": sample.label}
            if isinstance(result, Refusal):
                row["refused"] = result.reason
            else:
                row.update(predicted=result.label, confidence=result.confidence)
            rows.append(row)
        ctx.record_json["predictions.json"] = rows
        ctx.record_files["model.onnx"] = product(ctx).onnx
        return rows

    return ctx.memo("accuracy.predictions", compute)


def _accuracy(rows: list[dict[str, Any]]) -> float:
    return sum(r.get("predicted") == r["label"] for r in rows) / len(rows) if rows else 0.0


@check("accuracy.accuracy")
def accuracy(ctx: Context) -> Finding:
    """Accuracy on the real-world samples, compared with the main-branch baseline."""
    from dlgate.gate import baseline_for

    settings = ctx.config.get(AccuracySettings)
    rows = predictions(ctx)
    acc = _accuracy(rows)
    ctx.metrics["accuracy"] = acc
    measurements: dict[str, Any] = {"accuracy": acc, "samples": len(rows)}
    if len(rows) < settings.min_samples:
        return Finding(
            Outcome.WARN,
            f"only {len(rows)} real-world samples (minimum "
            f"{settings.min_samples}); accuracy {acc:.3f} is not conclusive",
            measurements,
        )
    baseline = baseline_for(ctx)
    if baseline is None:
        if ctx.merge_base is None:
            return Finding(
                Outcome.PASS, f"real-world accuracy {acc:.3f} on {len(rows)} samples", measurements
            )
        missing = ctx.config.baseline.missing
        outcome = Outcome.FAIL if missing == "fail" else Outcome.WARN
        return Finding(
            outcome,
            f"no baseline for {short(ctx.merge_base)} (baseline.missing = "
            f"{missing}); accuracy {acc:.3f} not compared",
            measurements,
        )
    base_by_id = {r["sample"]: r for r in baseline.predictions}
    shared = [r for r in rows if r["sample"] in base_by_id]
    head_acc = _accuracy(shared)
    base_acc = _accuracy([base_by_id[r["sample"]] for r in shared])
    delta = head_acc - base_acc
    fixed = [
        r
        for r in shared
        if r.get("predicted") == r["label"] != base_by_id[r["sample"]].get("predicted")
    ]
    regressed = [
        r
        for r in shared
        if base_by_id[r["sample"]].get("predicted") == r["label"] != r.get("predicted")
    ]
    measurements.update(
        baseline_accuracy=base_acc,
        delta=delta,
        fixed=len(fixed),
        regressed=len(regressed),
        compared=len(shared),
    )
    ctx.metrics["accuracy_delta"] = delta
    text = (
        f"real-world accuracy {base_acc:.3f} → {head_acc:.3f} ({delta * 100:+.1f} pp), "
        f"{len(fixed)} fixed, {len(regressed)} regressed"
    )
    annotations = [
        Annotation(
            r["sample"],
            f"regressed: {r['label']} was predicted correctly by the "
            f"baseline, now {r.get('predicted')}",
            Level.WARNING,
        )
        for r in regressed[:50]
    ]
    details = "\n".join(
        [f"- regressed `{r['sample']}`: {r['label']} → {r.get('predicted')}" for r in regressed]
        + [f"- fixed `{r['sample']}`: now {r['label']}" for r in fixed]
    )
    if -delta > settings.tolerance:
        return Finding(
            Outcome.FAIL,
            f"{text}: the drop exceeds the tolerance of {settings.tolerance * 100:.1f} pp",
            measurements,
            annotations,
            details,
        )
    return Finding(Outcome.PASS, text, measurements, annotations, details)
