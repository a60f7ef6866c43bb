"""The model as deployed: an ONNX file that carries its own inference contract.

`to_onnx(...)` exports a torch model and writes into the ONNX `metadata_props` everything an
inference path needs to turn a raw image file into the model's input and its output into a
label: input name, shape and dtype, layout, colour mode, resize policy, scale, mean and std,
class names, output kind, and the commit that produced it (`InferenceContract`, keys
`dlgate.*`, documented in docs/onnx-metadata.md). `dlgate.inference` reads it back without
torch; so may the deployment. Torch is imported only inside `to_onnx` (it is an optional
dependency; reading a contract must not need it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from dlgate.errors import DlgateError, GitError

if TYPE_CHECKING:
    import torch

CONTRACT_VERSION = "1"
PREFIX = "dlgate."

Layout = Literal["NCHW", "NHWC"]
ColorMode = Literal["L", "RGB"]
Resize = Literal["exact", "bilinear", "nearest"]
OutputKind = Literal["logits", "probabilities", "log_probabilities"]
DType = Literal["float32", "float16"]

_CHANNELS: dict[str, int] = {"L": 1, "RGB": 3}
_PROTOBUF_LIMIT = 2**31 - 1  # bytes: protobuf cannot serialize a larger message


class ContractError(DlgateError):
    """An ONNX model whose `dlgate.*` metadata is missing, malformed, or does not match its
    graph. The message names every offending key."""


class ExportError(DlgateError):
    """Torch could not export the model to ONNX (with either exporter), or the graph it made
    cannot run with a dynamic batch. Where known, `operator` is the operator no exporter
    translates (`namespace::name`) and `layer` the layer that calls it ("`path` (Type)")."""

    def __init__(
        self, message: str, *, operator: str | None = None, layer: str | None = None
    ) -> None:
        self.operator = operator
        self.layer = layer
        super().__init__(message)


@dataclass(frozen=True)
class Preprocessing:
    """How training turned an image file into the model input (what `to_onnx` records)."""

    color_mode: ColorMode
    mean: tuple[float, ...]  # per channel, after `scale`
    std: tuple[float, ...]
    scale: float = 1 / 255  # applied to the 0..255 pixel values before mean/std
    resize: Resize = "exact"  # "exact": refuse other sizes; else the interpolation to use
    layout: Layout = "NCHW"

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; the stored value is a tuple (hashable, frozen).
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))


@dataclass(frozen=True)
class InferenceContract:
    """Everything inference needs, stored in the ONNX file. Invalid combinations raise
    `InvalidContract` (a `ValueError`) naming the metadata keys concerned."""

    input_name: str
    input_shape: tuple[int | None, ...]  # batch axis first and None (dynamic)
    dtype: DType
    layout: Layout
    color_mode: ColorMode
    resize: Resize
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]  # index i of the output is classes[i]
    output_name: str
    output: OutputKind
    git_sha: str = "unknown"

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise InvalidContract(problems)

    @property
    def channels(self) -> int:
        return _CHANNELS[self.color_mode]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the model input, as PIL counts image sizes."""
        first = 2 if self.layout == "NCHW" else 1
        h, w = self.input_shape[first], self.input_shape[first + 1]
        assert h is not None  # enforced by _problems
        assert w is not None
        return w, h

    def to_metadata(self) -> dict[str, str]:
        return {
            f"{PREFIX}contract": CONTRACT_VERSION,
            f"{PREFIX}input.name": self.input_name,
            f"{PREFIX}input.shape": json.dumps(list(self.input_shape)),
            f"{PREFIX}input.dtype": self.dtype,
            f"{PREFIX}input.layout": self.layout,
            f"{PREFIX}preprocess.color_mode": self.color_mode,
            f"{PREFIX}preprocess.resize": self.resize,
            f"{PREFIX}preprocess.scale": repr(self.scale),
            f"{PREFIX}preprocess.mean": json.dumps(list(self.mean)),
            f"{PREFIX}preprocess.std": json.dumps(list(self.std)),
            f"{PREFIX}output.name": self.output_name,
            f"{PREFIX}output.kind": self.output,
            f"{PREFIX}output.classes": json.dumps(list(self.classes)),
            f"{PREFIX}git_sha": self.git_sha,
        }

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, str], *, source: str = "the ONNX metadata"
    ) -> InferenceContract:
        """Read a contract back; every missing or malformed key is named in one error."""
        contract, problems = check_metadata(metadata)
        if contract is not None:
            return contract
        version = next((p for p in problems if p.kind == "version"), None)
        if version is not None:  # nothing else is worth reading in a format we do not know
            raise ContractError(f"{source}: {version.message}")
        raise ContractError(
            f"{source} does not hold a valid dlgate inference contract: "
            + "; ".join(p.message for p in problems)
            + ". Export the model with dlgate.export.to_onnx (see docs/onnx-metadata.md)."
        )


