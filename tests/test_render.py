"""The views of a report: Markdown (step summary, check runs) and the terminal."""

from __future__ import annotations

import dataclasses
import re

import pytest

from dlgate import render
from dlgate.report import (
    STAGES,
    BaselineInfo,
    CheckResult,
    Outcome,
    Report,
    Revision,
    StageResult,
)

HEAD = "1234567" + "a" * 33
BASE = "89abcde" + "b" * 33
MERGE_BASE = "fedcba9" + "c" * 33

MIX_MESSAGE = "data | code changed together: data/a|b.png and model.py"
MIX_DETAILS = "Data files:\n- `data/a|b.png`\n\nCode files:\n- `model.py`\n\nSplit the PR: …"
TRACEBACK = "```\nTraceback (most recent call last):\nOSError: broken.png\n```"


def make_report(*, baseline: BaselineInfo | None = None, failing: bool = True) -> Report:
    mix = CheckResult(
        "changes.mix",
        Outcome.FAIL if failing else Outcome.PASS,
        MIX_MESSAGE if failing else "data only",
        details=MIX_DETAILS,
    )
    stages = {
        "changes": (mix, CheckResult("changes.config", Outcome.PASS, "dlgate.yml unchanged")),
        "data": (
            CheckResult("data.counts", Outcome.PASS, "10 classes, balanced"),
            CheckResult(
                "data.corrupt",
                Outcome.ERROR if failing else Outcome.PASS,
                "check data.corrupt broke: OSError: broken.png",
                details=TRACEBACK if failing else "",
            ),
        ),
        "training": (CheckResult("training.loss", Outcome.WARN, "loss fell by 8% only"),),
        "export": (CheckResult("export.parity", Outcome.SKIP, "no model configured"),),
        "accuracy": (CheckResult("accuracy.accuracy", Outcome.PASS, "0.962 → 0.968"),),
    }
    return Report(
        kind="pr",
        repo="/tmp/repo",
        head=Revision("feature", HEAD),
        base=Revision("main", BASE),
        merge_base=MERGE_BASE,
        baseline=baseline,
        stages=tuple(
            StageResult(name, checks, title=f"title of {name}", summary=f"summary of {name}")
            for name, checks in stages.items()
        ),
        started_at="2026-01-02T03:04:05+00:00",
        duration_s=42.0,
        dlgate_version="0.1.0",
        config_source="dlgate.yml @ fedcba9",
        metrics={"accuracy": 0.968, "accuracy|delta": 0.006},
    )


HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table_cells(line: str) -> list[str]:
    """The cells of a Markdown table row; `\\|` is a pipe inside a cell."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return re.split(r"(?<!\\)\|", inner)


# --- Markdown ---------------------------------------------------------------------------------


def test_markdown_has_the_verdict_every_stage_and_the_failures() -> None:
    text = render.markdown(make_report())
    first = text.splitlines()[0]
    assert first.startswith("## ❌ dlgate refused")
    assert f"{BASE[:7]} ← {HEAD[:7]}" in first
    for name in STAGES:
        assert f"`dlgate/{name}`" in text
        assert f"### dlgate/{name}" in text
    assert MIX_MESSAGE.replace("|", "\\|") in text
    assert MIX_DETAILS in text  # details as written, under the check
    assert TRACEBACK in text
    assert "check data.corrupt broke: OSError: broken.png" in text
    assert "config: dlgate.yml @ fedcba9" in text


def test_markdown_table_cells_escape_pipes_and_newlines() -> None:
    text = render.markdown(make_report())
    rows = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    assert rows
    header_widths = {"| stage |": 3, "| check |": 3, "| metric |": 2}
    width = 0
    for row in rows:
        for header, n in header_widths.items():
            if row.startswith(header):
                width = n
        assert len(table_cells(row)) == width, row
    mix_row = next(r for r in rows if "`changes.mix`" in r)
    assert table_cells(mix_row)[2].strip() == MIX_MESSAGE.replace("|", "\\|")
    assert any("accuracy\\|delta" in r for r in rows)


def test_markdown_cells_put_a_multi_line_message_on_one_line() -> None:
    report = make_report()
    stage = StageResult("data", (CheckResult("data.x", Outcome.FAIL, "line one\nline two"),), "t")
    text = render.markdown_stage(dataclasses.replace(report, stages=(stage,)), "data")
    row = next(ln for ln in text.splitlines() if "`data.x`" in ln)
    assert "line one line two" in row


def test_details_are_open_for_a_problem_and_folded_for_a_pass() -> None:
    text = render.markdown_stage(make_report(failing=True), "changes")
    assert "<details open><summary><code>changes.mix</code></summary>" in text
    text = render.markdown_stage(make_report(failing=False), "changes")
    assert "<details><summary><code>changes.mix</code></summary>" in text


def test_a_stage_summary_names_the_baseline_and_a_missing_stage() -> None:
    report = make_report(baseline=BaselineInfo("ancestor", MERGE_BASE, 3, "r1", "sqlite:///x"))
    text = render.markdown_stage(report, "accuracy")
    assert text.startswith("**summary of accuracy** — baseline = main @ fedcba9")
    assert "3 commits before the merge base" in text
    assert "did not run" in render.markdown_stage(report, "nonexistent")


@pytest.mark.parametrize(
    ("baseline", "expected"),
    [
        (None, "no baseline used"),
        (BaselineInfo("exact", MERGE_BASE, 0, "r", ""), "main @ fedcba9 (the merge base's own"),
        (BaselineInfo("ancestor", MERGE_BASE, 2, "r", ""), "2 commits before the merge base"),
        (BaselineInfo("computed", MERGE_BASE, 0, "r", ""), "computed now from the merge base"),
        (BaselineInfo("none"), "none recorded and none computed"),
    ],
)
def test_the_baseline_line_says_how_the_baseline_was_found(
    baseline: BaselineInfo | None, expected: str
) -> None:
    report = make_report(baseline=baseline)
    assert expected in render.baseline_line(report)
    assert expected in render.markdown(report)
    assert expected in render.terminal(report)


def test_a_passing_report_says_passed() -> None:
    report = make_report(failing=False)
    assert report.passed
    assert render.markdown(report).startswith("## ✅ dlgate passed")
    assert "verdict: passed" in render.terminal(report)


# --- terminal ---------------------------------------------------------------------------------


def test_terminal_has_the_verdict_every_stage_and_the_failures() -> None:
    text = render.terminal(make_report())
    assert text.startswith("dlgate refused: ")
    assert text.rstrip().endswith("verdict: refused (42.0s)")
    for name in STAGES:
        assert f"dlgate/{name}: " in text
    assert f"FAIL  changes.mix: {MIX_MESSAGE}" in text
    assert "ERROR data.corrupt: check data.corrupt broke: OSError: broken.png" in text
    assert "WARN  training.loss: loss fell by 8% only" in text
    # what to do about a refusal is on screen: the lists and the traceback
    for line in (MIX_DETAILS + "\n" + TRACEBACK).splitlines():
        assert line in text


def test_terminal_has_no_html_and_no_color_unless_asked() -> None:
    report = make_report()
    for verbose in (False, True):
        text = render.terminal(report, verbose=verbose)
        assert not HTML_TAG.search(text), HTML_TAG.search(text)
        assert not ANSI.search(text)
    colored = render.terminal(report, color=True)
    assert ANSI.search(colored)
    assert ANSI.sub("", colored) == render.terminal(report)


def test_terminal_shows_passing_checks_only_when_verbose() -> None:
    report = make_report()
    assert "changes.config" not in render.terminal(report)
    assert "PASS  changes.config: dlgate.yml unchanged" in render.terminal(report, verbose=True)


def test_terminal_shows_the_metrics() -> None:
    assert "metrics: accuracy=0.968" in render.terminal(make_report())
