"""`training.zero_input`: zeroed inputs must train worse than the real ones."""

from __future__ import annotations

import math

from faults.toys import GOOD_METRICS, healthy_smoke, judge, num, stage

from dlgate.checks.zero_input import zero_input
from dlgate.report import Outcome


def test_a_model_that_uses_its_input_beats_the_baseline() -> None:
    result = stage("healthy", GOOD_METRICS)["training.zero_input"]
    assert result.outcome is Outcome.PASS, result.message
    assert num(result, "real_final_loss") < 0.8 * num(result, "zero_final_loss")


def test_a_model_that_ignores_its_input_fails() -> None:
    result = stage("ignores_input")["training.zero_input"]
    assert result.outcome is Outcome.FAIL
    assert "does not use its input" in result.message
    assert "overwritten or ignored in forward" in result.details


def test_a_diverged_run_is_not_compared() -> None:
    result = stage("healthy", "  optimizer: toy:huge_lr\n")["training.zero_input"]
    assert result.outcome is Outcome.SKIP
    assert "training.finite" in result.message


def test_negative_losses_compare_by_margin() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["zero_input"].update(losses=[-1.0] * 10, real_losses=[-1.3] * 10)
    assert judge(zero_input, smoke).outcome is Outcome.PASS  # 30% lower than the baseline
    smoke["parts"]["zero_input"]["real_losses"] = [-1.1] * 10
    assert judge(zero_input, smoke).outcome is Outcome.FAIL
    smoke["parts"]["zero_input"]["real_losses"] = [math.nan]
    assert judge(zero_input, smoke).outcome is Outcome.SKIP
