"""The paired comparison of two models on the same samples, and the policy that judges it.

`compare(head_rows, base_rows, …)` pairs two sets of per-sample rows (`predictions.json`) by
sample id and, per gated metric, measures the delta, its paired-bootstrap confidence interval
and a p-value: the exact McNemar test for accuracy and error rate, the paired bootstrap for the
others. `judge` applies the tolerance: worse beyond it and significant → fail; worse beyond it
without significance → warn (it may be noise); else pass — in words. `accuracy.accuracy`
compares a pull request with its baseline this way, `accuracy.release` a release with the
previous one. No check is registered here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlgate import stats
from dlgate.dataset import natural
from dlgate.report import Outcome, Value

_MCNEMAR = ("accuracy", "error_rate")  # metrics whose paired test is McNemar's


@dataclass(frozen=True)
class Gate:
    """A gated metric, resolved: which way is better and how much worse it may get."""

    metric: str
    direction: stats.Direction
    tolerance: float
    relative: bool

    def allowed(self, base: float) -> float:
        """The largest worsening allowed from `base`, in the metric's units."""
        return self.tolerance * abs(base) if self.relative else self.tolerance

    def describe(self) -> str:
        if self.relative:
            return f"{self.tolerance:.1%} of the baseline"
        return amount_text(self.metric, self.tolerance)


