"""The smoke measurements of the training stage: taken once per run, judged by many checks.

One child process (`dlgate.framework.smoke`) measures everything the `training.*` checks
judge — spawning one costs seconds of torch import — and the result is memoized on the
context. The child starts with the run (importing torch while the training command runs) and
gets its request once the trained model's contract can decode the batch. A check takes its
part with `part(ctx, name)`: the part's plain data, or a `Finding`
to return instead (skip when no model factory is configured). A part that a user hook broke
raises `HookError` naming the hook, so the runner reports an `error` quoting it.

The battery need not wait for the training command: `_Guess` decodes the batch with the
contract of the baseline's model (recorded in MLflow with the baseline run) and, once the
training leaves a core idle (never beside a training that wants every core: that would slow
it more than the battery gains), has the child measure that request. When the head's model
exists, its own request is made; where it is the same request (a PR that keeps the
preprocessing and the classes), the result is the one already measured. Otherwise the guess
is dropped and the battery runs on the head's batch.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from dlgate import framework
from dlgate.context import Context, fulfil
from dlgate.errors import HookError
from dlgate.pipeline import (
    PRODUCT,
    framework_call,
    start_framework_child,
    trains,
    wait_for_idle_core,
)
from dlgate.registry import prepare
from dlgate.report import Finding, Outcome

_GRACE_S = 15.0  # past the budget, before the child is killed (imports, a hang in C code)
_GUESS = "training.smoke.guess"


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
        if _needs_contract(ctx) and trains(ctx) and not ctx.made(PRODUCT):
            guess = ctx.memo(_GUESS, _Guess)
            ctx.prefetch(f"{_GUESS}.run", lambda: guess.run(ctx))
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


def _needs_contract(ctx: Context) -> bool:
    """Whether the battery's batch is decoded by the trained model's contract (rather than
    made by the user's `training.batches` hook)."""
    from dlgate.checks.loss import TrainingSettings

    return not ctx.config.get(TrainingSettings).batches


def _measure(ctx: Context) -> dict[str, Any]:
    from dlgate.checks.loss import training_batch

    if not _needs_contract(ctx):
        return _call(ctx, _request(ctx, None, None))
    request = _request(ctx, *training_batch(ctx))
    guess: _Guess | None = ctx.made(_GUESS)
    guessed, note = guess.result_for(request) if guess is not None else (None, "")
    if note:
        ctx.progress(f"training: {note}")
    return guessed if guessed is not None else _call(ctx, request)


def _request(
    ctx: Context, inputs: np.ndarray | None, labels: np.ndarray | None
) -> framework.SmokeRequest:
    from dlgate.checks.loss import TrainingSettings
    from dlgate.checks.metrics import cases, classes_for_cases

    settings = ctx.config.get(TrainingSettings)
    pipeline = ctx.config.pipeline
    progress = ctx.artifact_dir("training") / "smoke.progress"
    user_metrics = tuple((name, spec) for name, spec in settings.metrics.items() if spec)
    return framework.SmokeRequest(
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


def _call(ctx: Context, request: framework.SmokeRequest) -> dict[str, Any]:
    progress = Path(request.progress)
    progress.unlink(missing_ok=True)
    timeout = request.budget + _GRACE_S
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


class _Guess:
    """The battery measured ahead, while the training command runs, on the batch the
    baseline's model decodes (see the module's docstring). Its result stands only for exactly
    the head's request, and only whole: a part skipped for want of time, or a call stopped by
    its timeout, is measured again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True  # the head's own request is not known yet
        self._sent: Future[tuple[framework.SmokeRequest, dict[str, Any]]] | None = None

    def run(self, ctx: Context) -> None:
        request = self._guess(ctx)
        if request is None or not wait_for_idle_core(ctx):
            return
        with self._lock:
            if not self._open:  # the head's model came first: nothing to gain any more
                return
            sent = self._sent = Future()
        fulfil(sent, lambda: (request, _call(ctx, request)))

    def result_for(self, request: framework.SmokeRequest) -> tuple[dict[str, Any] | None, str]:
        """The guess's result if it was measured for `request` and is whole, else None; and
        what happened, for the run's progress ("" where no guess was measured). Waits for a
        guess the child is measuring (it would finish that before the next call anyway)."""
        with self._lock:
            self._open = False
            sent = self._sent
        if sent is None:
            return None, ""
        if sent.exception() is not None:
            return None, "the smoke battery measured ahead broke; measuring it again"
        guessed, result = sent.result()
        if not _same(guessed, request):
            return None, (
                "the smoke battery measured ahead decoded its batch with the baseline "
                "model's contract, which this model changes; measuring it again"
            )
        if not _whole(result):
            return None, "the smoke battery measured ahead ran out of time; measuring it again"
        return result, "the smoke battery measured during the training holds (the same batch)"

    @staticmethod
    def _guess(ctx: Context) -> framework.SmokeRequest | None:
        from dlgate.checks.accuracy import MODEL
        from dlgate.checks.loss import decoded_batch
        from dlgate.gate import recorded_baseline

        baseline = recorded_baseline(ctx)
        if baseline is None or baseline.download is None or ctx.made(PRODUCT):
            return None
        try:
            onnx = baseline.download(MODEL, ctx.artifact_dir("training") / "guess")
            return _request(ctx, *decoded_batch(ctx, onnx))
        except Exception:  # no model recorded, classes the split lacks: no guess to make
            return None


def _same(a: framework.SmokeRequest, b: framework.SmokeRequest) -> bool:
    """The same request: all but the batch comes from the configuration, the same for both."""
    return _equal(a.inputs, b.inputs) and _equal(a.labels, b.labels)


def _equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def _whole(result: dict[str, Any]) -> bool:
    """Nothing skipped for want of time, no call stopped by its timeout."""
    for group in ("parts", "metrics"):
        for data in result.get(group, {}).values():
            if "skipped" in data or (data.get("error") or {}).get("kind") == "timeout":
                return False
    return True
