"""`accuracy.edge_cases`: edge-case inputs through the deployed path in a child process —
valid outputs or clean refusals as the manifest expects, never a crash (a crash names the file).
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from accuracy_support import CONTRACT, checks, config, digits_repo, fresh_store, run_gate, trained
from conftest import GitRepo
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dlgate.cli import ExitCode

REAL_WORLD = Path(__file__).resolve().parents[1] / "examples" / "digits" / "data" / "real_world"
EXAMPLE_SEVEN = sorted((REAL_WORLD / "7").glob("*.png"))[0]
EXAMPLE_THREE = sorted((REAL_WORLD / "3").glob("*.png"))[0]


def baseline_run(repo: GitRepo, tmp: Path) -> tuple[int, dict[str, Any], str]:
    """`dlgate baseline` on main: the accuracy stage of the committed model, no comparison."""
    return run_gate(repo, tmp / "out", fresh_store(tmp), "baseline", "--rev", "main")


def repo_with(tmp: Path, edge_cases: str, files: dict[str, bytes | Path] | None = None) -> GitRepo:
    good, *_ = trained()
    repo = digits_repo(tmp / "repo", config("edge", edge_cases=edge_cases))
    good.save(repo.path / "model.onnx")
    for name, content in (files or {}).items():
        target = repo.path / "edge" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    repo.commit("model and edge cases")
    return repo


def png(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_built_in_edge_cases_give_valid_outputs_or_clean_refusals(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "{generated: true}")
    code, doc, md = baseline_run(repo, tmp_path)
    result = checks(doc)["accuracy.edge_cases"]
    assert result["outcome"] == "pass", md
    rows = {r["case"]: r for r in result["measurements"]["cases"]}
    assert set(rows) == {
        f"generated: {n}"
        for n in ("blank", "white", "noise", "inverted", "wrong-mode-RGB", "wrong-mode-RGBA",
                  "wrong-size", "truncated", "empty", "not-an-image", "huge")
    }  # fmt: skip
    assert all(r["ok"] for r in rows.values())
    assert rows["generated: blank"]["got"].startswith("predicted ")
    assert "8x8 (resize policy 'exact')" in rows["generated: wrong-size"]["got"]
    assert "decompression bomb" in rows["generated: huge"]["got"]
    assert "truncated" in rows["generated: truncated"]["got"]
    expected = "11 edge cases behave as expected (6 valid outputs, 5 clean refusals)"
    assert result["message"] == expected
    assert code == ExitCode.PASSED


def test_manifest_expectations_are_checked_and_failures_annotated(tmp_path: Path) -> None:
    blank = png(np.zeros((8, 8)))
    manifest = (
        "blank.png: any\n"
        "truncated.png: refused\n"
        "seven.png: {label: '7'}\n"
        "three.png: {label: '8'}   # wrong on purpose\n"
        "white.png: refused        # wrong on purpose: it decodes fine\n"
    )
    repo = repo_with(tmp_path, "{path: edge, generated: false}", {
        "manifest.yml": manifest.encode(),
        "blank.png": blank,
        "white.png": png(np.full((8, 8), 255)),
        "truncated.png": blank[: len(blank) // 2],
        "seven.png": EXAMPLE_SEVEN,
        "three.png": EXAMPLE_THREE,
        "unlisted-rgb.png": png(np.zeros((12, 12, 3)), "RGB"),
    })  # fmt: skip
    code, doc, md = baseline_run(repo, tmp_path)
    assert code == ExitCode.REFUSED
    result = checks(doc)["accuracy.edge_cases"]
    assert result["outcome"] == "fail"
    assert result["message"].startswith("2 of 6 edge cases fail: ")
    assert "edge/three.png: predicted 3, expected 8" in result["message"]
    assert "edge/white.png: gave " in result["message"]
    assert "but must be refused" in result["message"]
    rows = {r["case"]: r for r in result["measurements"]["cases"]}
    assert rows["edge/unlisted-rgb.png"]["expect"] == "a valid output or a clean refusal"
    assert rows["edge/unlisted-rgb.png"]["ok"]  # refused: 12x12, not 8x8
    assert rows["edge/seven.png"]["ok"]
    assert rows["edge/truncated.png"]["ok"]
    assert {a["path"] for a in result["annotations"]} == {"edge/three.png", "edge/white.png"}
    assert "| `edge/three.png` | label 8 | ❌ predicted 3" in md


def crashing_model(path: Path) -> Path:
    """The example's linear model behind a data-dependent Reshape that breaks on an input
    without a single positive value (a blank image, once normalised): onnxruntime raises."""
    good, *_ = trained()
    c = CONTRACT
    nodes = [
        helper.make_node("Flatten", [c.input_name], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["z0"]),
        helper.make_node("Add", ["z0", "B"], ["z"]),
        helper.make_node("ReduceMax", [c.input_name], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "zero"], ["lit"]),
        helper.make_node("Cast", ["lit"], ["one_or_zero"], to=TensorProto.INT64),
        helper.make_node("Mul", ["one_or_zero", "ten"], ["width"]),
        helper.make_node("Unsqueeze", ["width", "axis0"], ["width1"]),
        helper.make_node("Concat", ["minus_one", "width1"], ["shape"], axis=0),
        # allowzero: a 0 in the shape means 0, not "keep that dimension"
        helper.make_node("Reshape", ["z", "shape"], [c.output_name], allowzero=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fragile",
        [helper.make_tensor_value_info(c.input_name, TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info(c.output_name, TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(good.w.astype(np.float32), "W"),
            numpy_helper.from_array(good.b.astype(np.float32), "B"),
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
            numpy_helper.from_array(np.array(10, np.int64), "ten"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
            numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    for key, value in c.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_an_edge_case_that_crashes_the_inference_path_fails_naming_the_file(
    tmp_path: Path,
) -> None:
    repo = repo_with(tmp_path, "{path: edge, generated: true}", {
        "manifest.yml": b"blank.png: any\nseven.png: {label: '7'}\n",
        "blank.png": png(np.zeros((8, 8))),
        "seven.png": EXAMPLE_SEVEN,
    })  # fmt: skip
    crashing_model(repo.path / "model.onnx")
    repo.commit("a model with a data-dependent reshape")
    code, doc, _md = baseline_run(repo, tmp_path)
    assert code == ExitCode.REFUSED
    checked = checks(doc)
    assert checked["accuracy.accuracy"]["outcome"] == "pass"  # real digits are never blank
    result = checked["accuracy.edge_cases"]
    assert result["outcome"] == "fail"
    assert "edge/blank.png: crashed the inference path (ModelError: " in result["message"]
    assert "onnxruntime failed on a batch of shape (1, 1, 8, 8)" in result["message"]
    assert "generated: blank: crashed the inference path" in result["message"]
    rows = {r["case"]: r for r in result["measurements"]["cases"]}
    assert rows["edge/seven.png"]["ok"]  # the other cases still ran
    assert rows["generated: truncated"]["ok"]
    assert [a["path"] for a in result["annotations"]] == ["edge/blank.png"]


def _bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip


def test_a_decompression_bomb_in_the_folder_is_refused_not_decoded(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "{path: edge, generated: false}", {
        "manifest.yml": b"bomb.png: refused\n", "bomb.png": _bomb()})  # fmt: skip
    code, doc, _md = baseline_run(repo, tmp_path)
    result = checks(doc)["accuracy.edge_cases"]
    assert result["outcome"] == "pass"
    assert "decompression bomb" in result["measurements"]["cases"][0]["got"]
    assert code == ExitCode.PASSED


def test_an_unusable_manifest_fails_saying_what_to_fix(tmp_path: Path) -> None:
    cases = {
        "seven.png: maybe\n": "edge/manifest.yml: 'seven.png': 'maybe' is no expectation; use "
        "any, refused, either or {label: NAME}",
        "gone.png: any\n": "edge/manifest.yml lists 'gone.png', but edge/ has no such file",
        "- seven.png\n": "edge/manifest.yml must map file names to expectations",
        "seven.png: [\n": "edge/manifest.yml is not valid YAML",
    }
    for i, (manifest, message) in enumerate(cases.items()):
        files: dict[str, bytes | Path] = {
            "manifest.yml": manifest.encode(),
            "seven.png": EXAMPLE_SEVEN,
        }
        repo = repo_with(tmp_path / str(i), "{path: edge, generated: false}", files)
        _code, doc, _md = baseline_run(repo, tmp_path / str(i))
        result = checks(doc)["accuracy.edge_cases"]
        assert result["outcome"] == "fail"
        assert result["message"].startswith(message), result["message"]


def test_a_folder_that_is_not_there_fails_and_no_cases_skip(tmp_path: Path) -> None:
    repo = repo_with(tmp_path / "a", "{path: nowhere, generated: false}")
    _code, doc, _md = baseline_run(repo, tmp_path / "a")
    result = checks(doc)["accuracy.edge_cases"]
    assert result["outcome"] == "fail"
    assert (
        "`accuracy.edge_cases.path` = 'nowhere' is no folder in the repository"
        in (result["message"])
    )
    repo = repo_with(tmp_path / "b", "{generated: false}")
    _code, doc, _md = baseline_run(repo, tmp_path / "b")
    assert checks(doc)["accuracy.edge_cases"]["outcome"] == "skip"
