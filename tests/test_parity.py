"""`export.parity` on the bundled example: real training, real exports, real onnxruntime and a
real framework forward in the hook child. Faulty models are derived from the trained one the
way users make them: an export in training mode, a quantization-hostile weight, a fixed batch.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from digits_export import (
    Trained,
    example_module,
    export_context,
    metadata,
    raw_export,
    trained_digits,
    with_metadata,
)

from dlgate.agreement import judge, measure
from dlgate.checks.parity import ExportSettings, Fp16Settings, Int8Settings, parity
from dlgate.config import load_text
from dlgate.errors import ConfigError
from dlgate.report import Outcome
from dlgate.runtimes import unavailable

torch = pytest.importorskip("torch")

CUDA = "CUDAExecutionProvider"
CLASSES = tuple(str(d) for d in range(10))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_digits(tmp_path_factory.getbasetemp())


def trained_model(trained: Trained, *extra: Any) -> Any:
    """The example's CNN with the trained weights (extra layers appended, without weights)."""
    model = torch.nn.Sequential(*example_module().build_model(), *extra)
    model.load_state_dict(torch.load(trained.weights, weights_only=True))
    return model


def cells(finding: Any) -> dict[str, Any]:
    configurations: dict[str, Any] = finding.measurements["configurations"]
    return configurations


# --- measuring and judging (no model needed) ------------------------------------------------


def test_agreement_measures_difference_top1_and_classes() -> None:
    reference = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 3.0], [1.0, 0.0]])
    got = np.array([[2.0, 0.5], [0.5, 2.0], [3.0, 0.0], [1.0, 0.0]])
    a = measure(reference, got, ("cat", "dog"))
    assert a.max_abs_diff == 3.0
    assert a.top1 == 0.75
    assert a.per_class == {"cat": (2, 2), "dog": (1, 2)}
    assert a.worst_class() == ("dog", 1, 2)
    assert a.worst[0] == 2  # the sample that changed class comes first
    thresholds = Fp16Settings(atol=0.1, min_top1=0.9, min_class_agreement=0.9)
    problems = judge(a, thresholds, "export.fp16")
    assert problems == [
        "max |Δ| 3 > export.fp16.atol 0.1",
        "top-1 agreement 75.0% (1 of 4 samples change class) < export.fp16.min_top1 90.0%",
        "class 'dog' agreement 50.0% (1/2) < export.fp16.min_class_agreement 90.0%",
    ]


def test_a_nan_output_never_passes_as_a_small_difference() -> None:
    reference = np.zeros((2, 3))
    got = np.array([[np.nan, 0, 0], [0, 0, 0]])
    a = measure(reference, got, ("a", "b", "c"))
    assert a.max_abs_diff == float("inf")
    assert a.top1 == 0.5
    assert judge(a, Fp16Settings(atol=1.0, min_top1=0, min_class_agreement=0), "x")


def test_zero_turns_a_threshold_off() -> None:
    a = measure(np.zeros((1, 2)), np.array([[5.0, 0.0]]), ("a", "b"))
    assert judge(a, Int8Settings(atol=0, min_top1=1, min_class_agreement=1), "export.int8") == []


# --- configuration -------------------------------------------------------------------------


def export_section(text: str) -> ExportSettings:
    return load_text(textwrap.dedent(text), "dlgate.yml").get(ExportSettings)


def test_export_section_defaults_and_overrides() -> None:
    default = export_section("")
    assert (default.samples, default.batch, default.providers) == (256, 32, (CUDA,))
    assert (default.fp32.atol, default.fp16.atol, default.int8.mode) == (1e-4, 0.05, "dynamic")
    custom = export_section(
        """
        export:
          batch: 8
          fp16: {enabled: false}
          int8: {mode: static, calibration: 32, min_top1: 0.9}
          facts: {max_latency_growth: 1.0}
        """
    )
    assert custom.precisions() == ("fp32", "int8")
    assert (custom.int8.mode, custom.int8.min_top1, custom.int8.min_class_agreement) == (
        "static",
        0.9,
        0.9,  # the int8 default, not another precision's
    )
    assert custom.facts.max_latency_growth == 1.0


