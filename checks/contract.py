"""`export.contract`: the exported model carries every parameter inference needs, and they
agree with its graph, with the data's classes and with the commit that made it.

A model without its preprocessing in the file is deployed with whatever the deployment
guesses: the accuracy it loses shows nowhere but in production. So every key of the
inference contract (docs/onnx-metadata.md) is required, and each one missing or wrong is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split, natural
from dlgate.export import (
    METADATA_KEYS,
    ContractError,
    InferenceContract,
    check_metadata,
    read_metadata,
)
from dlgate.git import short
from dlgate.pipeline import product
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value

_HOW = (
    "Export the model with dlgate.export.to_onnx(model, sample, path, classes=..., "
    "preprocessing=Preprocessing(...)), which writes every key (docs/onnx-metadata.md)."
)


@dataclass
class _Verdict:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@check("export.contract")
def contract(ctx: Context) -> Finding:
    """Every inference-contract key is in the ONNX metadata and agrees with graph and data."""
    made = product(ctx)
    try:
        metadata = read_metadata(made.onnx)
    except ContractError as exc:
        return Finding(Outcome.FAIL, str(exc))
    found, problems = check_metadata(metadata)
    if found is None:
        keys = {kind: [p.key for p in problems if p.kind == kind] for kind in _KINDS}
        missing = keys["missing"]
        lead = (
            f"the ONNX metadata lacks {len(missing)} inference-contract key(s): "
            f"{', '.join(missing)}"
            if missing
            else f"the ONNX metadata holds an invalid inference contract: {problems[0].message}"
        )
        measurements: dict[str, Value] = {k: v for k, v in keys.items() if v}
        return Finding(
            Outcome.FAIL,
            lead,
            measurements,
            details="\n".join(f"- {p.message}" for p in problems) + f"\n\n{_HOW}",
        )
    verdict = _Verdict()
    _graph(made.onnx, verdict)
    classes = _classes(ctx, found, verdict)
    _git_sha(ctx, found, made.trained, verdict)
    measurements = {
        "keys": len(metadata),
        "classes": list(found.classes),
        "git_sha": found.git_sha,
        "data_classes": list(classes),
    }
    items = [*verdict.failures, *verdict.warnings]
    details = "\n".join(f"- {item}" for item in items)
    if verdict.failures:
        more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
        return Finding(Outcome.FAIL, verdict.failures[0] + more, measurements, details=details)
    if verdict.warnings:
        more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
        return Finding(Outcome.WARN, verdict.warnings[0] + more, measurements, details=details)
    return Finding(
        Outcome.PASS,
        f"all {len(METADATA_KEYS)} contract keys present and consistent: "
        f"{len(found.classes)} classes as in the data, {found.color_mode} "
        f"{found.size[0]}x{found.size[1]}, mean {list(found.mean)}, std {list(found.std)}, "
        f"made at {short(found.git_sha)}",
        measurements,
    )


_KINDS = ("missing", "malformed", "inconsistent", "version")


def _graph(path: Path, verdict: _Verdict) -> None:
    """The contract must describe the graph it is stored in (what `Deployed.load` checks)."""
    from dlgate.inference import Deployed, ModelError

    try:
        Deployed.load(path)
    except (ContractError, ModelError) as exc:
        verdict.failures.append(str(exc))


def _classes(ctx: Context, found: InferenceContract, verdict: _Verdict) -> tuple[str, ...]:
    """dlgate.output.classes against `data.classes`, or the labels of the data's splits."""
    data = ctx.config.get(DataSettings)
    model = found.classes
    key = "dlgate.output.classes"
    if data.classes:
        declared = tuple(data.classes)
        lacking = [c for c in declared if c not in model]
        extra = [c for c in model if c not in declared]
        if lacking:
            verdict.failures.append(
                f"{key} lacks {_names(lacking)}, which `data.classes` declares: the model "
                "cannot predict them"
            )
        if extra:
            verdict.failures.append(f"{key} has {_names(extra)}, which `data.classes` lacks")
        if not lacking and not extra and model != declared:
            moved = [i for i, (m, d) in enumerate(zip(model, declared, strict=True)) if m != d]
            shown = ", ".join(
                f"output {i} is {model[i]!r} in the model but {declared[i]!r} in data.classes"
                for i in moved[:3]
            )
            verdict.failures.append(
                f"{key} orders the classes differently from `data.classes` ({shown}): every "
                "prediction of those outputs would get the wrong label"
            )
        return declared
    labels: set[str] = set()
    for split in data.splits:
        labels |= {s.label for s in load_split(ctx.repo, data, split)}
    found_labels = tuple(sorted(labels, key=natural))
    unknown = [c for c in found_labels if c not in model]
    unused = [c for c in model if c not in labels]
    if unknown:
        verdict.failures.append(
            f"the data has labels that {key} does not list: {_names(unknown)}; the model "
            "cannot predict them"
        )
    if unused:
        verdict.warnings.append(
            f"{key} lists {_names(unused)}, which no sample of the data has (declare "
            "`data.classes` to check the order of the classes too)"
        )
    return found_labels


def _git_sha(ctx: Context, found: InferenceContract, trained: bool, verdict: _Verdict) -> None:
    key = "dlgate.git_sha"
    if found.git_sha == "unknown":
        verdict.warnings.append(
            f"{key} is 'unknown': the model does not say which commit made it (to_onnx reads "
            "$DLGATE_GIT_SHA, which the gate sets, or git in the working directory)"
        )
    elif trained and found.git_sha != ctx.head.sha:
        verdict.failures.append(
            f"{key} = {found.git_sha!r}, but the gate trained this model at "
            f"{short(ctx.head.sha)}: the export records another commit (a hard-coded or stale "
            "value?); let to_onnx fill it in"
        )


def _names(items: list[str]) -> str:
    shown = ", ".join(repr(c) for c in items[:10])
    return shown + (f" and {len(items) - 10} more" if len(items) > 10 else "")
