"""The report: frozen, JSON round trip, the schema, and the verdict rules."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dlgate.report import (
    STAGES,
    Annotation,
    BaselineInfo,
    CheckResult,
    Conclusion,
    Finding,
    Level,
    Outcome,
    Report,
    Revision,
    StageResult,
    conclude,
    validate,
)

HEAD = "a" * 40
BASE = "b" * 40
MERGE_BASE = "c" * 40


def check(check_id: str, outcome: Outcome, **kw: Any) -> CheckResult:
    return CheckResult(id=check_id, outcome=outcome, message=f"{check_id} says {outcome}", **kw)


def stage(name: str, *checks: CheckResult) -> StageResult:
    return StageResult(name=name, checks=checks, title=f"{name} title", summary=f"{name} summary")


def make_report(*stages: StageResult, **kw: Any) -> Report:
    fields: dict[str, Any] = {
        "kind": "pr",
        "repo": "/tmp/repo",
        "head": Revision("feature", HEAD),
        "base": Revision("main", BASE),
        "merge_base": MERGE_BASE,
        "baseline": BaselineInfo("ancestor", MERGE_BASE, 2, "run123", "sqlite:///x.db"),
        "stages": stages,
        "started_at": "2026-01-02T03:04:05+00:00",
        "duration_s": 12.5,
        "dlgate_version": "0.1.0",
        "config_source": "dlgate.yml @ ccccccc",
        "metrics": {"accuracy": 0.962},
        "ref": "refs/pull/7/head",
    }
    fields.update(kw)
    return Report(**fields)


def full_report() -> Report:
    finding = Finding(
        Outcome.FAIL,
        "data and code changed together",
        measurements={"data_files": 2, "ratio": 0.5, "names": ["a", "b"], "nested": {"k": None}},
        annotations=[
            Annotation("data/a.png", "changed with code", Level.WARNING, 3, 5, "mixed"),
            Annotation("model.py", "changed with data"),
        ],
        details="- data/a.png\n- model.py",
        artifacts=["gallery.png"],
    )
    return make_report(
        stage("changes", CheckResult.from_finding("changes.mix", finding, 0.12345)),
        stage(
            "data", check("data.class_counts", Outcome.PASS), check("data.corrupt", Outcome.WARN)
        ),
        stage("training", check("training.loss_decreases", Outcome.SKIP)),
        stage("export", check("export.parity", Outcome.ERROR, details="```\nTraceback\n```")),
        stage("accuracy", check("accuracy.vs_baseline", Outcome.PASS)),
    )


# --- round trip and schema -------------------------------------------------------------------


def test_a_report_round_trips_through_dict_and_json(tmp_path: Path) -> None:
    report = full_report()
    assert Report.from_dict(report.to_dict()) == report
    assert Report.from_dict(json.loads(report.to_json())) == report
    path = tmp_path / "report.json"
    path.write_text(report.to_json(), encoding="utf-8")
    assert Report.load(path) == report


def test_a_report_validates_against_the_schema() -> None:
    document = full_report().to_dict()
    validate(document)
    validate(json.loads(json.dumps(document)))


def test_a_minimal_report_validates() -> None:
    report = make_report(base=None, merge_base=None, baseline=None, metrics={}, kind="baseline")
    validate(report.to_dict())
    assert Report.from_dict(report.to_dict()) == report


def test_the_document_carries_the_verdict_and_the_check_run_names() -> None:
    doc = full_report().to_dict()
    assert doc["conclusion"] == "failure"
    assert [s["check_name"] for s in doc["stages"]] == [f"dlgate/{s}" for s in STAGES]
    assert [s["conclusion"] for s in doc["stages"]] == [
        "failure",
        "success",
        "skipped",
        "failure",
        "success",
    ]
    mix = doc["stages"][0]["checks"][0]
    assert mix["duration_s"] == 0.123
    assert mix["annotations"][1] == {
        "path": "model.py",
        "message": "changed with data",
        "level": "failure",
        "start_line": 1,
        "end_line": 1,  # a one-line annotation ends where it starts
        "title": "",
    }


def test_report_objects_are_frozen() -> None:
    report = full_report()
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.kind = "release"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.stages[0].checks[0].outcome = Outcome.PASS  # type: ignore[misc]


def tamper(path: list[Any], value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(full_report().to_dict())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(tamper(["stages", 0, "checks", 0, "outcome"], "ok"), id="unknown-outcome"),
        pytest.param(tamper(["stages", 0, "conclusion"], "neutral"), id="neutral-conclusion"),
        pytest.param(tamper(["conclusion"], delete=True), id="missing-conclusion"),
        pytest.param(
            tamper(["stages", 1, "checks", 0, "message"], delete=True), id="missing-message"
        ),
        pytest.param(tamper(["head", "sha"], "abc1234"), id="short-sha"),
        pytest.param(tamper(["base", "sha"], "G" * 40), id="bad-sha"),
        pytest.param(tamper(["merge_base"], "xyz"), id="bad-merge-base"),
        pytest.param(tamper(["stages", 0, "checks", 0, "id"], "mix"), id="id-without-stage"),
        pytest.param(tamper(["stages", 0, "checks", 0, "id"], "Changes.Mix"), id="id-case"),
        pytest.param(tamper(["stages", 0, "name"], "lint"), id="unknown-stage"),
        pytest.param(tamper(["kind"], "push"), id="unknown-kind"),
        pytest.param(tamper(["schema_version"], 2), id="schema-version"),
        pytest.param(tamper(["surprise"], 1), id="unknown-key"),
        pytest.param(tamper(["metrics", "accuracy"], "high"), id="metric-not-a-number"),
        pytest.param(
            tamper(["stages", 0, "checks", 0, "annotations", 0, "start_line"], 0),
            id="annotation-line-0",
        ),
        pytest.param(tamper(["baseline", "found"], "guessed"), id="unknown-baseline-origin"),
    ],
)
def test_a_tampered_document_fails_validation(doc: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


# --- conclusions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], Conclusion.SKIPPED),
        ([Outcome.SKIP, Outcome.SKIP], Conclusion.SKIPPED),
        ([Outcome.PASS], Conclusion.SUCCESS),
        ([Outcome.WARN], Conclusion.SUCCESS),
        ([Outcome.WARN, Outcome.SKIP], Conclusion.SUCCESS),
        ([Outcome.PASS, Outcome.FAIL], Conclusion.FAILURE),
        ([Outcome.PASS, Outcome.ERROR], Conclusion.FAILURE),
        ([Outcome.SKIP, Outcome.ERROR], Conclusion.FAILURE),
        ([Outcome.WARN, Outcome.FAIL, Outcome.PASS], Conclusion.FAILURE),
    ],
)
def test_conclusion_rules(outcomes: list[Outcome], expected: Conclusion) -> None:
    assert conclude(outcomes) is expected
    report = make_report(stage("data", *(check(f"data.c{i}", o) for i, o in enumerate(outcomes))))
    assert report.conclusion is expected
    assert report.passed is (expected is not Conclusion.FAILURE)


def test_error_and_fail_both_block_and_nothing_else_does() -> None:
    assert {o for o in Outcome if o.blocks} == {Outcome.FAIL, Outcome.ERROR}
    # `error` is the worst: the check itself broke, so nothing is known.
    assert max(Outcome, key=lambda o: o.severity) is Outcome.ERROR


def test_one_failing_stage_refuses_the_whole_run() -> None:
    report = make_report(
        stage("changes", check("changes.mix", Outcome.PASS)),
        stage("accuracy", check("accuracy.vs_baseline", Outcome.ERROR)),
    )
    assert report.stage("changes") is not None
    assert report.stage("changes").conclusion is Conclusion.SUCCESS  # type: ignore[union-attr]
    assert report.conclusion is Conclusion.FAILURE
    assert not report.passed
    assert report.check("accuracy.vs_baseline") is not None
    assert report.stage("export") is None
    assert report.check("export.parity") is None


def test_no_conclusion_is_neutral() -> None:
    # GitHub's `neutral` satisfies a required check: a refusal must never map to it.
    assert "neutral" not in {c.value for c in Conclusion}


# --- NaN and infinity -------------------------------------------------------------------------


def test_nan_and_infinite_measurements_become_null_in_json() -> None:
    measured = check(
        "training.loss_decreases",
        Outcome.FAIL,
        measurements={
            "final_loss": math.nan,
            "grad_norm": math.inf,
            "losses": [2.3, math.nan, -math.inf],
            "per_layer": {"conv1": math.nan, "fc": 0.5},
            "steps": 10,
            "diverged": True,
        },
    )
    report = make_report(stage("training", measured), metrics={"accuracy": math.nan, "loss": 0.5})
    text = report.to_json()  # JSON has no NaN: this must not raise
    assert "NaN" not in text
    assert "Infinity" not in text
    doc = json.loads(text)
    validate(doc)
    assert doc["stages"][0]["checks"][0]["measurements"] == {
        "final_loss": None,
        "grad_norm": None,
        "losses": [2.3, None, None],
        "per_layer": {"conv1": None, "fc": 0.5},
        "steps": 10,
        "diverged": True,
    }
    # A non-finite headline metric is left out; the check's outcome says what happened.
    assert doc["metrics"] == {"loss": 0.5}


def test_a_measurement_that_is_not_json_is_an_error_at_serialization() -> None:
    report = make_report(stage("data", check("data.c", Outcome.PASS, measurements={"x": {1, 2}})))
    with pytest.raises(TypeError):
        report.to_json()
