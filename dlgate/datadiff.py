"""What a pull request did to the data, per split and class: samples added, removed, changed
(same path, new content) and relabeled (the same content moved to another class).

Computed from git alone, the diff of each split's tree between the merge base and the head,
so it costs what the pull request changed, not the size of the data set. Image folders only:
for the other formats `DataDiff.unavailable` says why there is none.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from dataclasses import dataclass, field

from dlgate import datagit
from dlgate.context import Context
from dlgate.datagit import EMPTY_TREE, tree_diff, tree_id
from dlgate.dataset import DataSettings
from dlgate.datasources import image_label


@dataclass
class ClassChanges:
    added: int = 0
    removed: int = 0
    changed: int = 0
    relabeled_in: int = 0  # moved here from another class
    relabeled_out: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Changed:
    """A head sample the pull request added, changed or relabeled."""

    id: str  # repository-relative path
    label: str
    how: str  # "added" | "changed" | "relabeled"
    old_label: str = ""


@dataclass
class SplitDiff:
    per_class: dict[str, ClassChanges] = field(default_factory=lambda: defaultdict(ClassChanges))
    shown: dict[str, list[Changed]] = field(default_factory=lambda: defaultdict(list))

    def show(self, sample: Changed, keep: int) -> None:
        if len(self.shown[sample.label]) < keep:
            self.shown[sample.label].append(sample)


@dataclass
class DataDiff:
    splits: dict[str, SplitDiff]
    unavailable: str = ""  # why there is no diff, where there is none


def pr_diff(ctx: Context, keep: int) -> DataDiff:
    """The pull request's data changes (memoized per run); `keep` samples per class and split
    are kept for the gallery, the rest only counted."""
    return ctx.memo("data.diff", lambda: _diff(ctx, keep))


def _diff(ctx: Context, keep: int) -> DataDiff:
    settings = ctx.config.get(DataSettings)
    if ctx.merge_base is None:
        return DataDiff({}, "no base revision to compare with")
    if settings.format != "image-folder":
        return DataDiff({}, f"per-sample changes are tracked for image folders, not for "
                        f"`format: {settings.format}`")  # fmt: skip
    trees = _trees(ctx, ctx.merge_base)
    for old, new in trees.values():
        if old != new:
            datagit.diff(ctx, old, new)  # every split's git diff started, side by side
    out: dict[str, SplitDiff] = {}
    for split, location in _locations(settings).items():
        out[split] = _split_diff(ctx, location, *trees[location], keep)
    return DataDiff(out)


def start(ctx: Context) -> None:
    """Start git comparing the trees of the pull request (in the background)."""
    if ctx.merge_base is not None and ctx.config.get(DataSettings).format == "image-folder":
        for old, new in _trees(ctx, ctx.merge_base).values():
            if old != new:
                datagit.diff(ctx, old, new)


def _locations(settings: DataSettings) -> dict[str, str]:
    return {s: posixpath.normpath(raw.replace("\\", "/")) for s, raw in settings.splits.items()}


def _trees(ctx: Context, base: str) -> dict[str, tuple[str, str]]:
    """Each split location's tree at `base` and at the head (the empty tree where none)."""
    return {
        location: (tree_id(ctx, base, location) or EMPTY_TREE,
                   tree_id(ctx, ctx.head.sha, location) or EMPTY_TREE)
        for location in _locations(ctx.config.get(DataSettings)).values()
    }  # fmt: skip


def _split_diff(ctx: Context, location: str, old: str, new: str, keep: int) -> SplitDiff:
    diff = SplitDiff()
    if old == new:
        return diff
    gone: dict[bytes, list[tuple[str, str]]] = defaultdict(list)
    arrived: list[tuple[str, str, bytes]] = []
    for rel, old_blob, new_blob in tree_diff(ctx, old, new):
        old_label = image_label(rel) if old_blob else None
        new_label = image_label(rel) if new_blob else None
        sid = f"{location}/{rel}"
        if old_label and new_label and old_label == new_label:
            diff.per_class[new_label].changed += 1
            diff.show(Changed(sid, new_label, "changed"), keep)
            continue
        if old_label and old_blob:
            gone[old_blob].append((sid, old_label))
        if new_label and new_blob:
            arrived.append((sid, new_label, new_blob))
    for sid, label, blob in arrived:
        if gone.get(blob):
            _old_id, old_label = gone[blob].pop()
            if old_label != label:
                diff.per_class[label].relabeled_in += 1
                diff.per_class[old_label].relabeled_out += 1
                diff.show(Changed(sid, label, "relabeled", old_label), keep)
            continue  # the same content moved within its class: a rename, nothing new
        diff.per_class[label].added += 1
        diff.show(Changed(sid, label, "added"), keep)
    for left in gone.values():
        for _sid, label in left:
            diff.per_class[label].removed += 1
    return diff
