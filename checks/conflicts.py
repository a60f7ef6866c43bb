"""`data.conflicts`: the same content under two or more labels (in any splits)."""

from __future__ import annotations

import itertools

from dlgate.context import Context
from dlgate.datafindings import Offenders, plural, turned_off
from dlgate.datascan import scan
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.conflicts")
def conflicts(ctx: Context) -> Finding:
    """The same sample with different labels."""
    data = scan(ctx)
    level = data.settings.conflicts.level
    if level == "off":
        return turned_off("conflicts")
    offenders = Offenders(ctx, "conflicts", data.settings.max_listed, level)
    groups = 0
    for group in data.key_groups():
        labels = sorted({ref.label for ref in group})
        if len(labels) < 2:
            continue
        groups += 1
        for ref in group:
            differ = (o for o in group if o.label != ref.label)
            shown = [f"{o.location} ({o.label!r})" for o in itertools.islice(differ, 3)]
            more = sum(1 for _ in differ)
            others = ", ".join(shown) + (f" and {more} more" if more else "")
            offenders.add(
                ref,
                f"labelled {ref.label!r}, but the same content is labelled differently in {others}",
            )
    measurements: dict[str, Value] = {"groups": groups, "samples": offenders.count}
    if not groups:
        return Finding(Outcome.PASS, "no content carries two labels", measurements)
    return offenders.finding(
        f"{plural(groups, 'content')} with conflicting labels ({offenders.count} samples)",
        measurements,
    )