ProblemKind = Literal["missing", "malformed", "inconsistent", "version"]


@dataclass(frozen=True)
class ContractProblem:
    """One thing wrong with the contract, tied to the metadata key it is about."""

    key: str  # e.g. "dlgate.preprocess.mean"
    kind: ProblemKind
    message: str  # a sentence that starts with the key


class InvalidContract(ValueError):
    """Contract values that do not fit together; `problems` names each key."""

    def __init__(self, problems: Sequence[ContractProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in problems))


def check_metadata(
    metadata: Mapping[str, str],
) -> tuple[InferenceContract | None, list[ContractProblem]]:
    """The contract in `metadata` and no problems, or None and every problem found (each
    missing key, each malformed value, each pair of values that disagree)."""
    problems: list[ContractProblem] = []
    version_key = f"{PREFIX}contract"
    version = metadata.get(version_key)
    if version is None:
        problems.append(ContractProblem(version_key, "missing", f"{version_key} is missing"))
    elif version != CONTRACT_VERSION:
        message = (
            f"{version_key} = {version!r}, but this dlgate reads version "
            f"{CONTRACT_VERSION!r}; upgrade dlgate or re-export the model with this one"
        )
        return None, [ContractProblem(version_key, "version", message)]
    parsed: dict[str, Any] = {}
    for key, (attr, parse) in _PARSERS.items():
        full = PREFIX + key
        raw = metadata.get(full)
        if raw is None:
            problems.append(ContractProblem(full, "missing", f"{full} is missing"))
            continue
        try:
            parsed[attr] = parse(raw)
        except (ValueError, TypeError) as exc:
            problems.append(
                ContractProblem(full, "malformed", f"{full} = {raw!r} is malformed ({exc})")
            )
    if problems:
        return None, problems
    try:
        return InferenceContract(**parsed), []
    except InvalidContract as exc:
        return None, list(exc.problems)


