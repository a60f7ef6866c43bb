"""`data.images`: image sizes, modes and channels are what `data.images` declares."""

from __future__ import annotations

from PIL import Image

from dlgate.context import Context
from dlgate.datafindings import Offenders, turned_off
from dlgate.datascan import scan
from dlgate.dataset import ImagesSettings, parse_size
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.images")
def images(ctx: Context) -> Finding:
    """Image sizes, modes and channels outside what the config declares."""
    data = scan(ctx)
    settings = data.settings.images
    if settings.level == "off":
        return turned_off("images")
    sizes: dict[str, int] = {}
    modes: dict[str, int] = {}
    for split in data.splits:
        for size, n in data.counters(split).get("size", {}).items():
            sizes[size] = sizes.get(size, 0) + n
        for mode, n in data.counters(split).get("mode", {}).items():
            modes[mode] = modes.get(mode, 0) + n
    measurements: dict[str, Value] = {"sizes": dict(sizes), "modes": dict(modes)}
    found = f"sizes {_top(sizes)}; modes {_top(modes)}"
    declared = settings.modes or settings.channels or settings.sizes
    if not (declared or settings.min_side or settings.max_side):
        return Finding(
            Outcome.PASS, f"nothing declared (`data.images`); found {found}", measurements
        )
    bad_sizes = sorted(s for s in sizes if _size_problem(s, settings))
    bad_modes = sorted(m for m in modes if _mode_problem(m, settings))
    if not bad_sizes and not bad_modes:
        return Finding(Outcome.PASS, f"every image as declared: {found}", measurements)
    offenders = Offenders(ctx, "images", data.settings.max_listed, settings.level)
    for ref, record in data.with_records("f.flags & 8"):  # every image: only when some are off
        w, h, mode = record[9], record[10], record[8]
        if w is None or (f"{w}x{h}" not in bad_sizes and mode not in bad_modes):
            continue
        why = [p for p in (_size_problem(f"{w}x{h}", settings), _mode_problem(mode, settings)) if p]
        offenders.add(ref, "; ".join(why))
    return offenders.finding(
        f"{offenders.count} images not as declared in `data.images`: "
        f"{offenders.lines[0][2:] if offenders.lines else ''}",
        measurements,
        f"found: {found}",
    )


def _size_problem(size: str, s: ImagesSettings) -> str:
    w, h = parse_size(size)
    if s.sizes and (w, h) not in {parse_size(x) for x in s.sizes}:
        return f"size {size}, not one of {', '.join(s.sizes)} (`data.images.sizes`)"
    if s.min_side and min(w, h) < s.min_side:
        return f"size {size}: a side under {s.min_side} pixels (`data.images.min_side`)"
    if s.max_side and max(w, h) > s.max_side:
        return f"size {size}: a side over {s.max_side} pixels (`data.images.max_side`)"
    return ""


def _mode_problem(mode: str, s: ImagesSettings) -> str:
    if s.modes and mode not in s.modes:
        return f"mode {mode}, not one of {', '.join(s.modes)} (`data.images.modes`)"
    try:
        bands = Image.getmodebands(mode)
    except KeyError:  # a mode Pillow does not name (cannot happen for a decoded image)
        bands = 0
    if s.channels and bands not in s.channels:
        ok = ", ".join(str(c) for c in s.channels)
        return f"{bands} channels ({mode}), not {ok} (`data.images.channels`)"
    return ""


def _top(counts: dict[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{k} ×{v}" for k, v in ranked[:5])
    return shown + (f", … ({len(ranked) - 5} more)" if len(ranked) > 5 else "") or "none"
