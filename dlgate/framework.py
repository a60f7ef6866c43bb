"""The framework side (PyTorch), run inside the hook child process only.

Functions here are the targets of `dlgate.hooks.call`: they import the user's code from the
repository (the child's cwd) and return plain numpy/py values, so that nothing of torch or of
user code ever lives in the gate's own process.

`smoke(request)` is the training stage's single child (a spawn costs seconds of torch import):
it takes every smoke measurement of the user's model within a time budget — the initial loss,
gradients and one step, batch independence, a short seeded run (with activation statistics
before and after), a rerun for determinism, a zeroed-input run, a tiny-batch overfit, the
user's metric functions on crafted cases — and returns plain data per measurement ("part"),
which the `training.*` checks judge. A user hook that raises, returns the wrong type or runs
past its time is recorded, named, against the parts that needed it; the other parts go on.
"""

from __future__ import annotations

import importlib
import math
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlgate import adam

PARTS = ("init", "gradients", "independence", "run", "determinism", "zero_input", "overfit")


def load_target(spec: str, what: str) -> Callable[..., Any]:
    """Import `module:function` (relative to the repository root)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} = {spec!r} must look like 'module:function'")
    module = importlib.import_module(module_name)
    target = module
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{what} = {spec!r} is not callable")
    return target


def build_model(spec: str) -> Any:
    import torch

    model = load_target(spec, "pipeline.model")()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"pipeline.model = {spec!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if "torch._inductor" in sys.modules:  # the model compiles: its compiler must know too
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:  # the same switch without importing the compiler (1.3 s of imports, per process)
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def forward(spec: str, weights: str, inputs: np.ndarray) -> np.ndarray:
    """The trained model's outputs in eval mode, as the framework computes them."""
    import torch

    torch.set_num_threads(1)
    model = build_model(spec)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(inputs))
    return np.asarray(out.detach().cpu().numpy())


@dataclass(frozen=True)
class SmokeRequest:
    """What the battery needs; plain values only (it is pickled into the child)."""

    model: str  # pipeline.model, module:function
    inputs: np.ndarray | None = None  # None: call the `batches` hook
    labels: np.ndarray | None = None
    batches: str = ""  # module:function → (inputs, labels)
    loss: str = ""  # module:function(outputs, labels) → scalar tensor; "": cross-entropy
    optimizer: str = ""  # module:function(model) → torch.optim.Optimizer; "": Adam(lr)
    step: str = ""  # module:function(model, optimizer, loss_fn, inputs, labels) → loss
    seed: int = 0
    samples: int = 512  # most samples of the batch used
    batch_size: int = 64
    steps: int = 60
    lr: float = 1e-3
    overfit_samples: int = 16
    overfit_steps: int = 150
    independence_samples: int = 8
    determinism_steps: int = 5
    metrics: tuple[tuple[str, str], ...] = ()  # (name, module:function)
    metric_cases: tuple[tuple[str, np.ndarray, np.ndarray], ...] = ()  # (case, truth, second)
    budget: float = 60.0  # seconds for everything
    hook_timeout: float = 120.0  # seconds for any one call into user code
    progress: str = ""  # a file naming the hook running now (read after a hard timeout)


class BudgetSpent(BaseException):
    """Raised by the alarm; a BaseException so that user code's `except Exception` lets it by."""


class HookFailed(Exception):
    def __init__(self, hook: str, message: str, kind: str, details: str = "") -> None:
        super().__init__(message)
        self.record = {"hook": hook, "message": message, "kind": kind, "details": details}

    @classmethod
    def again(cls, record: dict[str, str]) -> HookFailed:
        return cls(record["hook"], record["message"], record["kind"], record["details"])


def smoke(request: SmokeRequest) -> dict[str, Any]:
    """Every smoke measurement: {"parts": {name: data | {"error": …} | {"skipped": …}},
    "metrics": {name: {"values": {case: value}} | {"error": …}}, "seconds": float}."""
    return _Battery(request).run()


