"""`training.independence`: sample i's output depends only on input i."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, healthy_smoke, judge, stage

from dlgate.checks.independence import independence
from dlgate.report import Outcome


def test_a_per_sample_model_passes_both_tests() -> None:
    result = stage("healthy", GOOD_METRICS)["training.independence"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["gradient_leak"] == 0.0
    assert result.measurements["swap_change"] == 0.0


def test_statistics_over_the_batch_mix_samples() -> None:
    result = stage("faulty")["training.independence"]
    assert result.outcome is Outcome.FAIL
    assert "gradient of one sample's output reaches other samples' inputs" in result.message
    assert "sample 0's output changes" in result.message
    assert "x.flatten(1)" in result.details


def test_without_a_gradient_to_the_input_the_swap_test_still_judges() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["independence"]["gradient"] = None
    assert judge(independence, smoke).outcome is Outcome.PASS
    smoke["parts"]["independence"]["swap"] = {"moved": 0.5, "scale": 1.0}
    result = judge(independence, smoke)
    assert result.outcome is Outcome.FAIL
    assert "changes by 0.5" in result.message
