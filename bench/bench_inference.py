"""The deployed inference path end to end next to raw onnxruntime, on 10,000 sample files.

Work: `Deployed.predict_many(paths)` — read each PNG file, decode it, preprocess it from the
ONNX metadata, run onnxruntime, turn the outputs into labels and probabilities. Reference: the
same onnxruntime session run on the same samples already decoded and normalised in memory,
in the same batches. Target (issue 6): the whole path within 2x of raw inference.

The samples are the example's 1,797 real digits (8x8 PNG), replicated as separate files to
10,000. The model is the example's CNN with the example's preprocessing (untrained weights:
the cost of inference does not depend on them, and the benchmark needs no training run).

    .venv/bin/python bench/bench_inference.py [--samples N] [--repeat N] [--batch N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
TARGET = 2.0


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def export_model(out: Path) -> Path:
    """The example's CNN exported with the example's preprocessing contract."""
    import torch

    sys.path.insert(0, str(EXAMPLE))
    train = _module("digits_train", EXAMPLE / "train.py")
    torch.manual_seed(0)
    model = train.build_model()
    path: Path = train.to_onnx(
        model,
        torch.zeros(2, 1, 8, 8),
        out / "model.onnx",
        classes=train.CLASSES,
        preprocessing=train.PREPROCESSING,
        git_sha="0" * 40,
    )
    return path


def replicate(out: Path, n: int) -> list[Path]:
    """`n` sample files: the example's digits, copied round-robin into class folders."""
    sources = sorted((EXAMPLE / "data").glob("*/*/*.png"))
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        dst = out / src.parent.name / f"{i:05d}-{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        paths.append(dst)
    return paths


def best_of(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Wall times of each run, interleaved so that a busy moment hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)

    from dlgate.inference import Deployed

    with tempfile.TemporaryDirectory(prefix="dlgate-bench-inference-") as tmp:
        root = Path(tmp)
        onnx_path = export_model(root)
        paths = replicate(root / "samples", args.samples)
        deployed = Deployed.load(onnx_path)
        decoded = np.stack([deployed.decode(p) for p in paths])  # normalised, as the model takes
        session, contract = deployed.session, deployed.contract

        def raw() -> None:
            for start in range(0, len(decoded), args.batch):
                session.run(
                    [contract.output_name],
                    {contract.input_name: decoded[start : start + args.batch]},
                )

        def whole() -> None:
            results = deployed.predict_many(paths, batch_size=args.batch)
            assert len(results) == len(paths)

        check = deployed.predict(paths[:500], batch_size=args.batch)
        reference = deployed.probabilities(decoded[:500])
        got = np.array([p.probabilities for p in check])
        assert np.allclose(got, reference), "the path and the raw session disagree"

        names = [os.fspath(p) for p in paths]

        def read() -> None:  # only the files' bytes: open, read, close, nothing else
            for name in names:
                fd = os.open(name, os.O_RDONLY)
                os.read(fd, 1 << 16)
                os.close(fd)

        times = best_of(args.repeat, {"raw": raw, "whole": whole, "read": read})
    raw_s, whole_s = min(times["raw"]), min(times["whole"])
    ratio = whole_s / raw_s
    n = args.samples
    print(f"samples: {n} PNG files ({args.batch} per batch), best of {args.repeat}")
    print(
        f"raw onnxruntime on decoded arrays: {raw_s:.3f}s ({raw_s / n * 1e6:.1f} µs/sample; "
        f"median {statistics.median(times['raw']):.3f}s)"
    )
    print(
        f"whole inference path from files:  {whole_s:.3f}s ({whole_s / n * 1e6:.1f} µs/sample; "
        f"median {statistics.median(times['whole']):.3f}s)"
    )
    read_s = min(times["read"])
    print(
        f"reading the files alone:           {read_s:.3f}s ({read_s / n * 1e6:.1f} µs/sample, "
        f"{read_s / raw_s:.2f}x raw inference; onnxruntime keeps every core busy)"
    )
    verdict = "within" if ratio <= TARGET else "ABOVE"
    print(f"ratio: {ratio:.2f}x ({verdict} the {TARGET:g}x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
