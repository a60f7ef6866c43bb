"""`data.counts`: samples per class in every split: a minimum per class, and the class
imbalance (largest / smallest class)."""

from __future__ import annotations

from dlgate.context import Context
from dlgate.datafindings import bullet, outcome
from dlgate.datascan import scan
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.counts")
def counts(ctx: Context) -> Finding:
    """Samples per class in every split: the minimum, and the imbalance."""
    data = scan(ctx)
    limits = data.settings.counts
    classes = data.classes()
    per_split: dict[str, dict[str, int]] = {}
    imbalance: dict[str, Value] = {}
    too_few: list[str] = []
    unbalanced: list[str] = []
    for split in data.splits:
        found = data.counters(split).get("count", {})
        tally = {c: found.get(c, 0) for c in classes}
        per_split[split] = tally
        for cls, n in tally.items():
            if n < limits.min_per_class:
                too_few.append(
                    f"`{split}` class `{cls}`: {n} samples "
                    f"(minimum {limits.min_per_class}, `data.counts.min_per_class`)"
                )
        present = [n for n in tally.values() if n > 0]
        ratio = max(present) / min(present) if present else 0.0
        imbalance[split] = round(ratio, 3)
        if limits.max_imbalance and ratio > limits.max_imbalance:
            big = max(tally, key=lambda c: tally[c])
            small = min((c for c in tally if tally[c] > 0), key=lambda c: tally[c])
            unbalanced.append(
                f"`{split}`: class `{big}` has {ratio:.1f}x the samples of class `{small}` "
                f"({tally[big]} vs {tally[small]}; limit {limits.max_imbalance:g}, "
                "`data.counts.max_imbalance`)"
            )
    measurements: dict[str, Value] = {"per_class": dict(per_split), "imbalance": imbalance}
    table = "\n".join(
        f"- `{split}`: " + ", ".join(f"{c}={n}" for c, n in tally.items())
        for split, tally in per_split.items()
    )
    if too_few:
        return Finding(
            Outcome.FAIL,
            f"{len(too_few)} classes below the minimum: {too_few[0]}",
            measurements,
            details=f"{bullet(too_few + unbalanced)}\n\n{table}",
        )
    if unbalanced and limits.imbalance_level != "off":
        return Finding(
            outcome(limits.imbalance_level),
            f"class imbalance: {unbalanced[0]}",
            measurements,
            details=f"{bullet(unbalanced)}\n\n{table}",
        )
    total = sum(sum(t.values()) for t in per_split.values())
    worst = max((float(v) for v in imbalance.values() if isinstance(v, float)), default=0.0)
    return Finding(
        Outcome.PASS,
        f"{total} samples, {len(classes)} classes, at least {limits.min_per_class} per class; "
        f"imbalance at most {worst:.2f}",
        measurements,
        details=table,
    )
