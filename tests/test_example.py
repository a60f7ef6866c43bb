"""The bundled example (examples/digits): its data, its config, and a real training run
evaluated through the deployed inference path."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from PIL import Image

from dlgate.config import load_text
from dlgate.export import read_contract
from dlgate.inference import Deployed, Prediction

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits"
SHA = "feedface" * 5


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pngs(split: str, root: Path = EXAMPLE / "data") -> list[Path]:
    return sorted((root / split).glob("*/*.png"))


def accuracy(predictions: list[Prediction]) -> float:
    right = sum(p.label == Path(p.sample).parent.name for p in predictions)
    return right / len(predictions)


# --- the committed data --------------------------------------------------------------------


def test_data_is_the_digits_split_into_train_and_real_world() -> None:
    train, real_world = pngs("train"), pngs("real_world")
    assert len(train) + len(real_world) == 1797
    assert len(real_world) == 360
    assert not {p.name for p in train} & {p.name for p in real_world}  # no leakage
    # Stratified: every class keeps its share (about 20%) in the held-out split.
    total = Counter(p.parent.name for p in train + real_world)
    held = Counter(p.parent.name for p in real_world)
    assert sorted(total) == [str(d) for d in range(10)]
    for digit, n in total.items():
        assert abs(held[digit] - 0.2 * n) <= 1
    with Image.open(real_world[0]) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "L", (8, 8))


@pytest.mark.slow  # imports scikit-learn and writes 1,797 files
def test_make_data_reproduces_the_committed_files(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    make_data = load_module("digits_make_data", EXAMPLE / "make_data.py")
    make_data.main(["--out", str(tmp_path)])
    for split in ("train", "real_world"):
        made, committed = pngs(split, tmp_path), pngs(split)
        assert [p.relative_to(tmp_path) for p in made] == [
            p.relative_to(EXAMPLE / "data") for p in committed
        ]
        for a, b in zip(made, committed, strict=True):
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), b


def test_config_is_valid() -> None:
    config = load_text((EXAMPLE / "dlgate.yml").read_text(encoding="utf-8"), "dlgate.yml")
    assert "{out}" in config.pipeline.train
    assert config.paths.data == ("data/**",)
    module_name, func = config.pipeline.model.split(":")
    model = getattr(load_module(module_name, EXAMPLE / f"{module_name}.py"), func)()
    torch = pytest.importorskip("torch")
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


# --- training ------------------------------------------------------------------------------


def train(repo: Path, out: Path, *args: str) -> float:
    """Run the example's own training command; returns its wall time."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "train.py", "--out", str(out), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DLGATE_GIT_SHA": SHA},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example, as a user's repository would hold it."""
    copy = tmp_path_factory.mktemp("digits") / "repo"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "out"))
    return copy


@pytest.fixture(scope="module")
def trained(repo: Path) -> Path:
    out = repo / "out"
    train(repo, out)
    return out


@pytest.mark.slow
def test_training_writes_the_model_weights_and_history(trained: Path) -> None:
    history = json.loads((trained / "history.json").read_text())
    assert history["epochs"] == len(history["loss"]) > 1
    assert history["seed"] == 0
    assert history["loss"][-1] < history["loss"][0] / 5
    assert (trained / "model.pt").stat().st_size > 0
    contract = read_contract(trained / "model.onnx")
    assert contract.classes == tuple(str(d) for d in range(10))
    assert (contract.color_mode, contract.resize, contract.input_shape) == (
        "L",
        "exact",
        (None, 1, 8, 8),
    )
    assert contract.git_sha == SHA


@pytest.mark.slow
def test_deployed_model_is_accurate_on_real_world_samples(trained: Path, repo: Path) -> None:
    predictions = Deployed.load(trained / "model.onnx").predict(pngs("real_world", repo / "data"))
    assert accuracy(predictions) >= 0.90


@pytest.mark.slow
def test_a_preprocessing_mismatch_costs_accuracy(trained: Path, repo: Path) -> None:
    # Deployment that skips the mean subtraction training did: nothing raises, but the gate
    # must be able to see the loss.
    samples = pngs("real_world", repo / "data")
    right = Deployed.load(trained / "model.onnx").predict(samples)
    model = onnx.load(str(trained / "model.onnx"))
    for prop in model.metadata_props:
        if prop.key == "dlgate.preprocess.mean":
            prop.value = "[0.0]"
    onnx.save(model, str(trained / "no-mean.onnx"))
    wrong = Deployed.load(trained / "no-mean.onnx").predict(samples)
    assert sum(a.label != b.label for a, b in zip(right, wrong, strict=True)) >= 10
    assert accuracy(wrong) < accuracy(right) - 0.03


@pytest.mark.slow
def test_training_is_deterministic(repo: Path) -> None:
    torch = pytest.importorskip("torch")
    runs = [repo / "det-a", repo / "det-b"]
    for out in runs:
        train(repo, out, "--epochs", "2", "--seed", "3")
    a, b = (json.loads((out / "history.json").read_text()) for out in runs)
    assert a == b
    assert a["seed"] == 3
    weights = [torch.load(out / "model.pt", weights_only=True) for out in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
