"""Statistics of the data set tracked per commit (`data_stats.json` in the run's MLflow
artifacts), and how they moved against the baseline's.

Per split: counts per class, file-size histogram (log2 bins), image sizes, modes and formats,
brightness histogram (16 bins of the grey thumbnail's mean), per-channel pixel mean and std
for each band layout; for text, a length histogram (log2 bins) and character classes.

A distribution shift is measured by the population stability index (PSI, a sum over bins of
(p - q)·ln(p / q); under 0.1 is usually read as stable, over 0.25 as a real shift), with the
chi-squared test of homogeneity beside it: its p-value says whether the shift could be
chance, the PSI how large it is (with many samples, tiny shifts get tiny p-values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlgate.dataview import DataScan
from dlgate.stats import chi2_sf

FORMAT_VERSION = 1
DISTRIBUTIONS = ("classes", "file_size", "sizes", "modes", "brightness", "length")
_EPS = 1e-4  # PSI floor for an empty bin, so a bin seen on one side only stays finite


def statistics(data: DataScan) -> dict[str, Any]:
    """The JSON document recorded with the run."""
    splits: dict[str, Any] = {}
    for split in data.splits:
        c = data.counters(split)
        entry: dict[str, Any] = {
            "samples": data.total(split),
            "classes": dict(c.get("count", {})),
            "file_size": dict(c.get("file_size", {})),
            "errors": c.get("errors", {}).get("", 0),
        }
        if c.get("size"):
            entry.update(
                sizes=dict(c["size"]),
                modes=dict(c.get("mode", {})),
                formats=dict(c.get("format", {})),
                brightness=dict(c.get("brightness", {})),
                channels=_channels(c),
            )
        if c.get("text"):
            n = c["text"]["n"]
            chars = c.get("chars", {})
            length_sum = chars.get("len", 0)
            entry["text"] = {
                "samples": n,
                "mean_length": round(length_sum / max(n, 1), 3),
                "chars": {k: round(v / max(length_sum, 1), 6) for k, v in chars.items()
                          if k != "len"},
            }  # fmt: skip
            entry["length"] = dict(c.get("length", {}))
        splits[split] = entry
    return {"version": FORMAT_VERSION, "splits": splits}


def _channels(c: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sums in c.items():
        if not name.startswith("pixels."):
            continue
        npix = sums.get("npix", 0)
        if not npix:
            continue
        means, stds = [], []
        for k in range(4):
            if f"s{k}" not in sums and f"q{k}" not in sums:
                break
            mean = sums.get(f"s{k}", 0) / npix
            var = max(sums.get(f"q{k}", 0) / npix - mean * mean, 0.0)
            means.append(round(mean, 4))
            stds.append(round(math.sqrt(var), 4))
        out[name.removeprefix("pixels.")] = {"images": sums.get("n", 0), "mean": means,
                                             "std": stds}  # fmt: skip
    return out


@dataclass(frozen=True)
class Shift:
    split: str
    distribution: str
    psi: float
    p_value: float | None  # chi-squared test of homogeneity; None where it cannot be run


def shifts(head: Mapping[str, Any], base: Mapping[str, Any]) -> list[Shift]:
    """Distribution shifts of every split present in both documents."""
    out = []
    for split, now in head.get("splits", {}).items():
        before = base.get("splits", {}).get(split)
        if not before:
            continue
        for name in DISTRIBUTIONS:
            p, q = now.get(name) or {}, before.get(name) or {}
            if sum(p.values()) and sum(q.values()):
                out.append(Shift(split, name, round(psi(p, q), 4), chi2_p(p, q)))
    return out


def psi(p: Mapping[str, int], q: Mapping[str, int]) -> float:
    """Population stability index of counts `p` (now) against `q` (before)."""
    np_, nq = sum(p.values()), sum(q.values())
    total = 0.0
    for key in set(p) | set(q):
        a = max(p.get(key, 0) / np_, _EPS)
        b = max(q.get(key, 0) / nq, _EPS)
        total += (a - b) * math.log(a / b)
    return total


def chi2_p(p: Mapping[str, int], q: Mapping[str, int]) -> float | None:
    """The p-value of the chi-squared test of independence on the 2 x k table of counts (as
    scipy's `chi2_contingency`: Yates' correction at one degree of freedom)."""
    keys = sorted(k for k in set(p) | set(q) if p.get(k, 0) + q.get(k, 0) > 0)
    if len(keys) < 2:
        return None
    table = np.array([[p.get(k, 0) for k in keys], [q.get(k, 0) for k in keys]], dtype=float)
    rows, columns = table.sum(axis=1), table.sum(axis=0)
    if not rows.all():
        return None  # one side has no samples: nothing to compare
    expected = np.outer(rows, columns) / table.sum()
    dof = len(keys) - 1
    if dof == 1:  # Yates: move each count half a unit towards its expectation
        diff = expected - table
        table = table + np.sign(diff) * np.minimum(0.5, np.abs(diff))
    statistic = float(((table - expected) ** 2 / expected).sum())
    return round(chi2_sf(statistic, dof), 6)
