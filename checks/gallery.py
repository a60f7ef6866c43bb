"""`data.gallery`: the manual spot check, done for the reviewer: a PNG grid per split of the
samples the pull request added, changed or relabeled, one row per class, saved as an
artifact (`data/gallery-<split>.png`) and linked from the report."""

from __future__ import annotations

from pathlib import Path

from dlgate import datadiff, datagallery
from dlgate.context import Context
from dlgate.datadiff import Changed, pr_diff
from dlgate.dataset import DataSettings, natural
from dlgate.registry import check, prepare
from dlgate.report import Finding, Outcome, Value

_TIMEOUT = 300.0  # seconds for drawing the sheets (a few hundred tiles: well under one)


@prepare("data")
def start_gallery(ctx: Context) -> None:
    """The gallery needs git and the checkout, not the scan: drawn in the background (by a
    child process, see `dlgate.datagallery`), it overlaps the scan."""
    ctx.prefetch("data.gallery", lambda: _gallery(ctx))


@check("data.gallery")
def gallery(ctx: Context) -> Finding:
    """A grid of the samples added or relabeled by the pull request, per class."""
    return ctx.memo("data.gallery", lambda: _gallery(ctx))


def _gallery(ctx: Context) -> Finding:
    settings = ctx.config.get(DataSettings)
    if ctx.merge_base is None or settings.format != "image-folder":
        drawing = None  # (no diff: nothing to draw)
    else:
        datadiff.start(ctx)  # git first: the scan waits for the same diffs
        drawing = datagallery.Drawing()  # then the child: it loads while git compares trees
    try:
        return _draw(ctx, settings, drawing)
    finally:
        if drawing is not None:
            drawing.close()


def _draw(ctx: Context, settings: DataSettings, drawing: datagallery.Drawing | None) -> Finding:
    diff = pr_diff(ctx, settings.gallery.per_class)
    if diff.unavailable or drawing is None:
        return Finding(Outcome.SKIP, f"no gallery: {diff.unavailable}")
    sheets: dict[Path, list[datagallery.Row]] = {}
    shown: dict[str, Value] = {}
    for split, d in diff.splits.items():
        rows = [(cls, d.shown[cls]) for cls in sorted(d.shown, key=natural) if d.shown[cls]]
        if not rows:
            continue
        path = ctx.artifact_dir("data") / f"gallery-{split}.png"
        sheets[path] = [(cls, [(item.id, _caption(item)) for item in items]) for cls, items in rows]
        ctx.record_files[f"gallery-{split}.png"] = path
        shown[split] = {cls: len(items) for cls, items in rows}
    tile, per_class = settings.gallery.tile, settings.gallery.per_class
    if sheets:
        drawing.draw(ctx.repo, sheets, tile, per_class, _TIMEOUT)
    artifacts = [path.relative_to(ctx.out).as_posix() for path in sheets]
    totals = {
        split: sum(c.added + c.changed + c.relabeled_in for c in d.per_class.values())
        for split, d in diff.splits.items()
    }
    measurements: dict[str, Value] = {"new_or_relabeled": dict(totals), "shown": shown}
    if not artifacts:
        return Finding(Outcome.PASS, "no samples added, changed or relabeled: nothing to spot-"
                       "check", measurements)  # fmt: skip
    listed = ", ".join(f"{s}: {n}" for s, n in totals.items() if n)
    return Finding(
        Outcome.PASS,
        f"spot-check gallery of the samples added, changed or relabeled ({listed})",
        measurements,
        details="\n".join(f"- [`{a}`]({a})" for a in artifacts)
        + "\n\nTiles: `+` added, `~` changed, `a->b` relabeled from class a.",
        artifacts=artifacts,
    )


def _caption(item: Changed) -> str:
    return {"added": "+", "changed": "~"}.get(item.how, f"{item.old_label}->{item.label}")
