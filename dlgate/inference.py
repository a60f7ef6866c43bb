"""The deployed inference path: raw image file → contract preprocessing → onnxruntime → label.

Independent of the training code on purpose: it never imports torch or the user's modules,
only the ONNX file and the `dlgate.*` contract in its metadata. A preprocessing step that
training does and the contract does not record shows up here as lost accuracy.

    model = Deployed.load("model.onnx")
    model.predict(["a.png", "b.png"])        # -> [Prediction, ...]; a bad file raises
    model.predict_many(["a.png", "bad.png"]) # -> [Prediction, Refusal]

A sample that cannot be decoded (empty, truncated, not an image, wrong size under the "exact"
resize policy, a decompression bomb) or whose output is not finite is refused cleanly
(`InferenceRefusal` / `Refusal`), naming the file and the reason; it never crashes the run.

Speed: files are decoded thousands at a time; small PNGs by `dlgate.fastpng` (bit-exact with
Pillow, one numpy step per row for the whole span), everything else by Pillow. `probe` runs
files one by one for the edge-case check, in a child process.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state
from PIL import Image, UnidentifiedImageError

from dlgate import fastpng
from dlgate.errors import DlgateError
from dlgate.export import ContractError, InferenceContract

Source = str | os.PathLike[str] | bytes

# onnxruntime raises its own exception classes, none derived from a common base but Exception.
_ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    v for v in vars(_ort_state).values() if isinstance(v, type) and issubclass(v, Exception)
)
# What Pillow raises for bytes it cannot decode: UnidentifiedImageError and "image file is
# truncated" are OSErrors; broken chunks raise SyntaxError, struct.error or ValueError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
_ONNX_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_PROB_TOLERANCE = 1e-3  # how far a "probabilities" output may sum from 1
_SPAN = 4096  # samples decoded at a time, at most …
_SPAN_BYTES = 64 * 2**20  # … and at most this much decoded input


class ModelError(DlgateError):
    """The ONNX file cannot be loaded or run by onnxruntime."""


class InferenceRefusal(DlgateError):
    """A sample the deployed path refuses: cannot be decoded, or its output is not finite."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Prediction:
    sample: str  # the path as given
    label: str  # the predicted class name
    confidence: float  # its probability
    probabilities: tuple[float, ...]  # one per class, in the contract's class order

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": list(self.probabilities),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(
            sample=str(data["sample"]),
            label=str(data["label"]),
            confidence=float(data["confidence"]),
            probabilities=tuple(float(p) for p in data["probabilities"]),
        )


@dataclass(frozen=True)
class Refusal:
    sample: str  # the path as given
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"sample": self.sample, "refused": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refusal:
        return cls(sample=str(data["sample"]), reason=str(data["refused"]))

    def error(self) -> InferenceRefusal:
        return InferenceRefusal(self.sample, self.reason)


def result_from_dict(data: Mapping[str, Any]) -> Prediction | Refusal:
    """The inverse of `to_dict` for either kind of per-sample result."""
    return Refusal.from_dict(data) if "refused" in data else Prediction.from_dict(data)


