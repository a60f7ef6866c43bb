"""`export.facts`: what the model costs to deploy — opset, file size, parameter count, and
latency per sample in each configuration (median of repeated runs) — recorded with the run
(`export_facts.json`) and compared with the baseline's; growth beyond the limits in
`export.facts` warns.

Latency is measured on this machine, so it is compared only with a baseline measured by the
same kind of runner; latencies under `min_latency_ms` are timer noise and are not compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dlgate import runtimes
from dlgate.checks.parity import ExportSettings, FactsSettings, configurations, samples
from dlgate.context import Context
from dlgate.errors import BaselineError
from dlgate.export import ContractError
from dlgate.git import short
from dlgate.inference import ModelError
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome

ARTIFACT = "export_facts.json"
_FLOATS = frozenset({1, 10, 11, 16})  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def model_facts(path: Path) -> dict[str, Any]:
    """Opset, size on disk (with external weights) and parameter count of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    parameters = sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type in _FLOATS)
    external = {
        entry.value
        for t in model.graph.initializer
        for entry in t.external_data
        if entry.key == "location"
    }
    size = path.stat().st_size + sum(
        (path.parent / name).stat().st_size for name in external if (path.parent / name).is_file()
    )
    return {"opset": opset, "size_bytes": size, "parameters": int(parameters)}


@check("export.facts", timed=True)
def facts(ctx: Context) -> Finding:
    """Opset, size, parameters and latency per configuration, against the baseline's."""
    settings = ctx.config.get(ExportSettings)
    measured = model_facts(product(ctx).onnx)
    variants: dict[str, Any] = {}
    notes: list[str] = []
    for conf in configurations(ctx):
        if conf.precision != "fp32" and conf.model is not None:
            variants[conf.precision] = {"size_bytes": conf.model.stat().st_size}
    measured["variants"] = variants
    measured["batch"] = settings.batch
    try:
        measured["latency_ms"] = _latencies(ctx, settings, notes)
    except (ContractError, ModelError):
        measured["latency_ms"] = {}
        notes.append(
            "latency not measured: the model does not load with a valid inference contract "
            "(export.contract says why)"
        )
    ctx.record_json[ARTIFACT] = measured
    summary = _describe(measured)
    warnings, compared = _compare(ctx, measured, settings.facts)
    details = "\n".join(f"- {line}" for line in [*warnings, *compared, *notes])
    if warnings:
        return Finding(Outcome.WARN, "; ".join(warnings), measured, details=details)
    tail = f"; {compared[0]}" if compared else ""
    return Finding(Outcome.PASS, summary + tail, measured, details=details)


def _latencies(
    ctx: Context, settings: ExportSettings, notes: list[str]
) -> dict[str, dict[str, float]]:
    """Milliseconds per sample at batch 1 and batch N, per configuration that runs here."""
    inputs = samples(ctx).inputs
    if len(inputs) == 0:
        notes.append("latency not measured: no sample could be decoded")
        return {}
    ctx.settle()  # nothing else runs while the clock does
    out: dict[str, dict[str, float]] = {}
    for conf in configurations(ctx):
        if conf.model is None or conf.skip:
            continue
        try:
            session = runtimes.open_session(conf.model, conf.provider)
        except runtimes.Unusable as exc:
            notes.append(f"{conf.label}: latency not measured: {exc}")
            continue
        try:
            out[conf.key] = {
                f"batch_{n}": 1000 * runtimes.latency(session, inputs, n, settings.facts.repeats)
                for n in (1, settings.batch)
            }
        except Exception as exc:  # onnxruntime's errors share no base; parity reports them
            notes.append(f"{conf.label}: latency not measured: {type(exc).__name__}: {exc}")
    return out


def _describe(f: dict[str, Any]) -> str:
    text = f"opset {f['opset']}, {_size(f['size_bytes'])}, {f['parameters']:,} parameters"
    for key, times in f["latency_ms"].items():
        per = ", ".join(f"{ms:.3g} ms/sample at {k.replace('_', ' ')}" for k, ms in times.items())
        text += f"; {_label(key)}: {per}"
    return text


def _compare(
    ctx: Context, head: dict[str, Any], limits: FactsSettings
) -> tuple[list[str], list[str]]:
    """(growth beyond the limits, what was compared) against the baseline's facts."""
    from dlgate.gate import baseline_for

    baseline = baseline_for(ctx)
    if baseline is None:
        return [], ["not compared: there is no baseline"]
    where = f"baseline {short(baseline.info.sha)}"
    try:
        base = baseline.load_json(ARTIFACT)
    except BaselineError as exc:
        return [], [f"not compared: the {where} recorded no export facts ({exc})"]
    warnings: list[str] = []
    compared: list[str] = []
    for name, key, limit, show in (
        ("file size", "size_bytes", limits.max_size_growth, _size),
        ("parameters", "parameters", limits.max_parameter_growth, lambda v: f"{v:,}"),
    ):
        old, new = base.get(key), head[key]
        if not old:
            continue
        growth = new / old - 1
        text = f"{name} {show(old)} → {show(new)} ({growth:+.1%} vs {where})"
        if limit and growth > limit:
            field = "max_size_growth" if key == "size_bytes" else "max_parameter_growth"
            warnings.append(f"{text} exceeds +{limit:.0%} (export.facts.{field})")
        else:
            compared.append(text)
    if base.get("opset") != head["opset"]:
        compared.append(f"opset {base.get('opset')} → {head['opset']}")
    base_times = base.get("latency_ms", {})
    for key, times in head["latency_ms"].items():
        for batch, ms in times.items():
            old = base_times.get(key, {}).get(batch)
            if not old or max(ms, old) < limits.min_latency_ms:
                continue
            growth = ms / old - 1
            text = (
                f"{_label(key)} latency at {batch.replace('_', ' ')}: {old:.3g} → {ms:.3g} "
                f"ms/sample ({growth:+.0%} vs {where})"
            )
            if limits.max_latency_growth and growth > limits.max_latency_growth:
                warnings.append(
                    f"{text} exceeds +{limits.max_latency_growth:.0%} "
                    "(export.facts.max_latency_growth)"
                )
            else:
                compared.append(text)
    return warnings, compared


def _label(key: str) -> str:
    precision, _, provider = key.partition("/")
    return f"{precision} · {runtimes.short(provider)}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
