"""`training.init_loss`: the loss at initialisation is about ln(C); the final bias is sane."""

from __future__ import annotations

import math

import pytest
from faults.toys import GOOD_METRICS, healthy_smoke, judge, num, stage

from dlgate.checks.init_loss import bias_offset, init_loss
from dlgate.report import Outcome


def test_a_default_initialisation_starts_at_chance() -> None:
    result = stage("healthy", GOOD_METRICS)["training.init_loss"]
    assert result.outcome is Outcome.PASS, result.message
    assert abs(num(result, "initial_loss") - math.log(4)) < 0.25 * math.log(4)


def test_a_final_bias_far_from_zero_and_the_prior_fails() -> None:
    result = stage("detached")["training.init_loss"]
    assert result.outcome is Outcome.FAIL
    assert "above the expected 1.386 (ln 4" in result.message
    assert "final layer's bias starts 6.00 nats away" in result.message
    assert "log class prior" in result.details


def test_a_loss_below_chance_names_the_mismatch() -> None:
    # nll_loss on logits starts near 0: the loss does not match the outputs.
    result = stage("healthy", "  step: toy:zeroed_step\n  loss: toy:nll\n")["training.init_loss"]
    assert result.outcome is Outcome.FAIL
    assert "below the expected" in result.message
    assert "nll_loss" in result.details


def test_the_expected_loss_and_tolerance_come_from_the_config() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["init"]["loss"] = 0.7
    assert judge(init_loss, smoke).outcome is Outcome.FAIL
    assert judge(init_loss, smoke, "  init_loss: {expected: 0.69}\n").outcome is Outcome.PASS


def test_a_bias_at_the_log_prior_is_sane() -> None:
    counts = [80.0, 10.0, 5.0, 5.0]
    prior = [math.log(c / 100) for c in counts]
    # Karpathy's "init well" for imbalanced classes: the bias at the log prior.
    assert bias_offset(prior, counts) == pytest.approx(0.0, abs=1e-9)
    assert bias_offset([0.0] * 4, counts) == 0.0
    assert bias_offset([3.0, 0.0, 0.0, -3.0], [1.0] * 4) == 3.0
    assert bias_offset(None, counts) is None
