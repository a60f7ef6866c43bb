"""What the Action writes for the runner (dlgate/workflow.py): workflow commands, the step
summary within GitHub's 1 MiB, and step outputs in the multi-line-safe form."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlgate.report import (
    Annotation,
    CheckResult,
    Level,
    Outcome,
    Report,
    Revision,
    StageResult,
)
from dlgate.workflow import (
    COMMAND_ANNOTATIONS,
    SUMMARY_LIMIT,
    annotate,
    append_summary,
    clip_summary,
    command,
    read_outputs,
    untrusted_output,
    write_outputs,
)


def report(*checks: CheckResult) -> Report:
    return Report(
        kind="pr",
        repo="/r",
        head=Revision("HEAD", "b" * 40),
        base=Revision("main", "a" * 40),
        merge_base="a" * 40,
        baseline=None,
        stages=(StageResult("data", tuple(checks), "data"),),
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=1.0,
        dlgate_version="0",
    )


def test_commands_escape_what_would_end_them(capsys: pytest.CaptureFixture[str]) -> None:
    command("error", "50% of\nthe samples", file="data/a,b:c.png", line=3, title="x")
    assert capsys.readouterr().out == (
        "::error file=data/a%2Cb%3Ac.png,line=3,title=x::50%25 of%0Athe samples\n"
    )


def test_untrusted_output_is_fenced_by_stop_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with untrusted_output():
        print("::add-mask::from-a-pull-request")
    first, middle, last = capsys.readouterr().out.splitlines()
    token = first.removeprefix("::stop-commands::")
    assert len(token) == 32
    assert middle == "::add-mask::from-a-pull-request"
    assert last == f"::{token}::"


def test_annotations_become_commands_under_the_checkout_folder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    many = tuple(
        Annotation(f"data/{i}.png", f"near duplicate {i}", Level.WARNING, 2, 4, title="dup")
        for i in range(COMMAND_ANNOTATIONS + 5)
    )
    annotate(
        report(
            CheckResult("data.duplicates", Outcome.FAIL, "55 duplicates", annotations=many),
            CheckResult("data.counts", Outcome.PASS, "fine"),
        ),
        prefix="project/",
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "::error title=dlgate/data::data.duplicates: 55 duplicates"
    assert lines[1] == (
        "::warning file=project/data/0.png,line=2,endLine=4,title=dup::near duplicate 0"
    )
    assert len([ln for ln in lines if ln.startswith("::warning file=")]) == COMMAND_ANNOTATIONS
    assert lines[-1] == "dlgate: 5 more annotations are in the check runs and report.json"
    assert not any("data.counts" in ln for ln in lines)  # a pass is no annotation


def test_a_summary_that_fits_is_kept_whole() -> None:
    assert clip_summary("## ok\n", limit=100) == "## ok\n"


def test_a_long_summary_is_cut_at_a_line_with_blocks_closed_and_a_pointer() -> None:
    row = "| `data/ünïcödé/sample.png` | ❌ fail | near duplicate |\n"
    markdown = "## report\n\n<details open><summary>x</summary>\n\n```\n" + row * 40_000
    assert len(markdown.encode()) > SUMMARY_LIMIT
    clipped = clip_summary(markdown, "https://github.com/o/r/actions/runs/9")
    size = len(clipped.encode())
    assert SUMMARY_LIMIT - 4096 < size <= SUMMARY_LIMIT
    body, _, note = clipped.partition("\n\n---\n✂️ Truncated")
    assert body.endswith("near duplicate |\n```\n</details>")  # whole rows, then the closers
    assert "at most 1,024 KiB" in note
    assert "[the run](https://github.com/o/r/actions/runs/9)" in note
    assert "`dlgate-report` artifact" in note


def test_the_summary_limit_counts_what_the_step_already_wrote(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_text("x" * (SUMMARY_LIMIT - 1000), encoding="utf-8")
    append_summary(path, "y\n" * 5000)
    assert path.stat().st_size <= SUMMARY_LIMIT
    assert "✂️ Truncated" in path.read_text(encoding="utf-8")
    append_summary(None, "no summary file outside a runner: nothing happens")


def test_outputs_round_trip_whatever_their_content(tmp_path: Path) -> None:
    path = tmp_path / "output"
    path.write_text("earlier=step\n", encoding="utf-8")
    values = {
        "conclusion": "failure",
        "metrics": '{"accuracy": 0.97}',
        "multi": "line one\nline two\n",
        "tricky": "a=b<<EOF\nEOF\n",
        "empty": "",
    }
    write_outputs(path, values)
    assert read_outputs(path.read_text(encoding="utf-8")) == {"earlier": "step", **values}


def test_an_unterminated_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="no closing delimiter"):
        read_outputs("name<<END\nvalue\n")
