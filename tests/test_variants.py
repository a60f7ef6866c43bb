"""`dlgate.variants`: float16 and int8 copies of real exported models, run by real onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from dlgate.export import Preprocessing, read_contract
from dlgate.inference import Deployed
from dlgate.variants import QuantMode, VariantError, to_fp16, to_int8

pytest.importorskip("torch")  # the optional framework side: dlgate[torch]
import torch

CLASSES = tuple(str(d) for d in range(10))
PRE = Preprocessing(color_mode="L", mean=(0.3,), std=(0.4,))


class Mixed(torch.nn.Module):
    """Operators a float16 conversion must handle: convolution with batch norm, a resize whose
    scales must stay float32, layer norm, constants, a reduction and a softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.norm = torch.nn.LayerNorm(32)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear")  # 16x16
        x = torch.nn.functional.avg_pool2d(x, 8).flatten(1)  # 8 * 2 * 2 = 32
        x = self.norm(x * 0.5 + 1.0)
        out: torch.Tensor = torch.log_softmax(self.head(x), dim=1)
        return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dlgate.export import to_onnx

    torch.manual_seed(0)
    model = Mixed().eval()
    path = tmp_path_factory.mktemp("variants") / "model.onnx"
    return to_onnx(
        model,
        torch.randn(4, 1, 8, 8),
        path,
        classes=CLASSES,
        preprocessing=PRE,
        git_sha="a" * 40,
        output="log_probabilities",
    )


def outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    return np.asarray(out)


def inputs(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, 8, 8)).astype(np.float32)


def test_fp16_keeps_float32_io_and_the_contract(exported: Path, tmp_path: Path) -> None:
    half = to_fp16(exported, tmp_path / "model.fp16.onnx")
    model = onnx.load(str(half))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert weights["conv.weight"] == TensorProto.FLOAT16
    assert read_contract(half) == read_contract(exported)
    # The deployed path loads it like the original (its contract matches its graph).
    assert Deployed.load(half).contract.output == "log_probabilities"


def test_fp16_outputs_are_close_to_fp32(exported: Path, tmp_path: Path) -> None:
    half = to_fp16(exported, tmp_path / "model.fp16.onnx")
    x = inputs()
    full, reduced = outputs(exported, x), outputs(half, x)
    assert reduced.dtype == np.float32
    assert 0 < np.abs(full - reduced).max() < 0.05  # float16 arithmetic, not a copy
    assert (full.argmax(1) == reduced.argmax(1)).mean() >= 0.9


def test_fp16_computes_resize_in_float32(exported: Path, tmp_path: Path) -> None:
    model = onnx.load(str(to_fp16(exported, tmp_path / "model.fp16.onnx")))
    ops = [n.op_type for n in model.graph.node]
    resize = ops.index("Resize")
    before = model.graph.node[resize - 1]
    after = model.graph.node[resize + 1]
    assert (before.op_type, before.attribute[0].i) == ("Cast", TensorProto.FLOAT)
    assert (after.op_type, after.attribute[0].i) == ("Cast", TensorProto.FLOAT16)


def test_fp16_clips_weights_beyond_its_range(tmp_path: Path) -> None:
    from dlgate.export import to_onnx

    linear = torch.nn.Linear(64, 10)
    with torch.no_grad():
        linear.weight[0, 0] = 1e6  # inf in float16
    model = torch.nn.Sequential(torch.nn.Flatten(), linear).eval()
    source = to_onnx(
        model,
        torch.randn(2, 1, 8, 8),
        tmp_path / "m.onnx",
        classes=CLASSES,
        preprocessing=PRE,
        git_sha="a" * 40,
    )
    out = outputs(to_fp16(source, tmp_path / "m16.onnx"), inputs(4) * 0.001)
    assert np.isfinite(out).all()


def test_fp16_refuses_control_flow(tmp_path: Path) -> None:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y_then"])],
        "then",
        [],
        [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node(
                "If", ["c"], ["y"], name="choose", then_branch=branch, else_branch=branch
            ),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    source = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph), str(source))
    with pytest.raises(VariantError, match=r"if\.onnx: float16 .* control flow .*nodes choose"):
        to_fp16(source, tmp_path / "if16.onnx")


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_variants_run_and_keep_the_contract(
    exported: Path, tmp_path: Path, mode: QuantMode
) -> None:
    calibration = inputs(64) if mode == "static" else None
    quantized = to_int8(exported, tmp_path / "m8.onnx", mode=mode, calibration=calibration)
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "QuantizeLinear", "ConvInteger", "MatMulInteger"}
    assert read_contract(quantized) == read_contract(exported)
    x = inputs()
    full, reduced = outputs(exported, x), outputs(quantized, x)
    assert np.isfinite(reduced).all()
    assert np.abs(full - reduced).max() < 1.0


def test_int8_failures_are_variant_errors(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(VariantError, match="static int8 quantization needs calibration"):
        to_int8(exported, tmp_path / "m8.onnx", mode="static")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(VariantError, match=r"garbage\.onnx"):
        to_int8(garbage, tmp_path / "g8.onnx")
    with pytest.raises(VariantError, match=r"garbage\.onnx"):
        to_fp16(garbage, tmp_path / "g16.onnx")
