"""`data.stats`: the data set's statistics, recorded with the run (`data_stats.json`), and
their drift from the baseline's: per-class changes made by the pull request, and
distribution shifts (PSI with a chi-squared p-value) against `data.stats` limits."""

from __future__ import annotations

from typing import Any

from dlgate.context import Context
from dlgate.datadiff import DataDiff, pr_diff
from dlgate.datascan import scan
from dlgate.datastats import Shift, shifts, statistics
from dlgate.errors import BaselineError
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value

RECORD = "data_stats.json"


@check("data.stats")
def stats(ctx: Context) -> Finding:
    """Statistics tracked per commit, compared with the baseline's."""
    from dlgate.gate import baseline_for

    data = scan(ctx)
    doc = statistics(data)
    ctx.record_json[RECORD] = doc
    limits = data.settings.stats
    diff = pr_diff(ctx, data.settings.gallery.per_class)
    changes = _changes(diff)
    measurements: dict[str, Value] = {"samples": {s: data.total(s) for s in data.splits},
                                      "changes": changes}  # fmt: skip
    recorded = "statistics recorded (" + ", ".join(
        f"{s}: {data.total(s)} samples" for s in data.splits) + ")"  # fmt: skip
    table = _changes_table(doc, None, changes)
    if ctx.merge_base is None:
        return Finding(Outcome.PASS, recorded, measurements, details=table)
    try:
        baseline = baseline_for(ctx)
    except BaselineError as exc:
        return Finding(
            Outcome.ERROR,
            f"{recorded}; the baseline could not be read: {exc}",
            measurements,
            details=table,
        )
    if baseline is None:
        return Finding(
            Outcome.PASS, f"{recorded}; no baseline to compare with", measurements, details=table
        )
    label = f"baseline {baseline.info.sha[:7] if baseline.info.sha else '?'}"
    try:
        before = baseline.load_json(RECORD)
    except BaselineError:
        return Finding(Outcome.PASS, f"{recorded}; the {label} run has no data statistics "
                       "(recorded before they were tracked): nothing to compare",
                       measurements, details=table)  # fmt: skip
    found = shifts(doc, before)
    measurements["shifts"] = [s.__dict__ for s in found]
    details = "\n\n".join(p for p in (_changes_table(doc, before, changes), _shift_table(found),
                                      _channels_table(doc, before)) if p)  # fmt: skip
    worst = max(found, key=lambda s: s.psi, default=None)
    if worst is None or worst.psi < limits.warn_psi:
        top = (
            f"largest shift PSI {worst.psi:.3f} ({worst.split} {worst.distribution})"
            if worst
            else "no shared splits"
        )
        return Finding(
            Outcome.PASS, f"no drift against {label}: {top}", measurements, details=details
        )
    failing = limits.fail_psi and worst.psi >= limits.fail_psi
    limit = limits.fail_psi if failing else limits.warn_psi
    key = "fail_psi" if failing else "warn_psi"
    return Finding(
        Outcome.FAIL if failing else Outcome.WARN,
        f"`{worst.split}` {worst.distribution} shifted against {label}: PSI {worst.psi:.3f} "
        f"≥ {limit:g} (`data.stats.{key}`)"
        + (f", chi-squared p = {worst.p_value:.2g}" if worst.p_value is not None else ""),
        measurements,
        details=details,
    )


def _changes(diff: DataDiff) -> dict[str, Any]:
    if diff.unavailable:
        return {"unavailable": diff.unavailable}
    return {split: {cls: c.to_dict() for cls, c in sorted(d.per_class.items())}
            for split, d in diff.splits.items()}  # fmt: skip


def _changes_table(
    doc: dict[str, Any], before: dict[str, Any] | None, changes: dict[str, Any]
) -> str:
    rows = []
    for split, entry in doc["splits"].items():
        was = (before or {}).get("splits", {}).get(split, {}).get("classes", {})
        per = changes.get(split, {}) if "unavailable" not in changes else {}
        for cls in sorted(set(entry["classes"]) | set(was) | set(per)):
            c = per.get(cls, {})
            now, then = entry["classes"].get(cls, 0), was.get(cls)
            delta = "" if then is None else f"{now - then:+d}"
            moved = c.get("relabeled_in", 0) - c.get("relabeled_out", 0)
            if before is None and not any(c.values()):
                continue
            rows.append(f"| {split} | {cls} | {'' if then is None else then} | {now} | {delta} | "
                        f"{c.get('added', 0)} | {c.get('removed', 0)} | {c.get('changed', 0)} | "
                        f"{moved:+d} |")  # fmt: skip
    if not rows:
        return ""
    head = ("| split | class | baseline | head | Δ | added | removed | changed | relabeled |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    return head + "\n" + "\n".join(rows)


def _shift_table(found: list[Shift]) -> str:
    if not found:
        return ""
    rows = [
        f"| {s.split} | {s.distribution} | {s.psi:.4f} | "
        f"{'' if s.p_value is None else f'{s.p_value:.3g}'} |"
        for s in found
    ]
    return "| split | distribution | PSI | chi-squared p |\n|---|---|---:|---:|\n" + "\n".join(rows)


def _channels_table(doc: dict[str, Any], before: dict[str, Any]) -> str:
    rows = []
    for split, entry in doc["splits"].items():
        was = before.get("splits", {}).get(split, {}).get("channels", {})
        for layout, now in entry.get("channels", {}).items():
            then = was.get(layout)
            old = f"{then['mean']} ± {then['std']}" if then else ""
            rows.append(f"| {split} | {layout} | {old} | {now['mean']} ± {now['std']} |")
    if not rows:
        return ""
    return (
        "| split | channels | baseline mean ± std | head mean ± std |\n|---|---|---|---|\n"
        + "\n".join(rows)
    )
