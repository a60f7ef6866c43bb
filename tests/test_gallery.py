"""`data.gallery`: a PNG grid of what the pull request added, changed or relabeled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import GitRepo
from digits import config, context, data_stage, digits, png, write_digits
from PIL import Image

from dlgate.report import Outcome


def test_gallery_shows_added_and_relabeled(git_repo: GitRepo, tmp_path: Path) -> None:
    written = write_digits(git_repo)
    git_repo.commit("data")
    git_repo.branch("feature")
    git_repo.write("data/real_world/4/new.png", png(1700))
    moved = written["train"][0]  # a '0'
    git_repo.mv(moved, "data/train/8/was-zero.png")
    git_repo.commit("one new real-world sample, one relabel")
    ctx = context(git_repo, tmp_path, config(), base="main")
    found = data_stage(ctx, "data.gallery")["data.gallery"]
    assert found.outcome is Outcome.PASS
    assert found.artifacts == ("data/gallery-train.png", "data/gallery-real_world.png")
    assert found.measurements["new_or_relabeled"] == {"train": 1, "real_world": 1}
    assert ctx.record_files["gallery-train.png"] == ctx.out / "data/gallery-train.png"
    with Image.open(ctx.out / "data/gallery-real_world.png") as sheet:
        assert sheet.size == (56 + 64, 64 + 12)
        tile = np.asarray(sheet.convert("L").crop((56, 0, 120, 64)))
    # The tile is the added digit, blown up 8x with hard edges.
    expected = np.kron(digits()[1700][1], np.ones((8, 8), dtype=np.uint8))
    assert np.array_equal(tile, expected)


def test_nothing_to_show(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    git_repo.branch("feature")
    git_repo.write("README.md", "docs only")
    git_repo.commit("docs")
    found = data_stage(context(git_repo, tmp_path, config(), base="main"), "data.gallery")[
        "data.gallery"
    ]
    assert found.outcome is Outcome.PASS and "nothing to spot-check" in found.message
    found = data_stage(context(git_repo, tmp_path / "2", config()))["data.gallery"]
    assert found.outcome is Outcome.SKIP and "no base revision" in found.message


def test_unreadable_sample_gets_a_marked_tile(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    git_repo.branch("feature")
    git_repo.write("data/train/3/broken.png", b"\x89PNG broken")
    git_repo.commit("a broken sample")
    ctx = context(git_repo, tmp_path, config(), base="main")
    results = data_stage(ctx, "data.integrity", "data.gallery")
    assert results["data.gallery"].outcome is Outcome.PASS
    assert results["data.integrity"].outcome is Outcome.FAIL
    with Image.open(ctx.out / "data/gallery-train.png") as sheet:
        assert sheet.convert("RGB").getpixel((56 + 32, 32)) == (255, 0, 0)  # the red cross


def test_a_gallery_that_cannot_be_drawn_is_an_error(git_repo: GitRepo, tmp_path: Path) -> None:
    """The sheets are drawn by a child process: its failure is the check's error, named."""
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    git_repo.branch("feature")
    git_repo.write("data/train/3/new.png", png(1700))
    git_repo.commit("a new sample")
    ctx = context(git_repo, tmp_path, config(), base="main")
    (ctx.out / "data/gallery-train.png").mkdir(parents=True)  # where the sheet would go
    found = data_stage(ctx, "data.gallery")["data.gallery"]
    assert found.outcome is Outcome.ERROR
    assert "drawing the gallery failed: IsADirectoryError" in found.message
