"""onnxruntime batched inference vs eager PyTorch one sample at a time, on the bundled
example's real-world samples (examples/digits/data/real_world): what deploying the exported
model buys, as one ratio.

    python bench/bench_export.py [--model DIR] [--repeats N]

DIR holds model.onnx and model.pt as the example's train.py writes them; without it the
example is trained first (about 15 s). Both sides get the same inputs, decoded once through
the model's inference contract, and the same number of threads (`--threads`, default 1:
on a busy machine, torch's thread pool makes per-sample calls erratically slow, which would
flatter the ratio); their outputs are compared before anything is timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from dlgate.inference import Deployed

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits"


def train(out: Path) -> None:
    subprocess.run(
        [sys.executable, "train.py", "--out", str(out)],
        cwd=EXAMPLE,
        check=True,
        capture_output=True,
        env={**os.environ, "DLGATE_GIT_SHA": "bench"},
    )


def example_model(weights: Path) -> Any:
    spec = importlib.util.spec_from_file_location("digits_model", EXAMPLE / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: first calls allocate and plan
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="folder with model.onnx and model.pt")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="for torch and onnxruntime")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlgate-bench-") as tmp:
        folder = args.model or Path(tmp)
        if args.model is None:
            train(folder)
        deployed = Deployed.load(folder / "model.onnx")
        files = sorted((EXAMPLE / "data" / "real_world").glob("*/*.png"))
        x = np.stack([deployed.decode(f) for f in files])
        model = example_model(folder / "model.pt")
        xt = torch.from_numpy(x)
        torch.set_num_threads(args.threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(folder / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feed = {deployed.contract.input_name: x}

        def eager_per_sample() -> list[Any]:
            with torch.no_grad():
                return [model(xt[i : i + 1]) for i in range(len(xt))]

        def onnxruntime_batched() -> object:
            return session.run(None, feed)

        with torch.no_grad():
            expected = model(xt).numpy()
        got = np.asarray(session.run(None, feed)[0])
        diff = float(np.abs(got - expected).max())
        assert diff < 1e-4, f"outputs differ by {diff}: the timing would compare different models"
        eager = median_seconds(eager_per_sample, args.repeats)
        batched = median_seconds(onnxruntime_batched, args.repeats)
    n = len(x)
    print(f"{n} real-world samples of examples/digits, {args.repeats} timed runs each (median)")
    print(
        f"  torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s) "
        f"each; outputs agree within {diff:.1g}"
    )
    print(
        f"  eager PyTorch, one sample at a time : {eager * 1e3:8.2f} ms "
        f"({eager / n * 1e6:6.1f} µs/sample)"
    )
    print(
        f"  onnxruntime, one batch of {n}      : {batched * 1e3:8.2f} ms "
        f"({batched / n * 1e6:6.1f} µs/sample)"
    )
    print(f"ratio: onnxruntime batched is {eager / batched:.1f}x faster than eager per-sample")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
