"""The runner survives what it runs: a broken check is an `error` outcome, the gate goes on."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import GitRepo
from hook_targets import call_user

from dlgate import hooks
from dlgate.config import default_config
from dlgate.context import Context
from dlgate.errors import ConfigError, HookError
from dlgate.registry import CheckSpec
from dlgate.report import STAGES, CheckResult, Finding, Outcome, Revision
from dlgate.runner import STAGE_TITLES, run_check, run_stage, stage_title

SHA = "a" * 40


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    repo = tmp_path / "repo"
    repo.mkdir()
    return Context(
        repo=repo,
        git_dir=repo,
        head=Revision("HEAD", SHA),
        base=None,
        merge_base=None,
        config=default_config(),
        out=tmp_path / "out",
    )


def run(func: Any, ctx: Context, check_id: str = "training.smoke") -> CheckResult:
    stage = check_id.split(".", maxsplit=1)[0]
    return run_check(CheckSpec(check_id, stage, func), ctx)


def test_a_finding_becomes_a_result_with_the_id_and_a_duration(ctx: Context) -> None:
    def good(_ctx: Context) -> Finding:
        return Finding(Outcome.WARN, "loss fell slowly", {"ratio": 0.9}, details="- step 1")

    result = run(good, ctx)
    assert result.id == "training.smoke"
    assert result.outcome is Outcome.WARN
    assert result.message == "loss fell slowly"
    assert result.measurements == {"ratio": 0.9}
    assert result.details == "- step 1"
    assert result.duration_s >= 0


def test_a_check_that_raises_is_an_error_quoting_the_exception(ctx: Context) -> None:
    def broken(_ctx: Context) -> Finding:
        raise ZeroDivisionError("no samples in split 'val'")

    result = run(broken, ctx)
    assert result.outcome is Outcome.ERROR
    assert result.outcome.blocks
    assert "training.smoke" in result.message
    assert "ZeroDivisionError: no samples in split 'val'" in result.message
    assert result.details.startswith("```\n")
    assert "Traceback" in result.details
    assert "in broken" in result.details


def test_a_check_returning_something_else_than_a_finding_is_an_error(ctx: Context) -> None:
    def sloppy(_ctx: Context) -> Any:
        return {"outcome": "pass"}

    result = run(sloppy, ctx)
    assert result.outcome is Outcome.ERROR
    assert "returned dict, not a Finding" in result.message


def test_a_config_error_inside_a_check_is_an_error_naming_the_line(ctx: Context) -> None:
    def strict(_ctx: Context) -> Finding:
        raise ConfigError("`data.root` does not exist", file="dlgate.yml", line=7)

    result = run(strict, ctx)
    assert result.outcome is Outcome.ERROR
    assert result.message == "configuration: dlgate.yml:7: `data.root` does not exist"


def test_a_user_hook_that_raises_is_an_error_naming_the_hook(ctx: Context) -> None:
    (ctx.repo / "model.py").write_text(
        textwrap.dedent(
            """
            def make_model():
                raise RuntimeError("size mismatch for fc.weight")
            """
        )
    )

    def uses_hook(c: Context) -> Finding:
        hooks.call(call_user, "model:make_model", cwd=c.repo, timeout=30, hook="pipeline.model")
        return Finding(Outcome.PASS, "unreachable")

    result = run(uses_hook, ctx)
    assert result.outcome is Outcome.ERROR
    assert result.message == "pipeline.model raised: RuntimeError: size mismatch for fc.weight"
    assert result.measurements == {"hook": "pipeline.model", "failure": "raised"}
    assert "model.py" in result.details
    assert result.details.startswith("```\n")


@pytest.mark.parametrize(
    ("kind", "verb"),
    [
        ("timeout", "timed out"),
        ("crashed", "crashed"),
        ("bad-return", "returned the wrong type"),
        ("failed", "failed"),
    ],
)
def test_every_hook_failure_kind_reads_as_a_sentence(ctx: Context, kind: str, verb: str) -> None:
    def fails(_ctx: Context) -> Finding:
        raise HookError("pipeline.train", "no result after 5s", kind=kind, details="log tail")

    result = run(fails, ctx)
    assert result.outcome is Outcome.ERROR
    assert result.message == f"pipeline.train {verb}: no result after 5s"
    assert result.measurements["failure"] == kind
    assert result.details == "```\nlog tail\n```"


def test_a_very_long_hook_message_is_shortened(ctx: Context) -> None:
    def noisy(_ctx: Context) -> Finding:
        raise HookError("pipeline.model", "x" * 5000)

    result = run(noisy, ctx)
    assert len(result.message) < 600
    assert result.message.endswith("…")


def test_a_broken_shared_product_errors_every_check_that_needs_it(ctx: Context) -> None:
    calls = []

    def load() -> int:
        calls.append(1)
        raise OSError("data/train is empty")

    def first(c: Context) -> Finding:
        c.memo("dataset", load)
        return Finding(Outcome.PASS, "ok")

    results = [run(first, ctx, "data.a"), run(first, ctx, "data.b")]
    assert [r.outcome for r in results] == [Outcome.ERROR, Outcome.ERROR]
    assert all("OSError: data/train is empty" in r.message for r in results)
    assert len(calls) == 1  # computed once, its failure remembered


# --- stage titles -----------------------------------------------------------------------------


def result(check_id: str, outcome: Outcome, message: str = "") -> CheckResult:
    return CheckResult(check_id, outcome, message or f"{check_id} {outcome}")


def test_every_stage_has_a_title() -> None:
    assert set(STAGE_TITLES) == set(STAGES)


def test_a_stage_without_checks_says_so() -> None:
    assert stage_title(()) == "no checks"


def test_a_passing_stage_title_counts_the_checks() -> None:
    checks = (
        result("data.a", Outcome.PASS),
        result("data.b", Outcome.PASS),
        result("data.c", Outcome.SKIP),
    )
    assert stage_title(checks) == "3 checks: 2 pass, 1 skip"


def test_the_worst_finding_leads_the_title() -> None:
    checks = (
        result("data.a", Outcome.PASS),
        result("data.b", Outcome.FAIL, "3 labels outside the known classes"),
        result("data.c", Outcome.WARN, "class 7 is rare"),
        result("data.d", Outcome.ERROR, "check data.d broke: OSError"),
    )
    assert stage_title(checks) == "check data.d broke: OSError (1 error, 1 fail, 1 pass, 1 warn)"
    assert stage_title(checks[:3]).startswith("3 labels outside the known classes (")


def test_a_title_fits_a_check_run_title() -> None:
    assert len(stage_title((result("data.a", Outcome.FAIL, "x" * 5000),))) <= 1000


def test_run_stage_runs_the_registered_checks_in_a_real_repository(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    git_repo.write("model.py", "x = 1\n")
    base = git_repo.commit("base")
    git_repo.branch("feature")
    git_repo.write("data/train/0/a.png", b"\x89PNG")
    head = git_repo.commit("add data")
    messages: list[str] = []
    ctx = Context(
        repo=git_repo.path,
        git_dir=git_repo.path,
        head=Revision("feature", head),
        base=Revision("main", base),
        merge_base=base,
        config=default_config(),
        out=tmp_path / "out",
        progress=messages.append,
    )
    stage = run_stage("changes", ctx)
    assert stage.name == "changes"
    assert stage.check_name == "dlgate/changes"
    assert stage.summary == STAGE_TITLES["changes"]
    assert stage.title == stage_title(stage.checks)
    assert [c.id for c in stage.checks][:2] == ["changes.mix", "changes.config"]
    assert all(c.outcome is not Outcome.ERROR for c in stage.checks), stage.checks
    assert any(m.startswith("changes: mix") for m in messages)


def test_stages_run_in_run_order_with_timed_checks_last_and_report_in_stage_order(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlgate import registry
    from dlgate.runner import RUN_ORDER, run_stages

    assert sorted(RUN_ORDER) == sorted(STAGES)
    ran: list[str] = []

    def make(check_id: str) -> Any:
        def func(_ctx: Context) -> Finding:
            ran.append(check_id)
            return Finding(Outcome.PASS, check_id)

        return func

    fake = {
        "training.loss": False,
        "export.facts": True,
        "export.contract": False,
        "accuracy.accuracy": False,
    }
    monkeypatch.setattr(registry, "_CHECKS", {})
    for check_id, timed in fake.items():
        registry.check(check_id, timed=timed)(make(check_id))
    stages = run_stages(("training", "export", "accuracy"), ctx)
    # export and accuracy first (they need only the model), training's battery last, and the
    # latency measurement after everything, alone.
    assert ran == ["export.contract", "accuracy.accuracy", "training.loss", "export.facts"]
    assert [s.name for s in stages] == ["training", "export", "accuracy"]
    assert [c.id for c in stages[1].checks] == ["export.facts", "export.contract"]
