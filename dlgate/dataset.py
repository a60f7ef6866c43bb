"""The data set as the gate sees it: named splits of labelled samples.

Built-in source: an image folder, `<split path>/<class>/<file>`. Splits are named in
`dlgate.yml` (`data.splits`); the real-world samples of the accuracy stage are one of them.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dlgate.config import section
from dlgate.errors import ConfigError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@section("data")
@dataclass(frozen=True)
class DataSettings:
    format: Literal["image-folder"] = "image-folder"
    # split name → folder (repository-relative) holding one sub-folder per class
    splits: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType(
            {"train": "data/train", "real_world": "data/real_world"}
        )
    )
    classes: tuple[str, ...] = ()  # the declared classes, in order; empty: the folders found
    min_per_class: int = 1  # fewer samples of a class in a split → fail
    max_imbalance: float = 0.0  # max/min class count ratio above which → warn; 0 = off

    def __post_init__(self) -> None:
        for name, path in self.splits.items():
            p = Path(path)
            if p.is_absolute() or ".." in p.parts:
                raise ValueError(f"split {name!r} path {path!r} leaves the repository")


@dataclass(frozen=True)
class Sample:
    id: str  # repository-relative path, with forward slashes: stable across commits
    path: Path
    label: str


def split_dir(repo: Path, settings: DataSettings, split: str) -> Path:
    if split not in settings.splits:
        known = ", ".join(settings.splits) or "none"
        raise ConfigError(f"`data.splits` has no split {split!r} (configured: {known})")
    return repo / settings.splits[split]


def load_split(repo: Path, settings: DataSettings, split: str) -> list[Sample]:
    """Every sample of a split, sorted by id. A missing folder is a configuration error."""
    root = split_dir(repo, settings, split)
    if not root.is_dir():
        raise ConfigError(
            f"`data.splits.{split}` = {settings.splits[split]!r}: no such folder in the "
            "repository; create it or fix the path"
        )
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for dirpath, _dirs, files in os.walk(class_dir):
            for name in files:
                path = Path(dirpath) / name
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    rel = path.relative_to(repo).as_posix()
                    samples.append(Sample(id=rel, path=path, label=class_dir.name))
    samples.sort(key=lambda s: s.id)
    return samples


def classes(settings: DataSettings, samples: list[Sample]) -> tuple[str, ...]:
    return settings.classes or tuple(sorted({s.label for s in samples}, key=_natural))


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)
