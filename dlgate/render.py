"""Views of a report: Markdown (step summary, check-run summaries) and the terminal.

Renderers only read the `Report`; they never compute a verdict of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

from dlgate.git import short
from dlgate.report import Conclusion, Outcome, Report

ICONS = {
    Outcome.PASS: "✅",
    Outcome.WARN: "⚠️",
    Outcome.FAIL: "❌",
    Outcome.ERROR: "💥",
    Outcome.SKIP: "⏭️",
}
CONCLUSION_ICONS = {Conclusion.SUCCESS: "✅", Conclusion.FAILURE: "❌", Conclusion.SKIPPED: "⏭️"}
VERDICT = {
    Conclusion.SUCCESS: "passed",
    Conclusion.FAILURE: "refused",
    Conclusion.SKIPPED: "skipped",
}


def baseline_line(report: Report) -> str:
    b = report.baseline
    if b is None:
        return "no baseline used"
    if b.found == "exact":
        return f"baseline = main @ {short(b.sha)} (the merge base's own run)"
    if b.found == "ancestor":
        return f"baseline = main @ {short(b.sha)} ({b.distance} commits before the merge base)"
    if b.found == "computed":
        return f"baseline = {short(b.sha)}, computed now from the merge base (none was recorded)"
    return "no baseline: none recorded and none computed"


def headline(report: Report) -> str:
    what = {
        "pr": f"{short(report.base.sha if report.base else None)} ← {short(report.head.sha)}",
        "baseline": f"baseline for {short(report.head.sha)}",
        "release": f"release {report.ref or short(report.head.sha)}",
        "merge_group": f"merge queue {short(report.head.sha)}",
    }.get(report.kind, short(report.head.sha))
    return f"dlgate {VERDICT[report.conclusion]}: {what}"


def markdown(report: Report) -> str:
    """The whole report: the step summary and the PR comment."""
    out = [f"## {CONCLUSION_ICONS[report.conclusion]} {headline(report)}", ""]
    out.append(f"{baseline_line(report)} · config: {report.config_source or 'defaults'}")
    out.append("")
    if report.metrics:
        out.append(_metrics_table(report.metrics))
        out.append("")
    out.append("| stage | result | |")
    out.append("|---|---|---|")
    for stage in report.stages:
        out.append(
            f"| `{stage.check_name}` | {CONCLUSION_ICONS[stage.conclusion]} "
            f"{stage.conclusion.value} | {_cell(stage.title)} |"
        )
    out.append("")
    for stage in report.stages:
        out.append(f"### {stage.check_name}")
        out.append("")
        out.append(markdown_stage(report, stage.name, heading=False))
    return "\n".join(out).rstrip() + "\n"


def markdown_stage(report: Report, stage_name: str, *, heading: bool = True) -> str:
    """One stage: the summary of its check run."""
    stage = report.stage(stage_name)
    if stage is None:
        return f"Stage `{stage_name}` did not run.\n"
    out = []
    if heading:
        out += [f"**{stage.summary}** — {baseline_line(report)}", ""]
    out += ["| check | outcome | message |", "|---|---|---|"]
    for c in stage.checks:
        out.append(f"| `{c.id}` | {ICONS[c.outcome]} {c.outcome.value} | {_cell(c.message)} |")
    out.append("")
    for c in stage.checks:
        if c.details and c.outcome is not Outcome.PASS:
            out += [
                f"<details open><summary><code>{c.id}</code></summary>",
                "",
                c.details,
                "",
                "</details>",
                "",
            ]
        elif c.details:
            out += [
                f"<details><summary><code>{c.id}</code></summary>",
                "",
                c.details,
                "",
                "</details>",
                "",
            ]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _metrics_table(metrics: Mapping[str, float]) -> str:
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {_cell(k)} | {v:.4g} |" for k, v in sorted(metrics.items())]
    return "\n".join(rows)


_ANSI = {
    Outcome.PASS: "32",
    Outcome.WARN: "33",
    Outcome.FAIL: "31",
    Outcome.ERROR: "35",
    Outcome.SKIP: "2",
}


def terminal(report: Report, *, color: bool = False, verbose: bool = False) -> str:
    def paint(text: str, outcome: Outcome) -> str:
        return f"\x1b[{_ANSI[outcome]}m{text}\x1b[0m" if color else text

    lines = [headline(report), f"  {baseline_line(report)}", f"  config: {report.config_source}"]
    for stage in report.stages:
        lines.append(f"{stage.check_name}: {stage.conclusion.value} — {stage.title}")
        for c in stage.checks:
            if verbose or c.outcome not in (Outcome.PASS, Outcome.SKIP):
                tag = paint(f"{c.outcome.value.upper():<5}", c.outcome)
                lines.append(f"  {tag} {c.id}: {c.message}")
                if c.details and c.outcome.blocks:
                    # What to do about a refusal (file lists, a traceback) belongs on screen too.
                    lines += [f"        {ln}".rstrip() for ln in c.details.strip().splitlines()]
    if report.metrics:
        lines.append(
            "metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(report.metrics.items()))
        )
    lines.append(f"verdict: {VERDICT[report.conclusion]} ({report.duration_s:.1f}s)")
    return "\n".join(lines) + "\n"
