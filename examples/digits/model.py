"""The digits classifier: a small CNN for 1x8x8 grayscale inputs, 10 classes, logits out."""

from __future__ import annotations

from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),  # 16 x 8 x 8
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),  # 32 x 8 x 8
        nn.ReLU(),
        nn.MaxPool2d(2),  # 32 x 4 x 4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),  # logits; the deployed path applies the softmax
    )
