"""`training.overfit`: a tiny batch can be driven to near-zero loss."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, healthy_smoke, judge, stage

from dlgate.checks.overfit import overfit
from dlgate.report import Outcome


def test_a_healthy_model_memorises_a_tiny_batch() -> None:
    result = stage("healthy", GOOD_METRICS)["training.overfit"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["correct"] == 16


def test_a_learning_rate_far_too_low_cannot_overfit() -> None:
    result = stage("healthy", "  optimizer: toy:tiny_lr\n")["training.overfit"]
    assert result.outcome is Outcome.FAIL
    assert result.message.startswith("could not overfit 16 samples in 150 steps")
    assert "learning rate" in result.details


def test_a_softmax_before_cross_entropy_cannot_overfit() -> None:
    result = stage("faulty")["training.overfit"]
    assert result.outcome is Outcome.FAIL
    assert "training.outputs" in result.details


def test_the_bound_comes_from_the_config() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["overfit"]["final_loss"] = 0.2
    assert judge(overfit, smoke).outcome is Outcome.FAIL
    assert judge(overfit, smoke, "  overfit: {max_loss: 0.25}\n").outcome is Outcome.PASS
