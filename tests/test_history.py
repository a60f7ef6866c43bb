"""`training.history`: the pipeline's own loss curve (history.json), from a real training
command (`train_toy.py`, which writes the history it is given)."""

from __future__ import annotations

import pytest
from faults.toys import fresh, trained

from dlgate.checks.history import history
from dlgate.report import Outcome


def test_a_falling_loss_passes() -> None:
    result = history(trained(history="[1.2, 0.5, 0.05]"))
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements == {"epochs": 3, "first": 1.2, "last": 0.05}


@pytest.mark.parametrize(
    ("curve", "says", "advises"),
    [
        ("[1.2, NaN, 0.3]", "NaN or infinite at epoch 2 of 3", "learning rate too high"),
        ("[0.7, -5.0, -90.0]", "went negative (-90)", "`nll_loss` fed logits"),
        ("[6581.5, 2.35, 0.69]", "ended at loss 0.690, near chance (ln 2", "far too high"),
        ("[0.30, 0.29, 0.28]", "did not fall: 0.300 → 0.280", "far too low"),
    ],
)
def test_a_bad_curve_fails_saying_what_to_try(curve: str, says: str, advises: str) -> None:
    result = history(trained(history=curve))
    assert result.outcome is Outcome.FAIL
    assert says in result.message
    assert advises in result.details


def test_thresholds_come_from_the_config() -> None:
    curve = "[0.7, -5.0, -9.0]"
    assert history(trained(history=curve)).outcome is Outcome.FAIL
    relaxed = "  history: {allow_negative: true, max_final: 100}\n"
    assert history(trained(history=curve, extra=relaxed)).outcome is Outcome.PASS


def test_without_a_training_command_or_history_it_skips() -> None:
    assert history(fresh()).outcome is Outcome.SKIP
    result = history(trained(history="[]"))
    assert result.outcome is Outcome.SKIP
    assert "history.json" in result.message
