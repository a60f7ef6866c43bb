"""`data.images`: sizes, modes and channels outside what `data.images` declares."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import GitRepo
from digits import config, context, data_stage, digits, write_digits
from PIL import Image

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
