"""`data.labels`: every sample's label is one of the declared classes (`data.classes`)."""

from __future__ import annotations

from dlgate.context import Context
from dlgate.datafindings import Offenders, turned_off
from dlgate.datascan import scan
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.labels")
def labels(ctx: Context) -> Finding:
    """Labels outside the declared classes."""
    data = scan(ctx)
    level = data.settings.labels.level
    if level == "off":
        return turned_off("labels")
    declared = data.settings.classes
    if not declared:
        return Finding(
            Outcome.SKIP,
            "no classes declared (`data.classes`): every label found "
            "is taken for a class; declare them to catch typos and stray folders",
        )
    unknown: dict[str, dict[str, int]] = {}
    for split in data.splits:
        for label, n in data.counters(split).get("count", {}).items():
            if label not in declared:
                unknown.setdefault(split, {})[label] = n
    measurements: dict[str, Value] = {"unknown": dict(unknown), "classes": list(declared)}
    if not unknown:
        return Finding(
            Outcome.PASS,
            f"every label is one of the {len(declared)} declared classes",
            measurements,
        )
    bad = sorted({label for per in unknown.values() for label in per})
    offenders = Offenders(ctx, "labels", data.settings.max_listed, level)
    marks = ", ".join("?" * len(bad))
    for ref, _ in data.refs(
        f"SELECT s.* FROM samples s WHERE s.label IN ({marks}) ORDER BY s.split, s.id", bad
    ):
        offenders.add(ref, f"label {ref.label!r} is not a declared class (`data.classes`)")
    names = ", ".join(repr(b) for b in bad)
    return offenders.finding(
        f"{offenders.count} samples with labels outside the declared classes: {names}",
        measurements,
        f"declared: {', '.join(declared)}",
    )
