"""The training stage's wall time on the example next to the example's own full training.

Reference: `python train.py --out DIR` in a copy of the example, as its user runs it. Work:
the training stage of `dlgate run` on the same copy (a real git repository): the pipeline's
training command (the product every later stage judges), the smoke battery in one child
process, and the judging. Target (issue 4): the whole stage under 60 s on 2 cores.

    .venv/bin/python bench/bench_training.py [--repeat N] [--threads N]

`--threads` sets OMP_NUM_THREADS for both sides (default: unset, as a user runs it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import example_repo


def reference(repo: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "train.py", "--out", str(out)], cwd=repo, check=True, capture_output=True
    )
    return time.perf_counter() - start


def stage(repo: Path, out: Path) -> tuple[float, float]:
    """(the stage's wall time, the smoke battery's share of it)."""
    from dlgate.gate import Request, run

    start = time.perf_counter()
    report = run(Request(repo=repo, head="HEAD", stages=("training",), out=out))
    elapsed = time.perf_counter() - start
    checks = report.stage("training")
    assert checks is not None
    bad = [(c.id, c.message) for c in checks.checks if c.outcome.value not in ("pass", "skip")]
    if bad:
        sys.exit(f"the training stage did not pass on the unmodified example: {bad}")
    loss = report.check("training.loss")
    assert loss is not None
    return elapsed, float(loss.measurements["smoke_seconds"])  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        repo = root / "repo"
        example_repo(repo)
        refs, stages, smokes = [], [], []
        for i in range(args.repeat):  # interleaved, so machine noise hits both sides alike
            refs.append(reference(repo, root / f"ref{i}"))
            wall, smoke = stage(repo, root / f"stage{i}")
            stages.append(wall)
            smokes.append(smoke)
        ref, work, smoke = (statistics.median(v) for v in (refs, stages, smokes))
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        print(f"cores: {os.cpu_count()}, OMP_NUM_THREADS {threads}, medians of {args.repeat}")
        print(f"the example's full training (python train.py):        {ref:6.1f}s")
        print(f"dlgate's training stage (dlgate run --stage training): {work:6.1f}s")
        print(f"  the smoke battery (one child process, 15 checks):    {smoke:6.1f}s")
        print(f"  the rest (the pipeline's training command, judging): {work - smoke:6.1f}s")
        print(
            f"stage / training = {work / ref:.2f}x; target (the whole stage under 60 s): "
            f"{'met' if work < 60 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
