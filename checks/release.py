"""`accuracy.release`: a release against the previous one, and the metrics of every release.

Runs on release runs (`dlgate release --tag TAG`). The previous release is the nearest tag in
the tag's own history (`git describe --tags --abbrev=0 TAG^`, then further back) that has a
release run in the store which passed; a refused release is skipped, so a regression cannot
become the reference. The comparison is the paired one of `accuracy.delta`, on the samples both
releases were evaluated on, but a release fails on any worsening beyond
`accuracy.release.tolerance` (default: each metric's own tolerance), significant or not:
across a release, small insignificant drops of many pull requests add up.

The details hold the table of every release's metrics; `accuracy/releases.png` plots every
metric across releases (refused releases marked x).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from dlgate import git, stats
from dlgate.checks.accuracy import HEADLINE, PREDICTIONS, AccuracySettings, evaluated
from dlgate.checks.compare import Gate, compare, judge, outcomes
from dlgate.checks.compare import details as comparison_details
from dlgate.context import Context
from dlgate.errors import BaselineError
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value

if TYPE_CHECKING:
    from dlgate.baselines import RunRecord, Store

_MAX_TAGS_BACK = 50


def tag_name(ref: str) -> str:
    return ref.removeprefix("refs/tags/")


@check("accuracy.release")
def release(ctx: Context) -> Finding:
    """On a release: no regression against the previous release; the metrics per release."""
    from dlgate.baselines import Store

    if ctx.kind != "release":
        return Finding(Outcome.SKIP, "runs on releases (`dlgate release --tag TAG`)")
    tag = tag_name(ctx.head.rev)
    settings = ctx.config.get(AccuracySettings)
    ev = evaluated(ctx)
    o = outcomes(ev.rows, ev.classes)
    names = [*HEADLINE, *(m for m in settings.metrics if m not in HEADLINE)]
    current = {name: stats.value(o, name) for name in names}
    with Store.open(ctx.tracking_uri, ctx.config.baseline.experiment) as store:
        history = _latest_per_tag(store.releases(), tag)
        previous = _previous(ctx, history)
        base_rows = _rows(store, previous)
        if ev.reused_from is not None:  # the commit's own run: say it was released
            store.tag_run(ev.reused_from, "dlgate.release", tag)
    rel = settings.release
    gates = [
        dataclasses.replace(g, tolerance=rel.tolerance) if rel.tolerance is not None else g
        for g in settings.gates()
    ]
    measurements: dict[str, Value] = {"tag": tag, "previous": previous.tag if previous else None}
    if previous is None:
        outcome, text, comparison = Outcome.PASS, "the first release recorded", ""
    elif base_rows is not None:
        cmp = compare(
            ev.rows,
            base_rows,
            ev.classes,
            gates,
            significance=settings.significance,
            confidence=settings.confidence,
            bootstrap=settings.bootstrap,
            require_significance=False,
        )
        outcome, worst = cmp.outcome, cmp.worst
        text = f"against {previous.label}: {worst.line(settings.confidence)}"
        if outcome is not Outcome.PASS:
            text += f": {worst.verdict}"
        text += f"; {len(cmp.fixed)} fixed, {len(cmp.regressed)} regressed"
        where = f"the previous release {previous.label}"
        comparison = comparison_details(cmp, settings.confidence, settings.max_listed, where,
                                        base="previous release")  # fmt: skip
        measurements["metrics"] = {m.gate.metric: m.outcome.value for m in cmp.metrics}
    else:  # its predictions are gone: compare the recorded values
        outcome, text = _by_values(gates, previous, current, settings.significance)
        comparison = ""
    table, plot = _history(ctx, history, previous, tag, current, outcome)
    measurements["releases"] = len(table) - 2
    details = "\n\n".join(
        p for p in (comparison, "\n".join(table), f"Plot: [`{plot}`]({plot})") if p
    )
    artifacts = (plot, plot.replace(".png", ".md"))
    return Finding(
        outcome, f"release {tag}: {text}", measurements, details=details, artifacts=artifacts
    )


def _latest_per_tag(runs: list[RunRecord], current: str) -> dict[str, RunRecord]:
    """Releases in the store's (version) order, the latest run of each tag; not this one's."""
    out: dict[str, RunRecord] = {}
    for run in runs:
        name = tag_name(run.tag or "")
        if name and name != current:
            out[name] = run
    return out


def _previous(ctx: Context, history: dict[str, RunRecord]) -> RunRecord | None:
    rev = f"{ctx.head.sha}^"
    for _ in range(_MAX_TAGS_BACK):
        found = git.git(ctx.git_dir, "describe", "--tags", "--abbrev=0", rev, check=False).strip()
        if not found:
            return None
        run = history.get(found)
        if run is not None and run.conclusion != "failure":
            return run
        rev = f"{found}^"
    return None


def _rows(store: Store, run: RunRecord | None) -> list[dict[str, Any]] | None:
    if run is None:
        return None
    try:
        rows: list[dict[str, Any]] = store.load_json(run, PREDICTIONS)
    except BaselineError:
        return None
    return rows


def _by_values(
    gates: list[Gate], previous: RunRecord, current: dict[str, float], alpha: float
) -> tuple[Outcome, str]:
    verdicts = []
    for gate in gates:
        base = previous.metrics.get(gate.metric, math.nan)
        outcome, words = judge(gate, base, current.get(gate.metric, math.nan), math.nan,
                               "paired", alpha, require_significance=False)  # fmt: skip
        verdicts.append((outcome, f"{gate.metric}: {words}"))
    worst = max(verdicts, key=lambda v: v[0].severity)
    return worst[0], (
        f"against {previous.label} (its per-sample predictions are gone; recorded metrics "
        f"compared): {worst[1]}"
    )


def _history(
    ctx: Context,
    history: dict[str, RunRecord],
    previous: RunRecord | None,
    tag: str,
    current: dict[str, float],
    outcome: Outcome,
) -> tuple[list[str], str]:
    """The Markdown table of every release (this one included) and the plot's path."""
    from dlgate import plots

    entries: list[tuple[str, str, dict[str, float], bool, str]] = [
        (name, run.sha, run.metrics, run.conclusion == "failure", run.start_time.date().isoformat())
        for name, run in history.items()
    ]
    # This release goes after the last one in its own history (a hotfix v1.3.1 lands between
    # v1.3.0 and a v1.4.0 made on main since), else at the end.
    at = len(entries)
    ancestors = [i for i, e in enumerate(entries) if _is_ancestor(ctx, e[1])]
    if ancestors and len(ancestors) < len(entries):
        at = ancestors[-1] + 1
    entries.insert(at, (tag, ctx.head.sha, current, outcome.blocks, "this release"))
    names = [n for n in current if any(math.isfinite(e[2].get(n, math.nan)) for e in entries)]
    table = [
        "| release | commit | recorded | " + " | ".join(names) + " | verdict |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for name, sha, metrics, refused, when in entries:
        cells = " | ".join(_cell(metrics.get(n, math.nan)) for n in names)
        verdict = "refused" if refused else "passed"
        table.append(f"| {'**' + name + '**' if name == tag else name} | {sha[:7]} | {when} | "
                     f"{cells} | {verdict} |")  # fmt: skip
    path = ctx.artifact_dir("accuracy") / "releases.png"
    plots.releases(
        [e[0] for e in entries],
        {n: [e[2].get(n, math.nan) for e in entries] for n in names},
        path,
        refused=[e[3] for e in entries],
    )
    ctx.record_files["releases.png"] = path
    (path.parent / "releases.md").write_text("\n".join(table) + "\n", encoding="utf-8")
    return table, path.relative_to(ctx.out).as_posix()


def _is_ancestor(ctx: Context, sha: str) -> bool:
    """Whether `sha` is in the history of this release (unknown commits are not)."""
    found = git.git(ctx.git_dir, "merge-base", sha, ctx.head.sha, check=False).strip()
    return found == sha


def _cell(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else "–"
