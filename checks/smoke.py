"""The smoke measurements of the training stage: taken once per run, judged by many checks.

One child process (`dlgate.framework.smoke`) measures everything the `training.*` checks
judge — spawning one costs seconds of torch import — and the result is memoized on the
context. The child starts with the run (importing torch while the training command runs) and
gets its request once the trained model's contract can decode the batch. A check takes its
part with `part(ctx, name)`: the part's plain data, or a `Finding`
to return instead (skip when no model factory is configured). A part that a user hook broke
raises `HookError` naming the hook, so the runner reports an `error` quoting it.
"""

from __future__ import annotations

import math
from typing import Any

from dlgate import framework
from dlgate.context import Context
from dlgate.errors import HookError
from dlgate.pipeline import framework_call, start_framework_child
from dlgate.registry import prepare
from dlgate.report import Finding, Outcome

_GRACE_S = 15.0  # past the budget, before the child is killed (imports, a hang in C code)


def advice(*tries: str) -> str:
    """The "what to try" list of a finding: each line a symptom's likely cause → its fix."""
    return "**What to try** (likely cause → fix):\n" + "\n".join(f"- {t}" for t in tries)


def measured(ctx: Context) -> dict[str, Any]:
    """The whole battery's result, measured once per run."""
    return ctx.memo("training.smoke", lambda: _measure(ctx))


@prepare("training")
def start_battery(ctx: Context) -> None:
    if ctx.config.pipeline.model:
        start_framework_child(ctx)
        ctx.prefetch("training.smoke", lambda: _measure(ctx))


def part(ctx: Context, name: str) -> dict[str, Any] | Finding:
    """One smoke measurement (`framework.PARTS`), or the Finding to report instead."""
    if not ctx.config.pipeline.model:
        return Finding(
            Outcome.SKIP,
            "`pipeline.model` is not set: no model factory to smoke-train "
            "(set it to the module:function that builds your torch.nn.Module)",
        )
    return unwrap(measured(ctx)["parts"][name], name)


def unwrap(data: dict[str, Any], what: str) -> dict[str, Any]:
    """Measured data, or the error the child recorded instead, raised."""
    error = data.get("error")
    if error is not None:
        if error["hook"]:
            raise HookError(
                error["hook"], error["message"], kind=error["kind"], details=error["details"]
            )
        raise RuntimeError(f"the {what} measurement broke: {error['message']}\n{error['details']}")
    if "skipped" in data:
        raise HookError("training.budget", data["skipped"], kind="timeout")
    return data


def tail_mean(values: list[float], fraction: float = 0.1) -> float:
    """The mean of the last `fraction` of a loss curve (single steps are noisy)."""
    k = max(1, math.ceil(len(values) * fraction))
    tail = values[-k:]
    return sum(tail) / len(tail) if tail else math.nan


def _measure(ctx: Context) -> dict[str, Any]:
    from dlgate.checks.loss import TrainingSettings, training_batch
    from dlgate.checks.metrics import cases, classes_for_cases

    settings = ctx.config.get(TrainingSettings)
    pipeline = ctx.config.pipeline
    inputs = labels = None
    if pipeline.model and not settings.batches:
        inputs, labels = training_batch(ctx)
    progress = ctx.artifact_dir("training") / "smoke.progress"
    progress.unlink(missing_ok=True)
    user_metrics = tuple((name, spec) for name, spec in settings.metrics.items() if spec)
    request = framework.SmokeRequest(
        model=pipeline.model,
        inputs=inputs,
        labels=labels,
        batches=settings.batches,
        loss=settings.loss,
        optimizer=settings.optimizer,
        step=settings.step,
        seed=pipeline.seed,
        samples=settings.samples,
        batch_size=settings.batch_size,
        steps=settings.steps,
        lr=settings.lr,
        overfit_samples=settings.overfit.samples,
        overfit_steps=settings.overfit.steps,
        independence_samples=settings.independence.samples,
        determinism_steps=settings.determinism.steps,
        metrics=user_metrics,
        metric_cases=cases(classes_for_cases(ctx), settings.metric_inputs) if user_metrics else (),
        budget=settings.budget,
        hook_timeout=pipeline.hook_timeout,
        progress=str(progress),
    )
    timeout = settings.budget + _GRACE_S
    try:
        result: dict[str, Any] = framework_call(
            ctx, framework.smoke, request, timeout=timeout, hook="training"
        )
    except HookError as exc:
        # The child died or hung where its alarm could not reach (inside C code): name the
        # hook it was running, which it wrote down before each call.
        running = progress.read_text(encoding="utf-8") if progress.is_file() else ""
        if exc.kind == "timeout":
            raise HookError(
                running or "training.budget",
                f"no result after {timeout:g}s (`training.budget` + {_GRACE_S:g}s); stopped",
                kind="timeout",
            ) from None
        raise HookError(
            running or "pipeline.model", str(exc.args[0]).removeprefix("training: "),
            kind=exc.kind, details=exc.details,
        ) from None  # fmt: skip
    return result
