"""`dlgate.inference`: the deployed path on real ONNX graphs and real image files.

The models here are built with `onnx.helper` (a linear classifier over the pixels), so these
tests need neither torch nor training, and every expected number can be computed by hand.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dlgate.export import ContractError, InferenceContract, OutputKind
from dlgate.inference import (
    Deployed,
    InferenceRefusal,
    ModelError,
    Prediction,
    Refusal,
    result_from_dict,
)

CLASSES = tuple(str(d) for d in range(10))
CONTRACT = InferenceContract(
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
    output_name="scores",
    output="logits",
    git_sha="0" * 40,
)
WEIGHTS = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)


def linear_model(
    path: Path,
    contract: InferenceContract = CONTRACT,
    weights: np.ndarray = WEIGHTS,
    head: str | None = None,
) -> Path:
    """input (N, ...) -> Flatten -> MatMul -> [head] -> contract.output_name."""
    dims = [d for d in contract.input_shape[1:] if d is not None]
    features = int(np.prod(dims))
    nodes = [
        helper.make_node("Flatten", [contract.input_name], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["z" if head else contract.output_name]),
    ]
    if head:
        nodes.append(helper.make_node(head, ["z"], [contract.output_name], axis=1))
    elem = TensorProto.FLOAT if contract.dtype == "float32" else TensorProto.FLOAT16
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info(contract.input_name, elem, ["batch", *dims])],
        [helper.make_tensor_value_info(contract.output_name, elem, ["batch", weights.shape[1]])],
        [
            numpy_helper.from_array(
                weights[:features].astype(
                    np.float32 if contract.dtype == "float32" else np.float16
                ),
                "W",
            )
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    for key, value in contract.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)
    return path


def digits(folder: Path, n: int = 12) -> list[Path]:
    rng = np.random.default_rng(1)
    return [png(folder / f"s{i:02d}.png", rng.integers(0, 256, (8, 8))) for i in range(n)]


@pytest.fixture
def deployed(tmp_path: Path) -> Deployed:
    return Deployed.load(linear_model(tmp_path / "model.onnx"))


def expected_probabilities(
    pixels: np.ndarray, contract: InferenceContract = CONTRACT
) -> np.ndarray:
    x = (pixels.astype(np.float64) * contract.scale - contract.mean[0]) / contract.std[0]
    z = x.reshape(-1) @ WEIGHTS.astype(np.float64)
    e = np.exp(z - z.max())
    probs: np.ndarray = e / e.sum()
    return probs


# --- decoding per the contract -----------------------------------------------------------


def test_decode_applies_scale_mean_std_and_layout(deployed: Deployed, tmp_path: Path) -> None:
    pixels = np.arange(64).reshape(8, 8) * 4
    x = deployed.decode(png(tmp_path / "a.png", pixels))
    assert x.shape == (1, 8, 8)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0], (pixels / 255 - 0.3) / 0.4, rtol=1e-6, atol=1e-6)
    assert np.array_equal(deployed.decode((tmp_path / "a.png").read_bytes()), x)


def test_rgb_layouts_and_mode_conversion(tmp_path: Path) -> None:
    rgb = replace(
        CONTRACT,
        color_mode="RGB",
        input_shape=(None, 3, 8, 8),
        mean=(0.1, 0.2, 0.3),
        std=(0.5, 0.5, 0.5),
    )
    nhwc = replace(rgb, layout="NHWC", input_shape=(None, 8, 8, 3))
    weights = np.random.default_rng(2).normal(size=(192, 10)).astype(np.float32)
    chw = Deployed.load(linear_model(tmp_path / "chw.onnx", rgb, weights))
    hwc = Deployed.load(linear_model(tmp_path / "hwc.onnx", nhwc, weights))
    pixels = np.random.default_rng(3).integers(0, 256, (8, 8, 3))
    image = png(tmp_path / "rgb.png", pixels, mode="RGB")
    a, b = chw.decode(image), hwc.decode(image)
    assert a.shape == (3, 8, 8)
    assert b.shape == (8, 8, 3)
    assert np.array_equal(a.transpose(1, 2, 0), b)
    np.testing.assert_allclose(b[..., 2], (pixels[..., 2] / 255 - 0.3) / 0.5, atol=1e-6)
    # A grayscale file for an RGB model is converted, not refused.
    gray = chw.decode(png(tmp_path / "gray.png", pixels[..., 0]))
    assert np.allclose(gray[0] * 0.5 + 0.1, gray[1] * 0.5 + 0.2)


def test_resize_policies(tmp_path: Path) -> None:
    big = png(tmp_path / "big.png", np.full((16, 24), 200))
    for policy in ("bilinear", "nearest"):
        model = Deployed.load(
            linear_model(tmp_path / f"{policy}.onnx", replace(CONTRACT, resize=policy))
        )
        np.testing.assert_allclose(model.decode(big), (200 / 255 - 0.3) / 0.4, rtol=1e-5)
        assert isinstance(model.predict([big])[0], Prediction)


# --- predictions -------------------------------------------------------------------------


def test_predict_gives_a_valid_probability_vector(deployed: Deployed, tmp_path: Path) -> None:
    samples = digits(tmp_path / "s")
    predictions = deployed.predict(samples, batch_size=5)
    assert [p.sample for p in predictions] == [str(s) for s in samples]
    for p, path in zip(predictions, samples, strict=True):
        expected = expected_probabilities(np.asarray(Image.open(path)))
        np.testing.assert_allclose(p.probabilities, expected, rtol=1e-4, atol=1e-6)
        assert abs(sum(p.probabilities) - 1) < 1e-9
        assert p.label == CLASSES[int(np.argmax(expected))]
        assert p.confidence == max(p.probabilities)


@pytest.mark.parametrize(
    ("head", "kind"), [("Softmax", "probabilities"), ("LogSoftmax", "log_probabilities")]
)
def test_probability_and_log_probability_outputs(
    tmp_path: Path, head: str, kind: OutputKind
) -> None:
    samples = digits(tmp_path / "s")
    logits = Deployed.load(linear_model(tmp_path / "logits.onnx")).predict(samples)
    other = Deployed.load(
        linear_model(tmp_path / "other.onnx", replace(CONTRACT, output=kind), head=head)
    ).predict(samples)
    assert [p.label for p in other] == [p.label for p in logits]
    for a, b in zip(logits, other, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-4, atol=1e-6)


def test_a_wrong_mean_in_the_metadata_changes_predictions(tmp_path: Path) -> None:
    samples = digits(tmp_path / "s", n=40)
    right = Deployed.load(linear_model(tmp_path / "right.onnx")).predict(samples)
    wrong = Deployed.load(linear_model(tmp_path / "wrong.onnx", replace(CONTRACT, mean=(0.9,))))
    changed = [a.label != b.label for a, b in zip(right, wrong.predict(samples), strict=True)]
    assert sum(changed) >= 10


def test_predict_many_refuses_per_sample_and_keeps_order(
    deployed: Deployed, tmp_path: Path
) -> None:
    good = digits(tmp_path / "s", n=3)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    samples = [good[0], empty, good[1], tmp_path / "missing.png", good[2]]
    for batch_size in (1, 2, 256):
        results = deployed.predict_many(samples, batch_size=batch_size)
        assert [type(r) for r in results] == [Prediction, Refusal, Prediction, Refusal, Prediction]
        assert [r.sample for r in results] == [str(s) for s in samples]
        assert results[1] == Refusal(str(empty), "the file is empty (0 bytes)")
        assert results[3] == Refusal(str(tmp_path / "missing.png"), "no such file")
    assert deployed.predict_many([]) == []
    with pytest.raises(InferenceRefusal, match=r"empty\.png: the file is empty"):
        deployed.predict(samples)


def test_non_finite_outputs_are_refused(tmp_path: Path) -> None:
    weights = WEIGHTS.copy()
    weights[0, 3] = np.nan
    model = Deployed.load(linear_model(tmp_path / "nan.onnx", weights=weights))
    results = model.predict_many(digits(tmp_path / "s", n=2))
    assert all(isinstance(r, Refusal) and "NaN" in r.reason for r in results)


def test_probabilities_that_do_not_sum_to_one_are_refused(tmp_path: Path) -> None:
    # The contract claims probabilities but the graph emits raw scores.
    model = Deployed.load(
        linear_model(tmp_path / "liar.onnx", replace(CONTRACT, output="probabilities"))
    )
    (result,) = model.predict_many(digits(tmp_path / "s", n=1))
    assert isinstance(result, Refusal)
    assert "not a valid probability vector" in result.reason


# --- refusals of undecodable inputs ------------------------------------------------------


def _bomb(path: Path) -> Path:
    """A PNG whose header claims 100000 x 100000 pixels (a few hundred bytes on disk)."""
    png(path, np.zeros((8, 8)))
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[12 : ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def _truncated(path: Path) -> Path:
    png(path, np.random.default_rng(4).integers(0, 256, (8, 8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(path: Path) -> Path:
    path.write_text("label,file\n3,digit-00001.png\n", encoding="utf-8")
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _wrong_size(path: Path) -> Path:
    return png(path, np.zeros((10, 12)))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_truncated, "truncated"),
        (_empty, "the file is empty (0 bytes)"),
        (_text, "not an image file"),
        (_wrong_size, "the image is 12x10 but the model takes exactly 8x8"),
        (_bomb, "refused as a decompression bomb"),
    ],
)
def test_undecodable_inputs_are_refused_naming_the_file(
    deployed: Deployed, tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path / "sample.png")
    with pytest.raises(InferenceRefusal) as info:
        deployed.decode(path)
    assert info.value.path == str(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value)
    with pytest.raises(InferenceRefusal, match=reason.split(" (", maxsplit=1)[0][:20]):
        deployed.predict([path])


def test_a_decompression_bomb_is_refused_under_a_resize_policy(tmp_path: Path) -> None:
    model = Deployed.load(linear_model(tmp_path / "m.onnx", replace(CONTRACT, resize="bilinear")))
    (result,) = model.predict_many([_bomb(tmp_path / "bomb.png")])
    assert isinstance(result, Refusal)
    assert "decompression bomb" in result.reason
    small = Deployed.load(tmp_path / "m.onnx", max_pixels=100)
    (result,) = small.predict_many([png(tmp_path / "ok.png", np.zeros((11, 11)))])
    assert isinstance(result, Refusal)
    assert "exceeds the limit of 100" in result.reason


# --- loading -----------------------------------------------------------------------------


def test_load_names_missing_metadata(tmp_path: Path) -> None:
    path = linear_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != "dlgate.output.classes"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(path))
    with pytest.raises(ContractError, match=r"m\.onnx .*dlgate\.output\.classes is missing"):
        Deployed.load(path)


def test_load_checks_the_contract_against_the_graph(tmp_path: Path) -> None:
    path = linear_model(
        tmp_path / "m.onnx", replace(CONTRACT, classes=("a", "b", "c")), weights=WEIGHTS
    )
    with pytest.raises(ContractError, match=r"names 3 classes but the graph outputs 10"):
        Deployed.load(path)
    renamed = tmp_path / "renamed.onnx"
    model = onnx.load(str(linear_model(tmp_path / "m2.onnx")))
    for prop in model.metadata_props:
        if prop.key == "dlgate.input.name":
            prop.value = "image"
    onnx.save(model, str(renamed))
    with pytest.raises(
        ContractError,
        match=r"dlgate\.input\.name = 'image' but the graph's "
        r"inputs are input",
    ):
        Deployed.load(renamed)


def test_load_refuses_unusable_files_and_providers(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothing\.onnx: no such ONNX file"):
        Deployed.load(tmp_path / "nothing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(ModelError, match=r"junk\.onnx: onnxruntime cannot load it"):
        Deployed.load(junk)
    with pytest.raises(
        ModelError,
        match=r"NoSuchExecutionProvider not available.*"
        r"CPUExecutionProvider",
    ):
        Deployed.load(linear_model(tmp_path / "m.onnx"), providers=["NoSuchExecutionProvider"])
    assert Deployed.load(tmp_path / "m.onnx").providers == ["CPUExecutionProvider"]


# --- results as data ---------------------------------------------------------------------


def test_results_round_trip_through_dicts(deployed: Deployed, tmp_path: Path) -> None:
    results = deployed.predict_many([*digits(tmp_path / "s", n=2), tmp_path / "missing.png"])
    for result in results:
        assert result_from_dict(result.to_dict()) == result
    assert results[2].to_dict() == {
        "sample": str(tmp_path / "missing.png"),
        "refused": "no such file",
    }


def test_inference_never_imports_torch() -> None:
    code = "import sys, dlgate.inference; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_float16_model_gets_float16_inputs(tmp_path: Path) -> None:
    samples = digits(tmp_path / "s")
    full = Deployed.load(linear_model(tmp_path / "fp32.onnx")).predict(samples)
    half = Deployed.load(linear_model(tmp_path / "fp16.onnx", replace(CONTRACT, dtype="float16")))
    assert half.decode(samples[0]).dtype == np.float16
    for a, b in zip(full, half.predict(samples), strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=0.05)
