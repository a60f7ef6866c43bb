"""`dlgate.yml`: loaded once, validated loudly, frozen.

The file is a mapping of sections. The core sections (`paths`, `pipeline`, `baseline`, `stages`)
are declared here; each stage declares its own section next to its checks with
`@section("data")` on a frozen dataclass. Validation is generic over those dataclasses: an
unknown key names the closest valid one, a wrong type names the expected one, a path that
leaves the repository is refused — each with the file and the line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from dlgate.errors import ConfigError
from dlgate.report import STAGES

CONFIG_FILE = "dlgate.yml"
T = TypeVar("T")

_SECTIONS: dict[str, type[Any]] = {}


def section(name: str) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as the schema of the top-level config key `name`."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass")
        if name in _SECTIONS and _SECTIONS[name] is not cls:
            raise ValueError(f"config section {name!r} registered twice")
        _SECTIONS[name] = cls
        return cls

    return register


def path_field(default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A field holding repository-relative path(s) or globs: must stay inside the repository."""
    metadata = {"path": True}
    if default is dataclasses.MISSING:
        return field(metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


@section("paths")
@dataclass(frozen=True)
class PathsSettings:
    """How `changes` classifies files. Globs use `**` for any depth (gitignore-like)."""

    data: tuple[str, ...] = path_field(("data/**",))
    code: tuple[str, ...] = path_field(("**/*.py", "requirements*.txt", "pyproject.toml"))
    ignore: tuple[str, ...] = path_field(())


@section("pipeline")
@dataclass(frozen=True)
class PipelineSettings:
    """How the gate gets the model the pipeline makes."""

    # Shell-free command (split like a shell) run in the repository; `{out}` is the folder it
    # must write the ONNX model (and the weights) into. Empty: use `artifact`.
    train: str = ""
    # A committed ONNX file to evaluate instead of training (repository-relative).
    artifact: str = path_field("")
    # `module:function` returning the framework model (torch.nn.Module), for training/export.
    model: str = ""
    onnx: str = "model.onnx"  # file name `train` writes under {out}
    weights: str = "model.pt"  # state_dict file name `train` writes under {out}
    timeout: float = 600.0  # seconds the `train` command may take
    hook_timeout: float = 120.0  # seconds each call into user code (model factory) may take
    seed: int = 0

    def __post_init__(self) -> None:
        # A zero or negative timeout would make every hook time out at once.
        for name in ("timeout", "hook_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive number of seconds")


@section("baseline")
@dataclass(frozen=True)
class BaselineSettings:
    tracking_uri: str = ""  # default: $MLFLOW_TRACKING_URI, else sqlite in .dlgate/
    experiment: str = "dlgate"
    branch: str = "main"  # the branch whose commits carry baselines
    missing: Literal["compute", "warn", "fail"] = "compute"
    max_distance: int = 50  # how many first-parent commits back to look for a baseline

    def __post_init__(self) -> None:
        if self.max_distance < 0:
            raise ValueError("`max_distance` must be 0 or more")


@dataclass(frozen=True)
class Config:
    source: str  # where it was read from, e.g. "dlgate.yml @ 1a2b3c4"
    stages: tuple[str, ...]
    sections: Mapping[str, Any]

    def get(self, cls: type[T]) -> T:
        """The validated settings object of a registered section class."""
        for name, registered in _SECTIONS.items():
            if registered is cls:
                value = self.sections[name]
                assert isinstance(value, cls)
                return value
        raise KeyError(f"{cls.__name__} is not a registered config section")

    @property
    def paths(self) -> PathsSettings:
        return self.get(PathsSettings)

    @property
    def pipeline(self) -> PipelineSettings:
        return self.get(PipelineSettings)

    @property
    def baseline(self) -> BaselineSettings:
        return self.get(BaselineSettings)


# The core sections, declared above; the stages' sections register when `dlgate.checks` loads.
_CORE = dict(_SECTIONS)


def _registered(core_only: bool) -> dict[str, type[Any]]:
    if core_only:
        return _CORE
    import dlgate.checks  # noqa: F401  (registers the stage sections)

    return _SECTIONS


def default_config(source: str = "(defaults)", *, core_only: bool = False) -> Config:
    sections = _registered(core_only)
    return Config(
        source=source,
        stages=STAGES,
        sections=types.MappingProxyType({name: cls() for name, cls in sections.items()}),
    )


def load_text(text: str, source: str = CONFIG_FILE, *, core_only: bool = False) -> Config:
    """Parse and validate configuration text; `source` names it in every error.

    `core_only` validates and holds only the core sections and leaves the stages' own to a
    later, whole load: without importing every check, what starting the training command
    needs (`pipeline`, `stages`) is known a fifth of a second sooner."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"not valid YAML: {exc.problem}", file=source, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=source) from None
    if root is None or _is_null(root):  # empty, comments only, or a bare `---`
        return default_config(source, core_only=core_only)
    v = _Validator(source)
    if not isinstance(root, yaml.MappingNode):
        raise v.error(root, "the top level must be a mapping of sections (paths:, pipeline:, …)")
    sections = _registered(core_only)
    values: dict[str, Any] = {}
    stages = STAGES
    # A core-only load takes any top-level key: the stages' keys are not known yet.
    known = None if core_only else ["version", "stages", *sections]
    for key_node, value_node in v.pairs(root, known, "the top level"):
        key = key_node.value
        if key not in sections and key not in ("version", "stages"):
            continue  # a stage's section, left to the whole load (core_only)
        if key == "version":
            if v.scalar(value_node, int, "version") != 1:
                raise v.error(value_node, "`version` must be 1 (the only format there is)")
        elif key == "stages":
            nodes = v.seq(value_node, "stages")
            stages = tuple(v.scalar(n, str, "stages[]") for n in nodes)
            for n, name in zip(nodes, stages, strict=True):
                if name not in STAGES:
                    raise v.error(n, f"unknown stage {name!r}{_suggest(name, STAGES)}")
        else:
            values[key] = v.dataclass(sections[key], value_node, key)
    for name, cls in sections.items():
        values.setdefault(name, cls())
    return Config(source=source, stages=stages, sections=types.MappingProxyType(values))


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, node: yaml.Node, message: str) -> ConfigError:
        return ConfigError(message, file=self.source, line=node.start_mark.line + 1)

    def pairs(
        self, node: yaml.MappingNode, known: list[str] | None, where: str
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        seen: set[str] = set()
        out = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, f"keys in {where} must be plain names")
            key = key_node.value
            if known is not None and key not in known:
                valid = ", ".join(known)
                raise self.error(
                    key_node,
                    f"unknown key {key!r} in {where}{_suggest(key, known)} (valid: {valid})",
                )
            if key in seen:
                raise self.error(key_node, f"key {key!r} appears twice in {where}")
            seen.add(key)
            out.append((key_node, value_node))
        return out

    def seq(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if _is_null(node):
            return []
        if isinstance(node, yaml.ScalarNode):
            return [node]  # a single value where a list is expected is a list of one
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"`{where}` must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, kind: type[T], where: str) -> T:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(
                node,
                f"`{where}` must be {_type_name(kind)}, not a "
                f"{'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}",
            )
        value = _construct(node)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = node.value  # a version-like "1.10" stays as written
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(node, f"`{where}` must be {_type_name(kind)}, got {node.value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            # A NaN threshold compares false with everything: a check would silently pass.
            raise self.error(node, f"`{where}` must be a finite number, got {node.value!r}")
        return value

    def dataclass(self, cls: type[Any], node: yaml.Node, where: str) -> Any:
        if _is_null(node):
            return cls()
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"`{where}` must be a mapping")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key_node, value_node in self.pairs(node, list(fields), f"`{where}`"):
            name = key_node.value
            path = f"{where}.{name}"
            value = self.value(hints[name], value_node, path)
            if fields[name].metadata.get("path"):
                if isinstance(value, tuple):  # each item on its own line where it has one
                    for n, p in zip(self.seq(value_node, path), value, strict=True):
                        self.check_path(n, p, path)
                else:
                    self.check_path(value_node, value, path)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a __post_init__ cross-field check
            raise self.error(node, f"`{where}`: {exc}") from None

    def value(self, hint: Any, node: yaml.Node, where: str) -> Any:
        origin = get_origin(hint)
        args = get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if _is_null(node) and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.value(inner[0], node, where)
        if origin is Literal:
            got = self.scalar(node, type(args[0]), where)
            if got not in args:
                choices = ", ".join(repr(a) for a in args)
                raise self.error(
                    node,
                    f"`{where}` must be one of {choices}, got {got!r}"
                    f"{_suggest(str(got), [str(a) for a in args])}",
                )
            return got
        if origin is tuple:
            return tuple(self.value(args[0], n, f"{where}[]") for n in self.seq(node, where))
        if origin in (dict, Mapping, typing.Mapping):
            if not isinstance(node, yaml.MappingNode):
                raise self.error(node, f"`{where}` must be a mapping")
            out = {}
            for k, v in node.value:
                key = self.scalar(k, str, where)
                if key in out:
                    raise self.error(k, f"key {key!r} appears twice in `{where}`")
                out[key] = self.value(args[1], v, f"{where}.{key}")
            return types.MappingProxyType(out)
        if dataclasses.is_dataclass(hint):
            return self.dataclass(hint, node, where)  # type: ignore[arg-type]
        if hint in (str, int, float, bool):
            return self.scalar(node, hint, where)
        raise TypeError(f"config field type {hint!r} at {where} is not supported")

    def check_path(self, node: yaml.Node, value: str, where: str) -> None:
        if not value:
            return
        p = PurePosixPath(value.replace("\\", "/"))
        if p.is_absolute() or value.startswith("~") or ".." in p.parts:
            raise self.error(
                node,
                f"`{where}` = {value!r} leaves the repository; use a path relative to the "
                "repository root without `..`",
            )


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _construct(node: yaml.ScalarNode) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _type_name(kind: type[Any]) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(
        kind, f"a {kind.__name__}"
    )


def _suggest(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""
