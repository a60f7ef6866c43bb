"""`training.loss` and the `training` section: the short seeded run's loss must fall."""

from __future__ import annotations

from dataclasses import replace

import pytest
from faults.toys import GOOD_METRICS, fresh, healthy_smoke, judge, num, stage

from dlgate.checks.loss import TrainingSettings, loss
from dlgate.config import load_text
from dlgate.errors import ConfigError
from dlgate.report import Outcome


def test_a_healthy_model_learns_in_the_short_run() -> None:
    result = stage("healthy", GOOD_METRICS)["training.loss"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["steps"] == 60
    assert num(result, "final_loss") < 0.8 * num(result, "initial_loss")


def test_a_learning_rate_far_too_low_fails_and_says_what_to_try() -> None:
    result = stage("healthy", "  optimizer: toy:tiny_lr\n")["training.loss"]
    assert result.outcome is Outcome.FAIL
    assert "did not decrease" in result.message
    assert "What to try" in result.details
    assert "learning rate" in result.details


def test_a_diverging_run_fails_naming_the_step() -> None:
    result = stage("healthy", "  optimizer: toy:huge_lr\n")["training.loss"]
    assert result.outcome is Outcome.FAIL
    assert "NaN or infinite at step" in result.message


def test_the_threshold_comes_from_the_config() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["run"]["losses"] = [2.0] * 10 + [1.7] * 10  # a 15% drop
    assert judge(loss, smoke).outcome is Outcome.FAIL
    assert judge(loss, smoke, "  min_decrease: 0.1\n").outcome is Outcome.PASS


def test_no_model_factory_skips() -> None:
    ctx = replace(fresh(), config=load_text("training: {steps: 5}\n"))
    result = loss(ctx)
    assert result.outcome is Outcome.SKIP
    assert "pipeline.model" in result.message


def test_the_section_defaults_and_validation() -> None:
    settings = load_text("").get(TrainingSettings)
    assert (settings.steps, settings.budget, settings.init_loss.tolerance) == (60, 60.0, 0.25)
    with pytest.raises(ConfigError, match=r"dlgate.yml:2: .*'f1'.*accuracy, macro_f1"):
        load_text("training:\n  metrics:\n    f1: m:f\n", "dlgate.yml")
    with pytest.raises(ConfigError, match="budget"):
        load_text("training:\n  budget: 0\n")
    with pytest.raises(ConfigError, match="did you mean 'overfit'"):
        load_text("training:\n  overfitt: {steps: 3}\n")
