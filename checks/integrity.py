"""`data.integrity`: every sample can be read and decoded: no zero-byte, unreadable,
truncated or corrupt files, and no decompression bombs (more pixels than
`data.integrity.max_pixels`, never decoded)."""

from __future__ import annotations

from dlgate.context import Context
from dlgate.datafindings import Offenders, turned_off
from dlgate.datascan import scan
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.integrity")
def integrity(ctx: Context) -> Finding:
    """Corrupt, truncated, zero-byte or unreadable files, decompression bombs."""
    data = scan(ctx)
    settings = data.settings.integrity
    if settings.level == "off":
        return turned_off("integrity")
    per_split: dict[str, Value] = {}
    for split in data.splits:
        c = data.counters(split)
        per_split[split] = {
            "errors": c.get("errors", {}).get("", 0),
            "bombs": c.get("bombs", {}).get("", 0),
        }
    total = sum(data.total(s) for s in data.splits)
    measurements: dict[str, Value] = {"per_split": per_split, "samples": total}
    if not any(v for per in per_split.values() if isinstance(per, dict) for v in per.values()):
        return Finding(Outcome.PASS, f"all {total} samples read and decoded", measurements)
    offenders = Offenders(ctx, "integrity", data.settings.max_listed, settings.level)
    # Errors (flag 1), and images (8) left undecoded (not 4): the bombs.
    for ref, record in data.with_records("f.flags & 1 OR f.flags & 12 = 8"):
        error, w, h = record[4], record[9], record[10]
        if error:
            offenders.add(ref, error)
        else:
            offenders.add(
                ref,
                f"decompression bomb: {w}x{h} = {w * h:,} pixels, over "
                f"`data.integrity.max_pixels` ({settings.max_pixels:,}); not decoded",
            )
    return offenders.finding(
        f"{offenders.count} unreadable samples of {total}, first: "
        f"{offenders.lines[0][2:] if offenders.lines else ''}",
        measurements,
    )
