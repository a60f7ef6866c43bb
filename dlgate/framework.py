"""The framework side (PyTorch), run inside the hook child process only.

Functions here are the targets of `dlgate.hooks.call`: they import the user's model factory
from the repository (the child's cwd) and return plain numpy/py values, so that nothing of
torch or of user code ever lives in the gate's own process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np


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
    torch.use_deterministic_algorithms(True, warn_only=True)


def smoke_train(
    spec: str, inputs: np.ndarray, labels: np.ndarray, steps: int, lr: float, seed: int
) -> dict[str, Any]:
    """A short training run from scratch: the losses per step."""
    import torch

    seed_everything(seed)
    torch.set_num_threads(1)
    model = build_model(spec)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    x = torch.from_numpy(inputs)
    y = torch.from_numpy(labels).long()
    batch = min(64, len(x))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
    return {"losses": losses}


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
