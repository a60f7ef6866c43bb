"""The smoke battery's default optimizer: Adam's update, without `torch.optim`.

Constructing any `torch.optim` optimizer imports torch's compiler stack on first use (in
torch 2.13, about a second of CPU and 200 MB in the framework child). The battery's default
needs none of it: this is `torch.optim.Adam`'s single-tensor algorithm with its defaults
(betas 0.9/0.999, eps 1e-8, no weight decay), behind the two methods the battery calls.
A configured `training.optimizer` or `training.step` hook gets a real torch optimizer.
Runs inside the framework child only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

BETAS = (0.9, 0.999)
EPS = 1e-8


class Adam:
    def __init__(self, params: Iterable[Any], lr: float) -> None:
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        beta1, beta2 = BETAS
        self.steps += 1
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        with torch.no_grad():
            for p, avg, avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
                if p.grad is None:
                    continue
                grad = p.grad
                avg.lerp_(grad, 1 - beta1)
                avg_sq.mul_(beta2).addcmul_(grad, grad.conj(), value=1 - beta2)
                denom = (avg_sq.sqrt() / correction2_sqrt).add_(EPS)
                p.addcdiv_(avg, denom, value=-self.lr / correction1)
