"""The model the pipeline makes: trained by the configured command, or a committed artifact.

Export and accuracy evaluate what the user's own pipeline produced, not a model dlgate trained
its own way. The training command runs once per run (memoized) in the head's checkout, in a
child process with the configured timeout; it starts when the run starts (a `prepare`r), so
that the stages before its first use (changes, data) overlap it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlgate import hooks
from dlgate.config import PipelineSettings
from dlgate.context import BACKGROUND, Context
from dlgate.errors import ConfigError, HookError
from dlgate.registry import prepare

_PRELOAD = ("torch",)  # what the framework child imports before its first call
_CHILD = "pipeline.framework_child"
_TRAINING = "pipeline.training"
PRODUCT = "pipeline.product"  # the key of the head's model among the run's products
R = TypeVar("R")


@dataclass(frozen=True)
class Product:
    onnx: Path
    weights: Path | None  # the framework's state_dict, where the pipeline writes one
    history: dict[str, Any]  # what the training wrote to history.json (losses, epochs)
    log: Path | None  # the training command's output
    trained: bool  # False: a committed artifact was taken


def product(ctx: Context) -> Product:
    """The head's model, made once per run."""
    return ctx.memo(PRODUCT, lambda: _make(ctx))


TRAINING_STAGES = ("training", "export", "accuracy")  # the stages that need the head's model


def trains(ctx: Context) -> bool:
    """Whether this run makes its model with the training command (a release may reuse its
    commit's run instead; a committed artifact needs none)."""
    pipeline = ctx.config.pipeline
    return bool(pipeline.train) and not pipeline.artifact and ctx.kind != "release"


@prepare(*TRAINING_STAGES)
def start_training(ctx: Context) -> None:
    if trains(ctx):
        ctx.prefetch(PRODUCT, lambda: _make(ctx), nice=0)  # the critical path


def start_framework_child(ctx: Context) -> None:
    """Start the run's child for framework code (`dlgate.framework`: the smoke battery, the
    eval-mode outputs parity compares with): it imports torch, once, at a low priority while
    the training command runs. Killed at the end of the run."""

    def start() -> hooks.Warm:
        child = hooks.Warm(ctx.repo, preload=_PRELOAD, nice=BACKGROUND, stop=ctx.stopping)
        ctx.on_close(child.close)
        return child

    ctx.memo(_CHILD, start)


def framework_call(
    ctx: Context,
    func: Callable[..., R],
    *args: Any,
    timeout: float,
    hook: str,
    quick: bool = False,
) -> R:
    """`func(*args)` in the run's framework child where one was started (a `quick` call
    before others waiting for it), else in a child of its own (as `hooks.call`)."""
    child: hooks.Warm | None = ctx.made(_CHILD)
    if child is None:
        return hooks.call(func, *args, cwd=ctx.repo, timeout=timeout, hook=hook)
    return child.call(func, *args, timeout=timeout, hook=hook, quick=quick)


@dataclass
class Training:
    """The run's training command as it runs: its process group once started, and whether
    it has ended (made the model, failed, or was stopped)."""

    group: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def started(self, group: int) -> None:
        self.group = group


def training(ctx: Context) -> Training:
    return ctx.memo(_TRAINING, Training)


def wait_for_idle_core(ctx: Context) -> bool:
    """Wait until the training command leaves a core idle (`cores.wait_for_idle_core`): work
    started then does not slow it down. False where it is not running (ended, not started,
    not measurable): work that needs its model waits for that instead."""
    from dlgate.cores import wait_for_idle_core as idle

    running = training(ctx)
    if running.group is None or running.ended.is_set():
        return False
    return idle(running.group, running.ended)


def _make(ctx: Context) -> Product:
    out = ctx.artifact_dir("model")
    running = training(ctx)
    try:
        return build(
            ctx.repo,
            ctx.config.pipeline,
            out,
            ctx.head.sha,
            stop=ctx.stopping,
            started=running.started,
        )
    finally:
        running.ended.set()


def build(
    repo: Path,
    settings: PipelineSettings,
    out: Path,
    sha: str,
    seed: int | None = None,
    stop: threading.Event | None = None,
    started: Callable[[int], None] | None = None,
) -> Product:
    """Train (or take the committed artifact). The command gets the seed (`pipeline.seed`
    unless `seed` is given, as for the noise floor's extra trainings) as `$DLGATE_SEED` and as
    the placeholder `{seed}`."""
    seed = settings.seed if seed is None else seed
    if settings.artifact:
        onnx = repo / settings.artifact
        if not onnx.is_file():
            raise ConfigError(
                f"pipeline.artifact = {settings.artifact!r} does not exist at {sha[:7]}; "
                "commit the exported model there or configure `pipeline.train`"
            )
        return Product(onnx=onnx, weights=None, history={}, log=None, trained=False)
    if not settings.train:
        raise ConfigError(
            "`pipeline` has neither `train` (a command that writes the model into {out}) nor "
            "`artifact` (a committed ONNX file); set one of them"
        )
    log = out / "train.log"
    hooks.command(
        settings.train,
        cwd=repo,
        timeout=settings.timeout,
        hook="pipeline.train",
        log=log,
        env={"DLGATE_GIT_SHA": sha, "DLGATE_SEED": str(seed)},
        substitutions={"out": str(out), "seed": str(seed)},
        stop=stop,
        started=started,
    )
    onnx = out / settings.onnx
    if not onnx.is_file():
        raise HookError(
            "pipeline.train",
            f"finished but wrote no {settings.onnx} into {{out}}; the command must write its "
            f"ONNX model to the folder given as {{out}} (see {log})",
            kind="failed",
        )
    weights = out / settings.weights
    history_file = out / "history.json"
    history: dict[str, Any] = {}
    if history_file.is_file():
        try:
            history = json.loads(history_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HookError("pipeline.train", f"history.json is not JSON: {exc}") from None
    return Product(
        onnx=onnx,
        weights=weights if weights.is_file() else None,
        history=history,
        log=log,
        trained=True,
    )
