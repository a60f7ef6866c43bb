"""Train the digits classifier and export it for deployment.

    python train.py --out DIR [--epochs N] [--seed S]

Writes DIR/model.onnx (with the inference contract in its metadata, through
dlgate.export.to_onnx), DIR/model.pt (the state_dict) and DIR/history.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from model import build_model
from PIL import Image
from torch import nn

from dlgate.export import Preprocessing, to_onnx

DATA = Path(__file__).parent / "data" / "train"
CLASSES = tuple(str(d) for d in range(10))  # class folder names, in output order

# Preprocessing, declared once: training applies it, and the ONNX metadata records it so the
# deployed inference path applies the same.
SCALE = 1 / 255  # 0..255 pixels -> 0..1
MEAN = 0.3054  # of the training pixels after SCALE
STD = 0.3760
PREPROCESSING = Preprocessing(color_mode="L", mean=(MEAN,), std=(STD,), scale=SCALE, resize="exact")

LEARNING_RATE = 1e-3
BATCH_SIZE = 64
EPOCHS = 15


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def load_labels(root: Path) -> list[tuple[Path, int]]:
    """(image file, class index) for every PNG under root/<class name>/."""
    samples = []
    for path in sorted(root.glob("*/*.png")):
        name = path.parent.name
        if name not in CLASSES:
            raise SystemExit(f"{path}: folder {name!r} is not one of the classes {CLASSES}")
        samples.append((path, CLASSES.index(name)))
    if not samples:
        raise SystemExit(f"no PNG files under {root}/<class>/; run make_data.py first")
    return samples


def normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels * SCALE - MEAN) / STD


def load_images(samples: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = np.stack([np.asarray(Image.open(path).convert("L")) for path, _ in samples])
    images = normalise(pixels.astype(np.float32))[:, None, :, :]  # N x 1 x 8 x 8
    labels = np.array([label for _, label in samples])
    return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(labels)


def train(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int
) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for _ in range(epochs):
        total = 0.0
        for batch in torch.split(torch.randperm(len(labels), generator=order), BATCH_SIZE):
            optimizer.zero_grad()
            loss = loss_fn(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history.append(total / len(labels))
    return history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the digits classifier.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    # dlgate passes the seed it wants as $DLGATE_SEED (pipeline.seed, or the noise floor's).
    parser.add_argument("--seed", type=int, default=int(os.environ.get("DLGATE_SEED", "0")))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    seed_everything(args.seed)
    images, labels = load_images(load_labels(DATA))
    model = build_model()
    history = train(model, images, labels, args.epochs, args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "model.pt")
    to_onnx(
        model, images[:2], args.out / "model.onnx", classes=CLASSES, preprocessing=PREPROCESSING
    )
    (args.out / "history.json").write_text(
        json.dumps({"loss": history, "epochs": args.epochs, "seed": args.seed}, indent=2) + "\n"
    )
    print(
        f"trained {args.epochs} epochs on {len(labels)} samples in "
        f"{time.perf_counter() - start:.1f}s; final loss {history[-1]:.4f}"
    )


if __name__ == "__main__":
    main()