class Deployed:
    """An ONNX model served the way it is deployed. Make one with `Deployed.load`."""

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: InferenceContract,
        path: Path,
        *,
        max_pixels: int,
    ) -> None:
        self.session = session
        self.contract = contract
        self.path = path
        self.max_pixels = max_pixels
        c = contract
        self._size = contract.size
        self.sample_shape: tuple[int, ...] = tuple(d for d in c.input_shape[1:] if d is not None)
        # Normalisation folded into one multiply-add per channel, broadcast over the layout.
        per_channel = (-1, 1, 1) if c.layout == "NCHW" else (-1,)
        std = np.asarray(c.std, dtype=np.float32).reshape(per_channel)
        self._mul = (np.float32(c.scale) / std).astype(np.float32)
        self._add = (-np.asarray(c.mean, dtype=np.float32).reshape(per_channel) / std).astype(
            np.float32
        )

    @classmethod
    def load(
        cls,
        onnx_path: Path | str,
        *,
        providers: Sequence[str] | None = None,
        max_pixels: int | None = None,
    ) -> Deployed:
        """Open `onnx_path` in onnxruntime (CPU unless `providers` says otherwise) and read
        its contract. Images with more than `max_pixels` pixels are refused as decompression
        bombs (default: Pillow's own limit)."""
        path = Path(onnx_path)
        wanted = list(providers) if providers else ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        missing = [p for p in wanted if p not in available]
        if missing:
            raise ModelError(
                f"execution provider(s) {', '.join(missing)} not available in this "
                f"onnxruntime; available: {', '.join(available)}"
            )
        if not path.is_file():
            raise ModelError(f"{path}: no such ONNX file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings go to stderr, not to us
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
        except _ORT_ERRORS as exc:
            raise ModelError(f"{path}: onnxruntime cannot load it: {exc}") from None
        metadata = session.get_modelmeta().custom_metadata_map
        contract = InferenceContract.from_metadata(metadata, source=str(path))
        _check_graph(session, contract, path)
        limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
        return cls(session, contract, path, max_pixels=int(limit or 2**62))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return list(self.session.get_providers())

    def decode(self, source: Source) -> np.ndarray:
        """One sample as the model input (without the batch axis), per the contract."""
        out = np.empty((1, *self.sample_shape), dtype=np.float32)
        with _bomb_as_error():
            self._decode_into(source, out[0])
        sample: np.ndarray = self._finish(out)[0]
        return sample

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Run a decoded batch; (N, classes) float64 probabilities. Rows of a sample whose
        output is not a valid probability vector are NaN."""
        raw = self.outputs(batch)
        return _to_probabilities(np.asarray(raw, dtype=np.float64), self.contract.output)

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        """Run a decoded batch; the model's raw (N, classes) output, as the graph gives it."""
        try:
            (raw,) = self.session.run(
                [self.contract.output_name], {self.contract.input_name: batch}
            )
        except _ORT_ERRORS as exc:
            raise ModelError(
                f"{self.path}: onnxruntime failed on a batch of shape {batch.shape}: {exc}"
            ) from None
        expected = (batch.shape[0], len(self.contract.classes))
        if raw.shape != expected:
            raise ContractError(
                f"{self.path}: the output {self.contract.output_name!r} has shape {raw.shape}, "
                f"expected {expected} (dlgate.output.classes lists {expected[1]} classes)"
            )
        return np.asarray(raw)

    def predict(self, paths: Sequence[Source], batch_size: int = 256) -> list[Prediction]:
        """Predictions for every sample, in order; the first sample refused raises
        `InferenceRefusal`."""
        out: list[Prediction] = []
        for result in self._results(paths, batch_size):
            if isinstance(result, Refusal):
                raise result.error()
            out.append(result)
        return out

    def predict_many(
        self, paths: Sequence[Source], batch_size: int = 256
    ) -> list[Prediction | Refusal]:
        """A Prediction or a Refusal for every sample, in order; never stops at a bad one."""
        return list(self._results(paths, batch_size))

    def _results(self, paths: Sequence[Source], batch_size: int) -> Iterator[Prediction | Refusal]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        # Files are decoded a span at a time, onnxruntime runs `batch_size` at a time: for small
        # samples the per-span costs (the batched PNG decoder's per-row steps) dominate at 256.
        sample_bytes = 4 * int(np.prod(self.sample_shape))
        span = max(batch_size, min(_SPAN, _SPAN_BYTES // sample_bytes))
        for start in range(0, len(paths), span):
            chunk = paths[start : start + span]
            decoded, done = self._fast_decode(chunk)
            yield from self._chunk_results(chunk, decoded, done, batch_size)

    def _fast_decode(self, chunk: Sequence[Source]) -> tuple[np.ndarray, np.ndarray]:
        """The chunk's raw samples that the fast PNG decoder takes, and which those are."""
        out = np.empty((len(chunk), *self.sample_shape), dtype=np.float32)
        mode = self.contract.color_mode
        if self._size[0] * self._size[1] > fastpng.MAX_PIXELS:
            return out, np.zeros(len(chunk), dtype=bool)
        pixels, done = fastpng.decode([_head(s) for s in chunk], self._size, mode)
        if self.contract.layout == "NHWC":
            out[...] = pixels.reshape(out.shape)
        else:
            out[...] = pixels.transpose(0, 3, 1, 2)
        return out, done

    def _chunk_results(
        self, chunk: Sequence[Source], decoded: np.ndarray, done: np.ndarray, batch_size: int
    ) -> Iterator[Prediction | Refusal]:
        refused: dict[int, str] = {}
        with _bomb_as_error():
            for i in np.flatnonzero(~done).tolist():  # what the fast path left to Pillow
                try:
                    self._decode_into(chunk[i], decoded[i])
                except InferenceRefusal as exc:
                    refused[i] = exc.reason
        ok = [i for i in range(len(chunk)) if i not in refused]
        batch = self._finish(decoded[ok] if refused else decoded)
        parts = [
            self.probabilities(batch[s : s + batch_size]) for s in range(0, len(ok), batch_size)
        ]
        probs = np.concatenate(parts) if parts else np.empty((0, 0))
        classes = self.contract.classes
        best = probs.argmax(axis=1).tolist() if ok else []
        rows = probs.tolist()
        row_of = {i: row for row, i in enumerate(ok)}
        for i, source in enumerate(chunk):
            name = _name(source)
            if i in refused:
                yield Refusal(name, refused[i])
                continue
            row = row_of[i]
            p = rows[row]
            if math.isnan(p[0]):
                yield Refusal(
                    name,
                    "the model's output is not a valid probability vector "
                    "(NaN, Inf, or not summing to 1)",
                )
                continue
            yield Prediction(name, classes[best[row]], p[best[row]], tuple(p))

    def _decode_into(self, source: Source, out: np.ndarray) -> None:
        """Decode one image into `out` (raw 0..255 values in the contract's layout)."""
        size, mode, resize = self._size, self.contract.color_mode, self.contract.resize
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                if img.width * img.height > self.max_pixels:
                    raise InferenceRefusal(
                        _name(source),
                        f"refused as a decompression bomb: {img.width}x{img.height} pixels "
                        f"exceeds the limit of {self.max_pixels}",
                    )
                if img.size != size:
                    if resize == "exact":
                        raise InferenceRefusal(
                            _name(source),
                            f"the image is {img.width}x{img.height} but the model takes "
                            f"exactly {size[0]}x{size[1]} (resize policy 'exact')",
                        )
                    img.draft(mode, size)  # JPEG: decode at a reduced scale (fast)
                converted = img.convert(mode) if img.mode != mode else img
                if converted.size != size:
                    converted = converted.resize(size, _RESAMPLE[resize])
                array = np.asarray(converted)
        except InferenceRefusal:
            raise
        except FileNotFoundError:
            raise InferenceRefusal(_name(source), "no such file") from None
        except _DECODE_ERRORS as exc:
            raise InferenceRefusal(_name(source), _decode_reason(source, exc)) from None
        if self.contract.layout == "NHWC":
            out[...] = array.reshape(out.shape)
        elif array.ndim == 2:
            out[0] = array
        else:
            out[...] = array.transpose(2, 0, 1)

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        """Scale and normalise decoded pixels in place (one pass over the batch)."""
        raw *= self._mul
        raw += self._add
        return raw if self.contract.dtype == "float32" else raw.astype(self.contract.dtype)


def probe(onnx_path: str, sources: list[str], progress: str) -> list[dict[str, Any]]:
    """Each file alone through the deployed path: its result's `to_dict()`, or
    `{"sample": …, "crashed": "Type: message"}` when something escaped the path. Meant for a
    child process (the edge-case check): each file's name is appended to `progress` (one JSON
    string a line) before it is tried, so that a crash of the whole process names the file."""
    import json

    model = Deployed.load(onnx_path)
    out: list[dict[str, Any]] = []
    with open(progress, "a", encoding="utf-8") as log:
        for source in sources:
            log.write(json.dumps(source) + "\n")
            log.flush()
            try:
                (result,) = model.predict_many([source], batch_size=1)
                out.append(result.to_dict())
            except Exception as exc:  # whatever escapes the path is the finding itself
                out.append({"sample": source, "crashed": f"{type(exc).__name__}: {exc}"})
    return out


def _check_graph(session: ort.InferenceSession, c: InferenceContract, path: Path) -> None:
    """The contract must describe the graph it is stored in."""
    problems = []
    inputs = {i.name: i for i in session.get_inputs()}
    if c.input_name not in inputs:
        problems.append(
            f"dlgate.input.name = {c.input_name!r} but the graph's inputs are {', '.join(inputs)}"
        )
    else:
        node = inputs[c.input_name]
        dims = list(node.shape)
        static = [d if isinstance(d, int) else None for d in dims]
        if len(dims) != len(c.input_shape) or any(
            d is not None and e is not None and d != e
            for d, e in zip(static[1:], c.input_shape[1:], strict=False)
        ):
            problems.append(
                f"dlgate.input.shape = {list(c.input_shape)} but the graph's input has shape {dims}"
            )
        if node.type != _ONNX_TYPES[c.dtype]:
            problems.append(
                f"dlgate.input.dtype = {c.dtype!r} but the graph's input is {node.type}"
            )
    others = [n for n in inputs if n != c.input_name]
    if others:
        problems.append(
            f"the graph needs other inputs too ({', '.join(others)}); the deployed "
            "path feeds only the image"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    if c.output_name not in outputs:
        problems.append(
            f"dlgate.output.name = {c.output_name!r} but the graph's outputs are "
            f"{', '.join(outputs)}"
        )
    else:
        last = outputs[c.output_name].shape[-1] if outputs[c.output_name].shape else None
        if isinstance(last, int) and last != len(c.classes):
            problems.append(
                f"dlgate.output.classes names {len(c.classes)} classes but the graph outputs {last}"
            )
    if problems:
        raise ContractError(
            f"{path}: the metadata does not match the graph: " + "; ".join(problems)
        )


def _to_probabilities(raw: np.ndarray, kind: str) -> np.ndarray:
    """Probability rows from raw outputs; invalid rows become NaN (refused per sample)."""
    finite = np.isfinite(raw).all(axis=1)
    safe = np.where(finite[:, None], raw, 0.0)
    probs: np.ndarray
    if kind == "logits":
        e = np.exp(safe - safe.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        valid = finite
    else:
        probs = np.exp(safe) if kind == "log_probabilities" else safe
        sums = probs.sum(axis=1)
        valid = finite & (probs.min(axis=1) >= -1e-6) & (np.abs(sums - 1) <= _PROB_TOLERANCE)
        probs = np.clip(probs, 0.0, None) / np.where(valid, sums, 1.0)[:, None]
    probs[~valid] = np.nan
    return probs


def _head(source: Source) -> bytes | None:
    """A small file's bytes for the fast decoder; None for a larger or unreadable one (Pillow
    then decodes it, or says why it cannot)."""
    if isinstance(source, bytes):
        return source if len(source) <= fastpng.MAX_BYTES else None
    # One os.read: a third of the cost of open().read() for a small file. A short read of an
    # odd file only makes the blob invalid, and Pillow then reads that file itself.
    try:
        fd = os.open(source, os.O_RDONLY)
    except OSError:
        return None
    try:
        blob = os.read(fd, fastpng.MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return blob if len(blob) <= fastpng.MAX_BYTES else None


def _name(source: Source) -> str:
    return "<bytes>" if isinstance(source, bytes) else os.fspath(source)


def _decode_reason(source: Source, exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"refused as a decompression bomb: {exc}"
    if isinstance(exc, OSError) and exc.strerror:  # the file system's error, not Pillow's
        return f"cannot read the file: {exc.strerror}"
    empty = (
        len(source) == 0
        if isinstance(source, bytes)
        else os.path.isfile(source) and os.path.getsize(source) == 0
    )
    if empty:
        return "the file is empty (0 bytes)"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file (Pillow cannot identify its format)"
    if "truncated" in str(exc):
        return f"the image data is truncated ({exc})"
    return f"the image cannot be decoded ({type(exc).__name__}: {exc})"


@contextlib.contextmanager
def _bomb_as_error() -> Iterator[None]:
    """Pillow only warns between its warning and error thresholds; a gate refuses instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


__all__ = [
    "Deployed",
    "InferenceRefusal",
    "ModelError",
    "Prediction",
    "Refusal",
    "probe",
    "result_from_dict",
]
