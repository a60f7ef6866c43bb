"""`data.gallery`: the manual spot check, done for the reviewer: a PNG grid per split of the
samples the pull request added, changed or relabeled, one row per class, saved as an
artifact (`data/gallery-<split>.png`) and linked from the report."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from dlgate.context import Context
from dlgate.datadiff import Changed, pr_diff
from dlgate.dataset import DataSettings, natural
from dlgate.registry import check, prepare
from dlgate.report import Finding, Outcome, Value

_CAPTION = 12  # pixels under each tile for its caption
_LABEL = 56  # pixels left of each row for the class name


@prepare("data")
def start_gallery(ctx: Context) -> None:
    """The gallery needs git and the checkout, not the scan: drawn in the background, it
    overlaps the scan (its PNG encoding runs outside the GIL)."""
    ctx.prefetch("data.gallery", lambda: _gallery(ctx))


@check("data.gallery")
def gallery(ctx: Context) -> Finding:
    """A grid of the samples added or relabeled by the pull request, per class."""
    return ctx.memo("data.gallery", lambda: _gallery(ctx))


def _gallery(ctx: Context) -> Finding:
    settings = ctx.config.get(DataSettings)
    diff = pr_diff(ctx, settings.gallery.per_class)
    if diff.unavailable:
        return Finding(Outcome.SKIP, f"no gallery: {diff.unavailable}")
    artifacts: list[str] = []
    shown: dict[str, Value] = {}
    for split, d in diff.splits.items():
        rows = {cls: d.shown[cls] for cls in sorted(d.shown, key=natural) if d.shown[cls]}
        if not rows:
            continue
        path = ctx.artifact_dir("data") / f"gallery-{split}.png"
        sheet = _grid(ctx.repo, rows, settings.gallery.tile, settings.gallery.per_class)
        sheet.save(path, compress_level=1)  # a view for people: fast beats small
        artifacts.append(path.relative_to(ctx.out).as_posix())
        ctx.record_files[f"gallery-{split}.png"] = path
        shown[split] = {cls: len(items) for cls, items in rows.items()}
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


def _grid(repo: Path, rows: dict[str, list[Changed]], tile: int, per_row: int) -> Image.Image:
    width = _LABEL + min(per_row, max(len(items) for items in rows.values())) * tile
    height = len(rows) * (tile + _CAPTION)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (cls, items) in enumerate(rows.items()):
        top = r * (tile + _CAPTION)
        draw.text((4, top + tile // 2 - 6), cls[:8], fill="black")
        for c, item in enumerate(items):
            left = _LABEL + c * tile
            sheet.paste(_tile(repo / item.id, tile), (left, top))
            caption = {"added": "+", "changed": "~"}.get(item.how, f"{item.old_label}->{cls}")
            draw.text((left + 2, top + tile), caption[:12], fill="black")
    return sheet


def _tile(path: Path, size: int) -> Image.Image:
    out = Image.new("RGB", (size, size), "white")
    try:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
    except Exception:  # an unreadable sample (data.integrity names it) still gets its tile
        out.paste((255, 230, 230), (0, 0, size, size))
        draw = ImageDraw.Draw(out)
        draw.line((0, 0, size, size), fill="red")
        draw.line((0, size, size, 0), fill="red")
        return out
    # Fit the tile; small samples (8x8 digits) are blown up with hard pixel edges.
    scale = size / max(im.size)
    shape = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX
    im = im.resize(shape, resample)
    out.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return out
