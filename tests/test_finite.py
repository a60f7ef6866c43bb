"""`training.finite`: no NaN/Inf in outputs, gradients, losses or parameters."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, stage

from dlgate.report import Outcome


def test_a_healthy_run_is_finite() -> None:
    result = stage("healthy", GOOD_METRICS)["training.finite"]
    assert result.outcome is Outcome.PASS, result.message


def test_infinite_outputs_are_found_everywhere_they_spread() -> None:
    result = stage("not_finite")["training.finite"]
    assert result.outcome is Outcome.FAIL
    assert "100.0% of the outputs at initialisation" in result.message
    assert "the gradients of `1.0.weight`" in result.message


def test_a_diverging_run_names_the_step() -> None:
    result = stage("healthy", "  optimizer: toy:huge_lr\n")["training.finite"]
    assert result.outcome is Outcome.FAIL
    assert "the loss at step" in result.message
    assert "learning rate too high" in result.details
