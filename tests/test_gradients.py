"""`training.gradients`: finite non-zero gradients for every trainable parameter, each of
which changes after a step; frozen and detached parameters are named."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, healthy_smoke, judge, stage

from dlgate.checks.gradients import classify, gradients
from dlgate.report import Outcome


def test_every_parameter_of_a_healthy_model_learns() -> None:
    result = stage("healthy", GOOD_METRICS)["training.gradients"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["parameters"] == 4


def test_a_frozen_layer_is_named() -> None:
    result = stage("faulty")["training.gradients"]
    assert result.outcome is Outcome.FAIL
    assert result.message == "frozen: `0.weight`, `0.bias`"
    assert "training.gradients.frozen" in result.details


def test_a_detached_layer_is_named() -> None:
    result = stage("detached")["training.gradients"]
    assert result.outcome is Outcome.FAIL
    assert "no gradient: `0.weight`, `0.bias`" in result.message
    assert ".detach()" in result.details


def test_gradients_zeroed_before_the_step_leave_parameters_unchanged() -> None:
    result = stage("healthy", "  step: toy:zeroed_step\n  loss: toy:nll\n")["training.gradients"]
    assert result.outcome is Outcome.FAIL
    assert "unchanged after a step: `0.weight`, `0.bias`, `2.weight`, `2.bias`" in result.message
    assert "between backward() and step()" in result.details


def test_intended_freezing_is_allowed_by_glob() -> None:
    smoke = healthy_smoke()
    for name in ("0.weight", "0.bias"):
        smoke["parts"]["gradients"]["params"][name] = {"shape": [1], "trainable": False}
    assert judge(gradients, smoke).outcome is Outcome.FAIL
    allowed = judge(gradients, smoke, "  gradients: {frozen: ['0.*']}\n")
    assert allowed.outcome is Outcome.PASS, allowed.message


def test_classify_reports_each_problem_once() -> None:
    params = {
        "a": {"shape": [2], "trainable": True, "finite": False, "grad_abs_max": 1.0,
              "changed": True},
        "b": {"shape": [2], "trainable": True, "finite": True, "grad_abs_max": 0.0,
              "changed": False},
        "c": {"shape": [2], "trainable": True, "changed": False},
        "d": {"shape": [2], "trainable": True, "finite": True, "grad_abs_max": 0.1,
              "changed": False},
    }  # fmt: skip
    problems = classify(params, ())
    assert problems["non-finite gradient"] == ["a"]
    assert problems["zero gradient"] == ["b"]
    assert problems["no gradient"] == ["c"]
    assert problems["unchanged after a step"] == ["d"]  # b and c: said under their cause
