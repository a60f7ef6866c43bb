"""`accuracy.edge_cases`: inputs a deployed model meets sooner or later — blank, noise, inverted,
the wrong size or colour mode, a truncated or empty file, a decompression bomb — must each give
a valid probability vector or a clean refusal from the inference path, never a crash.

Cases come from a folder in the repository (`accuracy.edge_cases.path`) whose manifest says what
each file must give, and from built-in cases generated for the model's input (`generated`):

    # edge_cases/manifest.yml — file (relative to this folder): expectation
    blank.png: any            # a valid probability vector, whatever the label
    truncated.png: refused    # a clean refusal
    seven-bold.png: {label: "7"}
    odd.png: either           # a valid output or a clean refusal (files not listed)

The cases run in a child process: a crash in native code (the image decoders, onnxruntime)
becomes a finding that names the file, and the rest still run.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from dlgate import hooks
from dlgate.checks.accuracy import AccuracySettings, evaluated
from dlgate.context import Context
from dlgate.dataset import DataSettings, load_split
from dlgate.errors import ConfigError, HookError
from dlgate.registry import check, prepare
from dlgate.report import Annotation, Finding, Level, Outcome, Value

EXPECTATIONS = ("any", "refused", "either")
_MAX_RERUNS = 8  # child processes started again after a crash, at most
_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Case:
    name: str  # how the report names it: a repository path, or "generated: blank"
    path: Path
    expect: str  # any | refused | either | label
    label: str = ""  # for expect == "label"
    in_repo: bool = False


Probed = tuple[tuple[str, ...], list["Case"], dict[str, dict[str, Any]]]


@prepare("accuracy")
def start_probing(ctx: Context) -> None:
    if ctx.kind != "release":  # a release may reuse its commit's model instead
        ctx.prefetch("accuracy.edge_cases", lambda: _probe(ctx))


def _probe(ctx: Context) -> Finding | Probed:
    """The model's classes, the cases and each one's result; or the Finding that ends the
    check before any case runs."""
    from dlgate.export import read_contract

    settings = ctx.config.get(AccuracySettings).edge_cases
    model = evaluated(ctx).model
    contract = read_contract(model)
    cases: list[Case] = []
    if settings.path:
        found = _folder_cases(ctx.repo, settings.path, settings.manifest)
        if isinstance(found, str):
            return Finding(Outcome.FAIL, found)
        cases += found
    if settings.generated:
        cases += _generated(ctx, contract.size, contract.color_mode, contract.resize)
    if not cases:
        return Finding(
            Outcome.SKIP,
            "no edge cases: set `accuracy.edge_cases.path` to a folder with a manifest, or "
            "`generated: true`",
        )
    results = _run(model, cases, ctx.artifact_dir("edge_cases"), settings.timeout)
    return contract.classes, cases, results


@check("accuracy.edge_cases")
def edge_cases(ctx: Context) -> Finding:
    """Edge-case inputs give a valid output or a clean refusal, as their manifest expects."""
    probed = ctx.memo("accuracy.edge_cases", lambda: _probe(ctx))
    if isinstance(probed, Finding):
        return probed
    classes, cases, results = probed
    problems: list[tuple[Case, str]] = []
    rows: list[dict[str, Value]] = []
    for case in cases:
        got, problem = _judge(case, results[str(case.path)], classes)
        rows.append({"case": case.name, "expect": _expected(case), "got": got, "ok": not problem})
        if problem:
            problems.append((case, problem))
    measurements: dict[str, Value] = {"cases": rows, "failed": len(problems)}
    table = ["| case | expected | got |", "|---|---|---|"] + [
        f"| `{r['case']}` | {r['expect']} | {'' if r['ok'] else '❌ '}{r['got']} |" for r in rows
    ]
    if not problems:
        valid = sum(1 for r in rows if str(r["got"]).startswith("predicted"))
        return Finding(
            Outcome.PASS,
            f"{len(cases)} edge cases behave as expected ({valid} valid outputs, "
            f"{len(cases) - valid} clean refusals)",
            measurements,
            details="\n".join(table),
        )
    annotations = [
        Annotation(case.name, problem, Level.FAILURE, title="edge case")
        for case, problem in problems
        if case.in_repo
    ]
    listed = "; ".join(f"{case.name}: {problem}" for case, problem in problems[:5])
    more = f"; … {len(problems) - 5} more" if len(problems) > 5 else ""
    return Finding(
        Outcome.FAIL,
        f"{len(problems)} of {len(cases)} edge cases fail: {listed}{more}",
        measurements,
        annotations,
        "\n".join(table),
    )


def _expected(case: Case) -> str:
    return {
        "any": "a valid output",
        "refused": "a clean refusal",
        "either": "a valid output or a clean refusal",
        "label": f"label {case.label}",
    }[case.expect]


def _judge(case: Case, result: dict[str, Any], classes: tuple[str, ...]) -> tuple[str, str]:
    """(what the path gave, the problem or "")."""
    if "crashed" in result:
        return f"crash: {result['crashed']}", f"crashed the inference path ({result['crashed']})"
    if "refused" in result:
        got = f"refused: {result['refused']}"
        if case.expect in ("refused", "either"):
            return got, ""
        return got, f"refused ({result['refused']}) but {_expected(case)} was expected"
    probs = [float(p) for p in result["probabilities"]]
    got = f"predicted {result['label']} ({float(result['confidence']):.2f})"
    valid = (
        len(probs) == len(classes)
        and all(math.isfinite(p) and p >= 0 for p in probs)
        and abs(sum(probs) - 1) <= _PROB_TOLERANCE
    )
    if not valid:
        return got, f"the output is not a valid probability vector over {len(classes)} classes"
    if case.expect == "refused":
        return got, f"gave {result['label']} but must be refused"
    if case.expect == "label" and result["label"] != case.label:
        return got, f"predicted {result['label']}, expected {case.label}"
    return got, ""


def _run(model: Path, cases: list[Case], work: Path, timeout: float) -> dict[str, dict[str, Any]]:
    """Run every case in child processes; a crash or hang marks the file it happened on and
    the rest run again in a fresh process."""
    from dlgate.inference import probe

    pending = [str(c.path) for c in cases]
    results: dict[str, dict[str, Any]] = {}
    progress = work / "progress.jsonl"
    for _ in range(_MAX_RERUNS + 1):
        if not pending:
            break
        progress.write_text("", encoding="utf-8")
        try:
            # cwd: the gate's own folder, so the user's files cannot shadow the path's imports.
            for r in hooks.call(probe, str(model), pending, str(progress), cwd=work,
                                timeout=timeout, hook="accuracy.edge_cases"):  # fmt: skip
                results[r["sample"]] = r
            pending = []
        except HookError as exc:
            if exc.kind not in ("crashed", "timeout"):
                raise
            lines = progress.read_text(encoding="utf-8").splitlines()
            if not lines:
                raise
            culprit = json.loads(lines[-1])
            what = "killed the process" if exc.kind == "crashed" else "hung"
            results[culprit] = {"sample": culprit, "crashed": f"{what}: {exc}"}
            pending = [p for p in pending if p not in results]
    for p in pending:
        results[p] = {"sample": p, "crashed": "not run: too many crashes before it"}
    return results


def _folder_cases(repo: Path, folder: str, manifest_name: str) -> list[Case] | str:
    """The cases of the folder, or the reason the folder or its manifest is unusable."""
    root = repo / folder
    key = "`accuracy.edge_cases.path`"
    if not root.is_dir():
        return f"{key} = {folder!r} is no folder in the repository; create it or unset the key"
    manifest = root / manifest_name
    where = f"{folder}/{manifest_name}"
    expectations: dict[str, Any] = {}
    if manifest.is_file():
        try:
            loaded = yaml.safe_load(manifest.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            return f"{where} is not valid YAML: {exc}"
        if loaded is not None and not isinstance(loaded, dict):
            return (
                f"{where} must map file names to expectations (any, refused, either, {{label: X}})"
            )
        expectations = loaded or {}
    cases = []
    for name, expect in expectations.items():
        path = root / str(name)
        if not path.is_file():
            return f"{where} lists {name!r}, but {folder}/ has no such file"
        parsed = _expectation(expect)
        if parsed is None:
            return (
                f"{where}: {name!r}: {expect!r} is no expectation; use any, refused, either or "
                "{label: NAME}"
            )
        cases.append(Case(f"{folder}/{name}", path, parsed[0], parsed[1], in_repo=True))
    listed = {c.path for c in cases}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path != manifest and path not in listed:
            rel = path.relative_to(root).as_posix()
            cases.append(Case(f"{folder}/{rel}", path, "either", in_repo=True))
    return cases


def _expectation(value: Any) -> tuple[str, str] | None:
    if isinstance(value, str) and value in EXPECTATIONS:
        return value, ""
    if isinstance(value, dict) and list(value) == ["label"] and value["label"] is not None:
        return "label", str(value["label"])
    return None


def _generated(ctx: Context, size: tuple[int, int], mode: str, resize: str) -> list[Case]:
    """Built-in cases, made for this model's input size and colour mode."""
    out = ctx.artifact_dir("edge_cases/generated")
    rng = np.random.default_rng(0)
    w, h = size
    channels = (h, w) if mode == "L" else (h, w, 3)
    other = "RGB" if mode == "L" else "L"
    images: dict[str, tuple[Image.Image, str]] = {
        "blank": (Image.fromarray(np.zeros(channels, np.uint8), mode), "any"),
        "white": (Image.fromarray(np.full(channels, 255, np.uint8), mode), "any"),
        "noise": (Image.fromarray(rng.integers(0, 256, channels, dtype=np.uint8), mode), "any"),
        f"wrong-mode-{other}": (Image.new(other, size, 128), "any"),
        "wrong-mode-RGBA": (Image.new("RGBA", size, (10, 200, 30, 128)), "any"),
        "wrong-size": (
            Image.fromarray(rng.integers(0, 256, (2 * h + 3, 2 * w + 1), dtype=np.uint8), "L"),
            "refused" if resize == "exact" else "any",
        ),
    }
    real = _first_real_sample(ctx)
    if real is not None:
        images["inverted"] = (Image.eval(real.convert(mode).resize(size), lambda v: 255 - v), "any")
    cases = []
    for name, (image, expect) in images.items():
        path = out / f"{name}.png"
        image.save(path)
        cases.append(Case(f"generated: {name}", path, expect))
    noise_png = _png_bytes(images["noise"][0])
    raw: dict[str, bytes] = {
        "truncated.png": _truncate(noise_png),
        "empty.png": b"",
        "not-an-image.png": b"this is a text file, not an image\n",
        "huge.png": _bomb(),  # a tiny file that claims 100,000 x 100,000 pixels
    }
    for name, data in raw.items():
        path = out / name
        path.write_bytes(data)
        cases.append(Case(f"generated: {path.stem}", path, "refused"))
    return cases


def _first_real_sample(ctx: Context) -> Image.Image | None:
    settings = ctx.config.get(AccuracySettings)
    try:
        samples = load_split(ctx.repo, ctx.config.get(DataSettings), settings.split)
    except (ConfigError, OSError):  # accuracy.accuracy reports an unusable split
        return None
    for sample in samples[:20]:
        try:
            with Image.open(sample.path) as img:
                img.load()
                return img.copy()
        except (OSError, ValueError):
            continue
    return None


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _truncate(png: bytes) -> bytes:
    """Cut the file in the middle of its image data, so no decoder can finish it."""
    at = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[at - 4 : at])
    return png[: at + 4 + max(1, length // 2)]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb() -> bytes:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _chunk(b"IEND", b"")
    )