class _Battery:
    def __init__(self, request: SmokeRequest) -> None:
        self.r = request
        self.start = time.monotonic()
        self.deadline = self.start + request.budget
        self.spent = False
        self.snapshot: list[Any] = []  # parameters after `determinism_steps` of the run
        self.run_losses: list[float] = []
        self.timed_out: dict[str, dict[str, str]] = {}  # hook → its timeout, recorded once

    # --- user code, named and timed --------------------------------------------------------

    def call(self, hook: str, func: Callable[..., Any], *args: Any) -> Any:
        if hook in self.timed_out:  # it hung once: every part that needs it says so at once
            raise HookFailed.again(self.timed_out[hook])
        if self.r.progress:
            Path(self.r.progress).write_text(hook, encoding="utf-8")
        limit = min(self.r.hook_timeout, self.deadline - time.monotonic())
        budget_bound = limit < self.r.hook_timeout
        try:
            with _alarm(limit):
                return func(*args)
        except BudgetSpent:
            if budget_bound:
                self.spent = True
                why = f"ran past the smoke checks' time budget of {self.r.budget:g}s"
                raise HookFailed(hook, f"{why} (`training.budget`)", "timeout") from None
            failed = HookFailed(
                hook,
                f"no result after {self.r.hook_timeout:g}s (the configured timeout, "
                "`pipeline.hook_timeout`)",
                "timeout",
            )
            self.timed_out[hook] = failed.record
            raise failed from None
        except Exception as exc:
            tb = traceback.format_exc(limit=-6)
            raise HookFailed(hook, f"{type(exc).__name__}: {exc}", "raised", tb) from None

    def forward(self, model: Any, x: Any) -> Any:
        import torch

        out = self.call("pipeline.model", model, x)
        if not isinstance(out, torch.Tensor):
            raise HookFailed(
                "pipeline.model",
                f"the model's forward returned {type(out).__name__}, not a tensor of outputs",
                "bad-return",
            )
        return out

    def loss(self, out: Any, y: Any) -> Any:
        import torch

        hook = "training.loss" if self.r.loss else "pipeline.model"
        value = self.call(hook, self.loss_fn, out, y)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise HookFailed(hook, f"returned {got}, not a scalar loss tensor", "bad-return")
        return value.reshape(())

    def fresh(self) -> Any:
        """The model as the factory builds it, seeded: every part starts from the same one."""
        import torch

        seed_everything(self.r.seed)
        model = self.call("pipeline.model", self.factory)
        if not isinstance(model, torch.nn.Module):
            raise HookFailed(
                "pipeline.model", f"returned {type(model).__name__}, not a torch.nn.Module",
                "bad-return",
            )  # fmt: skip
        return model.train()

    def optimizer(self, model: Any) -> Any:
        import torch

        if not self.r.optimizer:
            params = [p for p in model.parameters() if p.requires_grad]
            if self.r.step:  # the user's step may use any of a torch optimizer's API
                return torch.optim.Adam(params, self.r.lr)
            return adam.Adam(params, self.r.lr)  # the same update, without torch's compiler
        opt = self.call("training.optimizer", self.optimizer_fn, model)
        if not isinstance(opt, torch.optim.Optimizer):
            raise HookFailed(
                "training.optimizer",
                f"returned {type(opt).__name__}, not a torch.optim.Optimizer",
                "bad-return",
            )
        return opt

    def step(self, model: Any, opt: Any, x: Any, y: Any) -> float:
        if self.r.step:
            value = self.call("training.step", self.step_fn, model, opt, self.loss, x, y)
            return _scalar("training.step", value)
        opt.zero_grad()
        loss = self.loss(self.forward(model, x), y)
        self.call("pipeline.model", loss.backward)
        hook = "training.optimizer" if self.r.optimizer else "pipeline.model"
        self.call(hook, opt.step)
        return float(loss.detach())

    # --- the battery ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        with _alarm(self.r.budget):  # import and setup count against the budget too
            try:
                setup: dict[str, Any] | None = None
                try:
                    self.setup()
                except HookFailed as exc:
                    setup = {"error": exc.record}
                except BudgetSpent:
                    self.spent = True
                for name in PARTS:
                    # The rerun and the zeroed-input run compare with the short run: without
                    # it, they report what stopped it.
                    needs_run = (
                        name in ("determinism", "zero_input") and "losses" not in parts["run"]
                    )
                    parts[name] = setup or (parts["run"] if needs_run else self.part(name))
                for name, spec in self.r.metrics:
                    metrics[name] = self.metric(name, spec)
            except BudgetSpent:  # between two parts: whatever was not measured is skipped
                self.spent = True
        for name in PARTS:
            parts.setdefault(name, self.skipped())
        for name, _spec in self.r.metrics:
            metrics.setdefault(name, self.skipped())
        return {"parts": parts, "metrics": metrics, "seconds": time.monotonic() - self.start}

    def skipped(self) -> dict[str, Any]:
        return {
            "skipped": f"not measured: the smoke checks' time budget of {self.r.budget:g}s "
            "(`training.budget`) was spent before it"
        }

    def part(self, name: str) -> dict[str, Any]:
        if self.spent or time.monotonic() >= self.deadline:
            self.spent = True
            return self.skipped()
        started = time.monotonic()
        try:
            result: dict[str, Any] = getattr(self, f"measure_{name}")()
            result["seconds"] = time.monotonic() - started
            return result
        except HookFailed as exc:
            return {"error": exc.record}
        except BudgetSpent:
            self.spent = True
            return self.skipped()
        except Exception as exc:  # dlgate's own code broke: say so, the other parts go on
            tb = traceback.format_exc(limit=-6)
            return {"error": {"hook": "", "message": f"{type(exc).__name__}: {exc}",
                              "kind": "bug", "details": tb}}  # fmt: skip

    def setup(self) -> None:
        import torch

        # One thread: small models gain nothing from more, and a loaded runner (2 cores shared
        # with the training command or other jobs) makes OpenMP threads spin-wait 10x slower.
        torch.set_num_threads(1)
        self.factory = self.call("pipeline.model", load_target, self.r.model, "pipeline.model")
        self.loss_fn: Callable[..., Any] = torch.nn.functional.cross_entropy
        if self.r.loss:
            self.loss_fn = self.call("training.loss", load_target, self.r.loss, "training.loss")
        if self.r.optimizer:
            hook = "training.optimizer"
            self.optimizer_fn = self.call(hook, load_target, self.r.optimizer, hook)
        if self.r.step:
            self.step_fn = self.call("training.step", load_target, self.r.step, "training.step")
        x, y = self.batch()
        # Shuffled once, seeded: the parts use prefixes of the batch, which must mix classes
        # even when the batch comes sorted by class (as folders list them).
        order = np.random.default_rng(self.r.seed).permutation(len(x))
        self.x = torch.from_numpy(np.ascontiguousarray(x[order]))
        self.y = torch.from_numpy(np.ascontiguousarray(y[order]))

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        if self.r.inputs is not None and self.r.labels is not None:
            return self.r.inputs, self.r.labels
        hook = "training.batches"
        value = self.call(hook, self.call(hook, load_target, self.r.batches, hook))
        x, y = _arrays(hook, value)
        if len(x) > self.r.samples:
            keep = np.sort(np.random.default_rng(self.r.seed).permutation(len(x))[: self.r.samples])
            x, y = x[keep], y[keep]
        return x, y

    def minibatches(self, n: int, steps: int, size: int) -> Iterator[Any]:
        """Seeded epochs of shuffled minibatches of the first `n` samples."""
        import torch

        gen = torch.Generator().manual_seed(self.r.seed)
        done = 0
        while done < steps:
            for idx in torch.split(torch.randperm(n, generator=gen), min(size, n)):
                if done == steps:
                    return
                yield idx
                done += 1

    def measure_init(self) -> dict[str, Any]:
        import torch

        model = self.fresh().eval()
        x, y = self.x[:256], self.y[:256]
        with torch.no_grad():
            out = self.forward(model, x)
            result: dict[str, Any] = {"output_shape": list(out.shape), "batch": len(x)}
            result.update(_output_stats(out))
            if out.dim() == 2 and out.shape[0] == len(x):
                try:  # a loss that breaks on these outputs: the output checks still judge them
                    result["loss"] = float(self.loss(out, y))
                except HookFailed as exc:
                    result["loss_error"] = exc.record
                counts = torch.bincount(y, minlength=out.shape[1]).double()
                result["label_counts"] = counts.tolist()
                result["final_bias"] = _final_bias(model, out.shape[1])
        return result

    def measure_gradients(self) -> dict[str, Any]:
        import torch

        model = self.fresh()
        x, y = self.x[: self.r.batch_size], self.y[: self.r.batch_size]
        model.zero_grad(set_to_none=True)
        loss = self.loss(self.forward(model, x), y)
        self.call("pipeline.model", loss.backward)
        params: dict[str, Any] = {}
        for name, p in model.named_parameters():
            entry: dict[str, Any] = {"shape": list(p.shape), "trainable": p.requires_grad}
            if p.grad is not None:
                g = p.grad.detach().double().abs()
                finite = bool(torch.isfinite(g).all())
                nonzero = g[g > 0]  # rows an embedding did not use are not a vanishing signal
                entry.update(
                    finite=finite,
                    grad_abs_max=float(g.max()) if finite else math.inf,
                    grad_abs_mean=float(nonzero.mean()) if finite and len(nonzero) else 0.0,
                    weight_abs_mean=float(p.detach().double().abs().mean()),
                )
            params[name] = entry
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = self.optimizer(model)
        self.step(model, opt, x, y)
        for name, p in model.named_parameters():
            params[name]["changed"] = not torch.equal(before[name], p.detach())
        return {"loss": float(loss.detach()), "params": params}

    def measure_independence(self) -> dict[str, Any]:
        """Outputs of sample i must not move when the other samples change (eval mode, where
        batch norm uses its running statistics): by gradient, and by swapping the others."""
        import torch

        n = min(self.r.independence_samples, len(self.x) // 2)
        if n < 2:
            return {"samples": n}
        model = self.fresh().eval()
        x = self.x[:n].clone()
        result: dict[str, Any] = {"samples": n}
        if x.is_floating_point():
            x.requires_grad_(True)
            out = self.forward(model, x)
            probe = torch.randn(out.shape[1:], generator=torch.Generator().manual_seed(1))
            leaks, own = [], []
            for i in (0, n - 1):
                target = (out[i] * probe).sum()
                (grad,) = self.call(
                    "pipeline.model",
                    lambda t=target: torch.autograd.grad(
                        t, x, retain_graph=True, allow_unused=True
                    ),
                )
                if grad is None:
                    break
                g = grad.detach().abs().flatten(1).max(1).values
                own.append(float(g[i]))
                leaks.append(float(torch.cat([g[:i], g[i + 1 :]]).max()))
            result["gradient"] = {"own": own, "leak": leaks} if leaks else None
        with torch.no_grad():
            base = self.forward(model, self.x[:n])
            other = self.x[:n].clone()
            other[1:] = self.x[n : 2 * n - 1]  # sample 0 stays, the others change
            moved = self.forward(model, other)
        scale = float(base[0].abs().max()) or 1.0
        result["swap"] = {"moved": float((moved[0] - base[0]).abs().max()), "scale": scale}
        return result

    def measure_run(self) -> dict[str, Any]:
        import torch

        model = self.fresh()
        opt = self.optimizer(model)
        before = _trace(self, model, self.x[:256])
        losses: list[float] = []
        grad_norms: list[float | None] = []
        n = len(self.x)
        for k, idx in enumerate(self.minibatches(n, self.r.steps, self.r.batch_size)):
            losses.append(self.step(model, opt, self.x[idx], self.y[idx]))
            grad_norms.append(_grad_norm(model))
            if k + 1 == self.r.determinism_steps:
                self.snapshot = [p.detach().clone() for p in model.parameters()]
            if not math.isfinite(losses[-1]):
                break
        self.run_losses = losses
        finite_params = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        after = _trace(self, model, self.x[:256])
        model.eval()
        with torch.no_grad():
            out = _output_stats(self.forward(model, self.x[:256]))
        return {"losses": losses, "grad_norms": grad_norms, "params_finite": finite_params,
                "outputs_after": out, "activations_before": before,
                "activations_after": after}  # fmt: skip

    def measure_determinism(self) -> dict[str, Any]:
        k = min(self.r.determinism_steps, len(self.run_losses))
        if not self.snapshot or k == 0:
            return {"steps": 0}
        model = self.fresh()
        opt = self.optimizer(model)
        losses = [
            self.step(model, opt, self.x[idx], self.y[idx])
            for idx in self.minibatches(len(self.x), k, self.r.batch_size)
        ]
        diffs = [abs(a - b) for a, b in zip(losses, self.run_losses[:k], strict=True)]
        param_diff = max(
            float((a - b.detach()).abs().max()) if a.numel() else 0.0
            for a, b in zip(self.snapshot, model.parameters(), strict=True)
        )
        return {"steps": k, "loss_diff": max(diffs), "param_diff": param_diff}

    def measure_zero_input(self) -> dict[str, Any]:
        import torch

        model = self.fresh()
        opt = self.optimizer(model)
        zeros = torch.zeros_like(self.x)
        losses = [
            self.step(model, opt, zeros[idx], self.y[idx])
            for idx in self.minibatches(len(self.x), self.r.steps, self.r.batch_size)
        ]
        return {"losses": losses, "real_losses": self.run_losses}

    def measure_overfit(self) -> dict[str, Any]:
        import torch

        n = min(self.r.overfit_samples, len(self.x))
        x, y = self.x[:n], self.y[:n]
        model = self.fresh()
        opt = self.optimizer(model)
        losses = [self.step(model, opt, x, y) for _ in range(self.r.overfit_steps)]
        model.eval()
        with torch.no_grad():
            out = self.forward(model, x)
            final = float(self.loss(out, y))
            correct = int((out.argmax(1) == y).sum()) if out.dim() == 2 else 0
        return {"samples": n, "steps": len(losses), "losses": losses[:: max(1, len(losses) // 30)],
                "final_loss": final, "correct": correct}  # fmt: skip

    def metric(self, name: str, spec: str) -> dict[str, Any]:
        hook = f"training.metrics.{name}"
        if self.spent:
            return self.skipped()
        try:
            func = self.call(hook, load_target, spec, hook)
            values = {}
            for case, truth, second in self.r.metric_cases:
                got = self.call(hook, func, truth.copy(), second.copy())
                values[case] = _plain_number(hook, got)
            return {"values": values}
        except HookFailed as exc:
            return {"error": exc.record}


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise BudgetSpent in this (the child's main) thread after `seconds`; nested alarms
    restore the outer one. A hang inside C code is left to the parent's hard timeout."""

    def ring(_signum: int, _frame: Any) -> None:
        raise BudgetSpent

    outer_handler = signal.signal(signal.SIGALRM, ring)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        left = outer_left - (time.monotonic() - started)
        if outer_left and left > 0:  # an outer alarm already due is not re-armed: spent
            signal.setitimer(signal.ITIMER_REAL, left)


def _arrays(hook: str, value: Any) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) from what the batches hook returned, or why it is the wrong type."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise HookFailed(
            hook, f"returned {type(value).__name__}, not a pair (inputs, labels)", "bad-return"
        )
    try:
        x, y = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for v in value)
    except Exception as exc:
        raise HookFailed(hook, f"returned arrays numpy cannot read: {exc}", "bad-return") from None
    if x.dtype.kind != "f" or y.dtype.kind not in "iu" or y.ndim != 1 or len(x) != len(y):
        raise HookFailed(
            hook,
            f"returned inputs {x.dtype}{list(x.shape)} and labels {y.dtype}{list(y.shape)}; "
            "expected float inputs (N, ...) and integer class indices (N,)",
            "bad-return",
        )
    if len(y) < 4:
        raise HookFailed(hook, f"returned {len(y)} samples; the smoke checks need 4 or more",
                         "bad-return")  # fmt: skip
    return x, y.astype(np.int64)


def _scalar(hook: str, value: Any) -> float:
    try:
        return float(value.detach()) if hasattr(value, "detach") else float(value)
    except (TypeError, ValueError, RuntimeError):
        raise HookFailed(
            hook, f"returned {type(value).__name__}, not the step's loss (a number)", "bad-return"
        ) from None


def _plain_number(hook: str, value: Any) -> float | list[float]:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim > 1:
        raise HookFailed(
            hook,
            f"returned {type(value).__name__} {array.dtype}{list(array.shape)}; "
            "expected a number (or one number per class)",
            "bad-return",
        )
    return float(array) if array.ndim == 0 else [float(v) for v in array]


def _output_stats(out: Any) -> dict[str, Any]:
    import torch

    o = out.detach().double()
    finite = torch.isfinite(o)
    stats: dict[str, Any] = {"finite": float(finite.double().mean()) if o.numel() else 1.0}
    if o.dim() == 2 and o.numel() and bool(finite.all()):
        stats.update(
            min=float(o.min()),
            max=float(o.max()),
            row_sum_error=float((o.sum(1) - 1).abs().max()),
            logsumexp_error=float(torch.logsumexp(o, 1).abs().max()),
        )
    return stats


def _final_bias(model: Any, classes: int) -> list[float] | None:
    """The bias of the last layer with one bias per class (the logits' offsets)."""
    found = None
    for module in model.modules():
        bias = getattr(module, "bias", None)
        if bias is not None and hasattr(bias, "numel") and bias.numel() == classes:
            found = bias
    return None if found is None else [float(b) for b in found.detach().flatten()]


def _grad_norm(model: Any) -> float | None:
    grads = [p.grad.detach().double().norm() for p in model.parameters() if p.grad is not None]
    return float(sum(g * g for g in grads) ** 0.5) if grads else None


_AFFINE = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "Bilinear", "LazyLinear")  # fmt: skip
# Linear maps too: a chain A → these → B is still one affine map.
_PASS = ("Flatten", "Unflatten", "Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
         "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
         "AdaptiveAvgPool3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d")  # fmt: skip
