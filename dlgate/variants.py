"""Reduced-precision variants of an exported model: float16 (converted with `onnx` itself) and
int8 (onnxruntime's dynamic or static quantization).

Both keep the graph's float32 input and output and its metadata, so a variant is deployed
exactly like the original: same inference contract, same preprocessing, same `Deployed.load`.
Only the arithmetic inside changes, and the export stage measures what that costs.

    to_fp16(Path("model.onnx"), Path("model.fp16.onnx"))
    to_int8(Path("model.onnx"), Path("model.int8.onnx"), mode="static", calibration=batch)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlgate.errors import DlgateError

QuantMode = Literal["dynamic", "static"]

# Operators computed in float32 inside a float16 graph: an input the spec requires as
# float32 (Resize's and Upsample's scales), no float16 type in the spec (Range), an output
# type set by an attribute (the random generators, EyeLike), or Dropout, whose float16 form
# in training mode onnxruntime's CPU optimizer turns into a no-op (seen with 1.32): the
# variant would hide a dropout left on that the float32 model shows.
KEEP_FLOAT32 = frozenset(
    {
        "Dropout",
        "Resize",
        "Upsample",
        "Range",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "EyeLike",
    }
)
_FP16_MAX = float(np.finfo(np.float16).max)
_CALIBRATION_BATCH = 16


class VariantError(DlgateError):
    """A reduced-precision variant of the model cannot be made; the message says why."""


def to_fp16(source: Path, target: Path) -> Path:
    """Write a float16 copy of `source` to `target`: weights and activations in float16, input
    and output still float32 (a Cast at each end)."""
    import onnx

    model = _load(source)
    graph = model.graph
    nested = [n.name or n.op_type for n in graph.node if _has_subgraph(n)]
    if nested:
        raise VariantError(
            f"{source.name}: float16 conversion does not handle control flow with subgraphs "
            f"(nodes {', '.join(nested[:5])})"
        )
    model = onnx.shape_inference.infer_shapes(model)
    _Float16Graph(model.graph).convert()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise VariantError(f"{source.name}: the float16 graph is not valid ONNX: {exc}") from None
    _save(model, target)
    return target


def to_int8(
    source: Path,
    target: Path,
    *,
    mode: QuantMode = "dynamic",
    calibration: np.ndarray | None = None,
) -> Path:
    """Write an int8 copy of `source` to `target` with onnxruntime's quantization: `dynamic`
    (weights int8, activations quantized per batch at run time) or `static` (activations
    quantized with ranges calibrated on `calibration`, a batch of decoded real samples)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    input_name = _load(source).graph.input[0].name
    try:
        with _quiet_quantizer():
            if mode == "dynamic":
                quantize_dynamic(source, target, weight_type=QuantType.QInt8)
            else:
                if calibration is None or len(calibration) == 0:
                    raise VariantError("static int8 quantization needs calibration samples")
                batches = [
                    {input_name: calibration[i : i + _CALIBRATION_BATCH]}
                    for i in range(0, len(calibration), _CALIBRATION_BATCH)
                ]

                class Reader(CalibrationDataReader):  # type: ignore[misc]
                    def __init__(self) -> None:
                        self._batches = iter(batches)

                    def get_next(self) -> dict[str, np.ndarray] | None:
                        return next(self._batches, None)

                quantize_static(
                    source,
                    target,
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                )
    except VariantError:
        raise
    except Exception as exc:  # the quantizer raises whatever its graph passes raise
        raise VariantError(
            f"{source.name}: onnxruntime cannot quantize it ({mode}): {type(exc).__name__}: {exc}"
        ) from None
    return target


