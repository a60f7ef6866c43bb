"""`data.sources`: every configured split can be read and holds samples, laid out as its
format says. A missing or unreadable location, an empty split, an empty class folder, a
stray file or a bad manifest row fails, naming the path (and line)."""

from __future__ import annotations

from dlgate.context import Context
from dlgate.datafindings import plural
from dlgate.datascan import scan
from dlgate.registry import check
from dlgate.report import Annotation, Finding, Outcome, Value


@check("data.sources")
def sources(ctx: Context) -> Finding:
    """Each split's location exists, can be read and holds samples."""
    data = scan(ctx)
    problems: list[str] = []
    annotations: list[Annotation] = []
    per_split: dict[str, Value] = {}
    fatal = 0
    for name, s in data.splits.items():
        per_split[name] = {"location": s.location, "samples": data.total(name), "scan": s.how}
        if s.fatal is not None:  # listed first: nothing of the split could be read
            problems.insert(fatal, f"split `{name}`: `{s.fatal.path}` {s.fatal.message}")
            fatal += 1
        for p in s.problems:
            where = f"`{p.path}`" + (f" line {p.line}" if p.line else "")
            problems.append(f"split `{name}`: {where}: {p.message}")
            if (ctx.repo / p.path).is_file():  # an annotation needs a file to sit on
                annotations.append(
                    Annotation(p.path, p.message, start_line=max(p.line, 1), title="data.sources")
                )
    measurements: dict[str, Value] = {
        "splits": per_split,
        "problems": len(problems),
        "analyzed": data.analyzed,
        "scan_seconds": round(data.seconds, 3),
    }
    if problems:
        shown = problems[: data.settings.max_listed]
        more = len(problems) - len(shown)
        details = "\n".join(f"- {p}" for p in shown) + (f"\n- … and {more} more" if more else "")
        return Finding(
            Outcome.FAIL,
            f"{plural(len(problems), 'data source problem')}: {problems[0]}",
            measurements,
            annotations[: data.settings.max_listed],
            details=details,
        )
    total = sum(data.total(n) for n in data.splits)
    summary = ", ".join(f"{n}: {data.total(n)}" for n in data.splits)
    return Finding(
        Outcome.PASS,
        f"{total} samples in {plural(len(data.splits), 'split')} ({summary}); "
        f"{data.analyzed} files read, the rest from the cache",
        measurements,
    )
