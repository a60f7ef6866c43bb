"""The `data` section and the four sources: image folders, manifests (CSV, JSON lines),
text files with one sample per line, and user hooks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import GitRepo
from digits import CLASSES_YAML, config, context, data_stage, png, write_digits

from dlgate.config import load_text
from dlgate.dataset import DataSettings, load_split
from dlgate.errors import ConfigError, HookError
from dlgate.report import Outcome


def settings(text: str) -> DataSettings:
    return load_text(text).get(DataSettings)


# --- configuration ---------------------------------------------------------------------------


def test_defaults() -> None:
    s = settings("")
    assert dict(s.splits) == {"train": "data/train", "real_world": "data/real_world"}
    assert s.counts.min_per_class == 1 and s.counts.max_imbalance == 10.0
    assert s.duplicates.level == "warn" and s.leakage.level == "fail"
    assert s.stats.warn_psi == 0.1 and s.stats.fail_psi == 0.25


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "data:\n  dupliactes: {}\n",
            "unknown key 'dupliactes' in `data`; did you mean 'duplicates'?",
        ),
        ("data:\n  counts: {min_per_clas: 3}\n", "did you mean 'min_per_class'?"),
        ("data:\n  splits: {train: ../elsewhere}\n", "leaves the repository"),
        ("data:\n  leakage: {level: maybe}\n", "must be one of 'fail', 'warn', 'off'"),
        ("data:\n  format: hook\n", "`format: hook` needs `hook: module:function`"),
        ("data:\n  counts: {max_imbalance: 0.5}\n", "`max_imbalance` must be 1 or more"),
        ("data:\n  roundtrip: {split: test}\n", "`roundtrip.split` 'test' is not in `splits`"),
    ],
)
def test_bad_configuration_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"dlgate\.yml:") as err:
        load_text(text)
    assert message in str(err.value)


# --- image folders ---------------------------------------------------------------------------


def test_load_split_image_folder(git_repo: GitRepo) -> None:
    write_digits(git_repo, 2, 1)
    samples = load_split(git_repo.path, settings(config()), "real_world")
    assert [s.label for s in samples] == [str(d) for d in range(10)]
    assert samples[0].id == "data/real_world/0/digit-00020.png"
    assert samples[0].path == git_repo.path / samples[0].id and samples[0].line == 0


def test_load_split_missing_folder_is_a_config_error(git_repo: GitRepo) -> None:
    with pytest.raises(ConfigError, match=r"`data\.splits\.train`: `data/train` does not exist"):
        load_split(git_repo.path, settings(config()), "train")
    with pytest.raises(ConfigError, match="no split 'test'"):
        load_split(git_repo.path, settings(config()), "test")


# --- manifests -------------------------------------------------------------------------------

MANIFEST = """\
path,label
images/a.png,3
images/b.png,5

