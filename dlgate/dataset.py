"""The data set as the gate sees it: named splits of labelled samples, and the `data` section.

Four sources (`data.format`), each split named in `dlgate.yml` (`data.splits`):

- `image-folder`: `<split path>/<class>/<file>` (any depth below the class folder);
- `manifest`: a CSV file (with a header) or JSON lines (`.jsonl`), one row per sample with a
  label and either a file path (relative to the manifest's folder) or an inline value;
- `text-lines`: a folder of `<label>.txt` files, one sample per non-blank line;
- `hook`: `module:function` in the user's repository, called as `function(split, location)`
  in a child process, yielding `(sample id, bytes or str, label)`.

`load_split` lists a split's samples for the checks that read them one by one (training,
accuracy); the data stage scans through `dlgate.datascan`, which caches per-file results.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from dlgate.config import section
from dlgate.errors import ConfigError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
TEXT_SUFFIX = ".txt"
Level = Literal["fail", "warn", "off"]  # what a violation of a data check yields


@dataclass(frozen=True)
class ManifestSettings:
    """Column names (CSV header / JSON keys) of a manifest."""

    path: str = "path"  # file of the sample, relative to the manifest's folder
    value: str = "value"  # or the sample itself, inline (text)
    label: str = "label"
    id: str = "id"  # optional: a stable sample id (default: the path, else file:line)


@dataclass(frozen=True)
class CountsSettings:
    min_per_class: int = 1  # fewer samples of a class in a split → fail
    max_imbalance: float = 10.0  # largest/smallest class count in a split; above → level
    imbalance_level: Level = "warn"

    def __post_init__(self) -> None:
        if self.min_per_class < 0:
            raise ValueError("`min_per_class` must be 0 or more")
        if self.max_imbalance < 1 and self.max_imbalance != 0:
            raise ValueError("`max_imbalance` must be 1 or more (0 turns it off)")


@dataclass(frozen=True)
class LabelsSettings:
    level: Level = "fail"  # a label outside `data.classes`


@dataclass(frozen=True)
class IntegritySettings:
    # Larger images are not decoded (a decompression bomb); Pillow's own limit is 89.5 Mpx.
    max_pixels: int = 50_000_000
    level: Level = "fail"

    def __post_init__(self) -> None:
        if self.max_pixels <= 0:
            raise ValueError("`max_pixels` must be positive")


@dataclass(frozen=True)
class ImagesSettings:
    """What the images must look like; empty lists and 0 mean "anything"."""

    modes: tuple[str, ...] = ()  # Pillow modes, e.g. [L] or [RGB, RGBA]
    channels: tuple[int, ...] = ()  # bands per pixel, e.g. [1] or [3]
    sizes: tuple[str, ...] = ()  # exact sizes "WIDTHxHEIGHT", e.g. ["8x8"]
    min_side: int = 0  # smallest width or height allowed
    max_side: int = 0  # largest width or height allowed
    level: Level = "fail"

    def __post_init__(self) -> None:
        for size in self.sizes:
            parse_size(size)


@dataclass(frozen=True)
class DuplicatesSettings:
    allowed: int = 0  # exact duplicate samples tolerated per split
    level: Level = "warn"


@dataclass(frozen=True)
class ConflictsSettings:
    level: Level = "fail"  # the same content with two labels


@dataclass(frozen=True)
class LeakageSettings:
    near: bool = True  # also near-identical: same perceptual hash / normalized text
    level: Level = "fail"


@dataclass(frozen=True)
class RoundtripSettings:
    """`denormalize(normalize(pixels))` must give the pixels back within `tolerance`."""

    normalize: str = ""  # module:function, uint8 array (H, W[, C]) → float array
    denormalize: str = ""  # module:function, the inverse
    tolerance: float = 0.5  # largest absolute difference, in 0..255 pixel units
    samples: int = 32  # how many images of `split` to try
    split: str = ""  # default: the first split
    level: Level = "fail"


@dataclass(frozen=True)
class StatsSettings:
    """Drift limits against the baseline's statistics (population stability index)."""

    warn_psi: float = 0.1
    fail_psi: float = 0.25  # 0 turns failing off

    def __post_init__(self) -> None:
        if self.warn_psi < 0 or self.fail_psi < 0:
            raise ValueError("`warn_psi` and `fail_psi` must be 0 or more")


@dataclass(frozen=True)
class GallerySettings:
    per_class: int = 8  # samples shown per class and split
    tile: int = 64  # pixels per sample in the grid


