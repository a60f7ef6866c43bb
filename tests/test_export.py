"""`dlgate.export`: a real torch model exported by the real exporter, read by real onnxruntime."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import GitRepo

from dlgate.export import (
    METADATA_KEYS,
    ContractError,
    ExportError,
    InferenceContract,
    InvalidContract,
    Preprocessing,
    check_metadata,
    current_git_sha,
    read_contract,
    to_onnx,
)

pytest.importorskip("torch")  # the optional framework side: dlgate[torch]
import torch

ROOT = Path(__file__).resolve().parents[1]
CLASSES = tuple(str(d) for d in range(10))
PRE = Preprocessing(color_mode="L", mean=(0.3,), std=(0.4,), scale=1 / 255)
SHA = "0123456789abcdef0123456789abcdef01234567"


def example_model() -> Any:
    """The bundled example's CNN, untrained (seeded): export does not care about accuracy."""
    spec = importlib.util.spec_from_file_location("digits_model", ROOT / "examples/digits/model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.build_model()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model = example_model()
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    sample = torch.randn(4, 1, 8, 8)
    assert to_onnx(model, sample, path, classes=CLASSES, preprocessing=PRE, git_sha=SHA) == path
    return model, path


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_every_metadata_key_is_written(exported: tuple[Any, Path]) -> None:
    meta = metadata(exported[1])
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["dlgate.exporter"] == "torch.onnx dynamo"  # not the fallback
    contract = read_contract(exported[1])
    assert contract == InferenceContract(
        input_name="input",
        input_shape=(None, 1, 8, 8),
        dtype="float32",
        layout="NCHW",
        color_mode="L",
        resize="exact",
        scale=1 / 255,
        mean=(0.3,),
        std=(0.4,),
        classes=CLASSES,
        output_name="logits",
        output="logits",
        git_sha=SHA,
    )
    assert InferenceContract.from_metadata(contract.to_metadata()) == contract


def test_docs_document_every_key() -> None:
    text = (ROOT / "docs/onnx-metadata.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(dlgate\.[a-z_.]+)` \|", text, flags=re.MULTILINE))
    assert documented == {*METADATA_KEYS, "dlgate.exporter"}


@pytest.mark.parametrize("batch", [1, 17])
def test_onnxruntime_agrees_with_torch(exported: tuple[Any, Path], batch: int) -> None:
    model, path = exported
    x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"input": x.numpy()})
    assert got.shape == (batch, 10)
    assert np.abs(got - expected).max() < 1e-4


def test_a_batch_of_one_still_exports_a_dynamic_batch_axis(tmp_path: Path) -> None:
    # torch.export would specialise a size-1 batch to a constant.
    path = to_onnx(
        example_model(),
        torch.zeros(1, 1, 8, 8),
        tmp_path / "m.onnx",
        classes=CLASSES,
        preprocessing=PRE,
        git_sha=SHA,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.zeros((5, 1, 8, 8), np.float32)})
    assert out.shape == (5, 10)


def test_export_is_in_eval_mode_and_restores_the_mode(tmp_path: Path) -> None:
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 10)
    ).train()
    path = to_onnx(
        model,
        torch.randn(2, 1, 8, 8),
        tmp_path / "m.onnx",
        classes=CLASSES,
        preprocessing=PRE,
        git_sha=SHA,
    )
    assert model.training
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-5


def test_class_count_must_match_the_model_output(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"output for a batch of 2 is \(2, 10\), expected \(2, 3\)"
    ):
        to_onnx(
            example_model(),
            torch.zeros(2, 1, 8, 8),
            tmp_path / "m.onnx",
            classes=("a", "b", "c"),
            preprocessing=PRE,
            git_sha=SHA,
        )
    assert not (tmp_path / "m.onnx").exists()


