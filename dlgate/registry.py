"""The check registry: a check is a typed function registered under a stable id.

    @check("data.class_counts")
    def class_counts(ctx: Context) -> Finding: ...

The id is `<stage>.<name>`; the stage is one of `report.STAGES`. Checks of a stage run in
registration order (module import order in `dlgate.checks`, then definition order).

A product that waits on a child process (the training command, a child importing torch) can
be started when the run starts, so that it overlaps the stages before its use:

    @prepare("training", "export")
    def start_training(ctx: Context) -> None:
        ctx.prefetch("pipeline.product", lambda: make(ctx))

The gate calls every preparer of the stages it is going to run, before the first stage. A
preparer only starts work; what it starts is used, and its errors reported, by the checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlgate.report import STAGES, Finding

if TYPE_CHECKING:
    from dlgate.context import Context

CheckFn = Callable[["Context"], Finding]
PrepareFn = Callable[["Context"], None]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    stage: str
    func: CheckFn
    timed: bool = False  # it measures time: run it after every other check, alone

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def doc(self) -> str:
        return (self.func.__doc__ or "").strip().splitlines()[0] if self.func.__doc__ else ""


_CHECKS: dict[str, CheckSpec] = {}


def check(check_id: str, *, timed: bool = False) -> Callable[[CheckFn], CheckFn]:
    stage, _, name = check_id.partition(".")
    if stage not in STAGES or not name:
        raise ValueError(f"check id {check_id!r} must be '<stage>.<name>' with a stage in {STAGES}")

    def register(func: CheckFn) -> CheckFn:
        existing = _CHECKS.get(check_id)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f"check id {check_id!r} registered twice")
        _CHECKS[check_id] = CheckSpec(check_id, stage, func, timed)
        return func

    return register


_PREPARERS: dict[str, tuple[tuple[str, ...], PrepareFn]] = {}


def prepare(*stages: str) -> Callable[[PrepareFn], PrepareFn]:
    unknown = [s for s in stages if s not in STAGES]
    if not stages or unknown:
        raise ValueError(f"prepare needs stages among {STAGES}, got {stages}")

    def register(func: PrepareFn) -> PrepareFn:
        _PREPARERS[f"{func.__module__}.{func.__qualname__}"] = (stages, func)
        return func

    return register


def preparers_for(stages: tuple[str, ...]) -> list[PrepareFn]:
    """The preparers of any of `stages`, each once, in registration order."""
    import dlgate.checks  # noqa: F401

    return [func for wanted, func in _PREPARERS.values() if set(wanted) & set(stages)]


def checks_for(stage: str) -> list[CheckSpec]:
    import dlgate.checks  # noqa: F401  (import registers every built-in check)

    return [spec for spec in _CHECKS.values() if spec.stage == stage]


def all_checks() -> list[CheckSpec]:
    import dlgate.checks  # noqa: F401

    return list(_CHECKS.values())
