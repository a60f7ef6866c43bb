"""The bundled example's data for the data-stage tests: sklearn's 1,797 real handwritten
digits written as 8-bit grayscale PNGs into `data/<split>/<digit>/` of a scratch git repo,
exactly as `examples/digits/make_data.py` lays them out, plus helpers to run the data stage
on it (through the real gate, or on a `Context` of a commit)."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from conftest import GitRepo
from PIL import Image

from dlgate.config import load_text
from dlgate.context import Context
from dlgate.gate import Request, run
from dlgate.registry import checks_for
from dlgate.report import CheckResult, Report, Revision
from dlgate.runner import run_check, run_stage

CLASSES = tuple(str(d) for d in range(10))
CLASSES_YAML = "[" + ", ".join(f"'{c}'" for c in CLASSES) + "]"


@functools.cache
def digits() -> tuple[tuple[int, np.ndarray], ...]:
    """(label, 8x8 uint8 pixels) of every digit, in sklearn's order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.rint(d.images * (255 / 16)).astype(np.uint8)
    return tuple((int(t), p) for t, p in zip(d.target, pixels, strict=True))


@functools.cache
def png(index: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(digits()[index][1], mode="L").save(buf, "PNG")
    return buf.getvalue()


def write_digits(
    repo: GitRepo, train_per_class: int = 12, real_per_class: int = 4, root: str = "data"
) -> dict[str, list[str]]:
    """Write distinct digits: the first `train_per_class` of each class to `train`, the next
    `real_per_class` to `real_world`. Returns the written paths per split."""
    taken: dict[int, int] = {}
    written: dict[str, list[str]] = {"train": [], "real_world": []}
    for i, (label, _) in enumerate(digits()):
        n = taken.get(label, 0)
        if n >= train_per_class + real_per_class:
            continue
        taken[label] = n + 1
        split = "train" if n < train_per_class else "real_world"
        path = f"{root}/{split}/{label}/digit-{i:05d}.png"
        repo.write(path, png(i))
        written[split].append(path)
    return written


def config(extra: str = "", classes: bool = True) -> str:
    """dlgate.yml text for the digits: both splits, the ten classes, no baseline computing."""
    declared = f"  classes: {CLASSES_YAML}\n" if classes else ""
    return (
        "baseline: {missing: warn}\n"
        "data:\n"
        "  splits: {train: data/train, real_world: data/real_world}\n"
        f"{declared}{extra}"
    )


def context(repo: GitRepo, tmp: Path, text: str, base: str | None = None) -> Context:
    """A Context for the repository's HEAD (its working tree is the checkout)."""
    sha = repo.sha("HEAD")
    merge = repo.git("merge-base", base, sha).strip() if base else None
    return Context(
        repo=repo.path,
        git_dir=repo.path,
        head=Revision("HEAD", sha),
        base=Revision(base, repo.sha(base)) if base else None,
        merge_base=merge,
        config=load_text(text),
        out=tmp / "out",
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
    )


def data_stage(ctx: Context, *only: str) -> dict[str, CheckResult]:
    """The data stage's results by check id; `only` runs just those checks (in order)."""
    if only:
        specs = {spec.id: spec for spec in checks_for("data")}
        return {i: run_check(specs[i], ctx) for i in only}
    stage = run_stage("data", ctx)
    return {c.id: c for c in stage.checks}


def gate(
    repo: GitRepo,
    tmp: Path,
    text: str,
    base: str | None = None,
    kind: str = "pr",
    record: bool | None = None,
    head: str = "HEAD",
) -> Report:
    """The real gate, data stage only, with `text` as the configuration file."""
    cfg = tmp / "dlgate.yml"
    cfg.write_text(text, encoding="utf-8")
    return run(
        Request(
            repo=repo.path, head=head, base=base, kind=kind, config_file=cfg,
            stages=("data",), out=tmp / f"out-{kind}", tracking_uri=f"sqlite:///{tmp / 'ml.db'}",
            record=record,
        )
    )  # fmt: skip