def _problems(c: InferenceContract) -> list[ContractProblem]:
    """Cross-field checks, each naming its metadata key."""
    out: list[ContractProblem] = []

    def bad(key: str, message: str) -> None:
        out.append(ContractProblem(PREFIX + key, "inconsistent", f"{PREFIX}{key}: {message}"))

    for key, value, kind in (
        ("input.dtype", c.dtype, DType),
        ("input.layout", c.layout, Layout),
        ("preprocess.color_mode", c.color_mode, ColorMode),
        ("preprocess.resize", c.resize, Resize),
        ("output.kind", c.output, OutputKind),
    ):
        if value not in get_args(kind):
            bad(key, f"{value!r} is not one of {', '.join(get_args(kind))}")
    if not c.input_name:
        bad("input.name", "must not be empty")
    if not c.output_name:
        bad("output.name", "must not be empty")
    shape = c.input_shape
    if len(shape) != 4 or shape[0] is not None:
        bad("input.shape", f"must be [null, ...] with 3 more dimensions (got {list(shape)})")
    elif any(d is None or d <= 0 for d in shape[1:]):
        bad("input.shape", f"all but the batch dimension must be positive (got {list(shape)})")
    elif c.color_mode in _CHANNELS:
        axis = 1 if c.layout == "NCHW" else 3
        if shape[axis] != _CHANNELS[c.color_mode]:
            bad(
                "input.shape",
                f"{c.layout} shape {list(shape)} has {shape[axis]} channel(s) "
                f"but color mode {c.color_mode!r} has {_CHANNELS[c.color_mode]}",
            )
    if not (math.isfinite(c.scale) and c.scale > 0):
        bad("preprocess.scale", f"must be a positive finite number (got {c.scale})")
    n = _CHANNELS.get(c.color_mode)
    for key, values in (("preprocess.mean", c.mean), ("preprocess.std", c.std)):
        if n is not None and len(values) != n:
            bad(key, f"needs {n} value(s) for color mode {c.color_mode!r} (got {len(values)})")
        if not all(math.isfinite(v) for v in values):
            bad(key, f"values must be finite (got {list(values)})")
    if any(s <= 0 for s in c.std):
        bad("preprocess.std", f"values must be positive (got {list(c.std)})")
    if not c.classes:
        bad("output.classes", "must name at least one class")
    elif len(set(c.classes)) != len(c.classes):
        dupes = sorted({x for x in c.classes if c.classes.count(x) > 1})
        bad("output.classes", f"class names must be unique (repeated: {', '.join(dupes)})")
    return out


def _json_list(raw: str) -> list[Any]:
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError("expected a JSON list")
    return value


def _shape(raw: str) -> tuple[int | None, ...]:
    dims = _json_list(raw)
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in dims):
        raise ValueError("expected a JSON list of integers and null")
    return tuple(dims)


def _floats(raw: str) -> tuple[float, ...]:
    values = _json_list(raw)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ValueError("expected a JSON list of numbers")
    return tuple(float(v) for v in values)


def _strings(raw: str) -> tuple[str, ...]:
    values = _json_list(raw)
    if not all(isinstance(v, str) for v in values):
        raise ValueError("expected a JSON list of strings")
    return tuple(values)


def _text(raw: str) -> str:
    return raw


def _choice(kind: Any) -> Any:
    def parse(raw: str) -> str:
        if raw not in get_args(kind):
            raise ValueError(f"expected one of {', '.join(get_args(kind))}")
        return raw

    return parse


# metadata key (after the prefix) -> (InferenceContract field, parser)
_PARSERS: dict[str, tuple[str, Any]] = {
    "input.name": ("input_name", _text),
    "input.shape": ("input_shape", _shape),
    "input.dtype": ("dtype", _choice(DType)),
    "input.layout": ("layout", _choice(Layout)),
    "preprocess.color_mode": ("color_mode", _choice(ColorMode)),
    "preprocess.resize": ("resize", _choice(Resize)),
    "preprocess.scale": ("scale", float),
    "preprocess.mean": ("mean", _floats),
    "preprocess.std": ("std", _floats),
    "output.name": ("output_name", _text),
    "output.kind": ("output", _choice(OutputKind)),
    "output.classes": ("classes", _strings),
    "git_sha": ("git_sha", _text),
}

METADATA_KEYS: tuple[str, ...] = (f"{PREFIX}contract", *(PREFIX + k for k in _PARSERS))


def read_contract(path: Path) -> InferenceContract:
    """The contract stored in an ONNX file (reads the file with `onnx`, not torch)."""
    return InferenceContract.from_metadata(read_metadata(path), source=str(path))


