"""`data.leakage`: the same or a near-identical sample in two splits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import GitRepo
from digits import config, context, data_stage, digits, png, write_digits
from PIL import Image

from dlgate.datascan import scan
from dlgate.report import Outcome


def test_full_digits_split_has_no_leak(git_repo: GitRepo, tmp_path: Path) -> None:
    """All 1,797 digits, split as the example does: real digits, no false alarm."""
    write_digits(git_repo, 150, 50)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.leakage"]
    assert found.outcome is Outcome.PASS, found.details
    assert found.measurements["identical"] == found.measurements["near"] == 0


def test_copy_from_train_into_real_world(git_repo: GitRepo, tmp_path: Path) -> None:
    written = write_digits(git_repo)
    source = written["train"][5]
    git_repo.write("data/real_world/0/copied.png", (git_repo.path / source).read_bytes())
    git_repo.commit("leak")
    found = data_stage(context(git_repo, tmp_path, config()))["data.leakage"]
    assert found.outcome is Outcome.FAIL
    [note] = found.annotations
    assert note.path == "data/real_world/0/copied.png"
    assert note.message == f"identical content to `train` sample {source}"
    assert found.measurements["pairs"] == {"train→real_world": 1}


def _variant(index: int, how: str) -> bytes:
    im = Image.fromarray(digits()[index][1], mode="L")
    buf = io.BytesIO()
    if how == "bmp":
        im.save(buf, "BMP")
    elif how == "rgb":
        im.convert("RGB").save(buf, "PNG")
    elif how == "upscaled":
        im.resize((32, 32), Image.Resampling.NEAREST).save(buf, "PNG")
    else:
        im.save(buf, "PNG", pnginfo=_comment())
    return buf.getvalue()


def _comment() -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "re-saved")
    return info


@pytest.mark.parametrize(
    ("how", "suffix"), [("bmp", "bmp"), ("rgb", "png"), ("upscaled", "png"), ("metadata", "png")]
)
def test_near_identical_copies(git_repo: GitRepo, tmp_path: Path, how: str, suffix: str) -> None:
    write_digits(git_repo)
    git_repo.write(f"data/real_world/3/variant.{suffix}", _variant(3, how))  # train's '3'
    git_repo.commit(f"a {how} copy of a training digit")
    found = data_stage(context(git_repo, tmp_path, config()))["data.leakage"]
    assert found.outcome is Outcome.FAIL, (how, found.message)
    [note] = found.annotations
    assert note.path == f"data/real_world/3/variant.{suffix}"
    assert note.message == "near-identical to `train` sample data/train/3/digit-00003.png"
    text = config("  leakage: {near: false}\n")
    found = data_stage(context(git_repo, tmp_path / "2", text))["data.leakage"]
    assert found.outcome is Outcome.PASS


def test_leak_reported_against_the_earlier_split(git_repo: GitRepo, tmp_path: Path) -> None:
    """The sample of the later split in `data.splits` order is the one named."""
    write_digits(git_repo)
    git_repo.write("data/train/9/from-real-world.png", png(1700))
    git_repo.write("data/real_world/9/x.png", png(1700))
    git_repo.commit("leak")
    text = config().replace("{train: data/train, real_world: data/real_world}",
                            "{real_world: data/real_world, train: data/train}")  # fmt: skip
    found = data_stage(context(git_repo, tmp_path, text))["data.leakage"]
    [note] = found.annotations
    assert note.path == "data/train/9/from-real-world.png"


def test_many_blank_images(git_repo: GitRepo, tmp_path: Path) -> None:
    """A blank image copied hundreds of times: named once each, in linear time."""
    write_digits(git_repo, 1, 1)
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    for i in range(300):
        git_repo.write(f"data/train/0/blank-{i:03d}.png", buf.getvalue())
        git_repo.write(f"data/real_world/0/blank-{i:03d}.png", buf.getvalue())
    git_repo.commit("blanks")
    results = data_stage(context(git_repo, tmp_path, config("  max_listed: 5\n")),
                         "data.leakage", "data.duplicates")  # fmt: skip
    leak = results["data.leakage"]
    assert leak.measurements["identical"] == 300
    assert leak.annotations[0].message == (
        "identical content to `train` sample data/train/0/blank-000.png and 299 more"
    )
    dups = results["data.duplicates"]
    assert dups.measurements["per_split"] == {"train": 299, "real_world": 299}
    assert dups.annotations[0].message == (
        "exact duplicate: the same content as data/real_world/0/blank-001.png, "
        "data/real_world/0/blank-002.png, data/real_world/0/blank-003.png and 296 more "
        "(split `real_world`)"
    )


def test_leaks_found_and_gone_through_incremental_scans(git_repo: GitRepo, tmp_path: Path) -> None:
    """A pull request's leaks are found from the cache's delta, and cleared by a later one:
    an exact copy and a near-identical one, each against a training sample (one of them
    edited in place, so a base row is hidden and replaced)."""
    written = write_digits(git_repo)
    git_repo.commit("data")
    assert data_stage(context(git_repo, tmp_path / "a", config()))["data.leakage"].outcome is (
        Outcome.PASS
    )
    git_repo.write(
        "data/real_world/0/copied.png", (git_repo.path / written["train"][5]).read_bytes()
    )
    git_repo.write(written["real_world"][1], _variant(3, "rgb"))  # in place: near train's '3'
    git_repo.commit("two leaks")
    ctx = context(git_repo, tmp_path / "b", config())
    found = data_stage(ctx)["data.leakage"]
    assert {s.how for s in scan(ctx).splits.values()} == {"unchanged", "delta"}
    assert found.outcome is Outcome.FAIL
    source = written["train"][5]
    assert {n.path: n.message for n in found.annotations} == {
        "data/real_world/0/copied.png": f"identical content to `train` sample {source}",
        written["real_world"][1]: "near-identical to `train` sample data/train/3/digit-00003.png",
    }
    git_repo.rm("data/real_world/0/copied.png")
    git_repo.write(written["real_world"][1], png(1750))
    git_repo.commit("no leaks")
    ctx = context(git_repo, tmp_path / "c", config())
    assert data_stage(ctx)["data.leakage"].outcome is Outcome.PASS
    assert {s.how for s in scan(ctx).splits.values()} == {"unchanged", "delta"}
