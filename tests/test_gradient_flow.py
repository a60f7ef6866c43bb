"""`training.gradient_flow`: vanishing and exploding gradients."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, healthy_smoke, judge, num, stage

from dlgate.checks.gradient_flow import gradient_flow
from dlgate.report import Outcome


def test_a_shallow_relu_model_passes() -> None:
    result = stage("healthy", GOOD_METRICS)["training.gradient_flow"]
    assert result.outcome is Outcome.PASS, result.message
    assert num(result, "ratio") > 1e-2


def test_a_deep_sigmoid_stack_has_vanishing_gradients() -> None:
    result = stage("saturated")["training.gradient_flow"]
    assert result.outcome is Outcome.FAIL
    assert result.message.startswith("vanishing gradients: `0.weight` gets")
    assert "ReLU" in result.details


def test_a_learning_rate_far_too_high_explodes() -> None:
    result = stage("healthy", "  optimizer: toy:huge_lr\n")["training.gradient_flow"]
    assert result.outcome is Outcome.FAIL
    assert "exploding gradients" in result.message
    assert "clip_grad_norm_" in result.details


def test_the_bounds_come_from_the_config() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["run"]["grad_norms"] = [1.0, 50.0, None]
    assert judge(gradient_flow, smoke).outcome is Outcome.PASS
    tight = judge(gradient_flow, smoke, "  gradient_flow: {max_norm: 10}\n")
    assert tight.outcome is Outcome.FAIL
    assert "reached 50" in tight.message