def _default_splits() -> Mapping[str, str]:
    return types.MappingProxyType({"train": "data/train", "real_world": "data/real_world"})


@section("data")
@dataclass(frozen=True)
class DataSettings:
    format: Literal["image-folder", "manifest", "text-lines", "hook"] = "image-folder"
    # split name → location: a folder (image-folder, text-lines), a manifest file, or for
    # `hook` any string handed to the hook.
    splits: Mapping[str, str] = field(default_factory=_default_splits)
    classes: tuple[str, ...] = ()  # the declared classes, in order; empty: the labels found
    hook: str = ""  # module:function, for `format: hook`
    workers: int = 0  # decoding processes; 0 = one per CPU
    max_listed: int = 200  # samples named (annotated) per check; the rest are counted
    manifest: ManifestSettings = field(default_factory=ManifestSettings)
    counts: CountsSettings = field(default_factory=CountsSettings)
    labels: LabelsSettings = field(default_factory=LabelsSettings)
    integrity: IntegritySettings = field(default_factory=IntegritySettings)
    images: ImagesSettings = field(default_factory=ImagesSettings)
    duplicates: DuplicatesSettings = field(default_factory=DuplicatesSettings)
    conflicts: ConflictsSettings = field(default_factory=ConflictsSettings)
    leakage: LeakageSettings = field(default_factory=LeakageSettings)
    roundtrip: RoundtripSettings = field(default_factory=RoundtripSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    gallery: GallerySettings = field(default_factory=GallerySettings)

    def __post_init__(self) -> None:
        if not self.splits:
            raise ValueError("`splits` must name at least one split")
        if self.format != "hook":
            for name, path in self.splits.items():
                p = PurePosixPath(path.replace("\\", "/"))
                if not path or p.is_absolute() or ".." in p.parts:
                    raise ValueError(f"split {name!r} path {path!r} leaves the repository")
        if self.format == "hook" and ":" not in self.hook:
            raise ValueError("`format: hook` needs `hook: module:function`")
        if self.workers < 0 or self.max_listed < 0:
            raise ValueError("`workers` and `max_listed` must be 0 or more")
        if self.roundtrip.split and self.roundtrip.split not in self.splits:
            raise ValueError(f"`roundtrip.split` {self.roundtrip.split!r} is not in `splits`")


@dataclass(frozen=True)
class Sample:
    """One labelled sample. `id` is stable across commits: the repository-relative path of
    an image file, `file:line` for a line of a text file or an inline manifest value."""

    id: str
    path: Path  # the file holding the sample (for a line-based sample: the text/manifest file)
    label: str
    line: int = 0  # 1-based line in `path` for line-based samples; 0 = the whole file
    value: str | None = None  # the text of a line-based or inline sample


def parse_size(text: str) -> tuple[int, int]:
    """`"28x28"` → (28, 28); a malformed size is a configuration error."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise ValueError(f"image size {text!r} must be WIDTHxHEIGHT, e.g. 28x28")
    return int(w), int(h)


def split_dir(repo: Path, settings: DataSettings, split: str) -> Path:
    if split not in settings.splits:
        known = ", ".join(settings.splits) or "none"
        raise ConfigError(f"`data.splits` has no split {split!r} (configured: {known})")
    return repo / settings.splits[split]


def load_split(repo: Path, settings: DataSettings, split: str) -> list[Sample]:
    """Every sample of a split, sorted by id. A missing or unreadable location is a
    configuration error naming it; a file that is not a sample is skipped (the data stage
    reports it)."""
    from dlgate.datasources import iter_split

    split_dir(repo, settings, split)  # an unknown split name is a ConfigError
    samples = []
    listing = iter_split(repo, settings, split)
    for entry in listing:
        if entry.file is not None:
            path = entry.file_path(repo)
        elif entry.where and entry.line:  # a line of a text file or manifest
            path = repo / entry.where
        else:
            continue  # a string a hook yielded: no file holds it
        samples.append(Sample(entry.id, path, entry.label, entry.line, entry.value))
    if listing.fatal is not None:
        fatal = listing.fatal
        raise ConfigError(f"`data.splits.{split}`: `{fatal.path}` {fatal.message}")
    samples.sort(key=lambda s: s.id)
    return samples


def classes(settings: DataSettings, samples: list[Sample]) -> tuple[str, ...]:
    return settings.classes or tuple(sorted({s.label for s in samples}, key=natural))


def natural(name: str) -> tuple[int, str]:
    """Sort key: numeric class names in numeric order, the others after them."""
    return (int(name), "") if name.isdigit() else (1 << 30, name)
