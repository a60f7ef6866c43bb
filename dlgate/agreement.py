"""How far a model's outputs agree with a reference's on the same samples: measured first
(`measure`), judged against configured thresholds separately (`judge`).

Three measures, because each misses what another catches: the largest absolute difference of
the raw outputs (a graph that computes something else, even where the label survives), top-1
agreement (what users see), and agreement per class (a variant that breaks one class hides in
the overall rate when that class is rare).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

_SHOWN = 5  # samples listed as "the most different"


class Thresholds(Protocol):
    """What a precision's settings must give (0 turns a threshold off)."""

    @property
    def atol(self) -> float: ...
    @property
    def min_top1(self) -> float: ...
    @property
    def min_class_agreement(self) -> float: ...


@dataclass(frozen=True)
class Agreement:
    samples: int
    max_abs_diff: float  # inf when an output is NaN or infinite
    top1: float  # fraction of samples whose top-1 class is the reference's
    per_class: Mapping[str, tuple[int, int]]  # reference's top-1 class → (agreeing, samples)
    worst: tuple[int, ...]  # indices of the most different samples, most different first

    def worst_class(self) -> tuple[str, int, int] | None:
        """(class, agreeing, samples) of the class with the lowest agreement."""
        if not self.per_class:
            return None
        name = min(self.per_class, key=lambda c: self.per_class[c][0] / self.per_class[c][1])
        return (name, *self.per_class[name])

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_class()
        return {
            "samples": self.samples,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1,
            "worst_class": None if worst is None else worst[0],
            "worst_class_agreement": None if worst is None else worst[1] / worst[2],
            "per_class": {c: [a, n] for c, (a, n) in self.per_class.items()},
        }


def measure(reference: np.ndarray, got: np.ndarray, classes: Sequence[str]) -> Agreement:
    """Compare (samples, classes) outputs row by row."""
    if reference.shape != got.shape:
        raise ValueError(f"outputs of shape {got.shape} cannot be compared with {reference.shape}")
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    diff = np.where(np.isfinite(diff), diff, np.inf)  # NaN must not compare as "small"
    per_sample = diff.max(axis=1) if diff.size else np.zeros(len(got))
    want, have = reference.argmax(axis=1), got.argmax(axis=1)
    same = (want == have) & np.isfinite(per_sample)
    per_class: dict[str, tuple[int, int]] = {}
    for index, name in enumerate(classes):
        mask = want == index
        if mask.any():
            per_class[name] = (int(same[mask].sum()), int(mask.sum()))
    # Samples whose label changed first, then by the size of the difference.
    order = np.lexsort((-per_sample, same))
    return Agreement(
        samples=len(got),
        max_abs_diff=float(per_sample.max()) if len(got) else 0.0,
        top1=float(same.mean()) if len(got) else 1.0,
        per_class=per_class,
        worst=tuple(int(i) for i in order[:_SHOWN]),
    )


def judge(agreement: Agreement, thresholds: Thresholds, prefix: str) -> list[str]:
    """Each threshold the agreement violates, as a sentence naming the setting
    (`prefix` is the settings' config path, e.g. `export.int8`)."""
    out = []
    a, t = agreement, thresholds
    if t.atol and not a.max_abs_diff <= t.atol:
        out.append(f"max |Δ| {a.max_abs_diff:.3g} > {prefix}.atol {t.atol:g}")
    if a.top1 < t.min_top1:
        wrong = a.samples - round(a.top1 * a.samples)
        out.append(
            f"top-1 agreement {a.top1:.1%} ({wrong} of {a.samples} samples change class) "
            f"< {prefix}.min_top1 {t.min_top1:.1%}"
        )
    worst = a.worst_class()
    if worst is not None and worst[1] / worst[2] < t.min_class_agreement:
        name, agree, n = worst
        out.append(
            f"class {name!r} agreement {agree / n:.1%} ({agree}/{n}) "
            f"< {prefix}.min_class_agreement {t.min_class_agreement:.1%}"
        )
    return out


__all__ = ["Agreement", "Thresholds", "judge", "measure"]