def test_the_older_atol_spelling_sets_fp32_atol() -> None:
    assert export_section("export: {atol: 0.001}").fp32.atol == 0.001
    with pytest.raises(ConfigError, match=r"set `fp32\.atol` only"):
        export_section("export: {atol: 0.001, fp32: {atol: 0.01}}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("export: {fp16: {atool: 1}}", r"dlgate\.yml:1: unknown key 'atool'.*did you mean 'atol'"),
        ("export: {providers: [cuda]}", r"'cuda' must be onnxruntime's name for it"),
        ("export: {require: [CUDAExecutionProvider], providers: []}", r"`require` names CUDA"),
        ("export: {int8: {mode: fast}}", r"must be one of 'dynamic', 'static'"),
        ("export: {batch: 1}", r"`batch` 2 or more"),
        ("export: {fp16: {min_top1: 99}}", r"between 0 and 1"),
    ],
)
def test_export_section_is_validated(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        export_section(text)


def test_the_docs_give_every_key_with_its_default() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs/export.md").read_text(encoding="utf-8")
    block = text.split("Every key with its default:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    assert export_section(block) == ExportSettings()
    for name in ExportSettings.__dataclass_fields__:
        assert f"| `{name}` |" in text


# --- the matrix on the trained example ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_a_correct_export_passes_the_whole_matrix(
    trained: Trained, tmp_path: Path, mode: Literal["dynamic", "static"]
) -> None:
    settings = replace(ExportSettings(), int8=Int8Settings(mode=mode))
    finding = parity(export_context(trained, tmp_path / "out", export=settings))
    assert finding.outcome is Outcome.PASS, finding.message + "\n" + finding.details
    assert finding.measurements["reference"] == "the framework (eval mode)"
    assert finding.measurements["samples"] == 256
    found = cells(finding)
    for precision in ("fp32", "fp16", "int8"):
        cell = found[f"{precision}/CPUExecutionProvider"]
        assert cell["outcome"] == "pass"
        for batch in ("batch_1", "batch_32"):
            assert cell[batch]["samples"] == 256
            assert cell[batch]["top1_agreement"] >= 0.97
    assert found["fp32/CPUExecutionProvider"]["batch_1"]["max_abs_diff"] < 1e-4
    assert found["fp32/CPUExecutionProvider"]["batch_32"]["top1_agreement"] == 1.0
    if unavailable(CUDA):  # here: the CUDA column is skipped, and the report says why
        for precision in ("fp32", "fp16", "int8"):
            cell = found[f"{precision}/{CUDA}"]
            assert cell["outcome"] == "skip"
            assert cell["reason"].startswith(f"{CUDA} is not available in this onnxruntime")
        assert f"skipped fp32 · CUDA, fp16 · CUDA, int8 · CUDA: {CUDA} is not" in finding.message
        assert "(worst: " in finding.message
    assert "| int8 · CPU | 32 |" in finding.details
    assert finding.artifacts == ["export/model.fp16.onnx", "export/model.int8.onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize(
    "provider", ["CPUExecutionProvider", pytest.param(CUDA, marks=pytest.mark.gpu)]
)
def test_each_configuration_agrees_with_the_framework(
    trained: Trained, tmp_path: Path, precision: str, provider: str
) -> None:
    """One cell of the matrix at a time. Without a GPU the CUDA cells skip, saying why: the
    reason the check gives (this onnxruntime has no CUDA provider, or it fell back to CPU)."""
    why = unavailable(provider)
    if why:
        pytest.skip(f"{precision} on {provider}: {why}")
    settings = ExportSettings(
        providers=(provider,),
        fp16=Fp16Settings(enabled=precision == "fp16"),
        int8=Int8Settings(enabled=precision == "int8"),
    )
    finding = parity(export_context(trained, tmp_path / "out", export=settings))
    cell = cells(finding)[f"{precision}/{provider}"]
    if cell["outcome"] == "skip":
        pytest.skip(f"{precision} on {provider}: {cell['reason']}")
    assert cell["outcome"] == "pass", cell


@pytest.mark.slow
def test_dropout_left_on_in_the_export_fails_with_the_differing_outputs(
    trained: Trained, tmp_path: Path
) -> None:
    # The model has a dropout layer; the user's own export code forgot model.eval().
    (trained.repo / "with_dropout.py").write_text(
        "from torch import nn\n\nfrom model import build_model as digits\n\n\n"
        "def build_model() -> nn.Module:\n"
        "    return nn.Sequential(*digits(), nn.Dropout(0.5))\n"
    )
    model = trained_model(trained, torch.nn.Dropout(0.5)).train()
    exported = raw_export(model, torch.randn(4, 1, 8, 8), tmp_path / "raw.onnx")
    onnx_file = with_metadata(exported, tmp_path / "model.onnx", metadata(trained.onnx))
    settings = ExportSettings(
        providers=(), fp16=Fp16Settings(enabled=False), int8=Int8Settings(enabled=False)
    )
    ctx = export_context(
        trained,
        tmp_path / "out",
        onnx_file=onnx_file,
        model="with_dropout:build_model",
        export=settings,
    )
    finding = parity(ctx)
    assert finding.outcome is Outcome.FAIL
    assert finding.message.startswith("fp32 · CPU vs the framework (eval mode): at batch ")
    assert "> export.fp32.atol 0.0001" in finding.message
    assert "export.fp32.min_top1" in finding.message
    assert "fails too)" in finding.message  # the other batch size
    # The differing outputs are shown: sample files, both output vectors, the difference.
    assert "Most different samples at batch" in finding.details
    assert "| `data/real_world/" in finding.details
    row = next(ln for ln in finding.details.splitlines() if ln.startswith("| `data/real_world/"))
    reference, got = row.split(" | ")[1:3]
    assert reference.count(",") == 9  # all ten outputs
    assert got.count(",") == 9
    assert reference != got


@pytest.mark.slow
def test_int8_agreement_below_its_threshold_fails_with_the_numbers(
    trained: Trained, tmp_path: Path
) -> None:
    # One outlier weight (on a hidden unit the output ignores) leaves fp32 as accurate as
    # before, but sets the per-tensor int8 scale: every other weight of the layer rounds to 0.
    from dlgate.export import Preprocessing, to_onnx

    model = trained_model(trained).eval()
    with torch.no_grad():
        model[6].weight[0] = 0.0
        model[6].weight[0, 0] = 1000.0
        model[8].weight[:, 0] = 0.0
    weights = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights)
    pre = Preprocessing(color_mode="L", mean=(0.3054,), std=(0.376,))
    onnx_file = to_onnx(
        model,
        torch.zeros(2, 1, 8, 8),
        tmp_path / "model.onnx",
        classes=CLASSES,
        preprocessing=pre,
        git_sha="feedface" * 5,
    )
    settings = ExportSettings(providers=(), fp16=Fp16Settings(enabled=False))
    ctx = export_context(
        trained, tmp_path / "out", onnx_file=onnx_file, weights=weights, export=settings
    )
    finding = parity(ctx)
    assert finding.outcome is Outcome.FAIL
    found = cells(finding)
    assert found["fp32/CPUExecutionProvider"]["outcome"] == "pass"
    int8 = found["int8/CPUExecutionProvider"]
    assert int8["outcome"] == "fail"
    shown = re.match(
        r"int8 · CPU vs the framework \(eval mode\): at batch (\d+): top-1 agreement "
        r"(\d+\.\d)% \((\d+) of 256 samples change class\) < export\.int8\.min_top1 97\.0%",
        finding.message,
    )
    assert shown, finding.message
    measured = int8[f"batch_{shown[1]}"]["top1_agreement"]
    assert measured < 0.9
    assert shown[2] == f"{measured * 100:.1f}"
    assert int(shown[3]) == round((1 - measured) * 256)
    assert "< export.int8.min_class_agreement 90.0%" in finding.message


