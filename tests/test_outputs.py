"""`training.outputs`: shape (batch, classes) and the range the declared kind implies."""

from __future__ import annotations

import pytest
from faults.toys import GOOD_METRICS, healthy_smoke, judge, stage

from dlgate.checks.outputs import observed, outputs
from dlgate.report import Outcome


def test_logits_as_declared_pass() -> None:
    result = stage("healthy", GOOD_METRICS)["training.outputs"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["shape"] == [256, 4]


def test_a_softmax_in_a_model_declared_to_give_logits_fails() -> None:
    result = stage("faulty")["training.outputs"]
    assert result.outcome is Outcome.FAIL
    assert "outputs are already probabilities" in result.message
    assert "softmax applied twice" in result.details


def test_the_wrong_number_of_classes_fails_on_shape() -> None:
    result = stage("wrong_width")["training.outputs"]
    assert result.outcome is Outcome.FAIL
    assert "has shape [256, 3], expected [256, 4]" in result.message


def test_declared_kinds_are_held_to_their_range() -> None:
    probs = healthy_smoke()
    probs["parts"]["init"].update(min=0.01, max=0.9, row_sum_error=1e-7, logsumexp_error=0.8)
    declared = "  outputs: {kind: probabilities}\n"
    assert judge(outputs, probs, declared).outcome is Outcome.PASS
    assert judge(outputs, probs).outcome is Outcome.FAIL  # declared logits by default
    logits = healthy_smoke()
    result = judge(outputs, logits, declared)
    assert result.outcome is Outcome.FAIL
    assert "declared probabilities (training.outputs.kind), but the outputs are not" in (
        result.message
    )


@pytest.mark.parametrize(
    ("stats", "kind"),
    [
        ({"min": 0.0, "max": 1.0, "row_sum_error": 1e-6, "logsumexp_error": 0.9}, "probabilities"),
        ({"min": -9.0, "max": -1e-4, "row_sum_error": 0.9, "logsumexp_error": 1e-6},
         "log_probabilities"),
        ({"min": -2.0, "max": 3.0, "row_sum_error": 4.0, "logsumexp_error": 3.1}, "logits"),
        ({"min": 0.0, "max": 0.5, "row_sum_error": 0.2, "logsumexp_error": 1.0}, "logits"),
    ],
)  # fmt: skip
def test_observed_kind(stats: dict[str, float], kind: str) -> None:
    assert observed(stats, 1e-3) == kind
