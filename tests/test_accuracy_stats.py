"""`dlgate.stats`: metrics against scikit-learn's, the paired bootstrap, exact McNemar."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from dlgate.stats import (
    Outcomes,
    check_metric_name,
    chi2_sf,
    confusion,
    direction,
    mcnemar,
    paired_bootstrap,
    per_class,
    value,
)

CLASSES = ("cat", "dog", "eel", "fox")


def outcomes(
    labels: list[int], predicted: list[int], p_true: list[float] | None = None
) -> Outcomes:
    n = len(labels)
    return Outcomes(
        CLASSES,
        np.array(labels),
        np.array(predicted),
        np.array(p_true if p_true is not None else [math.nan] * n, dtype=float),
    )


def random_outcomes(seed: int, n: int = 300, right: float = 0.7) -> Outcomes:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    predicted = np.where(rng.random(n) < right, labels, rng.integers(0, 4, n))
    return Outcomes(CLASSES, labels, predicted, rng.uniform(0.01, 1, n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    o = random_outcomes(seed)
    y, p = o.labels, o.predicted
    assert value(o, "accuracy") == pytest.approx(metrics.accuracy_score(y, p))
    assert value(o, "error_rate") == pytest.approx(1 - metrics.accuracy_score(y, p))
    assert value(o, "balanced_accuracy") == pytest.approx(metrics.balanced_accuracy_score(y, p))
    assert value(o, "macro_f1") == pytest.approx(metrics.f1_score(y, p, average="macro"))
    precision = metrics.precision_score(y, p, average=None)
    recall = metrics.recall_score(y, p, average=None)
    for i, row in enumerate(per_class(o)):
        assert row.precision == pytest.approx(precision[i])
        assert row.recall == pytest.approx(recall[i])
        assert value(o, f"recall.{row.cls}") == pytest.approx(recall[i])
        assert value(o, f"precision.{row.cls}") == pytest.approx(precision[i])
    assert value(o, "log_loss") == pytest.approx(float(np.mean(-np.log(o.p_true))))


def test_confusion_matrix_counts_refusals_in_a_last_column() -> None:
    o = outcomes([0, 0, 1, 2, 3], [0, -1, 1, 1, -1])
    matrix = confusion(o)
    assert matrix.shape == (4, 5)
    assert matrix.tolist() == [
        [1, 0, 0, 0, 1],
        [0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 1],
    ]


def test_a_refusal_is_wrong_for_every_metric() -> None:
    refused = outcomes([0, 1, 2, 3], [0, 1, 2, -1], [0.9, 0.9, 0.9, 0.0])
    wrong = outcomes([0, 1, 2, 3], [0, 1, 2, 0], [0.9, 0.9, 0.9, 0.0])
    assert value(refused, "accuracy") == value(wrong, "accuracy") == 0.75
    assert value(refused, "recall.fox") == 0.0
    # A refusal is no prediction of any class: it costs no class its precision.
    assert value(refused, "precision.cat") == 1.0
    assert value(wrong, "precision.cat") == 0.5
    assert value(refused, "log_loss") == pytest.approx((3 * -math.log(0.9) - math.log(1e-7)) / 4)


def test_undefined_metrics_are_nan_not_errors() -> None:
    o = outcomes([0, 0], [0, 1])
    assert math.isnan(value(o, "recall.eel"))  # no eel among the samples
    assert math.isnan(value(o, "precision.eel"))  # never predicted
    assert math.isnan(value(o, "log_loss"))  # probabilities unknown
    empty = outcomes([], [])
    assert math.isnan(value(empty, "accuracy"))
    assert math.isnan(value(empty, "macro_f1"))


def test_metric_names_and_directions() -> None:
    assert direction("accuracy") == "higher"
    assert direction("log_loss") == "lower"
    assert direction("error_rate") == "lower"
    assert direction("recall.cat") == "higher"
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'; did you mean 'accuracy'"):
        check_metric_name("acuracy")
    with pytest.raises(ValueError, match=r"precision\.<class>"):
        check_metric_name("recall")
    with pytest.raises(ValueError, match=r"no class 'wolf' \(its classes: cat, dog, eel, fox\)"):
        value(outcomes([0], [0]), "recall.wolf")


def test_mcnemar_is_the_exact_two_sided_binomial_test() -> None:
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(0, 6) == pytest.approx(2 * 0.5**6)
    assert mcnemar(6, 0) == mcnemar(0, 6)
    assert mcnemar(2, 6) == pytest.approx(74 / 256)
    assert mcnemar(10, 30) == pytest.approx(binomtest(10, 40, 0.5).pvalue)
    assert mcnemar(0, 5) > 0.05 > mcnemar(0, 6)


def test_paired_bootstrap_brackets_the_observed_delta_and_is_reproducible() -> None:
    head = random_outcomes(0, right=0.85)
    base = Outcomes(CLASSES, head.labels, random_outcomes(0, right=0.7).predicted, head.p_true)
    names = ["accuracy", "macro_f1", "balanced_accuracy"]
    first = paired_bootstrap(head, base, names, resamples=1000, confidence=0.95, seed=3)
    again = paired_bootstrap(head, base, names, resamples=1000, confidence=0.95, seed=3)
    assert first == again
    for name in names:
        observed = value(head, name) - value(base, name)
        b = first[name]
        assert b.low < observed < b.high
        assert b.low > 0  # a real improvement of ~15 pp on 300 samples
        assert b.p_value < 0.01
        assert b.resamples == 1000


def test_paired_bootstrap_of_identical_models_is_zero_and_insignificant() -> None:
    o = random_outcomes(4)
    b = paired_bootstrap(o, o, ["accuracy", "log_loss"], resamples=200)
    assert (b["accuracy"].low, b["accuracy"].high) == (0.0, 0.0)
    assert b["accuracy"].p_value == 1.0


def test_pairing_narrows_the_interval() -> None:
    # Two models that differ on only 4 of 400 samples: paired, the interval of the delta is
    # tight; were the samples drawn independently it would span several points.
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 400)
    predicted = np.where(rng.random(400) < 0.8, labels, (labels + 1) % 4)
    head = Outcomes(CLASSES, labels, predicted, np.full(400, math.nan))
    changed = predicted.copy()
    changed[np.flatnonzero(predicted == labels)[:4]] = (
        labels[np.flatnonzero(predicted == labels)[:4]] + 1
    ) % 4
    base = Outcomes(CLASSES, labels, changed, head.p_true)
    b = paired_bootstrap(head, base, ["accuracy"], resamples=1000)["accuracy"]
    assert b.low >= 0
    assert b.high <= 0.025


def test_paired_bootstrap_refuses_unpaired_inputs() -> None:
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(random_outcomes(0, n=10), random_outcomes(1, n=10), ["accuracy"])


def test_bootstrap_chunks_large_class_counts() -> None:
    # 300 classes: confusion matrices of 90,300 cells each; the resamples come in chunks.
    rng = np.random.default_rng(0)
    classes = tuple(f"c{i}" for i in range(300))
    labels = rng.integers(0, 300, 2000)
    head = Outcomes(classes, labels, labels.copy(), np.full(2000, math.nan))
    base = Outcomes(classes, labels, np.where(rng.random(2000) < 0.9, labels, -1), head.p_true)
    b = paired_bootstrap(head, base, ["macro_f1"], resamples=100)["macro_f1"]
    assert b.resamples == 100
    assert 0 < b.low < b.high


@pytest.mark.parametrize("dof", [1, 2, 3, 9, 30, 100])
def test_chi2_sf_is_scipys_chi2_survival_function(dof: int) -> None:
    from scipy.stats import chi2

    for x in (0.0, 0.01, 0.5, 1.0, 5.0, dof - 0.5, dof + 1.5, 3.0 * dof, 200.0):
        assert chi2_sf(x, dof) == pytest.approx(float(chi2.sf(x, dof)), rel=1e-12, abs=1e-300)


def test_the_data_stats_chi2_test_is_scipys_contingency_test() -> None:
    """Yates' correction at one degree of freedom included, as scipy does it."""
    from scipy.stats import chi2_contingency

    from dlgate.datastats import chi2_p

    rng = np.random.default_rng(0)
    for k in (2, 2, 3, 5, 10, 10):
        now = {str(i): int(rng.integers(0, 200)) for i in range(k)}
        before = {str(i): int(rng.integers(0, 200)) for i in range(k)}
        table = [[now[c] for c in sorted(now)], [before[c] for c in sorted(now)]]
        assert chi2_p(now, before) == round(float(chi2_contingency(table).pvalue), 6)
    assert chi2_p({"a": 5}, {"a": 7}) is None  # one class: nothing to test
