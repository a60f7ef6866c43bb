"""The statistics of the accuracy stage: classification metrics, the paired bootstrap, and the
exact McNemar test.

A model's results on a sample set are `Outcomes`: per sample the true class, the predicted
class (-1 where the deployed path refused the sample: wrong for every class) and the
probability given to the true class. Metrics are read off confusion matrices of shape
(classes, classes + 1), the last column counting refusals, so that the bootstrap computes
thousands of them with one `bincount` per chunk of resamples.

    head, base = Outcomes(...), Outcomes(...)   # the same samples, in the same order
    value(head, "macro_f1")
    paired_bootstrap(head, base, ["accuracy"], resamples=2000, confidence=0.95)
    mcnemar(fixed=4, regressed=1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Direction = Literal["higher", "lower"]

# The built-in metrics and which way is better. Per-class metrics are `precision.<class>` and
# `recall.<class>` (higher is better).
METRICS: dict[str, Direction] = {
    "accuracy": "higher",
    "balanced_accuracy": "higher",
    "macro_f1": "higher",
    "error_rate": "lower",
    "log_loss": "lower",
}
PER_CLASS = ("precision", "recall")
_LOG_FLOOR = 1e-7  # a probability of 0 for the true class (or a refusal) costs -ln(1e-7) ≈ 16
_BINCOUNT_CELLS = 4_000_000  # confusion cells per bootstrap chunk (memory bound)
_INDEX_CELLS = 4_000_000  # resampled indices per chunk


def check_metric_name(name: str) -> None:
    """Raise ValueError naming the valid metrics when `name` is not one."""
    kind, dot, cls = name.partition(".")
    if name in METRICS or (dot and kind in PER_CLASS and cls):
        return
    import difflib

    valid = [*METRICS, "precision.<class>", "recall.<class>"]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown metric {name!r}{hint} (metrics: {', '.join(valid)})")


def direction(name: str) -> Direction:
    check_metric_name(name)
    return METRICS.get(name, "higher")


@dataclass(frozen=True)
class Outcomes:
    """One model's per-sample results. `predicted` is -1 for a refused sample; `p_true` is
    the probability the model gave the true class (NaN where unknown)."""

    classes: tuple[str, ...]
    labels: np.ndarray  # int, (n,)
    predicted: np.ndarray  # int, (n,)
    p_true: np.ndarray  # float, (n,)

    def __post_init__(self) -> None:
        # Frozen: the arrays are normalised once (an empty list would come in as float64).
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        object.__setattr__(self, "predicted", np.asarray(self.predicted, dtype=np.int64))
        object.__setattr__(self, "p_true", np.asarray(self.p_true, dtype=np.float64))
        n = len(self.labels)
        if len(self.predicted) != n or len(self.p_true) != n:
            raise ValueError("labels, predicted and p_true must have one entry per sample")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> np.ndarray:
        return np.asarray(self.labels == self.predicted)

    def take(self, index: np.ndarray) -> Outcomes:
        return Outcomes(self.classes, self.labels[index], self.predicted[index], self.p_true[index])


def confusion(o: Outcomes) -> np.ndarray:
    """(classes, classes + 1) counts: row = true class, column = predicted (last: refused)."""
    matrix: np.ndarray = _confusions(o, np.arange(len(o))[None, :])[0]
    return matrix


def value(o: Outcomes, name: str) -> float:
    """One metric of `o`; NaN where it is undefined (no samples, a class never seen)."""
    return float(values(o, [name], np.arange(len(o))[None, :])[name][0])


def values(o: Outcomes, names: Sequence[str], index: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric for every row of `index` (resamples × samples): arrays of len(index)."""
    for name in names:
        check_metric_name(name)
    out: dict[str, np.ndarray] = {}
    matrix_based = [n for n in names if n != "log_loss"]
    if matrix_based:
        out.update(_from_confusions(_confusions(o, index), o.classes, matrix_based))
    if "log_loss" in names:
        losses = -np.log(np.clip(np.nan_to_num(o.p_true, nan=0.0), _LOG_FLOOR, 1.0))
        known = bool(np.isfinite(o.p_true).all())
        out["log_loss"] = losses[index].mean(axis=1) if known and index.shape[1] else _nan(index)
    return out


def _nan(index: np.ndarray) -> np.ndarray:
    return np.full(len(index), np.nan)


def _confusions(o: Outcomes, index: np.ndarray) -> np.ndarray:
    k = len(o.classes)
    predicted = np.where(o.predicted < 0, k, o.predicted)
    cells = o.labels * (k + 1) + predicted  # the cell of each sample
    b = len(index)
    flat = (np.arange(b)[:, None] * (k * (k + 1)) + cells[index]).ravel()
    return np.bincount(flat, minlength=b * k * (k + 1)).reshape(b, k, k + 1)


