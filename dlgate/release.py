"""`dlgate release --tag TAG`: record a release and compare it with the previous one.

The release run is recorded in MLflow (kind `release`, tagged with the tag). When the tagged
commit already has a run — its main-branch baseline, usually — that run's predictions and model
are reused instead of training again (only the accuracy stage runs, unless `--stage` says
otherwise), and that run is tagged `dlgate.release = TAG`. The check `accuracy.release`
compares the release with the previous one and fails on a regression beyond
`accuracy.release.tolerance`; it renders the accuracy-per-release table (printed here, and
`accuracy/releases.md`) and the plot (`accuracy/releases.png`). A passing release's model
becomes a version of the registered model, tagged with the release (see `gate._register`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlgate import gate, git
from dlgate.errors import UsageError
from dlgate.report import Report

REUSABLE = ("baseline", "merge_group", "release")


def release(
    repo: Path,
    tag: str,
    common: dict[str, Any],
    progress: Callable[[str], None],
    finish: Callable[[Report], int],
) -> int:
    from dlgate.baselines import Store, default_tracking_uri

    git_dir = git.toplevel(repo)
    name = tag.removeprefix("refs/tags/")
    if git.git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/tags/{name}", check=False) == "":
        raise UsageError(
            f"{git_dir} has no tag {name!r}; tag the release commit first (`git tag {name} "
            "COMMIT`), or fetch the tags (`git fetch --tags`)"
        )
    sha = git.resolve(git_dir, f"refs/tags/{name}")
    stages: tuple[str, ...] = common.get("stages") or ()
    if not stages:
        config = gate.load_config(git_dir, sha, common.get("config_file"))
        uri = common.get("tracking_uri") or config.baseline.tracking_uri
        with Store.open(uri or default_tracking_uri(git_dir), config.baseline.experiment) as store:
            existing = store.run_for(sha, kinds=REUSABLE)
        if existing is not None:
            progress(
                f"{name} is {sha[:7]}, which has a run already ({existing.label}): reusing its "
                "predictions and model (the accuracy stage only)"
            )
            stages = ("accuracy",)
    out = common.get("out") or git_dir / ".dlgate" / "runs" / f"release-{sha[:7]}"
    request = gate.Request(
        **{**common, "stages": stages, "out": out},
        head=f"refs/tags/{name}",
        kind="release",
        ref=name,
    )
    report = gate.run(request, progress)
    code = finish(report)
    result = report.check("accuracy.release")
    table = out / "accuracy" / "releases.md"
    if result is not None and table.is_file():
        sys.stdout.write(f"\naccuracy per release:\n{table.read_text(encoding='utf-8')}")
        sys.stdout.write(f"plot: {out / 'accuracy' / 'releases.png'}\n")
    return code