class _Float16Graph:
    """The float16 rewrite of one graph (in place).

    Every float32 tensor becomes float16 except the graph's inputs (cast at the start), the
    graph's outputs (cast at the end) and those of `KEEP_FLOAT32` operators; a node that
    reads a tensor in the other precision gets a Cast in front of it.
    """

    def __init__(self, graph: Any) -> None:
        from onnx import TensorProto

        self.graph = graph
        self.float = TensorProto.FLOAT
        self.half = TensorProto.FLOAT16
        known = [*graph.input, *graph.value_info, *graph.output]
        self.floats = {v.name for v in known if v.type.tensor_type.elem_type == self.float}
        self.floats |= {t.name for t in graph.initializer if t.data_type == self.float}
        self.names = {*self.floats, *(o for n in graph.node for o in n.output)}
        self.names |= {v.name for v in known}
        self.casts: dict[tuple[str, int], str] = {}

    def convert(self) -> None:
        graph = self.graph
        consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        # Storage precision of every float tensor.
        storage: dict[str, int] = {}
        inputs = {v.name for v in graph.input}
        for name in self.floats:
            storage[name] = self.half
        for name in inputs:
            storage[name] = self.float
        for node in graph.node:
            if node.op_type in KEEP_FLOAT32:
                for out in node.output:
                    if out in self.floats:
                        storage[out] = self.float
        for init in graph.initializer:
            users = consumers.get(init.name, [])
            if (
                init.data_type == self.float
                and users
                and all(u.op_type in KEEP_FLOAT32 for u in users)
            ):
                storage[init.name] = self.float
        self._convert_initializers(storage)
        nodes = []
        for node in graph.node:
            wanted = self.float if node.op_type in KEEP_FLOAT32 else self.half
            for i, name in enumerate(node.input):
                if name in storage and storage[name] != wanted:
                    cast, made = self._cast(name, wanted)
                    if made is not None:
                        nodes.append(made)
                    node.input[i] = cast
            if node.op_type not in KEEP_FLOAT32:
                self._retype_node(node)
            nodes.append(node)
        # Outputs stay float32: the producer writes a float16 tensor, a Cast makes the output.
        for out in graph.output:
            if out.type.tensor_type.elem_type == self.float and storage.get(out.name) == self.half:
                inner = self._fresh(f"{out.name}/fp16")
                for node in nodes:
                    node.output[:] = [inner if o == out.name else o for o in node.output]
                    node.input[:] = [inner if i == out.name else i for i in node.input]
                nodes.append(self._node("Cast", inner, out.name, self.float))
        del graph.node[:]
        graph.node.extend(nodes)
        del graph.value_info[:]  # stale types; onnxruntime infers them again

    def _convert_initializers(self, storage: dict[str, int]) -> None:
        from onnx import numpy_helper

        for init in self.graph.initializer:
            if init.data_type == self.float and storage.get(init.name) == self.half:
                values = numpy_helper.to_array(init)
                # Beyond float16's range a weight would become inf: clip to the largest finite.
                half = np.clip(values, -_FP16_MAX, _FP16_MAX).astype(np.float16)
                init.CopyFrom(numpy_helper.from_array(half, init.name))

    def _retype_node(self, node: Any) -> None:
        """Attributes that produce float32 values (constants, casts) now produce float16."""
        from onnx import numpy_helper

        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == self.float:
                attr.i = self.half
            elif attr.name == "value" and attr.t.data_type == self.float:
                half = numpy_helper.to_array(attr.t).clip(-_FP16_MAX, _FP16_MAX)
                attr.t.CopyFrom(numpy_helper.from_array(half.astype(np.float16), attr.t.name))

    def _cast(self, name: str, to: int) -> tuple[str, Any | None]:
        """The name of `name` cast to `to`, and the Cast node when it is new."""
        key = (name, to)
        if key in self.casts:
            return self.casts[key], None
        cast = self._fresh(f"{name}/{'fp32' if to == self.float else 'fp16'}")
        self.casts[key] = cast
        return cast, self._node("Cast", name, cast, to)

    def _node(self, op: str, source: str, target: str, to: int) -> Any:
        from onnx import helper

        return helper.make_node(op, [source], [target], name=self._fresh(f"{target}/cast"), to=to)

    def _fresh(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.names:
            n += 1
            candidate = f"{name}{n}"
        self.names.add(candidate)
        return candidate


def _has_subgraph(node: Any) -> bool:
    from onnx import AttributeProto

    return any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)


def _load(source: Path) -> Any:
    import importlib

    import onnx

    # protobuf's error for bytes that are not a ModelProto (protobuf has no type stubs here)
    decode_error: type[Exception] = importlib.import_module("google.protobuf.message").DecodeError
    try:
        return onnx.load(str(source))
    except (OSError, ValueError, decode_error) as exc:
        raise VariantError(f"{source}: cannot read the ONNX model: {exc}") from None


def _save(model: Any, target: Path) -> None:
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target))


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice ("consider pre-processing") on the root logger at
    WARNING: noise in the gate's output that the user cannot act on there."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


__all__ = ["KEEP_FLOAT32", "QuantMode", "VariantError", "to_fp16", "to_int8"]