def test_preprocessing_must_fit_the_input(tmp_path: Path) -> None:
    rgb = Preprocessing(color_mode="RGB", mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(
        ValueError,
        match=r"dlgate\.input\.shape: .* 1 channel\(s\) but color "
        r"mode 'RGB' has 3",
    ):
        to_onnx(
            example_model(),
            torch.zeros(2, 1, 8, 8),
            tmp_path / "m.onnx",
            classes=CLASSES,
            preprocessing=rgb,
            git_sha=SHA,
        )


def test_from_metadata_names_a_missing_key(exported: tuple[Any, Path]) -> None:
    meta = metadata(exported[1])
    del meta["dlgate.preprocess.mean"]
    with pytest.raises(ContractError) as info:
        InferenceContract.from_metadata(meta, source="model.onnx")
    message = str(info.value)
    assert message.startswith("model.onnx does not hold a valid dlgate inference contract")
    assert "dlgate.preprocess.mean is missing" in message
    assert "dlgate.preprocess.std" not in message
    assert "to_onnx" in message  # says what to do


def test_from_metadata_names_every_bad_key_at_once(exported: tuple[Any, Path]) -> None:
    meta = metadata(exported[1])
    del meta["dlgate.output.classes"]
    del meta["dlgate.contract"]
    meta["dlgate.preprocess.std"] = "[0.4"  # not JSON
    meta["dlgate.output.kind"] = "softmax"
    meta["dlgate.input.shape"] = '[null, 1, "8", 8]'
    with pytest.raises(ContractError) as info:
        InferenceContract.from_metadata(meta)
    message = str(info.value)
    for expected in (
        "dlgate.output.classes is missing",
        "dlgate.contract is missing",
        "dlgate.preprocess.std = '[0.4' is malformed",
        "dlgate.output.kind = 'softmax' is malformed (expected one of logits, probabilities, "
        "log_probabilities)",
        "dlgate.input.shape = '[null, 1, \"8\", 8]' is malformed",
    ):
        assert expected in message


def test_from_metadata_checks_values_against_each_other(exported: tuple[Any, Path]) -> None:
    contract = read_contract(exported[1])
    meta = contract.to_metadata()
    meta["dlgate.preprocess.std"] = "[0.0]"
    meta["dlgate.output.classes"] = '["a", "b", "a"]'
    with pytest.raises(
        ContractError,
        match=r"dlgate\.preprocess\.std: values must be positive.*"
        r"dlgate\.output\.classes: .*repeated: a",
    ):
        InferenceContract.from_metadata(meta)
    with pytest.raises(ValueError, match=r"dlgate\.preprocess\.mean: needs 1 value"):
        replace(contract, mean=(0.1, 0.2))


def test_a_newer_contract_version_is_refused(exported: tuple[Any, Path]) -> None:
    meta = {**metadata(exported[1]), "dlgate.contract": "2"}
    with pytest.raises(ContractError, match=r"dlgate\.contract = '2'.*upgrade dlgate"):
        InferenceContract.from_metadata(meta)


def test_read_contract_refuses_files_that_are_not_onnx(tmp_path: Path) -> None:
    text = tmp_path / "model.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(ContractError, match=r"model\.onnx: not an ONNX file"):
        read_contract(text)
    with pytest.raises(ContractError, match=r"missing\.onnx: cannot read the ONNX file"):
        read_contract(tmp_path / "missing.onnx")


def test_git_sha_comes_from_env_then_git_then_unknown(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_repo.write("a.txt", "a")
    head = git_repo.commit("first")
    monkeypatch.delenv("DLGATE_GIT_SHA", raising=False)
    assert current_git_sha(git_repo.path) == head
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert current_git_sha(outside) == "unknown"
    monkeypatch.setenv("DLGATE_GIT_SHA", SHA)
    assert current_git_sha(git_repo.path) == SHA


def test_export_records_the_git_sha_of_the_working_directory(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_repo.write("a.txt", "a")
    head = git_repo.commit("first")
    monkeypatch.delenv("DLGATE_GIT_SHA", raising=False)
    monkeypatch.chdir(git_repo.path)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    path = to_onnx(
        model,
        torch.zeros(2, 1, 8, 8),
        git_repo.path / "out/m.onnx",
        classes=CLASSES,
        preprocessing=PRE,
    )
    assert read_contract(path).git_sha == head


class Branchy(torch.nn.Module):
    """Data-dependent Python control flow: torch.export refuses it, TorchScript tracing
    records the branch taken."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        out: torch.Tensor = self.linear(x)
        return -out if x.sum().item() > 1e9 else out


def test_the_torchscript_exporter_is_the_fallback(tmp_path: Path) -> None:
    model = Branchy()
    # The trace specialises the branch, and torch says so.
    with pytest.warns(Warning, match="Converting a tensor to a Python"):
        path = to_onnx(
            model,
            torch.randn(2, 1, 8, 8),
            tmp_path / "m.onnx",
            classes=CLASSES,
            preprocessing=PRE,
            git_sha=SHA,
        )
    exporter = metadata(path)["dlgate.exporter"]
    assert exporter.startswith("torch.onnx torchscript (dynamo failed: ")
    assert "\x1b[" not in exporter
    assert read_contract(path).git_sha == SHA
    x = torch.randn(5, 1, 8, 8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-5


# --- export failures in the model author's terms ---------------------------------------------


@pytest.fixture(scope="module")
def wobble() -> Any:
    """A custom operator neither exporter can translate (like a user's own CUDA kernel)."""

    @torch.library.custom_op("dlgate_test::wobble", mutates_args=())
    def op(x: torch.Tensor) -> torch.Tensor:
        return x.sin()

    @op.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    class Wobble(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return op(x)  # type: ignore[no-any-return]

    return Wobble


def test_an_unsupported_operator_is_named_with_its_layer(tmp_path: Path, wobble: Any) -> None:
    body = torch.nn.Sequential(torch.nn.ReLU(), wobble())
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), body, torch.nn.Flatten(), torch.nn.Linear(256, 10)
    )
    with pytest.raises(ExportError) as info:
        to_onnx(
            model,
            torch.randn(2, 1, 8, 8),
            tmp_path / "m.onnx",
            classes=CLASSES,
            preprocessing=PRE,
            git_sha=SHA,
        )
    assert info.value.operator == "dlgate_test::wobble"
    assert info.value.layer == "`1.1` (Wobble)"
    message = str(info.value)
    assert message.startswith(
        "cannot export the model to ONNX: operator dlgate_test::wobble, used by layer `1.1` "
        "(Wobble), has no ONNX translation (dynamo: "
    )
    assert "custom_translation_table" in message  # what to do
    assert "\n" not in message  # one line: the end of a training log quotes it whole
    assert not (tmp_path / "m.onnx").exists()


class FixedBatch(torch.nn.Module):
    """Flattens with the batch size it was written for: the export specialises the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.view(2, -1))
        return out


def test_a_model_that_cannot_run_with_a_dynamic_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        to_onnx(
            FixedBatch(),
            torch.randn(2, 1, 8, 8),
            tmp_path / "m.onnx",
            classes=CLASSES,
            preprocessing=PRE,
            git_sha=SHA,
        )
    message = str(info.value)
    assert message.startswith(
        "the model cannot run with a dynamic batch: the exported graph's input has a fixed "
        "batch size of 2; a batch of 1 fails in eager PyTorch too: RuntimeError: "
    )
    assert "(at test_export.py:" in message  # the line of the model's forward
    assert "in forward)" in message
    assert "x.reshape(x.shape[0], -1)" in message  # what to do
    assert not (tmp_path / "m.onnx").exists()


def test_check_metadata_names_each_problem_with_its_key(exported: tuple[Any, Path]) -> None:
    meta = metadata(exported[1])
    del meta["dlgate.preprocess.mean"]
    meta["dlgate.output.kind"] = "softmax"
    found, problems = check_metadata(meta)
    assert found is None
    assert [(p.key, p.kind) for p in problems] == [
        ("dlgate.preprocess.mean", "missing"),
        ("dlgate.output.kind", "malformed"),
    ]
    good, none = check_metadata(metadata(exported[1]))
    assert good == read_contract(exported[1])
    assert none == []
    inconsistent = {**metadata(exported[1]), "dlgate.preprocess.std": "[0.0]"}
    _, problems = check_metadata(inconsistent)
    assert [(p.key, p.kind) for p in problems] == [("dlgate.preprocess.std", "inconsistent")]
    with pytest.raises(InvalidContract) as info:
        replace(read_contract(exported[1]), std=(0.0,))
    assert info.value.problems == tuple(problems)
