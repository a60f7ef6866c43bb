"""`training.metrics`: dlgate's reference metrics (checked against scikit-learn) and the
user's metric functions compared with them on crafted cases."""

from __future__ import annotations

import numpy as np
import pytest
from faults.toys import GOOD_METRICS, stage, trained

from dlgate.checks.metrics import (
    accuracy,
    cases,
    macro_f1,
    macro_precision,
    macro_recall,
    metrics,
    per_class_recall,
)
from dlgate.report import Outcome


@pytest.mark.parametrize("seed", range(12))
def test_the_references_agree_with_scikit_learn(seed: int) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(2, 7))
    truth = rng.integers(0, classes, 40)
    predicted = np.where(rng.random(40) < 0.5, truth, rng.integers(0, classes, 40))
    if seed % 3 == 0:
        predicted[predicted == 0] = 1 % classes  # a class never predicted
    assert accuracy(truth, predicted, classes) == sk.accuracy_score(truth, predicted)
    for ours, theirs in (
        (macro_f1, sk.f1_score),
        (macro_precision, sk.precision_score),
        (macro_recall, sk.recall_score),
    ):
        want = theirs(truth, predicted, average="macro", zero_division=0)
        assert ours(truth, predicted, classes) == pytest.approx(want), ours.__name__
    want = sk.recall_score(truth, predicted, average=None, labels=range(classes), zero_division=0)
    assert per_class_recall(truth, predicted, classes) == pytest.approx(want)


def test_the_crafted_cases() -> None:
    labelled = {name: (t, p) for name, t, p in cases(3, "labels")}
    assert list(labelled) == ["all correct", "all wrong", "a class never predicted", "mixed"]
    for truth, _ in labelled.values():
        assert sorted(set(truth.tolist())) == [0, 1, 2]
    truth, predicted = labelled["a class never predicted"]
    assert 0 not in predicted
    scored = {name: (t, s) for name, t, s in cases(3, "scores")}
    truth, scores = scored["ties"]
    assert (scores.max(1) == scores[np.arange(len(truth)), truth]).all()
    assert accuracy(truth, scores.argmax(1), 3) == pytest.approx(2 / 3)  # class 2 ties with 0


def test_correct_user_metrics_agree() -> None:
    result = stage("healthy", GOOD_METRICS)["training.metrics"]
    assert result.outcome is Outcome.PASS, result.message
    assert "accuracy, macro_f1, per_class_recall agree with dlgate's on 4 crafted cases" in (
        result.message
    )


def test_wrong_user_metrics_are_named_per_case() -> None:
    extra = (
        "  metrics:\n"
        "    accuracy: toy:accuracy_percent\n"
        "    macro_f1: toy:macro_f1_nanmean\n"
        "    per_class_recall: toy:recall_per_class\n"
    )
    result = stage("healthy", extra)["training.metrics"]
    assert result.outcome is Outcome.FAIL
    assert "`accuracy` on all correct: 100, dlgate 1" in result.details
    assert "`macro_f1` on a class never predicted:" in result.details
    assert "per_class_recall" not in result.details
    assert "a percentage where a fraction is expected" in result.details
    assert "nanmean" in result.details


def test_ties_counted_as_right_are_found() -> None:
    extra = "  metric_inputs: scores\n  metrics:\n    accuracy: toy:accuracy_ties\n"
    result = stage("healthy", extra)["training.metrics"]
    assert result.outcome is Outcome.FAIL
    assert "`accuracy` on ties: 1, dlgate 0.75" in result.message
    assert "argmax" in result.details


def test_named_metrics_are_computed_on_the_shipped_model() -> None:
    ctx = trained("unnormalised", extra="  metrics: {accuracy: '', macro_recall: ''}\n")
    result = metrics(ctx)
    assert result.outcome is Outcome.PASS
    assert result.measurements == {"accuracy": 0.5, "macro_recall": 0.5}


def test_no_metrics_named_skips() -> None:
    assert metrics(trained()).outcome is Outcome.SKIP