@pytest.mark.slow
def test_a_model_with_a_fixed_batch_says_it_cannot_run_with_a_dynamic_batch(
    trained: Trained, tmp_path: Path
) -> None:
    model = trained_model(trained).eval()
    exported = raw_export(model, torch.zeros(2, 1, 8, 8), tmp_path / "raw.onnx", dynamo=False)
    onnx_file = with_metadata(exported, tmp_path / "model.onnx", metadata(trained.onnx))
    settings = ExportSettings(
        providers=(), fp16=Fp16Settings(enabled=False), int8=Int8Settings(enabled=False)
    )
    finding = parity(
        export_context(trained, tmp_path / "out", onnx_file=onnx_file, export=settings)
    )
    assert finding.outcome is Outcome.FAIL
    assert (
        "fp32 · CPU vs the framework (eval mode): the model cannot run with a dynamic batch: "
        "its input 'input' has a fixed batch size of 2" in finding.message
    )


@pytest.mark.slow
def test_without_framework_weights_onnxruntime_fp32_is_the_reference(
    trained: Trained, tmp_path: Path
) -> None:
    settings = ExportSettings(providers=(), int8=Int8Settings(enabled=False))
    finding = parity(export_context(trained, tmp_path / "out", no_weights=True, export=settings))
    assert finding.outcome is Outcome.PASS, finding.message
    assert finding.measurements["reference"] == "onnxruntime fp32 on CPU at batch 32"
    assert set(cells(finding)) == {"fp32/CPUExecutionProvider", "fp16/CPUExecutionProvider"}


@pytest.mark.slow
def test_a_required_provider_that_is_missing_fails(trained: Trained, tmp_path: Path) -> None:
    if not unavailable(CUDA):
        pytest.skip("this machine has CUDA: the requirement is met")
    settings = ExportSettings(
        require=(CUDA,), fp16=Fp16Settings(enabled=False), int8=Int8Settings(enabled=False)
    )
    finding = parity(export_context(trained, tmp_path / "out", export=settings))
    assert finding.outcome is Outcome.FAIL
    assert finding.message.startswith(
        f"required provider(s) {CUDA} did not run (export.require); skipped fp32 · CUDA: "
    )
