"""`make demo`: gate two pull requests on a scratch copy of the bundled example.

1. copies examples/digits into demo/repo and commits it on `main`;
2. records main's baseline in the embedded MLflow store (demo/repo/.dlgate/);
3. branch `pr-data-only`: adds new training samples (shifted copies of existing digits);
4. branch `pr-data-and-code`: adds samples AND edits model.py;
5. gates both against main and prints each verdict and where the reports are.

Exits 0 when both verdicts are the expected ones (data-only passes, data+code is refused).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
DEMO = ROOT / "demo"
REPO = DEMO / "repo"


def sh(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def dlgate(*args: str) -> int:
    print(f"\n$ dlgate {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "dlgate", *args], check=False).returncode


def commit(message: str) -> None:
    sh("git", "add", "-A")
    sh("git", "commit", "-q", "-m", message)


def add_shifted_samples(count: int, tag: str) -> None:
    """New training samples: existing digits shifted by one pixel (a plausible data PR)."""
    train = REPO / "data" / "train"
    rng = np.random.default_rng(7)
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.png"))
        for src in rng.choice(files, size=count, replace=False):
            pixels = np.asarray(Image.open(src))
            shifted = np.roll(pixels, int(rng.choice([-1, 1])), axis=int(rng.integers(0, 2)))
            Image.fromarray(shifted).save(class_dir / f"{tag}-{src.stem}.png")


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    shutil.copytree(EXAMPLE, REPO, ignore=shutil.ignore_patterns("__pycache__", ".dlgate"))
    sh("git", "init", "-q", "-b", "main")
    sh("git", "config", "user.email", "demo@dlgate.invalid")
    sh("git", "config", "user.name", "dlgate demo")
    commit("The digits pipeline")

    rc = dlgate("baseline", "--repo", str(REPO), "--rev", "main", "-q")
    if rc != 0:
        print(f"demo: recording the baseline failed (exit {rc})")
        return 1

    sh("git", "checkout", "-q", "-b", "pr-data-only", "main")
    add_shifted_samples(3, "shifted")
    commit("Add 30 shifted training samples")

    sh("git", "checkout", "-q", "-b", "pr-data-and-code", "main")
    add_shifted_samples(2, "more")
    model = REPO / "model.py"
    model.write_text(model.read_text() + "\n# A wider head would go here.\n")
    commit("Add samples and touch the model")
    sh("git", "checkout", "-q", "main")

    verdicts = {}
    for branch in ("pr-data-only", "pr-data-and-code"):
        out = DEMO / "reports" / branch
        verdicts[branch] = dlgate(
            "run",
            "--repo",
            str(REPO),
            "--base",
            "main",
            "--head",
            branch,
            "-q",
            "--json",
            str(out / "report.json"),
            "--markdown",
            str(out / "report.md"),
        )
    print("\n== demo summary ==")
    for branch, rc in verdicts.items():
        word = {0: "passed", 1: "refused"}.get(rc, f"error (exit {rc})")
        print(f"{branch:18} {word:8} reports: {DEMO / 'reports' / branch}/report.{{json,md}}")
    print(f"scratch repository: {REPO}  (MLflow store: {REPO / '.dlgate'})")
    expected = {"pr-data-only": 0, "pr-data-and-code": 1}
    if verdicts != expected:
        print(f"demo: unexpected verdicts {verdicts}, expected {expected}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
