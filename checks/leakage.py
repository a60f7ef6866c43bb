"""`data.leakage`: the same or a near-identical sample in two splits. Identical: the same
content hash. Near-identical (`data.leakage.near`): the same perceptual hash of an image (its
8x8 grey thumbnail at 16 levels: re-encoded, converted or rescaled copies) or the same
normalized text (Unicode NFKC, case-folded, whitespace collapsed)."""

from __future__ import annotations

from collections import Counter

from dlgate.context import Context
from dlgate.datafindings import Offenders, turned_off
from dlgate.datascan import scan
from dlgate.dataview import SampleRef
from dlgate.registry import check
from dlgate.report import Finding, Outcome, Value


@check("data.leakage")
def leakage(ctx: Context) -> Finding:
    """The same or a near-identical sample in two splits."""
    data = scan(ctx)
    settings = data.settings.leakage
    if settings.level == "off":
        return turned_off("leakage")
    order = {name: i for i, name in enumerate(data.splits)}
    offenders = Offenders(ctx, "leakage", data.settings.max_listed, settings.level)
    pairs: dict[str, int] = {}
    identical = 0
    for group in data.key_groups():
        identical += _report(group, [], order, offenders, pairs, "identical content")
    near = 0
    if settings.near:
        for members in data.near_groups():
            refs = [ref for ref, _ in members]
            keys = [key for _, key in members]
            near += _report(refs, keys, order, offenders, pairs, "near-identical")
    measurements: dict[str, Value] = {"identical": identical, "near": near, "pairs": dict(pairs)}
    if not offenders.count:
        how = "identical or near-identical" if settings.near else "identical"
        return Finding(Outcome.PASS, f"no {how} samples shared between splits", measurements)
    where = ", ".join(f"{k}: {v}" for k, v in pairs.items())
    return offenders.finding(
        f"{offenders.count} samples leak between splits ({where}); first: {offenders.lines[0][2:]}",
        measurements,
    )


def _report(
    group: list[SampleRef],
    keys: list[bytes],
    order: dict[str, int],
    offenders: Offenders,
    pairs: dict[str, int],
    how: str,
) -> int:
    """Name each sample of a later split (in `data.splits` order) that also occurs in an
    earlier one; for near-identical groups only where the content differs. Linear in the
    group's size (a blank image may occur thousands of times)."""
    rank = [order.get(ref.split, 0) for ref in group]
    if len(set(rank)) < 2:
        return 0
    members = sorted(range(len(group)), key=lambda i: rank[i])
    found = 0
    earlier: list[int] = []  # members of the splits before the current one
    same: Counter[bytes] = Counter()  # their content keys (near groups)
    for pos, i in enumerate(members):
        if pos and rank[members[pos - 1]] != rank[i]:
            earlier = members[:pos]
            same = Counter(keys[j] for j in earlier) if keys else Counter()
        count = len(earlier) - (same[keys[i]] if keys else 0)
        if count <= 0:
            continue
        first = next(group[j] for j in earlier if not keys or keys[j] != keys[i])
        ref = group[i]
        found += 1
        pair = f"{first.split}→{ref.split}"
        pairs[pair] = pairs.get(pair, 0) + 1
        more = f" and {count - 1} more" if count > 1 else ""
        offenders.add(ref, f"{how} to `{first.split}` sample {first.location}{more}")
    return found
