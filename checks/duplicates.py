"""`data.duplicates`: the same content twice within a split (by content hash)."""

from __future__ import annotations

from dlgate.context import Context
from dlgate.datafindings import Offenders, turned_off
from dlgate.datascan import scan
from dlgate.dataview import SampleRef
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.duplicates")
def duplicates(ctx: Context) -> Finding:
    """Exact duplicates within a split."""
    data = scan(ctx)
    settings = data.settings.duplicates
    if settings.level == "off":
        return turned_off("duplicates")
    per_split = dict.fromkeys(data.splits, 0)
    offenders = Offenders(ctx, "duplicates", data.settings.max_listed, settings.level)
    for group in data.key_groups():
        by_split: dict[str, list[SampleRef]] = {}
        for ref in group:
            by_split.setdefault(ref.split, []).append(ref)
        for split, refs in by_split.items():
            if len(refs) < 2:
                continue
            per_split[split] += len(refs) - 1  # copies beyond the first
            for ref in refs:  # all named: which one is the "original" is the reviewer's call
                offenders.add(ref, f"exact duplicate: the same content as "
                              f"{_others(ref, refs)} (split `{split}`)")  # fmt: skip
    measurements: dict[str, Value] = {"per_split": dict(per_split), "allowed": settings.allowed}
    worst = max(per_split.values(), default=0)
    if worst <= settings.allowed:
        what = (
            f"{worst} exact duplicates in a split, within `data.duplicates.allowed`"
            f" ({settings.allowed})"
            if worst
            else "no exact duplicates within a split"
        )
        return Finding(
            Outcome.PASS,
            what,
            measurements,
            details=offenders.details(),
        )
    split = max(per_split, key=lambda s: per_split[s])
    return offenders.finding(
        f"{sum(per_split.values())} exact duplicate samples ({worst} in `{split}`, allowed "
        f"{settings.allowed})",
        measurements,
    )


def _others(ref: SampleRef, group: list[SampleRef], shown: int = 3) -> str:
    """The other members of a group, a few by name (a blank image may have thousands)."""
    others = [o.location for o in group[: shown + 1] if o is not ref][:shown]
    more = len(group) - 1 - len(others)
    return ", ".join(others) + (f" and {more} more" if more > 0 else "")
