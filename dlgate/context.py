"""What a check sees: the revisions, the configuration, the output folder, shared products."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlgate.config import Config
from dlgate.report import BaselineInfo, Revision

T = TypeVar("T")


@dataclass
class Context:
    """One run's state, handed to every check.

    `repo` is a checkout of the head revision (the user's repository itself for a run on the
    working tree, else a temporary worktree). Products several checks share (the trained
    model, the loaded data set, the baseline) are computed once through `memo`.
    """

    repo: Path
    git_dir: Path  # the repository that holds the history (for git commands)
    head: Revision
    base: Revision | None
    merge_base: str | None
    config: Config
    out: Path  # the run's output folder: reports, artifacts
    kind: str = "pr"
    tracking_uri: str = ""
    progress: Callable[[str], None] = field(default=lambda _msg: None)
    baseline_info: BaselineInfo | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # headline metrics of the run
    # What a recorded run keeps in MLflow besides the report: JSON documents and files that
    # checks produced (per-sample predictions, dataset statistics, the ONNX model).
    record_json: dict[str, object] = field(default_factory=dict)
    record_files: dict[str, Path] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict)

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a shared product once per run. An exception is remembered too, so every
        check that needs a broken product reports the same error without recomputing it."""
        if key not in self._memo:
            try:
                self._memo[key] = (True, compute())
            except Exception as exc:
                self._memo[key] = (False, exc)
        ok, value = self._memo[key]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def artifact_dir(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path
