"""`export.contract` on models exported from the bundled example's CNN (real exports, the
example's real data), with their metadata damaged the ways exports go wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from digits_export import EXAMPLE, SHA, Trained, export_context, metadata, with_metadata

from dlgate.checks.contract import contract
from dlgate.dataset import DataSettings
from dlgate.export import METADATA_KEYS, Preprocessing, check_metadata, to_onnx
from dlgate.report import Finding, Outcome

torch = pytest.importorskip("torch")

CLASSES = tuple(str(d) for d in range(10))
DECLARED = DataSettings(classes=CLASSES)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A copy of the example and its CNN exported untrained (the contract does not care)."""
    from digits_export import example_module

    root = tmp_path_factory.mktemp("contract")
    repo = root / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "out"))
    torch.manual_seed(0)
    onnx_file = to_onnx(
        example_module().build_model(),
        torch.zeros(2, 1, 8, 8),
        root / "model.onnx",
        classes=CLASSES,
        preprocessing=Preprocessing(color_mode="L", mean=(0.3,), std=(0.4,)),
        git_sha=SHA,
    )
    return Trained(repo, onnx_file, root / "none.pt")


def check(
    example: Trained,
    tmp_path: Path,
    changes: dict[str, str | None] | None = None,
    data: DataSettings | None = None,
    sha: str = SHA,
) -> Finding:
    values = metadata(example.onnx)
    for key, value in (changes or {}).items():
        if value is None:
            del values[key]
        else:
            values[key] = value
    onnx_file = with_metadata(example.onnx, tmp_path / "model.onnx", values)
    ctx = export_context(
        example, tmp_path / "out", onnx_file=onnx_file, no_weights=True, data=data, sha=sha
    )
    finding: Finding = contract(ctx)
    return finding


def test_a_complete_contract_passes(example: Trained, tmp_path: Path) -> None:
    finding = check(example, tmp_path)
    assert finding.outcome is Outcome.PASS, finding.message
    assert finding.message == (
        "all 14 contract keys present and consistent: 10 classes as in the data, L 8x8, "
        "mean [0.3], std [0.4], made at feedfac"
    )
    assert finding.measurements["classes"] == list(CLASSES)


def test_an_export_missing_normalization_fails_naming_each_key(
    example: Trained, tmp_path: Path
) -> None:
    finding = check(
        example, tmp_path, {"dlgate.preprocess.mean": None, "dlgate.preprocess.std": None}
    )
    assert finding.outcome is Outcome.FAIL
    assert finding.message == (
        "the ONNX metadata lacks 2 inference-contract key(s): dlgate.preprocess.mean, "
        "dlgate.preprocess.std"
    )
    assert finding.measurements == {"missing": ["dlgate.preprocess.mean", "dlgate.preprocess.std"]}
    assert "dlgate.export.to_onnx" in finding.details  # says what to do


@pytest.mark.parametrize("key", METADATA_KEYS)
def test_every_contract_key_is_required(example: Trained, key: str) -> None:
    values = metadata(example.onnx)
    del values[key]
    found, problems = check_metadata(values)
    assert found is None
    assert [(p.key, p.kind) for p in problems] == [(key, "missing")]


def test_a_malformed_value_is_named(example: Trained, tmp_path: Path) -> None:
    finding = check(example, tmp_path, {"dlgate.preprocess.std": "[0.4"})
    assert finding.outcome is Outcome.FAIL
    assert finding.message.startswith(
        "the ONNX metadata holds an invalid inference contract: "
        "dlgate.preprocess.std = '[0.4' is malformed"
    )
    assert finding.measurements == {"malformed": ["dlgate.preprocess.std"]}


def test_a_contract_that_contradicts_the_graph_fails(example: Trained, tmp_path: Path) -> None:
    finding = check(example, tmp_path, {"dlgate.input.name": "pixels"})
    assert finding.outcome is Outcome.FAIL
    assert "dlgate.input.name = 'pixels' but the graph's inputs are input" in finding.message


def test_classes_in_another_order_than_declared_fail(example: Trained, tmp_path: Path) -> None:
    swapped = '["1", "0", "2", "3", "4", "5", "6", "7", "8", "9"]'
    finding = check(example, tmp_path, {"dlgate.output.classes": swapped}, data=DECLARED)
    assert finding.outcome is Outcome.FAIL
    assert finding.message.startswith(
        "dlgate.output.classes orders the classes differently from `data.classes` (output 0 "
        "is '1' in the model but '0' in data.classes, output 1 is '0' in the model but '1' "
        "in data.classes)"
    )


def test_classes_other_than_declared_fail(example: Trained, tmp_path: Path) -> None:
    other = '["0", "1", "2", "3", "4", "5", "6", "7", "8", "ten"]'
    finding = check(example, tmp_path, {"dlgate.output.classes": other}, data=DECLARED)
    assert finding.outcome is Outcome.FAIL
    assert finding.message == (
        "dlgate.output.classes lacks '9', which `data.classes` declares: the model cannot "
        "predict them (and 1 more)"
    )
    assert "- dlgate.output.classes has 'ten', which `data.classes` lacks" in finding.details


def test_without_declared_classes_the_labels_found_are_compared(
    example: Trained, tmp_path: Path
) -> None:
    other = '["0", "1", "2", "3", "4", "5", "6", "7", "8", "ten"]'
    finding = check(example, tmp_path, {"dlgate.output.classes": other}, data=DataSettings())
    assert finding.outcome is Outcome.FAIL
    assert finding.message.startswith(
        "the data has labels that dlgate.output.classes does not list: '9'"
    )
    assert "lists 'ten', which no sample of the data has" in finding.details
    assert finding.measurements["data_classes"] == list(CLASSES)


def test_the_git_sha_must_be_the_commit_that_trained_it(example: Trained, tmp_path: Path) -> None:
    finding = check(example, tmp_path / "other", sha="0" * 40)
    assert finding.outcome is Outcome.FAIL
    assert finding.message.startswith(
        f"dlgate.git_sha = '{SHA}', but the gate trained this model at 0000000"
    )
    unknown = check(example, tmp_path / "unknown", {"dlgate.git_sha": "unknown"})
    assert unknown.outcome is Outcome.WARN
    assert unknown.message.startswith("dlgate.git_sha is 'unknown'")


def test_a_file_that_is_not_onnx_fails(example: Trained, tmp_path: Path) -> None:
    text = tmp_path / "model.onnx"
    text.write_text("not a model\n" * 20)
    ctx = export_context(example, tmp_path / "out", onnx_file=text, no_weights=True)
    finding = contract(ctx)
    assert finding.outcome is Outcome.FAIL
    assert "model.onnx: not an ONNX file" in finding.message
