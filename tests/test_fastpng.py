"""`dlgate.fastpng`: bit-exact with Pillow on every PNG it takes, and it takes nothing odd.

The PNG files are written here by a small encoder that applies a chosen filter to each row
(Pillow's own encoder picks filters itself), so every filter type, colour type and their mix
is exercised; Pillow decodes the same bytes as the reference.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pngs
import pytest
from accuracy_support import CONTRACT, split, trained
from PIL import Image
from pngs import BANDS, chunk

from dlgate import fastpng
from dlgate.inference import Deployed, InferenceRefusal, Prediction, Refusal

MODE_OF = {0: "L", 4: "L", 2: "RGB", 6: "RGB"}


def encode(pixels: np.ndarray, color_type: int, filters: list[int], *, interlace: int = 0,
           depth: int = 8, extra: bytes = b"") -> bytes:  # fmt: skip
    """A PNG with a tEXt chunk before its data (the batch decoder's general chunk walk) and
    `extra` past its end."""
    return pngs.encode(pixels, color_type, filters, interlace=interlace, depth=depth,
                       before=chunk(b"tEXt", b"k\x00v"), after=extra)  # fmt: skip


def pillow(blob: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        converted = img.convert(mode) if img.mode != mode else img
        pixels = np.asarray(converted)
    return pixels if pixels.ndim == 3 else pixels[:, :, None]


@pytest.mark.parametrize("color_type", [0, 4, 2, 6])
@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0, 1, 3]])
def test_decodes_exactly_what_pillow_decodes(color_type: int, filters: list[int]) -> None:
    rng = np.random.default_rng(color_type * 10 + filters[0])
    size = (7, 5)
    blobs = []
    for _ in range(6):
        pixels = rng.integers(0, 256, (size[1], size[0], BANDS[color_type]), dtype=np.uint8)
        pixels[:, :2] = 255  # runs of equal values, where the filters differ most
        blobs.append(encode(pixels, color_type, filters))
    mode = MODE_OF[color_type]
    got, done = fastpng.decode(blobs, size, mode)
    assert done.all()
    for blob, pixels in zip(blobs, got, strict=True):
        assert np.array_equal(pixels, pillow(blob, mode))


def test_the_example_digits_decode_exactly_as_with_pillow() -> None:
    files, *_ = split("real_world")
    blobs = [f.read_bytes() for f in files]
    got, done = fastpng.decode(blobs, (8, 8), "L")
    assert done.all()
    expected = np.stack([pillow(b, "L") for b in blobs])
    assert np.array_equal(got, expected)


def odd_files() -> dict[str, bytes]:
    """PNGs the fast path must leave to Pillow, each with its reason."""
    pixels = np.full((8, 8, 1), 7, np.uint8)
    good = encode(pixels, 0, [1])
    body = bytearray(good)
    body[-20] ^= 0xFF  # inside the IDAT data: its CRC no longer matches
    sixteen = io.BytesIO()
    Image.fromarray(np.full((8, 8), 300, np.uint16)).save(sixteen, format="PNG")
    palette = io.BytesIO()
    Image.new("P", (8, 8), 3).save(palette, format="PNG")
    plain = io.BytesIO()  # Pillow's own layout: IHDR, one IDAT, IEND
    Image.fromarray(pixels[:, :, 0]).save(plain, format="PNG")
    plain_bad_data = bytearray(plain.getvalue())
    plain_bad_data[45] ^= 0xFF
    plain_bad_header = bytearray(plain.getvalue())
    plain_bad_header[19] = 9  # the width, without updating the CRC
    return {
        "plain layout, bad data crc": bytes(plain_bad_data),
        "plain layout, bad header crc": bytes(plain_bad_header),
        "interlaced": encode(pixels, 0, [0], interlace=1),
        "16 bit": sixteen.getvalue(),
        "palette": palette.getvalue(),
        "bad crc": bytes(body),
        "truncated": good[: len(good) - 30],
        "no IEND": good[: good.index(b"IEND") - 4],
        "wrong size": encode(np.zeros((9, 8, 1), np.uint8), 0, [0]),
        "unknown filter": encode(pixels, 0, [5]),
        "RGB for an L model": encode(np.zeros((8, 8, 3), np.uint8), 2, [0]),
        "not a PNG": b"GIF89a" + bytes(20),
        "empty": b"",
    }


@pytest.mark.parametrize("name", list(odd_files()))
def test_anything_unusual_is_left_to_pillow(name: str) -> None:
    blob = odd_files()[name]
    _pixels, done = fastpng.decode(
        [blob, encode(np.zeros((8, 8, 1), np.uint8), 0, [2])], (8, 8), "L"
    )
    assert done.tolist() == [False, True]


def test_trailing_bytes_after_the_end_change_nothing() -> None:
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    blob = encode(pixels, 0, [4], extra=b"trailing garbage")
    got, done = fastpng.decode([blob], (8, 8), "L")
    assert done.all()
    assert np.array_equal(got[0], pillow(blob, "L"))


def test_large_images_are_left_to_pillow() -> None:
    blob = encode(np.zeros((40, 40, 1), np.uint8), 0, [0])
    _pixels, done = fastpng.decode([blob], (40, 40), "L")
    assert not done.any()


def _pillow_only(model: Deployed, path: Path) -> np.ndarray | str:
    """The probabilities through Pillow alone (`Deployed.decode`), or the refusal's reason."""
    try:
        probabilities: np.ndarray = model.probabilities(model.decode(path)[None])[0]
    except InferenceRefusal as exc:
        return exc.reason
    return probabilities


def test_the_inference_path_gives_the_same_results_with_and_without_the_fast_path(
    tmp_path: Path,
) -> None:
    good, *_ = trained()
    model = Deployed.load(good.save(tmp_path / "model.onnx", CONTRACT))
    files, *_ = split("real_world")
    odd = tmp_path / "odd"
    odd.mkdir()
    extra = []
    for name, blob in odd_files().items():
        path = odd / f"{name.replace(' ', '-')}.png"
        path.write_bytes(blob)
        extra.append(path)
    paths = [*files[:100], *extra, *files[100:150], tmp_path / "missing.png"]
    results = model.predict_many(paths, batch_size=64)
    for path, result in zip(paths, results, strict=True):
        assert result.sample == str(path)
        reference = _pillow_only(model, path)
        if isinstance(reference, str):
            assert isinstance(result, Refusal)
            assert result.reason == reference
            continue
        assert isinstance(result, Prediction), path
        assert np.allclose(result.probabilities, reference), path
    refused = {Path(r.sample).name for r in results if not isinstance(r, Prediction)}
    assert refused >= {"truncated.png", "wrong-size.png", "empty.png", "not-a-PNG.png",
                       "missing.png"}  # fmt: skip