images/missing.png,1
../../outside.png,2
images/c.png,
"""


def test_csv_manifest(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("data/images/a.png", png(3))
    git_repo.write("data/images/b.png", png(3))  # the same digit, labelled 5: a conflict
    git_repo.write("data/train.csv", MANIFEST)
    git_repo.write("data/test.jsonl", '{"path": "images/a.png", "label": "3"}\n{"oops"\n')
    git_repo.commit("manifests")
    text = ("data:\n  format: manifest\n  splits: {train: data/train.csv, test: data/test.jsonl}\n"
            f"  classes: {CLASSES_YAML}\n")  # fmt: skip
    samples = load_split(git_repo.path, settings(text), "train")
    assert [(s.id, s.label, s.line) for s in samples] == [
        ("data/images/a.png", "3", 2), ("data/images/b.png", "5", 3),
    ]  # fmt: skip
    results = data_stage(context(git_repo, tmp_path, text), "data.sources", "data.conflicts",
                         "data.leakage")  # fmt: skip
    sources = results["data.sources"]
    assert sources.outcome is Outcome.FAIL
    notes = {(a.path, a.start_line): a.message for a in sources.annotations}
    assert notes == {
        ("data/train.csv", 5): "`path` 'images/missing.png': no such file "
        "(data/images/missing.png)",
        ("data/train.csv", 6): "`path` '../../outside.png' leaves the repository",
        ("data/train.csv", 7): "row has no `label`",
        ("data/test.jsonl", 2): "not valid JSON: Expecting ':' delimiter",
    }
    conflict = results["data.conflicts"]
    assert conflict.outcome is Outcome.FAIL
    assert {(a.path, a.start_line) for a in conflict.annotations} == {
        ("data/train.csv", 2), ("data/train.csv", 3), ("data/test.jsonl", 1),
    }  # fmt: skip
    leak = results["data.leakage"]
    assert [(a.path, a.start_line) for a in leak.annotations] == [("data/test.jsonl", 1)]


def test_manifest_with_inline_values_and_bad_header(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("data/reviews.csv", 'value,label\n"Great product!",pos\n"great  PRODUCT!",neg\n')
    git_repo.write("data/held.csv", "text,label\nsomething,pos\n")
    git_repo.commit("text manifests")
    text = "data:\n  format: manifest\n  splits: {train: data/reviews.csv, held: data/held.csv}\n"
    results = data_stage(context(git_repo, tmp_path, text), "data.sources", "data.conflicts")
    assert "the header must name `label` and `path` or `value` (found: text, label)" in (
        results["data.sources"].message
    )
    # Normalized text is the same sample for leakage, not for conflicts (not identical).
    assert results["data.conflicts"].outcome is Outcome.PASS


# --- text files, one sample per line -----------------------------------------------------------


def test_text_lines(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("text/train/pos.txt", "I loved it\n\nsuperb\nI loved it\n")
    git_repo.write("text/train/neg.txt", b"awful\n\xff\xfe broken\n")
    git_repo.write("text/test/pos.txt", "SUPERB \n")
    git_repo.write("text/test/neg.txt", "dreadful\n")
    git_repo.commit("text data")
    text = "data:\n  format: text-lines\n  splits: {train: text/train, test: text/test}\n"
    samples = load_split(git_repo.path, settings(text), "train")
    assert [(s.id, s.label, s.line, s.value) for s in samples] == [
        ("text/train/neg.txt:1", "neg", 1, "awful"),
        ("text/train/pos.txt:1", "pos", 1, "I loved it"),
        ("text/train/pos.txt:3", "pos", 3, "superb"),
        ("text/train/pos.txt:4", "pos", 4, "I loved it"),
    ]
    results = data_stage(context(git_repo, tmp_path, text))
    assert results["data.sources"].annotations[0].path == "text/train/neg.txt"
    assert results["data.sources"].annotations[0].start_line == 2
    dups = results["data.duplicates"]
    assert {(a.path, a.start_line) for a in dups.annotations} == {
        ("text/train/pos.txt", 1), ("text/train/pos.txt", 4),
    }  # fmt: skip
    leak = results["data.leakage"]
    assert [(a.path, a.start_line, a.message) for a in leak.annotations] == [
        ("text/test/pos.txt", 1, "near-identical to `train` sample text/train/pos.txt"),
    ]
    assert results["data.images"].outcome is Outcome.PASS
    stats = results["data.stats"].measurements
    assert stats["samples"] == {"train": 4, "test": 2}


# --- hooks -----------------------------------------------------------------------------------

SOURCE = """
def samples(split, location):
    yield (f"{split}-a", b"\\x89PNG\\r\\n\\x1a\\n broken", "cat")
    yield (f"{split}-b", "some text", "dog")

def wrong(split, location):
    yield ("only two", b"")
"""


def test_hook_source(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("loader.py", SOURCE)
    git_repo.commit("a custom loader")
    text = "data:\n  format: hook\n  hook: loader:samples\n  splits: {train: anywhere}\n"
    results = data_stage(context(git_repo, tmp_path, text), "data.sources", "data.integrity")
    assert results["data.sources"].message.startswith("2 samples in 1 split")
    integrity = results["data.integrity"]
    assert [(a.path, a.message) for a in integrity.annotations] == [
        ("train-a", "not a readable image (broken PNG file (chunk b'ken'))")
    ]
    bad = text.replace("loader:samples", "loader:wrong")
    found = data_stage(context(git_repo, tmp_path / "2", bad), "data.sources")["data.sources"]
    assert found.outcome is Outcome.ERROR
    assert "TypeError: item 0 is tuple, not (id, bytes|str, label)" in found.message
    with pytest.raises(HookError):
        load_split(git_repo.path, settings(bad), "train")


# --- the bundled example -----------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def test_bundled_example_data_is_clean(git_repo: GitRepo, tmp_path: Path) -> None:
    """The example's own 1,797 digits: every data check passes (or has nothing to do)."""
    if not (EXAMPLE / "data" / "train").is_dir():
        pytest.skip("examples/digits/data has not been generated")
    shutil.copytree(EXAMPLE / "data", git_repo.path / "data")
    git_repo.commit("the example's data")
    text = config("  images: {sizes: ['8x8'], modes: [L]}\n  duplicates: {level: fail}\n")
    results = data_stage(context(git_repo, tmp_path, text))
    outcomes = {check: r.outcome for check, r in results.items()}
    assert outcomes == {
        "data.sources": Outcome.PASS, "data.counts": Outcome.PASS, "data.labels": Outcome.PASS,
        "data.integrity": Outcome.PASS, "data.images": Outcome.PASS,
        "data.duplicates": Outcome.PASS, "data.conflicts": Outcome.PASS,
        "data.leakage": Outcome.PASS, "data.roundtrip": Outcome.SKIP, "data.stats": Outcome.PASS,
        "data.gallery": Outcome.SKIP,
    }, {c: r.message for c, r in results.items()}  # fmt: skip
    assert results["data.sources"].message.startswith("1797 samples in 2 splits")
