"""`data.images`: sizes, modes and channels outside what `data.images` declares."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import GitRepo
from digits import config, context, data_stage, digits, write_digits
from PIL import Image
from pngs import BANDS, chunk, encode

from dlgate import dataanalysis, fastpng
from dlgate.config import load_text
from dlgate.errors import ConfigError
from dlgate.report import Outcome


def encoded(index: int, mode: str = "L", scale: int = 1, fmt: str = "PNG") -> bytes:
    im = Image.fromarray(digits()[index][1], mode="L").convert(mode)
    if scale != 1:
        im = im.resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def test_nothing_declared_reports_what_is_there(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.images"]
    assert found.outcome is Outcome.PASS
    assert found.message == "nothing declared (`data.images`); found sizes 8x8 ×160; modes L ×160"
    assert found.measurements["sizes"] == {"8x8": 160}


def test_wrong_mode_and_size_are_named(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/train/3/rgb.png", encoded(1500, "RGB"))
    git_repo.write("data/train/4/big.png", encoded(1501, scale=2))
    git_repo.write("data/real_world/5/both.png", encoded(1502, "RGBA", scale=4))
    git_repo.commit("odd images")
    text = config("  images: {sizes: ['8x8'], modes: [L]}\n")
    found = data_stage(context(git_repo, tmp_path, text))["data.images"]
    assert found.outcome is Outcome.FAIL
    notes = {a.path: a.message for a in found.annotations}
    assert notes == {
        "data/train/3/rgb.png": "mode RGB, not one of L (`data.images.modes`)",
        "data/train/4/big.png": "size 16x16, not one of 8x8 (`data.images.sizes`)",
        "data/real_world/5/both.png": "size 32x32, not one of 8x8 (`data.images.sizes`); "
        "mode RGBA, not one of L (`data.images.modes`)",
    }
    assert "3 images not as declared" in found.message


def test_channels_and_side_limits(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.write("data/train/3/rgb.png", encoded(1500, "RGB", scale=8))
    git_repo.commit("a 64x64 RGB image")
    text = config("  images: {channels: [1], max_side: 32, level: warn}\n")
    found = data_stage(context(git_repo, tmp_path, text))["data.images"]
    assert found.outcome is Outcome.WARN
    [note] = found.annotations
    assert note.message == (
        "size 64x64: a side over 32 pixels (`data.images.max_side`); "
        "3 channels (RGB), not 1 (`data.images.channels`)"
    )
    text = config("  images: {min_side: 8}\n")
    assert data_stage(context(git_repo, tmp_path / "2", text))["data.images"].outcome is (
        Outcome.PASS
    )


def test_malformed_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="image size '8by8' must be WIDTHxHEIGHT"):
        load_text(config("  images: {sizes: ['8by8']}\n"))


# --- the fast PNG path measures exactly what Pillow decodes ------------------------------------


@pytest.mark.parametrize("color_type", [0, 2, 4, 6])
def test_fast_path_measures_what_pillow_decodes(color_type: int, tmp_path: Path) -> None:
    """Every row filter, several shapes (a batch of mixed sizes, as a worker gets it): the fast
    path's records equal those of the same pixels in a file only Pillow decodes (a tEXt chunk
    keeps the fast path out), and its pixels equal Pillow's."""
    rng = np.random.default_rng(color_type)
    fast_files, pillow_files = [], []
    for n, (w, h) in enumerate([(1, 1), (7, 5), (13, 3), (7, 5), (32, 32), (3, 9)]):
        pixels = rng.integers(0, 256, (h, w, BANDS[color_type]), dtype=np.uint8)
        pixels[:, : max(1, w // 3)] = 200  # runs of equal values, where the filters differ most
        blob = encode(pixels, color_type, [n % 5, 4, 3, 2, 1, 0])
        twin = encode(pixels, color_type, [0], before=chunk(b"tEXt", b"made by\x00a test"))
        plain = fastpng.plain(blob, 10**6)
        assert plain is not None and fastpng.plain(twin, 10**6) is None
        mode, width, height, lines = plain
        assert np.array_equal(fastpng.unfilter(mode, (width, height), [lines])[0], pixels)
        with Image.open(io.BytesIO(blob)) as im:
            assert im.mode == mode
            assert np.array_equal(np.asarray(im).reshape(pixels.shape), pixels)
        (tmp_path / f"fast-{n}.png").write_bytes(blob)
        (tmp_path / f"pillow-{n}.png").write_bytes(twin)
        fast_files.append((str(tmp_path / f"fast-{n}.png"), None))
        pillow_files.append((str(tmp_path / f"pillow-{n}.png"), None))
    fast = dataanalysis.analyze_images(fast_files, 10**6)
    slow = dataanalysis.analyze_images(pillow_files, 10**6)
    for a, b in zip(fast, slow, strict=True):
        assert a[4] is None and a[6] == 1  # decoded, no error
        assert a[7:] == b[7:]  # format, mode, size, bands, perceptual hash, brightness, sums


def test_a_large_image_is_measured_in_blocks_exactly(tmp_path: Path) -> None:
    """Rows are measured a block at a time (flat memory for large images): the pixel sums
    are exact all the same, and its perceptual thumbnail is its mean."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (2600, 1700, 3), dtype=np.uint8)
    pixels[:1300] //= 4  # a dark top half: the thumbnail's rows differ
    path = tmp_path / "large.png"
    Image.fromarray(pixels, "RGB").save(path, compress_level=1)
    assert dataanalysis._BLOCK // (1700 * 3) < 2600  # more than one block of rows
    [record] = dataanalysis.analyze_images([(str(path), None)], 10**8)
    assert record[4] is None and record[8:12] == ("RGB", 1700, 2600, 3)
    wide = pixels.reshape(-1, 3).astype(np.int64)
    assert record[16:19] == tuple(wide.sum(0).tolist())
    assert record[20:23] == tuple((wide**2).sum(0).tolist())
    grey = pixels.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert record[13] == min(int(grey.mean() // 16), 15)  # brightness: the thumbnail's mean
