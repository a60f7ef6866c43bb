"""The bundled example (examples/digits) trained once per test session, and contexts that run
the export checks on it, or on a model derived from it, without training again.

    trained = trained_digits(tmp_path_factory.getbasetemp())   # ~15 s, once per session
    ctx = export_context(trained, tmp_path / "out")
    finding = parity(ctx)

The pipeline's `train` command of such a context copies the prepared files into `{out}` (a
real `pipeline.train` run through `dlgate.hooks.command`); everything else is the example's
own dlgate.yml.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import types
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from dlgate.checks.parity import ExportSettings
from dlgate.config import Config, load_text
from dlgate.context import Context
from dlgate.dataset import DataSettings
from dlgate.report import Revision

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits"
SHA = "feedface" * 5  # the commit the example is "trained at"


@dataclass(frozen=True)
class Trained:
    repo: Path  # a copy of the example, as a user's repository holds it
    onnx: Path  # what its train.py wrote
    weights: Path


_TRAINED: dict[Path, Trained] = {}


def trained_digits(root: Path) -> Trained:
    """Copy the example under `root` and run its own training command, once per process."""
    if root not in _TRAINED:
        repo = root / "digits-export" / "repo"
        shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "out"))
        out = repo.parent / "trained"
        proc = subprocess.run(
            [sys.executable, "train.py", "--out", str(out)],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "DLGATE_GIT_SHA": SHA},
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _TRAINED[root] = Trained(repo, out / "model.onnx", out / "model.pt")
    return _TRAINED[root]


def export_context(
    trained: Trained,
    out: Path,
    *,
    onnx_file: Path | None = None,
    weights: Path | None = None,
    no_weights: bool = False,
    model: str | None = None,
    export: ExportSettings | None = None,
    data: DataSettings | None = None,
    sha: str = SHA,
) -> Context:
    """A context whose pipeline "trains" by copying `onnx_file` (and `weights`) into {out}."""
    config = load_text((EXAMPLE / "dlgate.yml").read_text(encoding="utf-8"), "dlgate.yml")
    onnx_file = onnx_file or trained.onnx
    files = [str(onnx_file)] if no_weights else [str(onnx_file), str(weights or trained.weights)]
    pipeline = replace(
        config.pipeline,
        train=f"cp {' '.join(files)} {{out}}",
        onnx=onnx_file.name,
        weights="missing.pt" if no_weights else Path(files[1]).name,
        model=model or config.pipeline.model,
    )
    sections = {**config.sections, "pipeline": pipeline}
    if export is not None:
        sections["export"] = export
    if data is not None:
        sections["data"] = data
    return Context(
        repo=trained.repo,
        git_dir=trained.repo,
        head=Revision("HEAD", sha),
        base=None,
        merge_base=None,
        config=Config(config.source, config.stages, types.MappingProxyType(sections)),
        out=out,
    )


def example_module(name: str = "model") -> Any:
    """A module of the example (e.g. its model factory), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"digits_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def with_metadata(source: Path, target: Path, values: dict[str, str]) -> Path:
    """A copy of `source` whose metadata is exactly `values`."""
    model = onnx.load(str(source))
    del model.metadata_props[:]
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def raw_export(model: Any, sample: Any, target: Path, *, dynamo: bool = True) -> Path:
    """torch.onnx.export as a user's own export code calls it, in the model's current mode
    (no dlgate metadata, and for `dynamo=False` no dynamic batch axis)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation notes, not what is tested
        if dynamo:
            program = torch.onnx.export(
                model,
                (sample,),
                dynamo=True,
                verbose=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
            assert program is not None
            onnx.save(program.model_proto, str(target))
        else:
            torch.onnx.export(
                model,
                (sample,),
                target,
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
            )
    return target