def value_text(metric: str, v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else "n/a"


def delta_text(metric: str, d: float) -> str:
    """A difference: proportions in percentage points, log loss as it is."""
    if not math.isfinite(d):
        return "n/a"
    return f"{d:+.3f}" if metric == "log_loss" else f"{d * 100:+.1f} pp"


def amount_text(metric: str, d: float) -> str:
    """An unsigned amount of change (a tolerance, a drop)."""
    return delta_text(metric, d).lstrip("+")


def outcomes(rows: list[dict[str, Any]], classes: tuple[str, ...]) -> stats.Outcomes:
    """Rows as class indices. Labels or predictions outside `classes` are appended as classes
    of their own (the model can never be right about them)."""
    seen = {r["label"] for r in rows} | {r["predicted"] for r in rows if "predicted" in r}
    names = (*classes, *sorted(seen - set(classes), key=natural))
    index = {c: i for i, c in enumerate(names)}
    labels = np.array([index[r["label"]] for r in rows], dtype=np.int64)
    predicted = np.array([index[r["predicted"]] if "predicted" in r else -1 for r in rows],
                         dtype=np.int64)  # fmt: skip
    # A refused sample gave the true class no probability; a row without one is unknown.
    p_true = np.array(
        [r["p_true"] if r.get("p_true") is not None else 0.0 if "refused" in r else math.nan
         for r in rows],
        dtype=np.float64,
    )  # fmt: skip
    return stats.Outcomes(names, labels, predicted, p_true)


@dataclass(frozen=True)
class MetricDelta:
    gate: Gate
    base: float
    head: float
    low: float  # the confidence interval of head - base
    high: float
    p_value: float
    test: str  # "McNemar exact" or "bootstrap"
    outcome: Outcome
    verdict: str  # the judgement in words

    @property
    def delta(self) -> float:
        return self.head - self.base

    def line(self, confidence: float) -> str:
        """`accuracy 0.962 → 0.968 (+0.6 pp, 95% CI −0.3 pp … +1.5 pp)`."""
        m = self.gate.metric
        ci = ""
        if math.isfinite(self.low):
            ci = f", {confidence:.0%} CI {delta_text(m, self.low)} … {delta_text(m, self.high)}"
        return (
            f"{m} {value_text(m, self.base)} → {value_text(m, self.head)} "
            f"({delta_text(m, self.delta)}{ci})"
        )


@dataclass(frozen=True)
class Flip:
    sample: str
    label: str
    base: str  # the baseline's prediction, or "refused"
    head: str


@dataclass(frozen=True)
class Comparison:
    shared: int
    head_only: int  # samples of the head that the baseline was not evaluated on
    base_only: int  # samples of the baseline no longer in the head's split
    metrics: list[MetricDelta]
    fixed: list[Flip]
    regressed: list[Flip]
    classes: tuple[str, ...]
    base_recall: list[float]
    head_recall: list[float]

    @property
    def outcome(self) -> Outcome:
        return max((m.outcome for m in self.metrics), key=lambda o: o.severity)

    @property
    def worst(self) -> MetricDelta:
        """The metric that decides the outcome (the first gated one when all pass)."""
        return next(m for m in self.metrics if m.outcome is self.outcome)

    def sample_note(self) -> str:
        if not self.head_only and not self.base_only:
            return f"{self.shared} samples"
        return (
            f"{self.shared} shared samples (head {self.shared + self.head_only}, baseline "
            f"{self.shared + self.base_only}: {self.head_only} new, {self.base_only} removed)"
        )


def compare(
    head_rows: list[dict[str, Any]],
    base_rows: list[dict[str, Any]],
    classes: tuple[str, ...],
    gates: list[Gate],
    *,
    significance: float,
    confidence: float,
    bootstrap: int,
    require_significance: bool = True,
) -> Comparison:
    """Pair the rows by sample id and judge every gate on the shared samples."""
    base_by_id = {r["sample"]: r for r in base_rows}
    head_ids = {r["sample"] for r in head_rows}
    shared_head = [r for r in head_rows if r["sample"] in base_by_id]
    # The label is the head's: a relabelled sample counts with its new label on both sides.
    shared_base = [{**base_by_id[h["sample"]], "label": h["label"]} for h in shared_head]
    both = outcomes(shared_head + shared_base, classes)
    n = len(shared_head)
    head, base = both.take(np.arange(n)), both.take(np.arange(n, 2 * n))
    names = [g.metric for g in gates]
    head_values = {name: stats.value(head, name) for name in names}
    base_values = {name: stats.value(base, name) for name in names}
    boot = (
        stats.paired_bootstrap(head, base, names, resamples=bootstrap, confidence=confidence)
        if bootstrap
        else {}
    )
    fixed = head.correct & ~base.correct
    regressed = base.correct & ~head.correct
    mcnemar_p = stats.mcnemar(int(fixed.sum()), int(regressed.sum()))
    deltas = []
    for gate in gates:
        m = gate.metric
        b = boot.get(m)
        test = "McNemar exact" if m in _MCNEMAR else "bootstrap"
        p = mcnemar_p if m in _MCNEMAR else (b.p_value if b else math.nan)
        outcome, verdict = judge(gate, base_values[m], head_values[m], p, test, significance,
                                 require_significance=require_significance)  # fmt: skip
        low, high = (b.low, b.high) if b else (math.nan, math.nan)
        deltas.append(MetricDelta(gate, base_values[m], head_values[m], low, high, p, test,
                                  outcome, verdict))  # fmt: skip
    return Comparison(
        shared=n,
        head_only=len(head_rows) - n,
        base_only=len(base_by_id.keys() - head_ids),
        metrics=deltas,
        fixed=[_flip(shared_head[i], shared_base[i]) for i in np.flatnonzero(fixed)],
        regressed=[_flip(shared_head[i], shared_base[i]) for i in np.flatnonzero(regressed)],
        classes=both.classes,
        base_recall=[p.recall for p in stats.per_class(base)],
        head_recall=[p.recall for p in stats.per_class(head)],
    )


def judge(
    gate: Gate,
    base: float,
    head: float,
    p: float,
    test: str,
    alpha: float,
    *,
    require_significance: bool = True,
) -> tuple[Outcome, str]:
    """The policy: worse beyond the tolerance and significant → fail; worse beyond the
    tolerance but not significant → warn; else pass. Says which, in words. Without
    `require_significance` (releases), any worsening beyond the tolerance fails."""
    m = gate.metric
    if not (math.isfinite(base) and math.isfinite(head)):
        side = "the baseline" if not math.isfinite(base) else "the head"
        return Outcome.WARN, f"{m} is undefined for {side} on these samples: not compared"
    worse = base - head if gate.direction == "higher" else head - base
    word = "drop" if gate.direction == "higher" else "rise"
    p_text = f"{test} p = {p:.2g}" if math.isfinite(p) else f"no {test} p-value"
    if worse <= gate.allowed(base) + 1e-12:
        if worse > 0:
            return Outcome.PASS, (
                f"a {word} of {amount_text(m, worse)}, within the tolerance of {gate.describe()}"
            )
        return Outcome.PASS, "better than the baseline" if worse < 0 else "as good as the baseline"
    exceeds = f"the {word} exceeds the tolerance of {gate.describe()}"
    if not require_significance:
        return Outcome.FAIL, f"{exceeds} ({p_text})"
    if math.isfinite(p) and p < alpha:
        return Outcome.FAIL, f"{exceeds} and is significant ({p_text} < {alpha:g})"
    return Outcome.WARN, (
        f"{exceeds} but is not significant ({p_text} ≥ {alpha:g}): it may be noise; more "
        "real-world samples would tell"
    )


def _flip(head: dict[str, Any], base: dict[str, Any]) -> Flip:
    return Flip(head["sample"], head["label"], _said(base), _said(head))


def _said(row: dict[str, Any]) -> str:
    return str(row["predicted"]) if "predicted" in row else "refused"


def details(
    cmp: Comparison, confidence: float, max_listed: int, where: str, base: str = "baseline"
) -> str:
    """Markdown: the metric table, then the regressed and the fixed samples; `base` names the
    reference in the column headings."""
    lines = [
        f"Compared with {where}, on {cmp.sample_note()}.",
        "",
        f"| metric | {base} | head | Δ | {confidence:.0%} CI | p | allowed | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in cmp.metrics:
        name = m.gate.metric
        ci = (
            f"{delta_text(name, m.low)} … {delta_text(name, m.high)}"
            if math.isfinite(m.low)
            else "–"
        )
        p = f"{m.p_value:.2g} ({m.test})" if math.isfinite(m.p_value) else "–"
        lines.append(
            f"| {name} | {value_text(name, m.base)} | {value_text(name, m.head)} | "
            f"{delta_text(name, m.delta)} | {ci} | {p} | {m.gate.describe()} | "
            f"{m.outcome.value}: {m.verdict} |"
        )
    for title, flips in (
        (f"regressed (right in the {base}, wrong now)", cmp.regressed),
        (f"fixed (wrong in the {base}, right now)", cmp.fixed),
    ):
        if not flips:
            continue
        lines += ["", f"**{len(flips)} {title}**", "", f"| sample | label | {base} | head |"]
        lines.append("|---|---|---|---|")
        lines += [f"| `{f.sample}` | {f.label} | {f.base} | {f.head} |" for f in flips[:max_listed]]
        if len(flips) > max_listed:
            lines.append(f"| … {len(flips) - max_listed} more | | | |")
    return "\n".join(lines)


def measurements(cmp: Comparison) -> dict[str, Value]:
    return {
        "shared": cmp.shared,
        "head_only": cmp.head_only,
        "base_only": cmp.base_only,
        "fixed": len(cmp.fixed),
        "regressed": len(cmp.regressed),
        "fixed_samples": [f.sample for f in cmp.fixed],
        "regressed_samples": [f.sample for f in cmp.regressed],
        "metrics": {
            m.gate.metric: {
                "base": _num(m.base),
                "head": _num(m.head),
                "delta": _num(m.delta),
                "ci_low": _num(m.low),
                "ci_high": _num(m.high),
                "p_value": _num(m.p_value),
                "test": m.test,
                "allowed": _num(m.gate.allowed(m.base)),
                "outcome": m.outcome.value,
            }
            for m in cmp.metrics
        },
    }


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