_DEAD = ("ReLU", "ReLU6")
_SATURATING = {"Sigmoid": (0.01, 0.99), "Tanh": (-0.99, 0.99), "Hardsigmoid": (0.0, 1.0),
               "Hardtanh": (-1.0, 1.0), "Softsign": (-0.99, 0.99)}  # fmt: skip


def _trace(battery: _Battery, model: Any, x: Any) -> dict[str, Any]:
    """One eval-mode forward with hooks on every module: dead-unit fraction of each ReLU,
    saturated fraction of each sigmoid/tanh, and affine layers that feed an affine layer with
    no nonlinearity between (a missing activation: the two collapse into one linear map)."""
    import torch

    produced: dict[int, tuple[Any, int, str]] = {}  # data_ptr → (tensor kept alive, version, by)
    chains: list[list[str]] = []
    dead: dict[str, float] = {}
    saturated: dict[str, float] = {}

    def source(t: Any) -> str | None:
        entry = produced.get(t.data_ptr())
        return entry[2] if entry and entry[1] == t._version else None

    def hook(module: Any, args: Any, out: Any) -> None:
        kind = type(module).__name__
        t_in = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if not isinstance(out, torch.Tensor) or t_in is None:
            return
        name = names[module]
        if kind in _AFFINE:
            by = source(t_in)
            if by is not None:
                chains.append([by, name])
            produced[out.data_ptr()] = (out, out._version, name)
        elif kind in _PASS:
            by = source(t_in)
            if by is not None:
                produced[out.data_ptr()] = (out, out._version, by)
        if kind in _DEAD and out.dim() >= 2:
            alive = (out > 0).transpose(0, 1).flatten(1).any(1)
            dead[name] = float((~alive).double().mean())
        if kind in _SATURATING:
            low, high = _SATURATING[kind]
            saturated[name] = float(((out <= low) | (out >= high)).double().mean())

    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            battery.forward(model, x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {"chains": chains, "dead": dead, "saturated": saturated}
