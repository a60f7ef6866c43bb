"""The accuracy stage's PNG plots: the confusion matrix, per-class deltas, metrics per release.

Figures are drawn on matplotlib's Agg canvas directly (`Figure` + `FigureCanvasAgg`), never
through pyplot: no global figure state, no GUI backend, safe in the service's worker threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 100


def load() -> None:
    """Import matplotlib's figure and Agg canvas (a third of a second), e.g. in the background
    while the training command runs, so that the first plot does not wait for it."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """Rows: true class; columns: predicted class, the last one `refused`."""
    from matplotlib.figure import Figure

    k = len(classes)
    side = max(4.0, 0.45 * (k + 1) + 2)
    fig = Figure(figsize=(side, side * 0.9), dpi=_DPI)
    ax = fig.add_subplot()
    shown = matrix if matrix[:, -1].any() else matrix[:, :-1]  # a refused column only if used
    image = ax.imshow(shown, cmap="Blues", aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    columns = [*classes, "refused"][: shown.shape[1]]
    ax.set_xticks(range(len(columns)), columns, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= 20:  # numbers stay readable up to about 20 classes
        top = shown.max() or 1
        for (i, j), n in np.ndenumerate(shown):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if n > top / 2 else "black")  # fmt: skip
    return _save(fig, path)


def per_class_delta(
    classes: Sequence[str],
    base: Sequence[float],
    head: Sequence[float],
    path: Path,
    title: str,
    metric: str = "recall",
) -> Path:
    """One bar per class: head minus baseline of a per-class metric (NaN classes left out)."""
    from matplotlib.figure import Figure

    deltas = [h - b for b, h in zip(base, head, strict=True)]
    keep = [i for i, d in enumerate(deltas) if math.isfinite(d)]
    fig = Figure(figsize=(max(5.0, 0.4 * len(keep) + 2), 3.5), dpi=_DPI)
    ax = fig.add_subplot()
    values = [deltas[i] * 100 for i in keep]
    colors = ["#2e7d32" if v > 0 else "#c62828" if v < 0 else "#9e9e9e" for v in values]
    ax.bar(range(len(keep)), values, color=colors)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(
        range(len(keep)), [classes[i] for i in keep], rotation=90 if len(keep) > 12 else 0
    )
    ax.set_ylabel(f"{metric} Δ (pp)")
    ax.set_xlabel("class")
    ax.set_title(title)
    return _save(fig, path)


def releases(
    tags: Sequence[str],
    metrics: Mapping[str, Sequence[float]],
    path: Path,
    refused: Sequence[bool] = (),
) -> Path:
    """One panel per metric, its value at each release in order; refused releases marked x."""
    from matplotlib.figure import Figure

    names = list(metrics)
    cols = min(2, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(6.0 * cols, 3.2 * rows), dpi=_DPI, layout="constrained")
    x = list(range(len(tags)))
    for n, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, n + 1)
        ys = [float(v) for v in metrics[name]]
        ax.plot(x, ys, marker="o", color="#1565c0")
        for i, bad in enumerate(refused):
            if bad and math.isfinite(ys[i]):
                ax.plot([i], [ys[i]], marker="x", markersize=10, color="#c62828")
        ax.set_xticks(x, list(tags), rotation=45 if len(tags) > 6 else 0)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.suptitle(f"metrics across {len(tags)} releases")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, format="png")
    return path
