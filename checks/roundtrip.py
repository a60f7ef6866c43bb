"""`data.roundtrip`: the configured preprocessing round-trips: `denormalize(normalize(x))`
gives every tried image back within `data.roundtrip.tolerance` (0..255 pixel units).

Both functions are the user's (`module:function` in the repository) and run in a child
process with the pipeline's hook timeout, like every call into user code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlgate import hooks
from dlgate.context import Context
from dlgate.datafindings import Offenders, turned_off
from dlgate.datascan import scan
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.roundtrip")
def roundtrip(ctx: Context) -> Finding:
    """normalize → denormalize returns the input within tolerance."""
    data = scan(ctx)
    settings = data.settings.roundtrip
    if settings.level == "off":
        return turned_off("roundtrip")
    if not (settings.normalize and settings.denormalize):
        return Finding(
            Outcome.SKIP,
            "no preprocessing configured (`data.roundtrip.normalize` "
            "and `data.roundtrip.denormalize`)",
        )
    split = settings.split or next(iter(data.splits))
    # Blob ids are uniformly spread: ordering by them picks a fixed, unbiased sample.
    picked = list(data.refs(
        "SELECT s.* FROM samples s JOIN files f ON f.key = s.key "
        "WHERE s.split = ? AND f.flags & 12 = 12 ORDER BY s.key LIMIT ?",
        (split, settings.samples),
    ))  # fmt: skip
    if not picked:
        return Finding(Outcome.SKIP, f"no decodable images in split `{split}` to try")
    paths = [
        str(ref.file if ref.file and ref.file.startswith("/") else ctx.repo / str(ref.file))
        for ref, _ in picked
    ]
    results = hooks.call(
        roundtrip_errors,
        settings.normalize,
        settings.denormalize,
        paths,
        cwd=ctx.repo,
        timeout=ctx.config.pipeline.hook_timeout,
        hook=f"data.roundtrip ({settings.normalize} / {settings.denormalize})",
    )
    offenders = Offenders(ctx, "roundtrip", data.settings.max_listed, settings.level)
    worst = 0.0
    for (ref, _), (error, problem) in zip(picked, results, strict=True):
        if math.isfinite(error):
            worst = max(worst, error)
        if problem:
            offenders.add(ref, problem)
        elif error > settings.tolerance:
            offenders.add(
                ref,
                f"denormalize(normalize(x)) differs from x by up to {error:.4g} "
                f"(tolerance {settings.tolerance:g}, `data.roundtrip.tolerance`)",
            )
    measurements: dict[str, Value] = {
        "samples": len(picked), "max_error": round(worst, 6), "tolerance": settings.tolerance,
    }  # fmt: skip
    if not offenders.count:
        return Finding(
            Outcome.PASS,
            f"{len(picked)} images round-trip within "
            f"{settings.tolerance:g} (largest difference {worst:.3g})",
            measurements,
        )
    return offenders.finding(
        f"{offenders.count} of {len(picked)} images do not round-trip through "
        f"{settings.normalize} → {settings.denormalize}",
        measurements,
    )


def roundtrip_errors(normalize: str, denormalize: str, paths: list[str]) -> list[tuple[float, str]]:
    """Runs in the hook child: (largest absolute difference, problem) per image."""
    from PIL import Image

    from dlgate.framework import load_target

    forward = load_target(normalize, "data.roundtrip.normalize")
    backward = load_target(denormalize, "data.roundtrip.denormalize")
    out: list[tuple[float, str]] = []
    for path in paths:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB") if im.mode in ("P", "PA") else im)
        back: Any = np.asarray(backward(forward(pixels.copy())))
        if back.shape != pixels.shape:
            out.append((float("inf"), f"shape {pixels.shape} came back as {back.shape}"))
            continue
        diff = np.abs(back.astype(np.float64) - pixels.astype(np.float64))
        if not np.all(np.isfinite(diff)):
            out.append((float("inf"), "came back with NaN or infinite values"))
            continue
        out.append((float(diff.max()), ""))
    return out
