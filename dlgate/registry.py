"""The check registry: a check is a typed function registered under a stable id.

    @check("data.class_counts")
    def class_counts(ctx: Context) -> Finding: ...

The id is `<stage>.<name>`; the stage is one of `report.STAGES`. Checks of a stage run in
registration order (module import order in `dlgate.checks`, then definition order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlgate.report import STAGES, Finding

if TYPE_CHECKING:
    from dlgate.context import Context

CheckFn = Callable[["Context"], Finding]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    stage: str
    func: CheckFn

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def doc(self) -> str:
        return (self.func.__doc__ or "").strip().splitlines()[0] if self.func.__doc__ else ""


_CHECKS: dict[str, CheckSpec] = {}


def check(check_id: str) -> Callable[[CheckFn], CheckFn]:
    stage, _, name = check_id.partition(".")
    if stage not in STAGES or not name:
        raise ValueError(f"check id {check_id!r} must be '<stage>.<name>' with a stage in {STAGES}")

    def register(func: CheckFn) -> CheckFn:
        existing = _CHECKS.get(check_id)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f"check id {check_id!r} registered twice")
        _CHECKS[check_id] = CheckSpec(check_id, stage, func)
        return func

    return register


def checks_for(stage: str) -> list[CheckSpec]:
    import dlgate.checks  # noqa: F401  (import registers every built-in check)

    return [spec for spec in _CHECKS.values() if spec.stage == stage]


def all_checks() -> list[CheckSpec]:
    import dlgate.checks  # noqa: F401

    return list(_CHECKS.values())
