"""Write scikit-learn's handwritten digits as PNG files in class folders.

    python make_data.py [--out data]

`load_digits()` holds 1,797 real 8x8 digits (UCI) with pixel values 0..16; each becomes an
8-bit grayscale PNG (values scaled to 0..255) named after its original index:

    data/train/<digit>/digit-00042.png        80% of the samples
    data/real_world/<digit>/digit-00007.png   20%, held out, stratified by class

The split is seeded, so running this again writes the same files. The PNGs are committed:
training and the gate need only Pillow, not scikit-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
REAL_WORLD_FRACTION = 0.2


def to_pixels(values: np.ndarray) -> np.ndarray:
    """0..16 digit intensities -> 0..255 uint8 pixels."""
    return np.rint(values * (255 / 16)).astype(np.uint8)


def write_split(
    out: Path, split: str, indices: np.ndarray, images: np.ndarray, labels: np.ndarray
) -> None:
    for i in indices:
        folder = out / split / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_pixels(images[i]), mode="L").save(folder / f"digit-{i:05d}.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args(argv)
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, real_world = train_test_split(
        indices, test_size=REAL_WORLD_FRACTION, stratify=digits.target, random_state=SEED
    )
    write_split(args.out, "train", np.sort(train), digits.images, digits.target)
    write_split(args.out, "real_world", np.sort(real_world), digits.images, digits.target)
    print(f"wrote {len(train)} training and {len(real_world)} real-world samples to {args.out}")


if __name__ == "__main__":
    main()
