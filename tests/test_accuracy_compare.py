"""`dlgate.checks.compare`: pairing per-sample rows, and the policy that judges a delta."""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy.stats import binomtest

from dlgate.checks.compare import Gate, compare, details, judge, outcomes
from dlgate.report import Outcome

ACC = Gate("accuracy", "higher", 0.01, relative=False)
CLASSES = ("a", "b")


def rows(results: str, prefix: str = "s") -> list[dict[str, Any]]:
    """One row per character: `+` right, `-` wrong, `r` refused; every label is `a`."""
    out: list[dict[str, Any]] = []
    for i, c in enumerate(results):
        row: dict[str, Any] = {"sample": f"{prefix}{i:03d}.png", "label": "a"}
        if c == "r":
            row["refused"] = "cannot decode"
        else:
            row.update(predicted="a" if c == "+" else "b", confidence=0.9, p_true=0.9)
        out.append(row)
    return out


@pytest.mark.parametrize(
    ("base", "head", "p", "outcome", "words"),
    [
        (0.90, 0.95, 0.01, Outcome.PASS, "better than the baseline"),
        (0.90, 0.90, 1.0, Outcome.PASS, "as good as the baseline"),
        (0.90, 0.895, 0.5, Outcome.PASS, "a drop of 0.5 pp, within the tolerance of 1.0 pp"),
        (0.90, 0.85, 0.001, Outcome.FAIL,
         "the drop exceeds the tolerance of 1.0 pp and is significant (McNemar exact p = 0.001 "
         "< 0.05)"),
        (0.90, 0.85, 0.2, Outcome.WARN,
         "the drop exceeds the tolerance of 1.0 pp but is not significant (McNemar exact p = 0.2 ≥ "
         "0.05): it may be noise"),
        (0.90, 0.85, math.nan, Outcome.WARN, "but is not significant (no McNemar exact p-value"),
    ],
)  # fmt: skip
def test_the_policy_in_words(
    base: float, head: float, p: float, outcome: Outcome, words: str
) -> None:
    got, text = judge(ACC, base, head, p, "McNemar exact", 0.05)
    assert got is outcome
    assert words in text


def test_a_release_fails_on_any_drop_beyond_the_tolerance() -> None:
    got, text = judge(ACC, 0.90, 0.85, 0.2, "McNemar exact", 0.05, require_significance=False)
    assert got is Outcome.FAIL
    assert text == "the drop exceeds the tolerance of 1.0 pp (McNemar exact p = 0.2)"


def test_lower_is_better_and_relative_tolerances() -> None:
    loss = Gate("log_loss", "lower", 0.10, relative=True)
    assert loss.allowed(0.5) == pytest.approx(0.05)
    assert loss.describe() == "10.0% of the baseline"
    assert judge(loss, 0.50, 0.54, 0.01, "bootstrap", 0.05)[0] is Outcome.PASS
    got, text = judge(loss, 0.50, 0.60, 0.01, "bootstrap", 0.05)
    assert got is Outcome.FAIL
    assert "the rise exceeds the tolerance of 10.0% of the baseline" in text
    assert judge(loss, 0.50, 0.30, 0.01, "bootstrap", 0.05)[1] == "better than the baseline"


def test_an_undefined_metric_warns_instead_of_passing() -> None:
    got, text = judge(Gate("log_loss", "lower", 0.1, False), math.nan, 0.4, 0.5, "bootstrap", 0.05)
    assert got is Outcome.WARN
    assert text == "log_loss is undefined for the baseline on these samples: not compared"


def test_pairing_lists_the_flips_and_tests_them_with_mcnemar() -> None:
    base = rows("++++--++r+" * 10)
    head = rows("+++++-+-++" * 10)
    cmp = compare(head, base, CLASSES, [ACC], significance=0.05, confidence=0.95, bootstrap=300)
    assert cmp.shared == 100
    assert {f.sample for f in cmp.fixed} == {
        f"s{i:03d}.png" for i in range(100) if i % 10 in (4, 8)
    }
    assert {f.sample for f in cmp.regressed} == {f"s{i:03d}.png" for i in range(100) if i % 10 == 7}
    refused_fixed = next(f for f in cmp.fixed if f.sample == "s008.png")
    assert (refused_fixed.base, refused_fixed.head, refused_fixed.label) == ("refused", "a", "a")
    (m,) = cmp.metrics
    assert m.base == pytest.approx(0.70)
    assert m.head == pytest.approx(0.80)
    assert m.test == "McNemar exact"
    assert m.p_value == pytest.approx(binomtest(10, 30, 0.5).pvalue)  # 20 fixed, 10 regressed
    assert m.low < m.delta < m.high
    assert m.outcome is Outcome.PASS
    assert "| accuracy | 0.700 | 0.800 | +10.0 pp |" in details(cmp, 0.95, 5, "main")
    assert "| … 15 more | | | |" in details(cmp, 0.95, 5, "main")


def test_only_shared_samples_are_compared_and_relabelled_ones_count_with_the_new_label() -> None:
    base = rows("++++") + rows("--", prefix="gone")
    head = rows("++++") + rows("++", prefix="new")
    head[0]["label"] = "b"  # relabelled in the PR; the head now predicts a for it: wrong
    cmp = compare(head, base, CLASSES, [ACC], significance=0.05, confidence=0.95, bootstrap=0)
    assert (cmp.shared, cmp.head_only, cmp.base_only) == (4, 2, 2)
    assert cmp.sample_note() == "4 shared samples (head 6, baseline 6: 2 new, 2 removed)"
    (m,) = cmp.metrics
    assert m.base == m.head == pytest.approx(0.75)  # both wrong on the relabelled sample
    assert math.isnan(m.low)  # no bootstrap asked for
    assert not cmp.fixed
    assert not cmp.regressed


def test_outcomes_append_unknown_labels_and_predictions_as_classes() -> None:
    o = outcomes(
        [
            {"sample": "x", "label": "zebra", "predicted": "a", "p_true": None},
            {"sample": "y", "label": "a", "predicted": "yak"},
            {"sample": "z", "label": "b", "refused": "bad file"},
        ],
        CLASSES,
    )
    assert o.classes == ("a", "b", "yak", "zebra")
    assert o.labels.tolist() == [3, 0, 1]
    assert o.predicted.tolist() == [0, 2, -1]
    assert math.isnan(o.p_true[0])
    assert o.p_true[2] == 0.0
