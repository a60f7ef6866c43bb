"""`training.metrics`: dlgate's reference metrics (accuracy, macro precision/recall/F1,
per-class recall), computed on the shipped model's training-batch predictions for the metrics
the config names, and the user's own metric functions compared with them on crafted cases
where implementations go wrong: all correct, all wrong, a class never predicted, ties.

Conventions (scikit-learn's): macro averages run over the classes present in the labels or the
predictions; a 0/0 precision or recall counts as 0; a tie between scores goes to the first
maximal class (numpy's and torch's argmax).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice, measured, unwrap
from dlgate.context import Context
from dlgate.dataset import DataSettings
from dlgate.registry import check
from dlgate.report import Finding, Outcome

Case = tuple[str, np.ndarray, np.ndarray]


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[i, j]: samples of class i predicted as j (predictions outside 0..C-1 dropped)."""
    valid = (predicted >= 0) & (predicted < classes)
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (truth[valid], predicted[valid]), 1)
    return counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(len(num))
    np.divide(num, den, out=out, where=den > 0)
    return out


def accuracy(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(np.mean(truth == predicted)) if len(truth) else 0.0


def per_class_recall(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    c = confusion(truth, predicted, classes)
    return _ratio(np.diag(c).astype(float), np.bincount(truth, minlength=classes).astype(float))


def _per_class(truth: np.ndarray, predicted: np.ndarray, classes: int) -> tuple[np.ndarray, ...]:
    c = confusion(truth, predicted, classes)
    tp = np.diag(c).astype(float)
    precision = _ratio(tp, c.sum(0).astype(float))
    recall = _ratio(tp, np.bincount(truth, minlength=classes).astype(float))
    f1 = _ratio(2 * tp, (c.sum(0) + np.bincount(truth, minlength=classes)).astype(float))
    seen = np.zeros(classes, dtype=bool)
    seen[
        np.unique(np.concatenate([truth, predicted[(predicted >= 0) & (predicted < classes)]]))
    ] = True
    return precision[seen], recall[seen], f1[seen]


def macro_precision(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(np.mean(_per_class(truth, predicted, classes)[0]))


def macro_recall(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(np.mean(_per_class(truth, predicted, classes)[1]))


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(np.mean(_per_class(truth, predicted, classes)[2]))


REFERENCE: dict[str, Callable[[np.ndarray, np.ndarray, int], Any]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "macro_precision": macro_precision,
    "macro_recall": macro_recall,
    "per_class_recall": lambda t, p, c: per_class_recall(t, p, c).tolist(),
}


def classes_for_cases(ctx: Context) -> int:
    """How many classes the crafted cases have: the declared ones (`data.classes`), else 4."""
    declared = ctx.config.get(DataSettings).classes
    return max(2, len(declared)) if declared else 4


def cases(classes: int, inputs: str) -> tuple[Case, ...]:
    """(name, y_true, y_pred or scores) of every crafted case; every class occurs in y_true."""
    rng = np.random.default_rng(0)
    truth = rng.permutation(np.repeat(np.arange(classes), 4))
    mixed = np.where(rng.random(len(truth)) < 0.6, truth, rng.integers(0, classes, len(truth)))
    made = [
        ("all correct", truth, truth),
        ("all wrong", truth, (truth + 1) % classes),
        ("a class never predicted", truth, np.where(truth == 0, 1, truth)),
        ("mixed", truth, mixed),
    ]
    if inputs == "labels":
        return tuple((n, t, p.astype(np.int64)) for n, t, p in made)
    scored = [(n, t, _scores(p, classes)) for n, t, p in made]
    tied = _scores(truth, classes)  # the true class ties with the next one: argmax → the lower
    tied[np.arange(len(truth)), (truth + 1) % classes] = tied[np.arange(len(truth)), truth]
    return (*scored, ("ties", truth, tied))


def _scores(predicted: np.ndarray, classes: int) -> np.ndarray:
    scores = np.full((len(predicted), classes), 0.1 / max(1, classes - 1))
    scores[np.arange(len(predicted)), predicted] = 0.9
    return scores


def _predicted(second: np.ndarray) -> np.ndarray:
    return second.argmax(1) if second.ndim == 2 else second


@check("training.metrics")
def metrics(ctx: Context) -> Finding:
    """The user's metric functions agree with dlgate's on crafted cases."""
    settings = ctx.config.get(TrainingSettings)
    if not settings.metrics:
        return Finding(
            Outcome.SKIP,
            "no metrics named in `training.metrics` (dlgate's accuracy and per-class recall of "
            "the shipped model are in `training.fit`)",
        )
    measurements: dict[str, Any] = {}
    pipeline = ctx.config.pipeline
    if pipeline.train or pipeline.artifact:
        from dlgate.checks.fit import predictions

        truth, predicted, names = predictions(ctx)
        for name in settings.metrics:
            measurements[name] = REFERENCE[name](truth, predicted, len(names))
    mine = {name: spec for name, spec in settings.metrics.items() if spec}
    if not mine:
        return Finding(Outcome.PASS, "dlgate's " + ", ".join(settings.metrics), measurements)
    made = cases(classes_for_cases(ctx), settings.metric_inputs)
    wrong: list[str] = []
    tries: set[str] = set()
    for name in mine:
        values = unwrap(measured(ctx)["metrics"][name], f"training.metrics.{name}")["values"]
        for case, truth_c, second in made:
            want = REFERENCE[name](truth_c, _predicted(second), classes_for_cases(ctx))
            got = values[case]
            if not _close(got, want, settings.metric_tolerance):
                wrong.append(f"`{name}` on {case}: {_show(got)}, dlgate {_show(want)}")
                tries.add(_why(case, got, want))
    measurements["compared"] = {n: [c for c, _, _ in made] for n in mine}
    if wrong:
        return Finding(
            Outcome.FAIL,
            f"{len(wrong)} disagreement(s) with dlgate's metrics: " + "; ".join(wrong[:6]),
            measurements,
            details="\n".join(f"- {w}" for w in wrong) + "\n\n" + advice(*sorted(tries)),
        )
    return Finding(
        Outcome.PASS,
        f"{', '.join(mine)} agree with dlgate's on {len(made)} crafted cases",
        measurements,
    )


def _close(got: Any, want: Any, tol: float) -> bool:
    a, b = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3g}" for v in value) + "]"
    return f"{value:.4g}"


def _why(case: str, got: Any, want: Any) -> str:
    a, b = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if a.shape == b.shape and np.any(b != 0) and np.allclose(a, 100 * b):
        return "a percentage where a fraction is expected → divide by 100"
    return {
        "a class never predicted": "a never-predicted class's 0/0 precision dropped (NaN "
        "skipped by nanmean) or counted as 1 → count it as 0, average over every class seen",
        "ties": "ties counted as right (`scores[y] == scores.max()`) → take argmax, the first "
        "maximal class",
        "all wrong": "matches on the wrong axis or an off-by-one label → compare argmax over "
        "the class axis with the labels",
        "all correct": "not 1 on a perfect prediction: the wrong axis, a label shift, or "
        "arguments swapped (f(y_true, y_pred))",
    }.get(
        case,
        "a different definition (micro vs macro, weighting by support) → match "
        "dlgate's (scikit-learn's) definition, or rename the metric",
    )
