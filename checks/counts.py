"""`data.counts`: samples per class in every split, and files that cannot be read."""

from __future__ import annotations

from collections import Counter

from PIL import Image

from dlgate.context import Context
from dlgate.dataset import DataSettings, classes, load_split
from dlgate.registry import check
from dlgate.report import Annotation, Finding, Outcome, Value


@check("data.counts")
def counts(ctx: Context) -> Finding:
    """Samples per class in every split; unreadable files."""
    settings = ctx.config.get(DataSettings)
    per_split: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    annotations: list[Annotation] = []
    for split in settings.splits:
        samples = load_split(ctx.repo, settings, split)
        tally = Counter(s.label for s in samples)
        declared = classes(settings, samples)
        per_split[split] = {c: tally.get(c, 0) for c in declared}
        for cls, n in per_split[split].items():
            if n < settings.min_per_class:
                problems.append(f"{split}/{cls}: {n} samples (minimum {settings.min_per_class})")
        for sample in samples:
            reason = _unreadable(sample.path)
            if reason:
                problems.append(f"{sample.id}: {reason}")
                annotations.append(Annotation(sample.id, f"unreadable image: {reason}"))
    measurements: dict[str, Value] = {"per_class": per_split, "problems": len(problems)}
    table = "\n".join(
        f"- `{split}`: " + ", ".join(f"{c}={n}" for c, n in tally.items())
        for split, tally in per_split.items()
    )
    if problems:
        listed = "\n".join(f"- {p}" for p in problems[:50])
        more = f"\n- … and {len(problems) - 50} more" if len(problems) > 50 else ""
        return Finding(
            Outcome.FAIL,
            f"{len(problems)} data problems, first: {problems[0]}",
            measurements,
            annotations,
            details=f"{listed}{more}\n\n{table}",
        )
    total = sum(sum(t.values()) for t in per_split.values())
    return Finding(Outcome.PASS, f"{total} samples in {len(per_split)} splits", measurements,
                   details=table)


def _unreadable(path: object) -> str:
    try:
        with Image.open(path) as img:  # type: ignore[arg-type]
            img.load()
    except Exception as exc:  # PIL raises many types for bad files; each is a finding
        return f"{type(exc).__name__}: {exc}"
    return ""
