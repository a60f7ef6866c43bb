"""`dlgate release`: record a release run (deepened by the accuracy issue)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlgate import gate
from dlgate.report import Report


def release(
    repo: Path,
    tag: str,
    common: dict[str, Any],
    progress: Callable[[str], None],
    finish: Callable[[Report], int],
) -> int:
    report = gate.run(gate.Request(head=tag, kind="release", ref=tag, **common), progress)
    return finish(report)
