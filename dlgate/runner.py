"""Runs checks so that the gate survives them: an exception becomes an `error` outcome."""

from __future__ import annotations

import contextlib
import time
import traceback

from dlgate.context import Context
from dlgate.errors import ConfigError, HookError
from dlgate.registry import CheckSpec, checks_for, preparers_for
from dlgate.report import CheckResult, Finding, Outcome, StageResult

STAGE_TITLES = {
    "changes": "What the pull request changes",
    "data": "The data set",
    "training": "Smoke training",
    "export": "The exported model",
    "accuracy": "End-to-end accuracy",
}


def run_check(spec: CheckSpec, ctx: Context) -> CheckResult:
    start = time.perf_counter()
    try:
        finding = spec.func(ctx)
        if not isinstance(finding, Finding):
            raise TypeError(f"check {spec.id} returned {type(finding).__name__}, not a Finding")
    except HookError as exc:
        # str(exc) starts with the hook's name already; say it once.
        text = str(exc.args[0]).removeprefix(f"{exc.hook}: ")
        finding = Finding(
            Outcome.ERROR,
            f"{exc.hook} {_HOOK_VERBS.get(exc.kind, 'failed')}: {_quote(text)}",
            measurements={"hook": exc.hook, "failure": exc.kind},
            details=_fence(exc.details),
        )
    except ConfigError as exc:
        finding = Finding(Outcome.ERROR, f"configuration: {exc}")
    except Exception as exc:
        tb = traceback.format_exc(limit=-8)
        finding = Finding(
            Outcome.ERROR,
            f"check {spec.id} broke: {type(exc).__name__}: {exc}",
            details=_fence(tb),
        )
    return CheckResult.from_finding(spec.id, finding, time.perf_counter() - start)


_HOOK_VERBS = {
    "raised": "raised",
    "timeout": "timed out",
    "crashed": "crashed",
    "bad-return": "returned the wrong type",
    "failed": "failed",
}


def _quote(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 500 else text[:500] + "…"


def _fence(text: str) -> str:
    return f"```\n{text.strip()}\n```" if text.strip() else ""


def prepare(ctx: Context, stages: tuple[str, ...]) -> None:
    """Start the background products of `stages` (see `registry.prepare`)."""
    for start in preparers_for(stages):
        # A preparer that breaks only loses the head start: the check that needs the product
        # computes it itself, and reports the same error in its place.
        with contextlib.suppress(Exception):
            start(ctx)


# The order stages run in, which is not the order they report in. The training stage's
# checks wait for the smoke battery, which starts only once the trained model exists; the
# export and accuracy stages need only the model and take a fraction of a second, so they run
# while the battery does. Checks that measure time run last, once nothing else runs.
RUN_ORDER = ("changes", "data", "export", "accuracy", "training")


def run_stages(stages: tuple[str, ...], ctx: Context) -> list[StageResult]:
    """Every check of `stages`, in `RUN_ORDER`, timed checks last; the results in report
    order (`stages`, then registration order)."""
    results: dict[str, dict[str, CheckResult]] = {name: {} for name in stages}
    timed: list[CheckSpec] = []
    for name in sorted(stages, key=RUN_ORDER.index):
        ctx.progress(f"stage {name}")
        for spec in checks_for(name):
            if spec.timed:
                timed.append(spec)
            else:
                results[name][spec.id] = _run(spec, ctx)
    if timed:
        ctx.settle()
    for spec in timed:
        results[spec.stage][spec.id] = _run(spec, ctx)
    return [
        _stage_result(name, [results[name][spec.id] for spec in checks_for(name)])
        for name in stages
    ]


def run_stage(name: str, ctx: Context) -> StageResult:
    """One stage's checks, in registration order."""
    (result,) = run_stages((name,), ctx)
    return result


def _run(spec: CheckSpec, ctx: Context) -> CheckResult:
    ctx.progress(f"{spec.stage}: {spec.name} …")
    result = run_check(spec, ctx)
    ctx.progress(f"{spec.stage}: {spec.name} {result.outcome.value} ({result.duration_s:.1f}s)")
    return result


def _stage_result(name: str, results: list[CheckResult]) -> StageResult:
    checks = tuple(results)
    return StageResult(
        name=name,
        checks=checks,
        title=stage_title(checks),
        summary=STAGE_TITLES.get(name, name),
        duration_s=round(sum(c.duration_s for c in checks), 3),  # its checks' own time
    )


def stage_title(checks: tuple[CheckResult, ...]) -> str:
    """One line for the check run's title: the worst finding first."""
    if not checks:
        return "no checks"
    worst = max(checks, key=lambda c: c.outcome.severity)
    counts: dict[str, int] = {}
    for c in checks:
        counts[c.outcome.value] = counts.get(c.outcome.value, 0) + 1
    tally = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    if worst.outcome in (Outcome.PASS, Outcome.SKIP):
        return f"{len(checks)} checks: {tally}"
    return f"{worst.message} ({tally})"[:1000]
