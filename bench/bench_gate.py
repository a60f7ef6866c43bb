"""The gate's wall time on the example PR next to the pipeline's own work, in one process.

Reference: the example's own training command plus evaluating its model on the real-world
samples (what the pipeline costs without dlgate). Work: `dlgate run` on a data-only PR whose
baseline is recorded (the usual case on a PR). Target (issue 2): the gate adds <= 50%.

The gate keeps its checkout of the head between runs (dlgate/checkout.py), as on a developer's
machine or a self-hosted runner; each repeat also runs it once with the checkout made afresh,
as the first run on a fresh machine (a hosted CI runner) does; that median is printed apart.

    .venv/bin/python bench/bench_gate.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import example_repo, git


def reference(repo: Path, out: Path) -> float:
    """The pipeline's own work: train, then evaluate the model on the real-world samples."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "train.py", "--out", str(out)], cwd=repo, check=True, capture_output=True
    )
    evaluate = (
        "import sys, pathlib\n"
        "from dlgate.inference import Deployed\n"
        "d = Deployed.load(sys.argv[1])\n"
        "files = sorted(pathlib.Path('data/real_world').glob('*/*.png'))\n"
        "preds = d.predict(files)\n"
        "acc = sum(p.label == f.parent.name for p, f in zip(preds, files)) / len(files)\n"
        "print(acc)\n"
    )
    subprocess.run(
        [sys.executable, "-c", evaluate, str(out / "model.onnx")],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def gate(repo: Path, uri: str, out: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlgate",
            "run",
            "--repo",
            str(repo),
            "--base",
            "main",
            "--head",
            "pr",
            "--tracking-uri",
            uri,
            "-q",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"the gate did not pass on the benchmark PR (exit {proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        root = Path(tmp)
        repo = root / "repo"
        example_repo(repo)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dlgate",
                "baseline",
                "--repo",
                str(repo),
                "--rev",
                "main",
                "--tracking-uri",
                uri,
                "-q",
                "--out",
                str(root / "baseline"),
            ],
            check=True,
            capture_output=True,
        )
        git(repo, "checkout", "-q", "-b", "pr")
        src = next((repo / "data/train/1").glob("*.png"))
        shutil.copy(src, repo / "data/train/1/bench-extra.png")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "more data")
        git(repo, "checkout", "-q", "main")
        refs, gates, colds = [], [], []
        for i in range(args.repeat):  # interleaved, so machine noise hits every side alike
            refs.append(reference(repo, root / f"ref{i}"))
            gates.append(gate(repo, uri, root / f"gate{i}"))
            shutil.rmtree(repo / ".git" / "dlgate" / "trees")
            git(repo, "worktree", "prune")
            colds.append(gate(repo, uri, root / f"cold{i}"))
        ref, work, cold = (statistics.median(x) for x in (refs, gates, colds))
        report = json.loads((root / f"gate{gates.index(work)}" / "report.json").read_text())
        stages = ", ".join(f"{s['name']} {s['duration_s']:.1f}s" for s in report["stages"])
        print(f"the median gate run, per stage: {stages}")
        ratio = work / ref
        print(f"pipeline alone (train + evaluate): median {ref:.1f}s of {args.repeat}")
        print(f"dlgate run on a data-only PR:      median {work:.1f}s of {args.repeat}")
        print(
            f"gate / pipeline = {ratio:.2f}x  (the gate adds {100 * (ratio - 1):.0f}%; "
            f"target <= 50%: {'met' if ratio <= 1.5 else 'NOT met'})"
        )
        print(
            f"a first run, its checkout made afresh (a hosted CI runner): median {cold:.1f}s = "
            f"{cold / ref:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
