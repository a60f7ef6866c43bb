"""`training.determinism`: two seeded runs agree."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, stage

from dlgate.report import Outcome


def test_seeded_runs_agree() -> None:
    result = stage("healthy", GOOD_METRICS)["training.determinism"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["param_diff"] == 0.0


def test_a_seed_from_the_clock_is_found() -> None:
    result = stage("faulty")["training.determinism"]
    assert result.outcome is Outcome.FAIL
    assert "two runs from the same seed differ after 5 steps" in result.message
    assert "clock" in result.details