def _from_confusions(
    c: np.ndarray, classes: tuple[str, ...], names: Sequence[str]
) -> dict[str, np.ndarray]:
    k = len(classes)
    total = c.sum(axis=(1, 2)).astype(np.float64)
    tp = np.diagonal(c[:, :, :k], axis1=1, axis2=2).astype(np.float64)  # (B, k)
    support = c.sum(axis=2).astype(np.float64)
    predicted = c[:, :, :k].sum(axis=1).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name in ("accuracy", "error_rate"):
            acc = _ratio(tp.sum(axis=1), total)
            out[name] = acc if name == "accuracy" else 1 - acc
        elif name == "balanced_accuracy":
            present = support > 0
            recall = np.where(present, tp / np.where(present, support, 1), 0.0)
            out[name] = _ratio(recall.sum(axis=1), present.sum(axis=1).astype(np.float64))
        elif name == "macro_f1":
            # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted), averaged over the
            # classes that occur as a label or a prediction (as scikit-learn does).
            seen = (support + predicted) > 0
            f1 = np.where(seen, 2 * tp / np.where(seen, support + predicted, 1), 0.0)
            out[name] = _ratio(f1.sum(axis=1), seen.sum(axis=1).astype(np.float64))
        else:
            kind, _, cls = name.partition(".")
            if cls not in classes:
                raise ValueError(
                    f"metric {name!r}: the model has no class {cls!r} "
                    f"(its classes: {', '.join(classes)})"
                )
            i = classes.index(cls)
            out[name] = _ratio(tp[:, i], (predicted if kind == "precision" else support)[:, i])
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


@dataclass(frozen=True)
class PerClass:
    cls: str
    support: int
    precision: float  # NaN: never predicted
    recall: float  # NaN: no samples of the class


def per_class(o: Outcomes) -> list[PerClass]:
    c = confusion(o)
    k = len(o.classes)
    rows = []
    for i, cls in enumerate(o.classes):
        tp, support, predicted = int(c[i, i]), int(c[i].sum()), int(c[:, i].sum())
        rows.append(
            PerClass(
                cls,
                support,
                tp / predicted if predicted else math.nan,
                tp / support if support else math.nan,
            )
        )
    assert len(rows) == k
    return rows


@dataclass(frozen=True)
class Bootstrap:
    """The paired bootstrap of `head - base` for one metric."""

    low: float  # the confidence interval of the delta
    high: float
    p_value: float  # two-sided: how often a resample's delta lies on the other side of 0
    resamples: int  # resamples where the metric was defined on both sides


def paired_bootstrap(
    head: Outcomes,
    base: Outcomes,
    names: Sequence[str],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Bootstrap]:
    """Resample the samples (the same draw for both models, so that the pairing is kept) and
    read the delta of each metric off each resample."""
    n = len(head)
    if len(base) != n or not np.array_equal(head.labels, base.labels):
        raise ValueError("head and base must hold the same samples in the same order")
    if n == 0 or resamples < 1:
        nan = Bootstrap(math.nan, math.nan, math.nan, 0)
        return dict.fromkeys(names, nan)
    rng = np.random.default_rng(seed)
    k = len(head.classes)
    chunk = max(1, min(resamples, _BINCOUNT_CELLS // (k * (k + 1)), _INDEX_CELLS // n))
    deltas: dict[str, list[np.ndarray]] = {name: [] for name in names}
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        index = rng.integers(0, n, size=(size, n))
        h, b = values(head, names, index), values(base, names, index)
        for name in names:
            deltas[name].append(h[name] - b[name])
        done += size
    out = {}
    tail = (1 - confidence) / 2
    for name in names:
        d = np.concatenate(deltas[name])
        d = d[np.isfinite(d)]
        if not len(d):
            out[name] = Bootstrap(math.nan, math.nan, math.nan, 0)
            continue
        low, high = np.quantile(d, [tail, 1 - tail])
        # +1: the observed data counts as one resample, so that p is never exactly 0.
        below = (np.count_nonzero(d <= 0) + 1) / (len(d) + 1)
        above = (np.count_nonzero(d >= 0) + 1) / (len(d) + 1)
        out[name] = Bootstrap(
            float(low), float(high), float(min(1.0, 2 * min(below, above))), len(d)
        )
    return out


def mcnemar(fixed: int, regressed: int) -> float:
    """The exact (binomial) McNemar test, two-sided: the probability of a split of the
    discordant pairs at least this uneven if either model were as good as the other.
    (scipy's `binomtest(k, n, 0.5)`, in exact integer arithmetic; importing scipy.stats
    costs more than half a second of the gate's critical path.)"""
    n = fixed + regressed
    if n == 0:
        return 1.0
    k = min(fixed, regressed)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / (1 << n))


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-squared variable with `dof` degrees of freedom: the regularized
    upper incomplete gamma function Q(dof/2, x/2), by its series below a + 1 and its
    continued fraction above (Numerical Recipes 6.2; relative error ~1e-14)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {dof}")
    if x <= 0:
        return 1.0
    a, z = dof / 2, x / 2
    log_prefix = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:  # the series of the lower function P, then Q = 1 - P
        term = total = 1 / a
        n = a
        while abs(term) > abs(total) * 1e-16:
            n += 1
            term *= z / n
            total += term
        return max(0.0, 1 - total * math.exp(log_prefix))
    # Lentz's continued fraction for Q.
    tiny = 1e-300
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return h * math.exp(log_prefix)


__all__ = [
    "METRICS",
    "PER_CLASS",
    "Bootstrap",
    "Direction",
    "Outcomes",
    "PerClass",
    "check_metric_name",
    "chi2_sf",
    "confusion",
    "direction",
    "mcnemar",
    "paired_bootstrap",
    "per_class",
    "value",
    "values",
]
