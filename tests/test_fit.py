"""`training.fit`: the shipped model gets its own training samples right as deployed. The
products here are real ONNX files written by a real training command (`train_toy.py`)."""

from __future__ import annotations

from faults.toys import fresh, trained

from dlgate.checks.fit import fit
from dlgate.report import Outcome


def test_a_model_that_fits_its_training_data_passes() -> None:
    result = fit(trained("right"))
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["accuracy"] == 1.0
    assert result.measurements["samples"] == 16


def test_a_model_trained_on_swapped_labels_did_not_learn() -> None:
    result = fit(trained("wrong", history="[0.8, 0.75, 0.7]"))
    assert result.outcome is Outcome.FAIL
    assert "gets only 0.0% of its own training samples right" in result.message
    assert "did not learn" in result.message
    assert "labels shuffled" in result.details


def test_a_low_training_loss_with_a_bad_fit_is_a_train_deploy_mismatch() -> None:
    # The training says it converged; as deployed, only one class ever wins.
    result = fit(trained("unnormalised", history="[1.2, 0.3, 0.01]"))
    assert result.outcome is Outcome.FAIL
    assert "the training converged (final loss 0.010)" in result.message
    assert result.measurements["worst_recall"] == 0.0
    assert "normalisation skipped" in result.details


def test_the_bound_comes_from_the_config() -> None:
    result = fit(trained("unnormalised", extra="  fit: {min_accuracy: 0.5}\n"))
    assert result.outcome is Outcome.PASS
    assert result.measurements["accuracy"] == 0.5


def test_without_a_model_it_skips() -> None:
    assert fit(fresh()).outcome is Outcome.SKIP
