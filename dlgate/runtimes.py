"""The configurations a model is deployed in — a precision on an execution provider — and
onnxruntime sessions that run each of them exactly as configured, or say why they cannot.

A configuration this machine cannot run (no CUDA build of onnxruntime, no GPU, a provider
that silently fell back to CPU) is skipped with the reason, never reported as run: a CUDA
"pass" that ran on the CPU would be a false pass.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from dlgate.errors import DlgateError

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Configuration:
    precision: Precision
    provider: str
    model: Path | None  # the file of this precision; None when it could not be made
    skip: str = ""  # why this machine cannot run it (not a verdict on the model)
    broken: str = ""  # why the model of this precision could not be made (a failure)

    @property
    def key(self) -> str:
        """Stable name in measurements and recorded facts: `fp16/CUDAExecutionProvider`."""
        return f"{self.precision}/{self.provider}"

    @property
    def label(self) -> str:
        """Short name for people: `fp16 · CUDA`."""
        return f"{self.precision} · {short(self.provider)}"


def short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def unavailable(provider: str) -> str:
    """Why `provider` cannot run here ("" when this onnxruntime has it)."""
    available = ort.get_available_providers()
    if provider in available:
        return ""
    hint = (
        "; install onnxruntime-gpu on a machine with an NVIDIA GPU to check it"
        if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        else ""
    )
    return (
        f"{provider} is not available in this onnxruntime ({ort.__version__}, "
        f"{ort.get_device()} build; it has {', '.join(available)}){hint}"
    )


class Unusable(DlgateError):
    """A configuration that cannot run as configured. `skip`: the machine lacks something (the
    provider fell back to CPU); otherwise the model itself does not load."""

    def __init__(self, message: str, *, skip: bool) -> None:
        self.skip = skip
        super().__init__(message)


class BatchFailure(DlgateError):
    """onnxruntime failed on a batch of `batch` samples."""

    def __init__(self, batch: int, message: str) -> None:
        self.batch = batch
        super().__init__(message)


def open_session(model: Path, provider: str) -> ort.InferenceSession:
    """A session on `provider` (CPU as the fallback for nodes it lacks); `Unusable` when it
    cannot load, or when onnxruntime dropped `provider` altogether."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings go to stderr, not to the report
    chain = [provider] if provider == CPU else [provider, CPU]
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=chain)
    except Exception as exc:  # onnxruntime's error classes share no base but Exception
        raise Unusable(
            f"onnxruntime cannot load {model.name} on {short(provider)}: {_first_line(exc)}",
            skip=False,
        ) from None
    used = session.get_providers()
    if not used or used[0] != provider:
        raise Unusable(
            f"onnxruntime fell back to {', '.join(map(short, used))}: {provider} could not be "
            "initialised here (no usable GPU, driver or CUDA libraries)",
            skip=True,
        )
    return session


def fixed_batch(session: ort.InferenceSession) -> int | None:
    """The batch size the graph's input is fixed to, or None when the batch axis is dynamic."""
    first = session.get_inputs()[0].shape[0] if session.get_inputs()[0].shape else None
    return first if isinstance(first, int) else None


def run(session: ort.InferenceSession, inputs: np.ndarray, batch: int) -> np.ndarray:
    """Outputs for every sample, `batch` at a time (the last batch may be smaller)."""
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        try:
            (raw, *_rest) = session.run(None, {name: chunk})
        except Exception as exc:  # onnxruntime's error classes share no base but Exception
            raise BatchFailure(
                len(chunk),
                f"onnxruntime cannot run a batch of {len(chunk)}: {_first_line(exc)}",
            ) from None
        out.append(np.asarray(raw, dtype=np.float64))
    return np.concatenate(out)


def latency(session: ort.InferenceSession, inputs: np.ndarray, batch: int, repeats: int) -> float:
    """Median seconds per sample of one run on a batch of `batch` samples (after a warm-up)."""
    name = session.get_inputs()[0].name
    chunk = np.resize(inputs, (batch, *inputs.shape[1:])).astype(inputs.dtype)
    session.run(None, {name: chunk})  # the first run allocates and plans: not representative
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: chunk})
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:3])[:400] if lines else type(exc).__name__


__all__ = [
    "CPU",
    "PRECISIONS",
    "BatchFailure",
    "Configuration",
    "Precision",
    "Unusable",
    "fixed_batch",
    "latency",
    "open_session",
    "run",
    "short",
    "unavailable",
]