def read_metadata(path: Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX file, without loading external weights."""
    import importlib

    import onnx

    # protobuf's error for bytes that are not a ModelProto (no type stubs for protobuf here)
    decode_error: type[Exception] = importlib.import_module("google.protobuf.message").DecodeError
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the ONNX file: {exc.strerror}") from None
    except decode_error as exc:
        raise ContractError(f"{path}: not an ONNX file ({exc})") from None
    return {p.key: p.value for p in model.metadata_props}


def current_git_sha(cwd: Path | None = None) -> str:
    """$DLGATE_GIT_SHA, else `git rev-parse HEAD` in `cwd`, else "unknown"."""
    from dlgate import git

    env = os.environ.get("DLGATE_GIT_SHA", "").strip()
    if env:
        return env
    try:
        out = git.git(cwd or Path.cwd(), "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    except GitError:  # git not installed
        return "unknown"
    sha = out.strip()
    return sha if len(sha) in (40, 64) else "unknown"


def to_onnx(
    model: torch.nn.Module,
    sample: torch.Tensor,
    path: Path | str,
    *,
    classes: Sequence[str],
    preprocessing: Preprocessing,
    git_sha: str | None = None,
    output: OutputKind = "logits",
    opset: int | None = None,
) -> Path:
    """Export `model` to ONNX at `path` with a dynamic batch axis and the inference contract
    in its metadata. `sample` is one batch of preprocessed inputs (any batch size)."""
    import torch

    path = Path(path)
    contract = InferenceContract(
        input_name="input",
        input_shape=(None, *(int(d) for d in sample.shape[1:])),
        dtype=_dtype_name(sample.dtype),
        layout=preprocessing.layout,
        color_mode=preprocessing.color_mode,
        resize=preprocessing.resize,
        scale=float(preprocessing.scale),
        mean=preprocessing.mean,
        std=preprocessing.std,
        classes=tuple(str(c) for c in classes),
        output_name=output,
        output=output,
        git_sha=git_sha if git_sha is not None else current_git_sha(),
    )
    # torch.export specialises a dimension of size 1 to a constant, so a batch of one would
    # lose the dynamic batch axis: export with (at least) two copies of the sample.
    if sample.shape[0] < 2:
        sample = torch.cat([sample[:1], sample[:1]])
    was_training = model.training
    model.eval()  # dropout and batch norm as deployed; a training-mode export is a silent bug
    try:
        with torch.no_grad():
            out = model(sample)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (
            sample.shape[0],
            len(contract.classes),
        ):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the model's output for a batch of {sample.shape[0]} is {got}, expected "
                f"({sample.shape[0]}, {len(contract.classes)}) for {len(contract.classes)} classes"
            )
        proto, exporter = _export(model, sample, contract, opset)
        _require_dynamic_batch(proto, model, sample)
    finally:
        model.train(was_training)

    import onnx

    del proto.metadata_props[:]
    for key, value in {**contract.to_metadata(), f"{PREFIX}exporter": exporter}.items():
        proto.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return path


def _export(
    model: torch.nn.Module, sample: torch.Tensor, contract: InferenceContract, opset: int | None
) -> tuple[Any, str]:
    """The ONNX ModelProto and a note on which exporter made it."""
    import tempfile

    import onnx
    import torch

    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model,
                (sample,),
                dynamo=True,
                opset_version=opset,
                verbose=False,
                input_names=[contract.input_name],
                output_names=[contract.output_name],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
        assert program is not None
        return program.model_proto, "torch.onnx dynamo"
    except Exception as exc:  # torch.export fails in many ways: try the other exporter
        dynamo_exc = exc
    first = _summary(dynamo_exc)
    # The legacy TorchScript exporter still handles models torch.export cannot trace
    # (data-dependent control flow, some custom ops); it is only a fallback.
    with tempfile.TemporaryDirectory(prefix="dlgate-export-") as tmp:
        legacy = Path(tmp) / "model.onnx"
        try:
            with _quiet_exporter():
                torch.onnx.export(
                    model,
                    (sample,),
                    legacy,
                    dynamo=False,
                    opset_version=opset or 17,
                    input_names=[contract.input_name],
                    output_names=[contract.output_name],
                    dynamic_axes={
                        contract.input_name: {0: "batch"},
                        contract.output_name: {0: "batch"},
                    },
                )
        except Exception as exc:
            raise _export_failure(model, sample, dynamo_exc, exc) from exc
        proto = onnx.load(str(legacy))
    return proto, f"torch.onnx torchscript (dynamo failed: {first})"


def _export_failure(
    model: torch.nn.Module, sample: torch.Tensor, dynamo: Exception, torchscript: Exception
) -> ExportError:
    """Both exporters failed: name the operator and the layer where the errors allow."""
    from dlgate.exportfailure import layer_calling, unsupported_operator

    both = f"dynamo: {_summary(dynamo)}; TorchScript: {_summary(torchscript)}"
    operator = unsupported_operator(dynamo, torchscript)
    if operator is None:
        return ExportError(f"cannot export the model to ONNX with either exporter ({both})")
    layer = layer_calling(model, sample, operator)
    where = f", used by layer {layer}," if layer else ""
    return ExportError(
        f"cannot export the model to ONNX: operator {operator}{where} has no ONNX translation "
        f"({both}); replace it with supported operations, or give the exporter a translation "
        "for it (torch.onnx.export's custom_translation_table)",
        operator=operator,
        layer=layer,
    )


def _require_dynamic_batch(proto: Any, model: torch.nn.Module, sample: torch.Tensor) -> None:
    """Deployment feeds batches of any size: refuse a graph fixed to the sample's batch size,
    or one whose batch axis is symbolic but which onnxruntime cannot run at another size."""
    import numpy as np
    import onnxruntime as ort

    from dlgate.exportfailure import eager_batch_failure

    dims = proto.graph.input[0].type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    why: str | None = None
    if fixed is not None:
        why = f"the exported graph's input has a fixed batch size of {fixed}"
    elif proto.ByteSize() < _PROTOBUF_LIMIT:  # a larger graph cannot be handed over in memory
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(
            proto.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        x = sample.detach().cpu().numpy()
        for batch in (1, x.shape[0] + 1):
            feed = {session.get_inputs()[0].name: np.resize(x, (batch, *x.shape[1:]))}
            try:
                session.run(None, feed)
            except Exception as exc:  # onnxruntime's own error classes share no other base
                why = f"onnxruntime cannot run a batch of {batch} ({_summary(exc)})"
                break
    if why is None:
        return
    eager = eager_batch_failure(model, sample)
    raise ExportError(
        f"the model cannot run with a dynamic batch: {why}"
        + (f"; {eager}" if eager else "")
        + ". Something in forward fixes the batch size, usually a reshape such as "
        "x.view(32, -1); use x.flatten(1) or x.reshape(x.shape[0], -1)"
    )


def _summary(exc: BaseException) -> str:
    """The root cause in one line: torch wraps it in a long "step 1/3 ... next steps" text."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip()]
    text = lines[0].strip() if lines else "(no message)"
    return f"{type(exc).__name__}: {text[:300]}"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's own deprecation chatter and its "torchvision is not installed"
    log lines: torch internals the user cannot act on, which would otherwise fill the training
    log (and fail a test suite that treats warnings as errors)."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def _dtype_name(dtype: torch.dtype) -> DType:
    import torch

    names: dict[torch.dtype, DType] = {torch.float32: "float32", torch.float16: "float16"}
    if dtype not in names:
        raise ValueError(f"the sample's dtype {dtype} is not supported; use float32 or float16")
    return names[dtype]


__all__ = [
    "METADATA_KEYS",
    "ContractError",
    "ContractProblem",
    "ExportError",
    "InferenceContract",
    "InvalidContract",
    "Preprocessing",
    "check_metadata",
    "current_git_sha",
    "read_contract",
    "read_metadata",
    "to_onnx",
]
